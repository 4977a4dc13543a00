//! keymash-testbed: the two exhibit PCs on one machine, for `keymash demo` and the tests.
//!
//! - [`netns`]: [`NetnsPair`], two network namespaces joined by a veth pair with IPv4 and IPv6
//!   addresses, and [`Netns`] to run commands or Rust code inside one. Removed on drop.
//! - [`process`]: [`ChildGuard`], a child process that is killed and reaped when the guard drops.
//!
//! Namespaces need root; everything created is removed again, also when the caller panics.
#![forbid(unsafe_code)]

pub mod netns;
pub mod process;

pub use netns::{Netns, NetnsError, NetnsPair};
pub use process::{ChildGuard, ProcessError};

/// A name unique to this process and call: `<tag>-<pid>-<n>`, so parallel test threads and
/// parallel test binaries never collide, and a leftover can be traced to its (dead) process.
pub fn unique_name(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
