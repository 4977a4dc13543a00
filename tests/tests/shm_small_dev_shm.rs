//! A `/dev/shm` too small for the pipeline's rings: the service that creates them refuses to
//! start with EX_CONFIG (78, which the units list in `RestartPreventExitStatus=`, so no restart
//! loop), its message names the segment and the bytes needed and available, and nothing of its
//! prefix is left in `/dev/shm`. Never a SIGBUS.
//!
//! Each case runs the real service binary in a private mount namespace (`unshare --mount`, as
//! root) over a tmpfs of a few MiB mounted on `/dev/shm` there; the namespace, and the tmpfs with
//! it, vanish when the shell that holds them exits, so nothing reaches the host's `/dev/shm`.
//! The same shell lists that tmpfs after the service exits, which is how the test sees what was
//! left in it.
//!
//! Also: the syscalls the reservation needs (`fallocate`, `statfs`) are allowed by the units'
//! `SystemCallFilter=`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keymash_core::config::Config;
use keymash_pipeline::{Segments, Service};
use keymash_shm::ShmSpace;
use keymash_tests::{require_root, service_binary, unique_name};

/// A service refusing its segments takes well under a second; this is a deadline for a loaded
/// machine and a slow first build.
const EXIT_DEADLINE: Duration = Duration::from_secs(60);
/// Marks the listing the shell prints after the service exits.
const LISTING: &str = "--- /dev/shm after the service exited ---";

struct Outcome {
    /// The service's exit status as the shell saw it (128 + n for a signal).
    code: i32,
    log: String,
    /// Names in the small `/dev/shm` after the service exited.
    left: Vec<String>,
}

