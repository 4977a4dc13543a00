//! Test support shared by keymash's integration tests: throwaway network namespaces, process
//! guards and shared-memory cleanup, each removed on drop even when a test fails.
//!
//! - [`netns`]: [`NetnsPair`], two network namespaces joined by a veth pair with IPv4 and IPv6
//!   addresses (the two exhibit PCs on one machine), and [`Netns`] to run commands or Rust code
//!   inside one (from keymash-testbed, which `keymash demo` uses too).
//! - [`process`]: [`ChildGuard`], a child process that is killed and reaped when the guard drops
//!   (also from keymash-testbed).
//! - [`forge`]: a third party on the exhibit's network: [`forge::Lan`] (the two PCs and an
//!   attacker on a hub), [`forge::Tap`] (records every frame), [`forge::Forger`] (sends with
//!   someone else's address and port) and forged keymash RTP and RTCP.
//! - [`notify`]: [`NotifySocket`], a stand-in for systemd's notify socket, to wait until a
//!   service under test says `READY=1`.
//! - [`json`]: [`json::Json`], a small reader for what `keymash status --json` prints.
//! - [`systemd`]: systemd booted as PID 1 in private namespaces; [`installed`]: keymash
//!   installed into it as an installer does, with readers of its statistics and delayed frames.
//!
//! Namespaces need root (CI runs the tests as root); [`require_root`] fails a test early with a
//! message that says so instead of an obscure `ip` error. [`service_binary`] and [`binary_dir`]
//! build the workspace's binaries first, so a test never runs stale ones.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod fake_v4l2;
pub mod forge;
pub mod installed;
pub mod json;
pub mod notify;
pub mod receiver;
pub mod responsiveness;
pub mod sender;
pub mod soak;
pub mod systemd;
pub mod xvfb;

pub use keymash_testbed::{netns, process, unique_name};
pub use keymash_testbed::{ChildGuard, Netns, NetnsError, NetnsPair, ProcessError};
pub use notify::NotifySocket;

/// user + system CPU seconds that process `pid` has used so far (from `/proc/PID/stat`), for
/// benches that measure a service's share of a core. Panics if the process is gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process stat");
    // Fields after the command name (which may hold spaces), from its closing parenthesis.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat format")
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    // Clock ticks per second, from sysconf.
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    ticks / hz
}

/// Fails the calling test with a clear message unless it runs as root.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test creates network namespaces and loads eBPF: run it as root (CI does)"
    );
}

/// The directory holding the service binaries of the current source tree: `target/<profile>`,
/// next to the test or bench executable (`target/<profile>/deps/..`), after building them.
///
/// Why the tests build them: `cargo test` builds only the binaries of the package under test
/// (for `CARGO_BIN_EXE_*`), and this package has none, so `cargo test -p keymash-tests` would
/// otherwise run whatever an earlier `cargo build` left in `target/<profile>`, stale after any
/// edit. cargo releases its build-directory lock before it runs the test executables (checked
/// with cargo 1.95: a `cargo build` started beside a running `cargo test` finishes at once), so
/// the first call in each test process runs `cargo build --workspace --bins --locked` with the
/// cargo that runs the tests (`CARGO`), for this executable's profile and target directory.
/// cargo's own fingerprints decide what is stale, which a check of file times here could not do
/// without false refusals; after `tests/run.sh` (or any up-to-date build) it is a no-op of about
/// 0.2 s. If cargo cannot be run or the build fails, every caller fails with the reason.
pub fn binary_dir() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<Result<std::path::PathBuf, String>> =
        std::sync::OnceLock::new();
    BUILT
        .get_or_init(build_service_binaries)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A binary of this workspace (`keymash`, `keymash-encoder`, ...) built from the current source
/// tree (see [`binary_dir`]).
pub fn service_binary(name: &str) -> std::path::PathBuf {
    let path = binary_dir().join(name);
    assert!(
        path.exists(),
        "{} is not built: `cargo build --workspace --bins` does not make it",
        path.display()
    );
    path
}

fn build_service_binaries() -> Result<std::path::PathBuf, String> {
    use std::path::Path;
    use std::time::{Duration, Instant};
    let exe = std::env::current_exe().map_err(|e| format!("test executable path: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("{} is not in target/<profile>/deps", exe.display()))?
        .to_owned();
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let mut target_dir = profile_dir.parent().unwrap_or(Path::new("/")).to_owned();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut command = std::process::Command::new(&cargo);
    command
        .args([
            "build",
            "--workspace",
            "--bins",
            "--locked",
            "--manifest-path",
        ])
        .arg(&workspace);
    match profile {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    // Built with `--target TRIPLE`: target/TRIPLE/<profile>.
    if !target_dir.join("CACHEDIR.TAG").exists() {
        if let Some(root) = target_dir
            .parent()
            .filter(|r| r.join("CACHEDIR.TAG").exists())
        {
            command
                .arg("--target")
                .arg(target_dir.file_name().unwrap_or_default());
            target_dir = root.to_owned();
        }
    }
    command.arg("--target-dir").arg(&target_dir);
    let shown = format!("{command:?}");
    let mut child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot run {} ({e}) to build the service binaries of the current source tree, and the tests refuse \
                 to run ones that may be stale: run the tests with `cargo test` or tests/run.sh",
                cargo.to_string_lossy()
            )
        })?;
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    // A build from nothing takes minutes on two cores; half an hour means a lock that never frees.
    let deadline = Instant::now() + Duration::from_secs(30 * 60);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let log = reader.join().unwrap_or_default();
    match status {
        Some(status) if status.success() => Ok(profile_dir),
        Some(status) => Err(format!("building the service binaries failed ({status}): {shown}\n{log}")),
        None => Err(format!(
            "building the service binaries did not finish within 30 minutes (a cargo build lock that never frees?): {shown}\n{log}"
        )),
    }
}
