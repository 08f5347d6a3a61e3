//! A Graph delta page's bytes, and a permission's: refused or mapped, never a panic.
#![no_main]

use kbsync_msgraph::fuzzing::{delta_page, permission};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = delta_page(data);
    let _ = permission(data);
});
