//! Shared-memory rings and cells: the zero-copy links between keymash processes.
// This is the one crate in keymash that may use `unsafe`: mapping shared memory and
// futex calls cannot be done without it. Every block carries a `// SAFETY:` comment.
#![allow(unsafe_code)]
