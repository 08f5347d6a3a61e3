//! QuickXorHash, the content hash OneDrive and SharePoint publish for every file
//! (`file.hashes.quickXorHash`, base64).
//!
//! Written from the description in OneDrive's `quickxorhash.md` code snippet: a 160-bit state;
//! byte *i* of the input, zero-extended, is XORed into the state at bit offset `(11·i) mod 160`,
//! wrapping around the 160-bit boundary; bit 0 is the least significant bit of byte 0. At the end
//! the state is laid out as 20 little-endian bytes, the input length as a 64-bit little-endian
//! integer is XORed into the last 8 of them, and the result is base64-encoded.
//!
//! Because the state is kept as those 20 bytes, a byte XORed at bit offset `s` touches byte
//! `s / 8` (shifted left by `s % 8`) and the byte after it (wrapping to byte 0 after byte 19).
//! The result does not depend on how the input is split into chunks.

use base64::Engine as _;

const WIDTH_BITS: u32 = 160;
const SHIFT: u32 = 11;
const STATE_BYTES: usize = 20;

/// An incremental QuickXorHash.
#[derive(Debug, Clone, Default)]
pub struct QuickXorHash {
    state: [u8; STATE_BYTES],
    /// Bit offset the next byte is XORed at.
    shift: u32,
    length: u64,
}

impl QuickXorHash {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes of the input.
    pub fn update(&mut self, data: &[u8]) {
        let mut shift = self.shift;
        for &byte in data {
            let index = (shift / 8) as usize;
            let spread = u16::from(byte) << (shift % 8);
            let [low, high] = spread.to_le_bytes();
            self.state[index] ^= low;
            self.state[(index + 1) % STATE_BYTES] ^= high;
            shift += SHIFT;
            if shift >= WIDTH_BITS {
                shift -= WIDTH_BITS;
            }
        }
        self.shift = shift;
        self.length = self.length.wrapping_add(data.len() as u64);
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// The 20 raw bytes of the hash.
    pub fn digest(&self) -> [u8; STATE_BYTES] {
        let mut out = self.state;
        for (slot, len_byte) in out[STATE_BYTES - 8..].iter_mut().zip(self.length.to_le_bytes()) {
            *slot ^= len_byte;
        }
        out
    }

    /// The hash as Graph shows it (standard base64 with padding).
    pub fn finish_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.digest())
    }

    /// The hash of `data` in one call.
    pub fn of(data: &[u8]) -> String {
        let mut h = Self::new();
        h.update(data);
        h.finish_base64()
    }
}

impl kbsync_http::ContentHash for QuickXorHash {
    const FIELD: &'static str = "quickXorHash";

    fn update(&mut self, data: &[u8]) {
        QuickXorHash::update(self, data);
    }

    fn finish(self) -> String {
        self.finish_base64()
    }
}
