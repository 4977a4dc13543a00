//! `keymash status` shows what the services publish in shared memory.

// Tests may unwrap (Cargo.toml's lint note); clippy.toml's allow-unwrap-in-tests covers only
// #[test] functions, not this file's helpers.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use keymash_core::config::Config;
use keymash_pipeline::{stat, Service};
use keymash_service::StatsPublisher;
use keymash_shm::{monotonic_now_ns, Prefix, RemoveSegmentsOnDrop, ServiceState};

fn status(prefix: &str, json: bool) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymash"));
    cmd.args(["status", "--prefix", prefix]);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_running_stage_is_up_with_its_figures_and_the_others_are_absent() {
    let mut config = Config::default();
    config.shm.prefix = format!("kmtest-status-{}", std::process::id());
    let _cleanup = RemoveSegmentsOnDrop(Prefix::new(&config.shm.prefix).unwrap());

    let t0 = monotonic_now_ns();
    let mut encoder = StatsPublisher::open(&config, Service::Encoder, "frames", t0).unwrap();
    encoder.set_state(ServiceState::Running);
    encoder.count("frames", 90);
    encoder.count(stat::DROPPED, 3);
    encoder.set_status_line("q50 640x480");
    encoder.set_last_error("quality cell empty; using codec.quality");
    encoder.publish(t0 + 1);
    encoder.publish(monotonic_now_ns().max(t0 + 3_000_000_000));

    let report: serde_json::Value =
        serde_json::from_str(&status(&config.shm.prefix, true)).unwrap();
    let stages = report["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 8);
    let enc = stages.iter().find(|s| s["name"] == "encoder").unwrap();
    assert_eq!(enc["state"], "up");
    assert_eq!(enc["pid"], std::process::id());
    assert_eq!(enc["dropped"], 3);
    assert_eq!(enc["rate_unit"], "frames");
    assert!(enc["rate"].as_f64().unwrap() > 0.0);
    assert_eq!(enc["status_line"], "q50 640x480");
    assert_eq!(enc["last_error"], "quality cell empty; using codec.quality");
    for s in stages.iter().filter(|s| s["name"] != "encoder") {
        assert_eq!(s["state"], "absent", "{s}");
    }
    let segments = report["segments"].as_array().unwrap();
    assert!(segments.iter().any(|g| g["name"] == "stats.encoder"
        && g["kind"] == "cell"
        && g["producer_alive"] == true));

    let table = status(&config.shm.prefix, false);
    let line = table.lines().find(|l| l.starts_with("encoder")).unwrap();
    assert!(
        line.contains(" up ") && line.contains("frames/s") && line.contains("q50 640x480"),
        "{line}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("capture") && l.contains("absent")),
        "{table}"
    );
}

#[test]
fn an_empty_prefix_reports_every_stage_absent() {
    let prefix = format!("kmtest-empty-{}", std::process::id());
    let table = status(&prefix, false);
    assert_eq!(
        table.lines().filter(|l| l.contains("absent")).count(),
        8,
        "{table}"
    );
    assert!(table.contains("no segments"), "{table}");
}

#[test]
fn a_bad_prefix_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_keymash"))
        .args(["status", "--prefix", "a.b"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
