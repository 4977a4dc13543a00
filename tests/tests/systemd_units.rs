//! The shipped systemd units: valid (`systemd-analyze verify` against the built binaries),
//! hardened within the README's limits (`systemd-analyze security --offline=yes`), and shaped as
//! the design says (Type=notify, watchdog, restart, capabilities only for loss-controller).

// Tests may unwrap (Cargo.toml's lint note); clippy.toml's allow-unwrap-in-tests covers only
// #[test] functions, not this file's helpers.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use keymash_pipeline::{Role, Service};

/// Every stage's short name, sender's first (the unit is `keymash-<name>.service`).
fn services() -> Vec<&'static str> {
    Service::ALL.iter().map(|s| s.name()).collect()
}

fn services_of(role: Role) -> Vec<&'static str> {
    Service::ALL
        .iter()
        .filter(|s| s.role() == role)
        .map(|s| s.name())
        .collect()
}
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn unit_text(name: &str) -> String {
    std::fs::read_to_string(repo().join("systemd").join(name)).unwrap()
}

/// The value(s) of `key=` lines in a unit.
fn values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .collect()
}

#[test]
fn every_unit_passes_systemd_analyze_verify() {
    let dir = std::env::temp_dir().join(format!("keymash-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = keymash_tests::binary_dir();
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(repo().join("systemd")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if !(name.ends_with(".service") || name.ends_with(".target")) {
            continue;
        }
        // Point ExecStart at the binaries this build produced, so verify checks them too.
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("/usr/local/bin/", &format!("{}/", bin.display()));
        let copy = dir.join(&name);
        std::fs::write(&copy, text).unwrap();
        paths.push(copy);
    }
    assert_eq!(
        paths.len(),
        14,
        "8 stages, 2 optional watchers, 2 cleanup units and 2 targets"
    );
    for service in services().into_iter().chain(OPTIONAL) {
        assert!(
            bin.join(format!("keymash-{service}")).exists(),
            "build the binaries first"
        );
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&paths)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify:\n{stderr}"
    );
}

#[test]
fn every_unit_is_within_its_security_exposure_limit() {
    for service in services()
        .into_iter()
        .chain(OPTIONAL)
        .chain(["sender-cleanup", "receiver-cleanup"])
    {
        let unit = repo()
            .join("systemd")
            .join(format!("keymash-{service}.service"));
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(&unit)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let score: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no score for {service}: {text}"));
        let limit = if matches!(service, "loss-controller" | "display") {
            2.0
        } else {
            1.0
        };
        assert!(
            score <= limit,
            "keymash-{service}.service exposure {score} > {limit}"
        );
    }
}

#[test]
fn every_service_is_a_supervised_notify_service_as_the_keymash_user() {
    for service in services() {
        let text = unit_text(&format!("keymash-{service}.service"));
        assert_eq!(values(&text, "Type"), ["notify"], "{service}");
        assert_eq!(values(&text, "User"), ["keymash"], "{service}");
        assert!(
            !values(&text, "WatchdogSec").is_empty(),
            "{service} has no watchdog"
        );
        assert_eq!(values(&text, "Restart"), ["always"], "{service}");
        assert_eq!(
            values(&text, "RestartPreventExitStatus"),
            ["78"],
            "{service}"
        );
        assert!(
            values(&text, "DynamicUser").is_empty(),
            "{service}: DynamicUser would remove the rings"
        );
        let expected_target = if services_of(Role::Sender).contains(&service) {
            "sender"
        } else {
            "receiver"
        };
        assert_eq!(
            values(&text, "PartOf"),
            [format!("keymash-{expected_target}.target").as_str()]
        );
        let target = unit_text(&format!("keymash-{expected_target}.target"));
        assert!(
            target.contains(&format!("keymash-{service}.service")),
            "{expected_target} target lacks {service}"
        );
    }
}

/// The units install.sh enables only when asked (`--web`, `--archive`).
const OPTIONAL: [&str; 2] = ["web", "archive"];

#[test]
fn the_watchers_are_optional_supervised_read_only_services_of_their_targets() {
    for (service, targets) in [
        ("web", &["sender", "receiver"][..]),
        ("archive", &["receiver"][..]),
    ] {
        let text = unit_text(&format!("keymash-{service}.service"));
        assert_eq!(values(&text, "Type"), ["notify"], "{service}");
        assert_eq!(values(&text, "User"), ["keymash"], "{service}");
        assert!(!values(&text, "WatchdogSec").is_empty(), "{service}");
        assert_eq!(values(&text, "Restart"), ["always"], "{service}");
        assert_eq!(values(&text, "RestartPreventExitStatus"), ["78"]);
        // Whatever they do, they can never write a segment of the pipeline.
        assert_eq!(values(&text, "ReadOnlyPaths"), ["/dev/shm"], "{service}");
        let targets: Vec<String> = targets
            .iter()
            .map(|role| format!("keymash-{role}.target"))
            .collect();
        assert_eq!(values(&text, "PartOf"), [targets.join(" ").as_str()]);
        assert_eq!(values(&text, "WantedBy"), [targets.join(" ").as_str()]);
        // Off unless enabled: no target pulls them in by itself.
        for role in ["sender", "receiver"] {
            let target = unit_text(&format!("keymash-{role}.target"));
            assert!(
                !target.contains(&format!("keymash-{service}.service")),
                "{role} target starts {service} unasked"
            );
        }
    }
}

#[test]
fn each_target_removes_its_shared_memory_after_its_stages_stop() {
    for (role, stages) in [
        ("sender", services_of(Role::Sender)),
        ("receiver", services_of(Role::Receiver)),
    ] {
        let unit = unit_text(&format!("keymash-{role}-cleanup.service"));
        assert_eq!(values(&unit, "Type"), ["oneshot"]);
        assert_eq!(values(&unit, "RemainAfterExit"), ["yes"]);
        assert_eq!(
            values(&unit, "PartOf"),
            [format!("keymash-{role}.target").as_str()]
        );
        let stop = values(&unit, "ExecStop");
        assert!(
            stop.len() == 1 && stop[0].contains(&format!("keymash clean --role {role} --force")),
            "{stop:?}"
        );
        // Started before every stage, so stopped after all of them.
        let before: Vec<&str> = values(&unit, "Before")
            .iter()
            .flat_map(|v| v.split_whitespace())
            .collect();
        for stage in &stages {
            assert!(
                before.contains(&format!("keymash-{stage}.service").as_str()),
                "{role} cleanup not before {stage}"
            );
        }
        let target = unit_text(&format!("keymash-{role}.target"));
        assert!(target.contains(&format!("keymash-{role}-cleanup.service")));
    }
}

#[test]
fn only_loss_controller_holds_capabilities() {
    for service in services().into_iter().chain(OPTIONAL) {
        let text = unit_text(&format!("keymash-{service}.service"));
        let ambient: Vec<&str> = values(&text, "AmbientCapabilities")
            .into_iter()
            .filter(|v| !v.is_empty())
            .collect();
        let bounding: Vec<&str> = values(&text, "CapabilityBoundingSet")
            .into_iter()
            .filter(|v| !v.is_empty())
            .collect();
        if service == "loss-controller" {
            assert_eq!(ambient, ["CAP_BPF CAP_NET_ADMIN"]);
            assert_eq!(bounding, ["CAP_BPF CAP_NET_ADMIN"]);
        } else {
            assert!(
                ambient.is_empty() && bounding.is_empty(),
                "{service} has capabilities"
            );
            assert_eq!(
                values(&text, "CapabilityBoundingSet"),
                [""],
                "{service} must clear its bounding set"
            );
        }
    }
}
