//! A display started as a user outside the segments' group (the README's desktop recipe run by
//! a desktop user not yet in group `keymash`) says so: within 2 s of its READY=1 its log and
//! its status line (its statistics cell, read as root) say permission denied and name the group
//! to join, read from the segment's own group.
//!
//! Root test. net-rx runs as root with a throwaway system group as its primary group, so its
//! segments are created `root:<group>` with mode 0660 (`shm.group_access`, the default), as the
//! units' `Group=keymash` creates them `keymash:keymash`; the display runs as `nobody`
//! (`setpriv --clear-groups`), in no group but `nogroup`. The group is deleted by a guard, and
//! processes, segments and files by theirs, also when an assertion fails.

use std::fs::File;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use keymash_pipeline::{Service, RECEIVED_PAYLOADS};
use keymash_shm::{CellReader, ServiceStats};
use keymash_tests::accounts::ThrowawayGroup;
use keymash_tests::receiver::{service_binary, ReceiverSetup};
use keymash_tests::require_root;

/// What the issue asks: the log and the status say it within 2 s.
const SAID_WITHIN: Duration = Duration::from_secs(2);

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()))
}

fn display_status(setup: &ReceiverSetup) -> Option<String> {
    CellReader::<ServiceStats>::open(&setup.segment(&Service::Display.stats_cell()))
        .ok()?
        .load()
        .ok()
        .map(|s| s.status_line().to_owned())
}

#[test]
fn a_display_outside_the_segments_group_says_permission_denied_and_which_group_to_join() {
    require_root();
    let group = ThrowawayGroup::create("kmdeny");
    let setup = ReceiverSetup::new(
        "rx-outside-group",
        "[display]\noutput = \"y4m:{dir}/out/shown.y4m\"\n",
    );
    // The display (nobody) reads the configuration and writes its output here.
    let out = setup.dir.join("out");
    std::fs::create_dir(&out).expect("output directory");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777))
        .expect("open the output directory to nobody");

    let net_rx_log = setup.dir.join("net-rx.log");
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--regid={}", group.name))
        .arg("--clear-groups")
        .arg(service_binary("keymash-net-rx"))
        .stderr(File::create(&net_rx_log).expect("net-rx log"));
    let _net_rx = setup.start_prepared("keymash-net-rx", command, false);
    let ring = setup.segment(RECEIVED_PAYLOADS);
    let meta = std::fs::metadata(ring.path()).expect("net-rx created its ring");
    {
        use std::os::unix::fs::MetadataExt as _;
        assert_eq!(
            meta.mode() & 0o777,
            0o660,
            "the ring is not group-readable only"
        );
    }

    let display_log = setup.dir.join("display.log");
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(service_binary("keymash-display"))
        .stderr(File::create(&display_log).expect("display log"));
    let _display = setup.start_prepared("keymash-display", command, true);
    let ready = Instant::now();

    let wanted_log = [
        "permission denied".to_owned(),
        ring.path(),
        format!("group {}", group.name),
        "mode 0660".to_owned(),
        "user nobody".to_owned(),
        format!("not in group `{}`", group.name),
        format!("usermod -aG {} nobody", group.name),
    ];
    let wanted_status = [
        ring.path(),
        "permission denied".to_owned(),
        format!("join group `{}`", group.name),
    ];
    let (mut log_said, mut status_said) = (None, None);
    let mut status = None;
    while ready.elapsed() < SAID_WITHIN && (log_said.is_none() || status_said.is_none()) {
        let log = read(&display_log);
        if log_said.is_none()
            && log
                .lines()
                .any(|l| l.contains("WARN") && wanted_log.iter().all(|w| l.contains(w.as_str())))
        {
            log_said = Some(ready.elapsed());
        }
        status = display_status(&setup);
        if status_said.is_none()
            && status
                .as_deref()
                .is_some_and(|s| wanted_status.iter().all(|w| s.contains(w.as_str())))
        {
            status_said = Some(ready.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = read(&display_log);
    assert!(
        log_said.is_some(),
        "within {SAID_WITHIN:?} of READY=1 the display's log has no warning with all of \
         {wanted_log:?}:\n{log}"
    );
    assert!(
        status_said.is_some(),
        "within {SAID_WITHIN:?} of READY=1 the display's status line does not say all of \
         {wanted_status:?}: {status:?}"
    );
    // Retried every 100 ms, said once per segment (the display also follows net-rx's
    // statistics cell, refused the same way, for its signal-lost reasons).
    std::thread::sleep(Duration::from_millis(500));
    let log = read(&display_log);
    let ring_path = ring.path();
    let denials = log
        .lines()
        .filter(|l| l.contains("permission denied") && l.contains(&ring_path))
        .count();
    assert_eq!(
        denials, 1,
        "the received ring's permission problem should be logged once:\n{log}"
    );
    eprintln!("{log}");
    eprintln!(
        "log after {log_said:?}, status after {status_said:?}: {:?}",
        display_status(&setup)
    );
}
