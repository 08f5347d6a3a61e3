//! Graph's `Retry-After` header (a `Date` header after the first newline): a duration or none.
#![no_main]

use kbsync_msgraph::fuzzing::retry_after_input;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = retry_after_input(data);
});
