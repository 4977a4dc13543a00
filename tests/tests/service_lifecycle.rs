//! Every service binary follows the systemd lifecycle: READY=1 after initialisation, WATCHDOG=1
//! from its loop, a STATUS= line, and exit status 0 within a second of SIGTERM.
//!
//! The test plays systemd's part itself: it binds the notify socket, sets NOTIFY_SOCKET and
//! WATCHDOG_USEC, starts the real binary and listens.

// Tests may unwrap (Cargo.toml's lint note); clippy.toml's allow-unwrap-in-tests covers only
// #[test] functions, not this file's helpers.
#![allow(clippy::unwrap_used)]

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_with_deadline(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

/// Removes the test's directory and shared-memory segments, also when the test fails.
struct Cleanup {
    dir: PathBuf,
    prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(prefix) = keymash_shm::Prefix::new(&self.prefix) {
            let _ = keymash_shm::remove_segments(&prefix);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn check_lifecycle(service: &str) {
    let dir = std::env::temp_dir().join(format!(
        "keymash-lifecycle-{}-{service}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    // One prefix per service: the tests run in parallel and must not share rings.
    let prefix = format!(
        "kml-{}-{}",
        std::process::id(),
        service.trim_start_matches("keymash-")
    );
    let _cleanup = Cleanup {
        dir: dir.clone(),
        prefix: prefix.clone(),
    };
    let socket_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&socket_path);
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();

    // A private shm prefix and loopback addresses, so the test touches nothing of a real setup;
    // a short delay, so the delay buffer does not reserve 30 s of video.
    let config = dir.join("keymash.toml");
    std::fs::write(
        &config,
        format!(
            "[shm]\nprefix = \"{prefix}\"\n[delay]\nseconds = 1.0\n[network]\nsender_address = \"127.0.0.1\"\nreceiver_address = \"127.0.0.1\"\n[display]\noutput = \"frames:{}\"\n[security]\nmode = \"none\"\n",
            dir.join("frames").display()
        ),
    )
    .unwrap();

    let child = Command::new(keymash_tests::service_binary(service))
        .arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);

    let (mut ready, mut status, mut watchdog) = (false, false, false);
    // A deadline, not a claim: a service is ready in well under a second and then pings the
    // watchdog every 100 ms (half of WATCHDOG_USEC).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while !(ready && status && watchdog) && Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            for line in String::from_utf8_lossy(&buf[..n]).lines() {
                ready |= line == "READY=1";
                status |= line.starts_with("STATUS=") && line.len() > "STATUS=".len();
                // WATCHDOG=1 must keep coming after READY, from the working loop.
                watchdog |= ready && line == "WATCHDOG=1";
            }
        }
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "{service} exited before it was ready"
        );
    }
    assert!(ready, "{service} never sent READY=1");
    assert!(status, "{service} never sent STATUS=");
    assert!(watchdog, "{service} never sent WATCHDOG=1 after READY=1");

    let term = Command::new("kill")
        .arg("-TERM")
        .arg(child.0.id().to_string())
        .status()
        .unwrap();
    assert!(term.success());
    // The promise: a service notices SIGTERM at its next loop turn, at most Lifecycle::MAX_WAIT
    // (200 ms) away, and exits at once; the rest of the second is for getting a CPU on a
    // loaded machine (systemd would wait TimeoutStopSec = 5 s before killing it).
    let exit = wait_with_deadline(&mut child.0, Duration::from_secs(1));
    assert!(
        exit.is_some(),
        "{service} did not exit within 1 s of SIGTERM"
    );
    assert_eq!(
        exit.and_then(|s| s.code()),
        Some(0),
        "{service} exit status after SIGTERM"
    );
}

macro_rules! lifecycle_tests {
    ($($test:ident => $binary:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                check_lifecycle($binary);
            }
        )*
    };
}

lifecycle_tests! {
    capture_follows_the_systemd_lifecycle => "keymash-capture",
    delay_buffer_follows_the_systemd_lifecycle => "keymash-delay-buffer",
    encoder_follows_the_systemd_lifecycle => "keymash-encoder",
    net_tx_follows_the_systemd_lifecycle => "keymash-net-tx",
    net_rx_follows_the_systemd_lifecycle => "keymash-net-rx",
    display_follows_the_systemd_lifecycle => "keymash-display",
    mash_input_follows_the_systemd_lifecycle => "keymash-mash-input",
}

#[test]
fn a_refused_configuration_exits_with_ex_config_and_no_ready() {
    let dir = std::env::temp_dir().join(format!("keymash-badconf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("bad.toml");
    std::fs::write(&config, "[codec]\nquality = 0\n").unwrap();
    let out = Command::new(keymash_tests::service_binary("keymash-encoder"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("codec.quality"),
        "stderr does not name the key: {stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
