//! The real units under a real systemd: systemd booted as PID 1 in a private PID and mount
//! namespace, keymash installed into it by deploy/install.sh, the sender's and receiver's
//! network stages in two network namespaces joined by a veth pair (the two PCs).
//!
//! `systemctl start keymash-sender.target keymash-receiver.target` brings up all eight services
//! and frames flow; a service killed with SIGKILL is restarted by systemd and the stream resumes;
//! only loss-controller has effective capabilities; stopping the targets leaves no process, no
//! tc filter and no shared memory behind.
//!
//! No bound here is a performance claim: each wait is a deadline after which the test fails
//! naming what it waited for (what systemd's state or the statistics cells must show), far above
//! what the product takes (services ready in about a second, restarted after RestartSec = 1 s).
//! Every command run inside the booted system is bounded too (BootedSystemd::exec).

use std::net::Ipv4Addr;
use std::time::Duration;

use keymash_pipeline::{stat, Service};
use keymash_shm::{
    list_segments, CellReader, Prefix, RemoveSegmentsOnDrop, SegmentId, SegmentName, ServiceStats,
};
use keymash_tests::installed::{
    exhibit_config, install_commands, netns_drop_in, unit, PrivateLink,
};
use keymash_tests::systemd::BootedSystemd;
use keymash_tests::{require_root, NetnsPair};

fn stats(prefix: &Prefix, service: Service) -> Option<ServiceStats> {
    let id = SegmentId::new(
        prefix.clone(),
        SegmentName::new(&service.stats_cell()).ok()?,
    );
    CellReader::<ServiceStats>::open(&id).ok()?.load().ok()
}

fn counter(prefix: &Prefix, service: Service, name: &str) -> u64 {
    stats(prefix, service)
        .and_then(|s| s.counter(name))
        .unwrap_or(0)
}

/// Every stage's short name (the unit is `keymash-<name>.service`).
fn stages() -> Vec<&'static str> {
    Service::ALL.iter().map(|s| s.name()).collect()
}

