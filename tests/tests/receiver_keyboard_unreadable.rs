//! mash-input with a keyboard it may not open (its user is not in the device node's group, as
//! a unit without `SupplementaryGroups=input` or a hand-started binary would be): it keeps
//! running and says so, at warn in its log (the device path, the errno and the group to join)
//! and at the head of its status line, instead of a debug line and "0 device(s)".
//!
//! Root test, in a private mount namespace (`unshare --mount`) so that nothing of the machine's
//! own `/dev` or `/sys` changes: a tmpfs over `/dev` (with the real `/dev/null` and `/dev/shm`
//! bound back), a FIFO `/dev/input/event7` of mode 0660 in a throwaway group standing in for a
//! keyboard's node, a fake `/sys/class/input/event7` that says "keyboard", and mash-input run
//! as `nobody` (`setpriv --clear-groups`). Processes, segments, files and the group are removed
//! by guards, also when an assertion fails.

use std::fs::File;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use keymash_pipeline::Service;
use keymash_shm::{CellReader, ServiceStats};
use keymash_tests::accounts::ThrowawayGroup;
use keymash_tests::receiver::{service_binary, ReceiverSetup};

/// mash-input scans for keyboards at its first turn and every second after: it has said it
/// well within this (a deadline for a loaded machine, not an expected time).
const SAID_WITHIN: Duration = Duration::from_secs(3);

/// Builds the namespace's `/dev` and `/sys/class/input`, then runs `"$@"` as nobody.
const NAMESPACE_SCRIPT: &str = r#"
set -eu
work=$KEYMASH_TEST_WORK
mkdir -p "$work/realdev"
mount --rbind /dev "$work/realdev"
mount -t tmpfs -o mode=755 keymash-test-dev /dev
mkdir /dev/shm /dev/input
touch /dev/null
mount --bind "$work/realdev/null" /dev/null
mount --rbind "$work/realdev/shm" /dev/shm
mkfifo -m 0660 /dev/input/event7
chgrp "$KEYMASH_TEST_GROUP" /dev/input/event7
chmod 0660 /dev/input/event7
mount --bind "$work/sys" /sys/class/input
exec setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"
"#;

/// A fake `/sys/class/input/event7` whose capabilities say "keyboard".
fn fake_sysfs(root: &Path) {
    let caps = root.join("event7/device/capabilities");
    std::fs::create_dir_all(&caps).expect("fake sysfs");
    std::fs::write(caps.join("ev"), "120013\n").expect("ev bits");
    std::fs::write(caps.join("key"), "fffffffffffffffe\n").expect("key bits");
    std::fs::write(root.join("event7/device/name"), "test keyboard\n").expect("name");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()))
}

fn status_line(setup: &ReceiverSetup) -> Option<String> {
    CellReader::<ServiceStats>::open(&setup.segment(&Service::MashInput.stats_cell()))
        .ok()?
        .load()
        .ok()
        .map(|s| s.status_line().to_owned())
}

#[test]
fn a_keyboard_mash_input_may_not_open_is_warned_about_and_leads_its_status() {
    keymash_tests::require_root();
    let group = ThrowawayGroup::create("kminput");
    let setup = ReceiverSetup::new("rx-keyboard-denied", "[input]\nsource = \"evdev\"\n");
    let work = setup.dir.join("ns");
    fake_sysfs(&work.join("sys"));
    // nobody reads the fake sysfs and the configuration.
    for dir in [&setup.dir, &work] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .expect("directory readable by nobody");
    }

    let log = setup.dir.join("mash-input.log");
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(NAMESPACE_SCRIPT)
        .arg("sh")
        .arg(service_binary("keymash-mash-input"))
        .env("KEYMASH_TEST_WORK", &work)
        .env("KEYMASH_TEST_GROUP", &group.name)
        .stderr(File::create(&log).expect("log file"));
    let _mash_input = setup.start_prepared("keymash-mash-input", command, true);
    let ready = Instant::now();

    let node = "/dev/input/event7";
    let wanted_log = [
        node.to_owned(),
        "os error 13".to_owned(),
        format!("group {}", group.name),
        "user nobody".to_owned(),
        format!("not in group `{}`", group.name),
        format!("usermod -aG {} nobody", group.name),
    ];
    let wanted_status = format!(
        "cannot open keyboard {node}: permission denied, join group `{}`",
        group.name
    );
    let (mut log_said, mut status_said, mut status) = (None, None, None);
    while ready.elapsed() < SAID_WITHIN && (log_said.is_none() || status_said.is_none()) {
        if log_said.is_none()
            && read(&log)
                .lines()
                .any(|l| l.contains("WARN") && wanted_log.iter().all(|w| l.contains(w.as_str())))
        {
            log_said = Some(ready.elapsed());
        }
        status = status_line(&setup);
        if status_said.is_none()
            && status
                .as_deref()
                .is_some_and(|s| s.starts_with(&wanted_status))
        {
            status_said = Some(ready.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = read(&log);
    assert!(
        log_said.is_some(),
        "within {SAID_WITHIN:?} of READY=1 mash-input's log has no warning with all of \
         {wanted_log:?}:\n{text}"
    );
    assert!(
        status_said.is_some(),
        "within {SAID_WITHIN:?} of READY=1 mash-input's status line does not lead with \
         {wanted_status:?}: {status:?}"
    );
    // The scan repeats every second: the same failure is said once.
    std::thread::sleep(Duration::from_millis(2500));
    let text = read(&log);
    let warnings = text.lines().filter(|l| l.contains(node)).count();
    assert_eq!(
        warnings, 1,
        "the keyboard's failure should be logged once:\n{text}"
    );
    eprintln!("{text}");
    eprintln!("log after {log_said:?}, status after {status_said:?}: {status:?}");
}
