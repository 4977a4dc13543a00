//! Test support shared by keymash's integration tests: throwaway network namespaces, process
//! guards and shared-memory cleanup, each removed on drop even when a test fails.
//!
//! - [`netns`]: [`NetnsPair`], two network namespaces joined by a veth pair with IPv4 and IPv6
//!   addresses (the two exhibit PCs on one machine), and [`Netns`] to run commands or Rust code
//!   inside one (from keymash-testbed, which `keymash demo` uses too).
//! - [`process`]: [`ChildGuard`], a child process that is killed and reaped when the guard drops
//!   (also from keymash-testbed).
//! - [`notify`]: [`NotifySocket`], a stand-in for systemd's notify socket, to wait until a
//!   service under test says `READY=1`.
//!
//! Namespaces need root (CI runs the tests as root); [`require_root`] fails a test early with a
//! message that says so instead of an obscure `ip` error.
#![forbid(unsafe_code)]

pub mod notify;
pub mod receiver;
pub mod sender;
pub mod systemd;

pub use keymash_testbed::{netns, process, unique_name};
pub use keymash_testbed::{ChildGuard, Netns, NetnsError, NetnsPair, ProcessError};
pub use notify::NotifySocket;

/// Fails the calling test with a clear message unless it runs as root.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test creates network namespaces and loads eBPF: run it as root (CI does)"
    );
}

/// Where `cargo build --workspace --bins` put the service binaries: next to the test or bench
/// executable's own directory (`target/<profile>/deps/..`).
pub fn binary_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(std::path::Path::parent).expect("target dir").to_owned()
}

/// A built binary of this workspace (`keymash`, `keymash-encoder`, ...), or a test failure that
/// says how to build it.
pub fn service_binary(name: &str) -> std::path::PathBuf {
    let path = binary_dir().join(name);
    assert!(path.exists(), "{} is not built; run `cargo build --workspace --bins` first", path.display());
    path
}
