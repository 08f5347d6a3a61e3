//! An upload's `Content-Type` (up to the first newline) and multipart body, through the real
//! router in-process, signed in as the knowledge base's owner: never a 5xx.
#![no_main]

use kbsync_server::fuzzing::multipart_input;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(status) = multipart_input(data) {
        assert!(!status.is_server_error(), "{status}");
    }
});
