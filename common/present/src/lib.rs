//! keymash-present: the pure logic of `keymash-display` (work in progress).
#![forbid(unsafe_code)]
