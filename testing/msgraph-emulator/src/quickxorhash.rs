//! QuickXorHash, the content hash OneDrive and SharePoint publish for every file.
//!
//! The state is a 160-bit block. Input byte `i` (0-based, counted over the whole stream) is XORed, zero-extended,
//! into the block at bit offset `(i * 11) mod 160`, wrapping across the 160-bit boundary; bit 0 is the least
//! significant bit of byte 0. At the end the 64-bit little-endian input length is XORed into bytes 12..20 and the
//! 20 bytes are base64-encoded.
//!
//! Because the offset of byte `i` only depends on `i mod 160`, the hasher folds the input into 160 byte-wide
//! accumulators (one per residue) and places them into the block only when finishing. That makes the result
//! independent of how the input is chunked, and makes hashing large files cheap.
//!
//! This module is self-contained on purpose: it has no dependency on the rest of the emulator.

use base64::Engine as _;

const WIDTH_BITS: usize = 160;
const SHIFT: usize = 11;
const SIZE_BYTES: usize = 20;

/// Streaming QuickXorHash.
#[derive(Clone, Debug)]
pub struct QuickXorHash {
    fold: [u8; WIDTH_BITS],
    length: u64,
}

impl Default for QuickXorHash {
    fn default() -> Self {
        Self::new()
    }
}

impl QuickXorHash {
    /// A hasher with no input yet.
    pub fn new() -> Self {
        Self {
            fold: [0; WIDTH_BITS],
            length: 0,
        }
    }

    /// Feeds more bytes; any chunking gives the same result.
    pub fn update(&mut self, data: &[u8]) {
        let start = (self.length % WIDTH_BITS as u64) as usize;
        let mut residue = start;
        for &byte in data {
            self.fold[residue] ^= byte;
            residue += 1;
            if residue == WIDTH_BITS {
                residue = 0;
            }
        }
        self.length += data.len() as u64;
    }

    /// The 20 raw digest bytes.
    pub fn finalize_bytes(&self) -> [u8; SIZE_BYTES] {
        let mut block = [0u8; SIZE_BYTES];
        for (residue, &byte) in self.fold.iter().enumerate() {
            if byte == 0 {
                continue;
            }
            let bit = (residue * SHIFT) % WIDTH_BITS;
            let index = bit / 8;
            let shift = bit % 8;
            let wide = u16::from(byte) << shift;
            block[index] ^= (wide & 0xff) as u8;
            if shift != 0 {
                block[(index + 1) % SIZE_BYTES] ^= (wide >> 8) as u8;
            }
        }
        let length = self.length.to_le_bytes();
        for (i, b) in length.iter().enumerate() {
            block[SIZE_BYTES - 8 + i] ^= b;
        }
        block
    }

    /// The digest as Graph publishes it (standard base64 with padding).
    pub fn finalize(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.finalize_bytes())
    }
}

/// QuickXorHash of a complete buffer, base64-encoded.
pub fn quickxorhash(data: &[u8]) -> String {
    let mut h = QuickXorHash::new();
    h.update(data);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(s.replace('\n', ""))
            .unwrap()
    }

    /// Published vectors: the reference's four plus longer ones from rclone's test table (base64 in → hash).
    const VECTORS: &[(&str, &str)] = &[
        ("", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        ("Sg==", "SgAAAAAAAAAAAAAAAQAAAAAAAAA="),
        ("tbQ=", "taAFAAAAAAAAAAAAAgAAAAAAAAA="),
        ("2fuxhBJXtpWFe8dOfdGeHw==", "O9tHLAghgSvYohKFyMMxnNCHaHg="),
        ("XBV6YKU9V7yMakZnFIxIkuU=", "HbplHsBQih5cgReMQYMRzkABRiA="),
        (
            "PfxMcUd0vIW6VbHG/uj/Y0W6qEoKmyBD0nYebEKazKaKG+UaDqBEcmQjbfQeVnVLuodMoPp7P7TR\n1htX5n2VnkHh22xDyoJ8C/ZQKiSNqQfXvh83judf4RVr9exJCud8Uvgip6aVZTaPrJHVjQhMCp/d\nEnGvqg0oN5OVkM2qqAXvA0teKUDhgNM71sDBVBCGXxNOR2bpbD1iM4dnuT0ey4L+loXEHTL0fqMe\nUcEi2asgImnlNakwenDzz0x57aBwyq3AspCFGB1ncX4yYCr/OaCcS5OKi/00WH+wNQU3",
            "QX/YEpG0gDsmhEpCdWhsxDzsfVE=",
        ),
        (
            "w0LGhqU1WXFbdavqDE4kAjEzWLGGzmTNikzqnsiXHx2KRReKVTxkv27u3UcEz9+lbMvYl4xFf2Z4\naE1xRBBNd1Ke5C0zToSaYw5o4B/7X99nKK2/XaUX1byLow2aju2XJl2OpKpJg+tSJ2fmjIJTkfuY\nUz574dFX6/VXxSxwGH/xQEAKS5TCsBK3CwnuG1p5SAsQq3gGVozDWyjEBcWDMdy8/AIFrj/y03Lf\nc/RNRCQTAfZbnf2QwV7sluw4fH3XJr07UoD0YqN+7XZzidtrwqMY26fpLZnyZjnBEt1FAZWO7RnK\nG5asg8xRk9YaDdedXdQSJAOy6bWEWlABj+tVAigBxavaluUH8LOj+yfCFldJjNLdi90fVHkUD/m4\nMr5OtmupNMXPwuG3EQlqWUVpQoYpUYKLsk7a5Mvg6UFkiH596y5IbJEVCI1Kb3D1",
            "e3+wo77iKcILiZegnzyUNcjCdoQ=",
        ),
    ];

    #[test]
    fn quickxorhash_matches_published_test_vectors() {
        for (input, expected) in VECTORS {
            assert_eq!(quickxorhash(&b64(input)), *expected, "input {input}");
        }
    }

    #[test]
    fn quickxorhash_of_hello_world_matches_pypi_vector() {
        assert_eq!(quickxorhash(b"hello world"), "aCgDG9jwBhDc4Q1yawMZAAAAAAA=");
    }

    #[test]
    fn quickxorhash_is_independent_of_chunking() {
        for (input, expected) in VECTORS {
            let data = b64(input);
            for block in [1usize, 2, 3, 7, 11, 64, 159, 160, 161, 512] {
                let mut h = QuickXorHash::new();
                for chunk in data.chunks(block) {
                    h.update(chunk);
                }
                assert_eq!(h.finalize(), *expected, "block {block}");
            }
        }
        let big: Vec<u8> = (0..100_003u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let whole = quickxorhash(&big);
        let mut h = QuickXorHash::new();
        for chunk in big.chunks(4093) {
            h.update(chunk);
        }
        assert_eq!(h.finalize(), whole);
    }
}
