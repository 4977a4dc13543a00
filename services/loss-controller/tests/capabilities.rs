//! loss-controller needs CAP_BPF and CAP_NET_ADMIN, and nothing more on this kernel: run as the
//! unprivileged user `nobody` holding exactly those two capabilities (ambient, via setpriv), it
//! loads, attaches, drops, recovers from its own crash and stops cleanly; without either one it
//! refuses to start.
//!
//! Findings (kernel 6.x): no CAP_SYS_ADMIN, no CAP_PERFMON and no RLIMIT_MEMLOCK raise are needed
//! (BPF memory is charged to the memory cgroup since 5.11). CAP_PERFMON would be needed if the
//! classifier did variable-offset packet pointer arithmetic, so it does not (see the C source);
//! without CAP_PERFMON aya 0.14 loads the program without a name (its name probe loads a
//! tracepoint program), so the controller finds its filter by tc priority, not by name.

// A test crate: helpers panic on setup failure, with their location, like the tests do.
#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use keymash_tests::{require_root, NetnsPair};
use support::{
    attached_program_ids, flow, ingress_filters, output_within, receive_until, send_paced,
    traffic_lock, Controller, SetOnDrop, TestConfig, VIDEO_PORT,
};

const IFACE: &str = NetnsPair::RIGHT_INTERFACE;

/// A copy of the binary that `nobody` can execute wherever the target directory lives.
struct PublicBinary(PathBuf);

impl PublicBinary {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(keymash_tests::unique_name("keymash-caps"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.join("keymash-loss-controller");
        // Copied by a child process: had this (multi-threaded) process held the file open for
        // writing, a child forked meanwhile by another test would inherit the descriptor until
        // its exec, and executing the copy would fail with "Text file busy".
        let status = Command::new("install")
            .args(["-m", "0755"])
            .arg(Controller::binary())
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "install failed");
        PublicBinary(path)
    }
}

impl Drop for PublicBinary {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `ip netns exec NS setpriv ... BINARY`: user nobody with exactly `caps` (e.g. "+bpf,+net_admin").
fn as_nobody_with(pair: &NetnsPair, binary: &PublicBinary, caps: &str) -> Command {
    let mut command = pair.right.command("setpriv");
    command
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(format!("--inh-caps=-all,{caps}"))
        .arg(format!("--ambient-caps=-all,{caps}"))
        .arg(format!("--bounding-set=-all,{caps}"))
        .arg(&binary.0);
    command
}

#[test]
fn with_only_cap_bpf_and_cap_net_admin_the_controller_does_its_whole_job() {
    require_root();
    let pair = NetnsPair::create("caps").unwrap();
    let binary = PublicBinary::new();
    let caps = "+bpf,+net_admin";

    let mut first = Controller::start_with(
        as_nobody_with(&pair, &binary, caps),
        IFACE,
        &["--fixed-drop", "1"],
    );
    // It really drops: nothing of 500 packets arrives.
    let (tx, rx, to) = flow(&pair, VIDEO_PORT, false);
    {
        let _traffic = traffic_lock();
        let done = AtomicBool::new(false);
        let received = std::thread::scope(|s| {
            let receiver = s.spawn(|| receive_until(&rx, &done));
            {
                // Set when sending ends, also by a panic: the receiver stops either way.
                let _done = SetOnDrop(&done);
                send_paced(&tx, to, 500, 100, 10_000);
            }
            receiver.join().expect("the receiving thread")
        });
        assert_eq!(
            received.sequence.len(),
            0,
            "packets got through at drop probability 1"
        );
    }

    // Crash, then a restart with the same two capabilities replaces the stale filter.
    let stale = attached_program_ids(&pair.right, IFACE);
    first.child.kill_hard().unwrap();
    let mut second = Controller::start_with(
        as_nobody_with(&pair, &binary, caps),
        IFACE,
        &["--fixed-drop", "1"],
    );
    let now = attached_program_ids(&pair.right, IFACE);
    assert_eq!(now.len(), 1, "{}", ingress_filters(&pair.right, IFACE));
    assert_ne!(now, stale);

    let status = second.child.terminate(Duration::from_secs(5)).unwrap();
    assert!(status.success(), "exit {status}");
    assert_eq!(ingress_filters(&pair.right, IFACE).trim(), "");
}

#[test]
fn without_cap_bpf_or_cap_net_admin_the_controller_refuses_to_start() {
    require_root();
    let pair = NetnsPair::create("nocaps").unwrap();
    let binary = PublicBinary::new();
    let config = TestConfig::new();
    for caps in ["+net_admin", "+bpf", "-all"] {
        let mut command = as_nobody_with(&pair, &binary, caps);
        command
            .arg("--config")
            .arg(&config.path)
            .args([
                "--interface",
                IFACE,
                "--port",
                &VIDEO_PORT.to_string(),
                "--fixed-drop",
                "0.5",
            ])
            .stdin(Stdio::null());
        // Refused while loading the filter, before it could be ready: at once, not after a
        // retry loop. 10 s is only the deadline after which the test stops waiting.
        let output = output_within(&mut command, Duration::from_secs(10));
        assert!(!output.status.success(), "started with only {caps}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.to_lowercase().contains("error"),
            "with {caps}: no error message: {stderr}"
        );
        assert_eq!(
            ingress_filters(&pair.right, IFACE).trim(),
            "",
            "with {caps} a filter was attached"
        );
    }
}
