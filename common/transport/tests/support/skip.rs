//! What a test does when this machine cannot run its real check (no tshark, no IPv6): under CI
//! (`CI` set, as CI runs the suite) it FAILS, so a green CI run means the check ran; elsewhere it
//! skips, and says so on stderr past libtest's output capture.
#![allow(dead_code)]

use std::io::Write;

/// True when the environment says this is a CI run (`CI` set to anything but "", "0" or "false").
pub(crate) fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The calling test cannot run its check because of `reason`: panics under CI; otherwise writes
/// a SKIPPED line the test output shows, and returns for the caller to `return`.
pub(crate) fn skip_or_fail(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_owned();
    assert!(
        !in_ci(),
        "{test}: {reason}; CI is set, so a check that cannot run is a failure, not a skip"
    );
    // libtest captures `eprintln!` (shown only when a test fails); a write to the stderr handle
    // itself goes straight to the terminal or log.
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n!!!!! SKIPPED {test}: {reason}; UNTESTED on this machine (with CI set it fails) !!!!!\n"
    );
}
