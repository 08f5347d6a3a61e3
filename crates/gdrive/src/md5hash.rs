//! MD5, the content hash Drive publishes for binary files as `md5Checksum` (lowercase hex).

use kbsync_http::ContentHash;
use md5::{Digest, Md5};

#[derive(Default)]
pub(crate) struct Md5Hash(Md5);

impl ContentHash for Md5Hash {
    const FIELD: &'static str = "md5Checksum";

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }

    fn same(actual: &str, expected: &str) -> bool {
        actual.eq_ignore_ascii_case(expected)
    }
}
