//! deploy/install.sh, run into a staging root (`--root`): installs everything a PC needs, a second
//! run changes nothing, an existing configuration is never overwritten, the role can switch,
//! and --uninstall removes all it installed (the configuration only with --purge-config).

// Tests may unwrap (Cargo.toml's lint note); clippy.toml's allow-unwrap-in-tests covers only
// #[test] functions, not this file's helpers.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct TempRoot(PathBuf);

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn install(root: &Path, args: &[&str]) -> Output {
    let out = Command::new("bash")
        .arg(repo().join("deploy/install.sh"))
        .arg("--root")
        .arg(root)
        .args(["--no-deps", "--binaries"])
        .arg(keymash_tests::binary_dir())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "install.sh {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every file and link under `root` with what a change would alter.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, u32, i64, Option<PathBuf>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
            }
            let link = meta
                .file_type()
                .is_symlink()
                .then(|| std::fs::read_link(&path).unwrap());
            let rel = path.strip_prefix(root).unwrap().to_owned();
            out.insert(
                rel,
                (
                    meta.len(),
                    meta.mode(),
                    meta.mtime_nsec() + meta.mtime() * 1_000_000_000,
                    link,
                ),
            );
        }
    }
    out
}

/// Enablement is a symlink to the unit's path inside the root, so test the link, not its target.
fn link_exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn install_is_complete_idempotent_and_fully_reversible() {
    let root =
        TempRoot(std::env::temp_dir().join(format!("keymash-install-{}", std::process::id())));
    let r = root.0.as_path();

    install(r, &["--role", "sender"]);
    for b in [
        "keymash",
        "keymash-capture",
        "keymash-net-tx",
        "keymash-loss-controller",
    ] {
        let meta = std::fs::metadata(r.join("usr/local/bin").join(b)).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o755, "{b}");
    }
    for unit in [
        "keymash-capture.service",
        "keymash-sender.target",
        "keymash-receiver.target",
    ] {
        assert!(
            r.join("usr/local/lib/systemd/system").join(unit).exists(),
            "{unit}"
        );
    }
    let config = r.join("etc/keymash/keymash.toml");
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        std::fs::read_to_string(repo().join("deploy/keymash.toml")).unwrap()
    );
    assert_eq!(std::fs::metadata(&config).unwrap().mode() & 0o777, 0o640);
    // The first PC gets a new pre-shared key, readable by the keymash group only.
    let key = r.join("etc/keymash/keymash.key");
    assert!(
        keymash_core::key::PreSharedKey::parse(&std::fs::read_to_string(&key).unwrap()).is_ok()
    );
    assert_eq!(std::fs::metadata(&key).unwrap().mode() & 0o777, 0o640);
    assert!(std::fs::read_to_string(r.join("etc/passwd"))
        .unwrap()
        .contains("keymash:"));
    // Both belong to the root's own group keymash, which the services read them as (the host
    // running this test has no such group: chgrp by name failed here, silently, before).
    let gid: u32 = std::fs::read_to_string(r.join("etc/group"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("keymash:x:"))
        .and_then(|rest| rest.split(':').next())
        .expect("group keymash in the staged root")
        .parse()
        .unwrap();
    for file in [&config, &key] {
        assert_eq!(
            std::fs::metadata(file).unwrap().gid(),
            gid,
            "{} is not group keymash",
            file.display()
        );
    }
    let wants = r.join("etc/systemd/system/multi-user.target.wants");
    assert!(link_exists(&wants.join("keymash-sender.target")));

    // A second run changes nothing at all.
    let before = snapshot(r);
    let again = install(r, &["--role", "sender"]);
    assert!(
        stdout(&again).contains("nothing to change"),
        "{}",
        stdout(&again)
    );
    assert_eq!(snapshot(r), before, "the second run changed the tree");

    // An existing configuration is never overwritten, not even by --config.
    std::fs::write(&config, "[video]\nfps = 25\n").unwrap();
    let other = r.join("other.toml");
    std::fs::write(&other, "[video]\nfps = 15\n").unwrap();
    install(
        r,
        &["--role", "sender", "--config", other.to_str().unwrap()],
    );
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "[video]\nfps = 25\n"
    );

    // Switching role switches the enabled target.
    install(r, &["--role", "receiver"]);
    assert!(link_exists(&wants.join("keymash-receiver.target")));
    assert!(!link_exists(&wants.join("keymash-sender.target")));

    // The watchers are off until asked for, stay as chosen on a plain re-run, and go when
    // asked; the archive is the receiver's only.
    let systemd = r.join("etc/systemd/system");
    let web = systemd.join("keymash-receiver.target.wants/keymash-web.service");
    let archive = systemd.join("keymash-receiver.target.wants/keymash-archive.service");
    assert!(!link_exists(&web) && !link_exists(&archive));
    install(r, &["--role", "receiver", "--web", "--archive"]);
    assert!(link_exists(&web) && link_exists(&archive));
    assert!(link_exists(
        &systemd.join("keymash-sender.target.wants/keymash-web.service")
    ));
    let again = install(r, &["--role", "receiver"]);
    assert!(
        stdout(&again).contains("nothing to change"),
        "{}",
        stdout(&again)
    );
    assert!(link_exists(&web) && link_exists(&archive));
    install(r, &["--role", "receiver", "--no-web", "--no-archive"]);
    assert!(!link_exists(&web) && !link_exists(&archive));
    let refused = Command::new("bash")
        .arg(repo().join("deploy/install.sh"))
        .arg("--root")
        .arg(r)
        .args(["--no-deps", "--binaries"])
        .arg(keymash_tests::binary_dir())
        .args(["--role", "sender", "--archive"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--role receiver"));
    install(r, &["--role", "receiver", "--archive"]);

    // Uninstall removes everything it installed but the configuration...
    install(r, &["--uninstall"]);
    let left: Vec<PathBuf> = snapshot(r)
        .into_keys()
        .filter(|p| {
            let s = p.to_string_lossy();
            s.contains("keymash")
                && !s.ends_with("etc/keymash")
                && !s.ends_with("keymash.toml")
                && !s.ends_with("keymash.key")
        })
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(
        config.exists(),
        "the configuration must survive a plain --uninstall"
    );
    assert!(!std::fs::read_to_string(r.join("etc/passwd"))
        .unwrap()
        .contains("keymash:"));
    // ...which --purge-config removes too.
    install(r, &["--uninstall", "--purge-config"]);
    assert!(!config.exists());
    assert!(!key.exists());
}

#[test]
fn a_bad_configuration_is_refused_before_anything_is_installed() {
    let root =
        TempRoot(std::env::temp_dir().join(format!("keymash-install-bad-{}", std::process::id())));
    let bad = std::env::temp_dir().join(format!("keymash-install-bad-{}.toml", std::process::id()));
    // An out-of-range value, and one only the delay buffer met at start before check-config ran
    // the services' own check: both stop the install before it installs anything.
    for (text, key) in [
        ("[codec]\nquality = 0\n", "codec.quality"),
        ("[delay]\nseconds = 600.0\n", "delay.seconds"),
    ] {
        std::fs::write(&bad, text).unwrap();
        let out = Command::new("bash")
            .arg(repo().join("deploy/install.sh"))
            .arg("--root")
            .arg(&root.0)
            .args(["--no-deps", "--binaries"])
            .arg(keymash_tests::binary_dir())
            .args(["--role", "receiver", "--config"])
            .arg(&bad)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text:?} was installed");
        assert!(stderr.contains(key), "{text:?}: {stderr}");
        assert!(
            !root.0.join("usr").exists(),
            "installed files despite a bad configuration {text:?}"
        );
    }
    let _ = std::fs::remove_file(&bad);
}

#[test]
fn a_missing_role_is_refused() {
    let root = TempRoot(
        std::env::temp_dir().join(format!("keymash-install-norole-{}", std::process::id())),
    );
    let out = Command::new("bash")
        .arg(repo().join("deploy/install.sh"))
        .arg("--root")
        .arg(&root.0)
        .args(["--no-deps"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--role"));
}
