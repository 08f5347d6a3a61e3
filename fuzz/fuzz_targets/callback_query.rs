//! The OAuth callback's query string, through the real router in-process: never a 5xx.
#![no_main]

use kbsync_server::fuzzing::callback_query;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(status) = callback_query(data) {
        assert!(!status.is_server_error(), "{status}");
    }
});