#[test]
fn the_real_units_run_supervise_and_clean_up_the_pipeline() {
    require_root();
    // Addresses of a private range the shipped units' IPAddressAllow= lets through, so the
    // units run as installed (only their network namespace is set).
    let link = PrivateLink::create(
        "sd",
        Ipv4Addr::new(10, 213, 8, 1),
        Ipv4Addr::new(10, 213, 8, 2),
    );
    let prefix_name = format!("kmsd-{}", std::process::id());
    let prefix = Prefix::new(&prefix_name).unwrap();
    let _segments = RemoveSegmentsOnDrop(prefix.clone());
    let config = exhibit_config(&prefix_name, link.sender, link.receiver, 1.0);
    // One booted system plays both PCs: install.sh for one role enables that role's target;
    // the test starts both targets itself.
    let setup = format!(
        "{}{}{}{}",
        install_commands("receiver", &config, None),
        netns_drop_in(&unit("net-tx"), link.pair.left.name()),
        netns_drop_in(&unit("net-rx"), link.pair.right.name()),
        netns_drop_in(&unit("loss-controller"), link.pair.right.name()),
    );
    let sd = BootedSystemd::boot("pipeline", &setup).unwrap();

    // Starting the two targets starts all eight services (each Type=notify: active once READY).
    let out = sd.systemctl(&["start", "keymash-sender.target", "keymash-receiver.target"]);
    assert!(
        out.status.success(),
        "start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all_active = sd.wait_until(Duration::from_secs(30), |sd| {
        stages()
            .iter()
            .all(|s| sd.property(&unit(s), "ActiveState") == "active")
    });
    let states: Vec<String> = stages()
        .iter()
        .map(|s| format!("{s}={}", sd.property(&unit(s), "ActiveState")))
        .collect();
    assert!(
        all_active,
        "not all services active: {states:?}\n{}",
        String::from_utf8_lossy(&sd.exec("journalctl", &["--no-pager", "-n", "60"]).stdout)
    );

    // Frames flow end to end: packets arrive at net-rx and the display presents frames (the
    // delay is 1 s; the display's rate gauge is published every half second).
    let received = |p: &Prefix| {
        counter(p, Service::NetRx, "delivered").max(counter(p, Service::NetRx, "packets"))
    };
    let flowing = sd.wait_until(Duration::from_secs(30), |_| {
        received(&prefix) > 100
            && stats(&prefix, Service::Display)
                .and_then(|s| s.gauge(stat::RATE))
                .unwrap_or(0.0)
                > 1.0
    });
    assert!(
        flowing,
        "no frames reached the display within 30 s: net-rx {} ",
        received(&prefix)
    );
    // The loss filter is attached and dropping (nobody mashes hard: 6 keys/s).
    let dropped = sd.wait_until(Duration::from_secs(10), |_| {
        counter(&prefix, Service::LossController, stat::DROPPED) > 0
    });
    assert!(dropped, "the loss filter dropped nothing in 10 s");

    // Only loss-controller has effective capabilities; every stage runs as keymash.
    for stage in stages() {
        let pid = sd.property(&unit(stage), "MainPID");
        let status =
            String::from_utf8_lossy(&sd.exec("cat", &[&format!("/proc/{pid}/status")]).stdout)
                .into_owned();
        let cap_eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .map(str::trim)
            .unwrap_or("?")
            .to_owned();
        let nonzero = u64::from_str_radix(&cap_eff, 16)
            .map(|c| c != 0)
            .unwrap_or(true);
        assert_eq!(
            nonzero,
            stage == "loss-controller",
            "{stage} CapEff {cap_eff}"
        );
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .unwrap_or("")
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_owned();
        assert_ne!(uid, "0", "{stage} runs as root");
    }

    // kill -9 of a service: systemd restarts it and the stream resumes.
    for stage in ["encoder", "net-rx"] {
        let before_pid = sd.property(&unit(stage), "MainPID");
        let before_restarts: u32 = sd.property(&unit(stage), "NRestarts").parse().unwrap_or(0);
        let kill = sd.exec("kill", &["-9", &before_pid]);
        assert!(kill.status.success(), "kill {stage}");
        let restarted = sd.wait_until(Duration::from_secs(20), |sd| {
            let restarts: u32 = sd.property(&unit(stage), "NRestarts").parse().unwrap_or(0);
            restarts > before_restarts
                && sd.property(&unit(stage), "ActiveState") == "active"
                && sd.property(&unit(stage), "MainPID") != before_pid
        });
        assert!(
            restarted,
            "systemd did not restart {stage} within 20 s (RestartSec = 1 s)"
        );
        let at_restart = received(&prefix);
        let resumed = sd.wait_until(Duration::from_secs(20), |_| {
            received(&prefix) > at_restart + 100
        });
        assert!(
            resumed,
            "the stream did not resume within 20 s after {stage} was killed"
        );
    }

    // Stopping the targets stops everything and leaves nothing behind.
    let out = sd.systemctl(&["stop", "keymash-sender.target", "keymash-receiver.target"]);
    assert!(
        out.status.success(),
        "stop: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all_stopped = sd.wait_until(Duration::from_secs(20), |sd| {
        stages()
            .iter()
            .all(|s| sd.property(&unit(s), "ActiveState") == "inactive")
    });
    let states: Vec<String> = stages()
        .iter()
        .map(|s| format!("{s}={}", sd.property(&unit(s), "ActiveState")))
        .collect();
    assert!(
        all_stopped,
        "not all stopped: {states:?}\n{}",
        String::from_utf8_lossy(&sd.exec("journalctl", &["--no-pager", "-n", "80"]).stdout)
    );
    let leftovers = sd.exec("pgrep", &["-f", "/usr/local/bin/keymash-"]);
    assert!(
        String::from_utf8_lossy(&leftovers.stdout).trim().is_empty(),
        "processes left"
    );
    let filters = link
        .pair
        .right
        .run(
            "tc",
            [
                "filter",
                "show",
                "dev",
                NetnsPair::RIGHT_INTERFACE,
                "ingress",
            ],
        )
        .unwrap();
    assert!(filters.trim().is_empty(), "tc filter left: {filters}");
    let segments: Vec<String> = list_segments(&prefix)
        .unwrap()
        .into_iter()
        .map(|r| r.id.name.as_str().to_owned())
        .collect();
    assert!(segments.is_empty(), "shared memory left: {segments:?}");
}