/// A directory of the test's own, removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `keymash-<service> --config <config>` over a fresh tmpfs of `size_kib` KiB on
/// `/dev/shm`, in a mount namespace of its own.
fn run_over_small_dev_shm(service: &str, config_text: &str, size_kib: u64) -> Outcome {
    let name = unique_name("smallshm");
    let dir = TempDir(std::env::temp_dir().join(format!("keymash-{name}")));
    std::fs::create_dir_all(&dir.0).expect("test directory");
    let config = dir.0.join("keymash.toml");
    std::fs::write(&config, config_text).expect("write config");
    let binary = service_binary(&format!("keymash-{service}"));
    // `--propagation private`: the tmpfs is not propagated back to the host's /dev/shm.
    let script = format!(
        "mount -t tmpfs -o size={size_kib}k,mode=1777 keymash-test /dev/shm || exit 90\n\
         \"$0\" --config \"$1\"\n\
         rc=$?\n\
         echo '{LISTING}'\n\
         ls -A /dev/shm\n\
         exit $rc\n"
    );
    let mut child = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .arg(&binary)
        .arg(&config)
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run unshare");
    let deadline = Instant::now() + EXIT_DEADLINE;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            // Killing the shell's namespace leader ends the service too (no other holder).
            let _ = child.kill();
            let output = child.wait_with_output().expect("reap");
            panic!(
                "{service} did not exit within {EXIT_DEADLINE:?}; log:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("collect output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    let code = output.status.code().unwrap_or(-1);
    assert_ne!(code, 90, "could not mount the test tmpfs: {log}");
    let left = stdout
        .split_once(LISTING)
        .map(|(_, listing)| {
            listing
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_else(|| panic!("no listing of the small /dev/shm: {stdout}\n{log}"));
    Outcome { code, log, left }
}

fn prefix_of(tag: &str) -> String {
    format!("kmt{}", unique_name(tag).replace('-', ""))
}

/// What the delay buffer's segments (hold, delayed frames, statistics) take in whole pages.
fn delay_buffer_pages(config: &Config) -> u64 {
    let page = ShmSpace::now().expect("statvfs").block_size;
    Segments::new(config)
        .expect("segments")
        .memory_plan()
        .expect("memory plan")
        .segments
        .iter()
        .filter(|s| s.writer == Service::DelayBuffer)
        .map(|s| s.bytes.div_ceil(page) * page)
        .sum()
}

/// Runs the delay buffer over a `/dev/shm` of `size_kib` and checks it refused with the whole
/// message and left nothing of its prefix behind.
fn assert_delay_buffer_refuses(config_text: &str, prefix: &str, size_kib: u64) {
    let mut config = Config::from_toml_str(config_text).expect("config");
    config.shm.prefix = prefix.to_owned();
    let (hold, _) = Segments::new(&config)
        .expect("segments")
        .delay_hold()
        .expect("the default delay fits its memory limit");
    let needed = delay_buffer_pages(&config);
    assert!(needed > size_kib * 1024, "its segments must not fit");

    let outcome = run_over_small_dev_shm("delay-buffer", config_text, size_kib);

    assert_eq!(outcome.code, 78, "exit status; log:\n{}", outcome.log);
    for part in [
        hold.id().to_string(),
        format!("needs {needed} bytes"),
        "delay.seconds".to_owned(),
        "enlarge the tmpfs".to_owned(),
    ] {
        assert!(
            outcome.log.contains(&part),
            "{part:?} missing from the log:\n{}",
            outcome.log
        );
    }
    assert!(
        !outcome.log.contains("SIGBUS") && !outcome.log.contains("panicked"),
        "{}",
        outcome.log
    );
    let leftovers: Vec<_> = outcome
        .left
        .iter()
        .filter(|n| n.starts_with(prefix))
        .collect();
    assert!(leftovers.is_empty(), "left in /dev/shm: {leftovers:?}");
}

#[test]
fn the_delay_buffer_refuses_a_dev_shm_too_small_for_its_hold_with_ex_config() {
    require_root();
    let prefix = prefix_of("smallhold");
    let text = format!("[shm]\nprefix = \"{prefix}\"\n");
    let size_kib = 16 * 1024;
    assert_delay_buffer_refuses(&text, &prefix, size_kib);
}

#[test]
fn a_dev_shm_with_room_for_the_hold_but_not_the_delayed_ring_is_refused_before_the_hold_is_made() {
    // Checked one segment at a time, the delay buffer would reserve its whole hold, then find
    // no room for its delayed-frame ring and exit with the hold left taking the memory.
    require_root();
    let prefix = prefix_of("holdonly");
    let text = format!("[shm]\nprefix = \"{prefix}\"\n");
    let mut config = Config::from_toml_str(&text).expect("config");
    config.shm.prefix.clone_from(&prefix);
    let (_, budget) = Segments::new(&config)
        .expect("segments")
        .delay_hold()
        .expect("the default delay fits its memory limit");
    // The hold and 1 MiB: less than the delayed-frame ring (several frames of 640x480).
    let size_kib = budget.segment_bytes.div_ceil(1024) + 1024;
    assert_delay_buffer_refuses(&text, &prefix, size_kib);
}

#[test]
fn capture_refuses_a_dev_shm_too_small_for_its_ring_with_ex_config() {
    require_root();
    let prefix = prefix_of("smallraw");
    let text = format!("[shm]\nprefix = \"{prefix}\"\n[capture]\nsource = \"synthetic\"\n");
    let mut config = Config::from_toml_str(&text).expect("config");
    config.shm.prefix.clone_from(&prefix);
    let raw = Segments::new(&config)
        .expect("segments")
        .raw_frames()
        .expect("raw-frames spec");
    // Room for the statistics cell and a little, not for the ring of 640x480 frames.
    let size_kib = 1024;
    assert!(raw.geometry().segment_bytes() > size_kib * 1024);

    let outcome = run_over_small_dev_shm("capture", &text, size_kib);

    assert_eq!(outcome.code, 78, "exit status; log:\n{}", outcome.log);
    assert!(
        outcome.log.contains(&raw.id().to_string()) && outcome.log.contains("bytes"),
        "{}",
        outcome.log
    );
    let leftovers: Vec<_> = outcome
        .left
        .iter()
        .filter(|n| n.starts_with(&format!("{prefix}.raw-frames")))
        .collect();
    assert!(leftovers.is_empty(), "left in /dev/shm: {leftovers:?}");
}

#[test]
fn the_units_syscall_filter_allows_the_reservation() {
    // `SystemCallFilter=@system-service` then `~@privileged @resources` (every unit): the
    // reservation's fallocate(2) and the free-space check's statfs(2) must be in the first and
    // in neither of the others, or the service dies of SIGSYS (or EPERM) under systemd.
    for unit in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../systemd"))
        .expect("systemd directory")
    {
        let path = unit.expect("entry").path();
        if path.extension().is_none_or(|e| e != "service")
            || path.to_string_lossy().contains("cleanup")
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("unit");
        let filters: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("SystemCallFilter="))
            .collect();
        // (loss-controller allows `bpf` on top, which takes nothing away.)
        assert!(
            filters.starts_with(&["@system-service", "~@privileged @resources"]),
            "{}: {filters:?} are not the groups this test checks",
            path.display()
        );
    }
    let groups = |names: &[&str]| -> Option<String> {
        let out = Command::new("systemd-analyze")
            .arg("syscall-filter")
            .args(names)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let Some(allowed) = groups(&["@system-service"]) else {
        eprintln!(
            "systemd-analyze is not available: the unit files' filter lines were checked only"
        );
        return;
    };
    // @system-service lists groups (@file-system) by name: expand them.
    let included: Vec<&str> = allowed
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('@') && *l != "@system-service")
        .collect();
    let expanded = groups(&included).unwrap_or_default() + &allowed;
    let denied = groups(&["@privileged", "@resources"]).expect("systemd-analyze");
    let listed = |text: &str, call: &str| text.lines().any(|l| l.trim() == call);
    for call in ["fallocate", "statfs", "ftruncate", "flock"] {
        assert!(listed(&expanded, call), "{call} is not in @system-service");
        assert!(
            !listed(&denied, call),
            "{call} is in @privileged or @resources"
        );
    }
}
