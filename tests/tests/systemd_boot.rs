//! Two PCs set up as README's "Setting up two Optiplexes" says, each a systemd booted as PID 1
//! in a private PID and mount namespace, their network stages in two network namespaces joined
//! by a veth pair:
//!
//! - `deploy/install.sh --role sender` on one and `--role receiver` on the other (the link's key
//!   made once and copied to both first), then each boots to its default target, as a PC does.
//!   Nothing runs `systemctl start`: each target comes up through its `[Install] WantedBy=` alone
//!   (install.sh enabled it), with all of its services, and video flows from one PC's camera to
//!   the other's screen.
//! - The network stages' `IPAddressAllow=` as shipped: the PCs use the configuration's own
//!   default addresses (192.168.50.1 and .2, private, inside the allow list) and no drop-in
//!   widens the list (the drop-ins only set `NetworkNamespacePath=`). Then the same two PCs are
//!   given addresses outside the list (198.18.0.1 and .2, the benchmarking range): the filter
//!   refuses net-tx's packets and no video reaches the screen.
//!
//! No bound here is a performance claim: each wait is a deadline after which the test fails
//! naming what it waited for, far above what the product takes.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use keymash_pipeline::Service;
use keymash_shm::{Prefix, RemoveSegmentsOnDrop, ServiceState};
use keymash_tests::installed::{
    exhibit_config, install_commands, journal, netns_drop_in, new_key, number, states, unit, Cells,
    PrivateLink, TempDir,
};
use keymash_tests::systemd::BootedSystemd;
use keymash_tests::{require_root, NetnsPair};

const DELAY_SECONDS: f64 = 2.0;
/// The configured frame rate (installed::exhibit_config).
const FPS: u64 = 20;

const SENDER: [Service; 4] = [
    Service::Capture,
    Service::DelayBuffer,
    Service::Encoder,
    Service::NetTx,
];
const RECEIVER: [Service; 4] = [
    Service::NetRx,
    Service::Display,
    Service::MashInput,
    Service::LossController,
];

struct Pc<'a> {
    name: &'static str,
    sd: &'a BootedSystemd,
    target: &'static str,
    other_target: &'static str,
    services: [Service; 4],
}

impl Pc<'_> {
    fn units(&self) -> Vec<String> {
        self.services.iter().map(|s| unit(s.name())).collect()
    }

    fn journal(&self) -> String {
        self.units()
            .iter()
            .map(|u| journal(self.sd, u, 20))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Each service's stats cell is published by its current main process, running.
    fn all_publishing(&self, cells: &Cells) -> bool {
        self.services.iter().all(|s| {
            let pid = number(self.sd, &unit(s.name()), "MainPID") as u32;
            cells
                .stats(*s)
                .is_some_and(|st| st.pid() == pid && st.state() == Some(ServiceState::Running))
        })
    }
}

fn shipped_target_wanted_by(target: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../systemd")
        .join(target);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut section = "";
    let mut wanted_by = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if let Some(v) = line.strip_prefix("WantedBy=") {
            if section == "[Install]" {
                wanted_by.extend(v.split_whitespace().map(str::to_owned));
            }
        }
    }
    wanted_by
}

#[test]
fn each_pc_boots_into_its_target_by_wanted_by_alone_and_only_private_addresses_pass() {
    require_root();
    let started = std::time::Instant::now();
    // The shipped targets start at boot through [Install] WantedBy=multi-user.target.
    for target in ["keymash-sender.target", "keymash-receiver.target"] {
        assert_eq!(
            shipped_target_wanted_by(target),
            ["multi-user.target"],
            "systemd/{target}: [Install] WantedBy="
        );
    }

    // The configuration's default addresses (deploy/keymash.toml, README step 1).
    let link = PrivateLink::create(
        "sb",
        Ipv4Addr::new(192, 168, 50, 1),
        Ipv4Addr::new(192, 168, 50, 2),
    );
    let prefix_name = format!("kmsb-{}", std::process::id());
    let prefix = Prefix::new(&prefix_name).unwrap();
    let _segments = RemoveSegmentsOnDrop(prefix.clone());
    let keys = TempDir::new("keymash-boot-key");
    let key = new_key(&keys.0);
    let config = exhibit_config(&prefix_name, link.sender, link.receiver, DELAY_SECONDS);

    let sender_sd = BootedSystemd::boot_default(
        "sender-pc",
        &format!(
            "{}{}",
            install_commands("sender", &config, Some(&key)),
            netns_drop_in(&unit("net-tx"), link.pair.left.name())
        ),
    )
    .unwrap();
    let receiver_sd = BootedSystemd::boot_default(
        "receiver-pc",
        &format!(
            "{}{}{}",
            install_commands("receiver", &config, Some(&key)),
            netns_drop_in(&unit("net-rx"), link.pair.right.name()),
            netns_drop_in(&unit("loss-controller"), link.pair.right.name())
        ),
    )
    .unwrap();
    eprintln!(
        "both PCs booted after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let pcs = [
        Pc {
            name: "sender PC",
            sd: &sender_sd,
            target: "keymash-sender.target",
            other_target: "keymash-receiver.target",
            services: SENDER,
        },
        Pc {
            name: "receiver PC",
            sd: &receiver_sd,
            target: "keymash-receiver.target",
            other_target: "keymash-sender.target",
            services: RECEIVER,
        },
    ];
    let cells = Cells::new(&prefix);

    for pc in &pcs {
        let sd = pc.sd;
        let default = String::from_utf8_lossy(&sd.systemctl(&["get-default"]).stdout)
            .trim()
            .to_owned();
        // install.sh enabled the PC's own target (and not the other role's).
        assert_eq!(
            String::from_utf8_lossy(&sd.systemctl(&["is-enabled", pc.target]).stdout).trim(),
            "enabled",
            "{}: {} not enabled by install.sh",
            pc.name,
            pc.target
        );
        assert!(
            sd.property(pc.target, "WantedBy")
                .split_whitespace()
                .any(|u| u == "multi-user.target"),
            "{}: {} is not wanted by multi-user.target",
            pc.name,
            pc.target
        );
        // The boot (to the default target) has finished, so everything it pulled in is started:
        // the target and every one of its services are up, with nobody having started them.
        assert_eq!(
            sd.property(pc.target, "ActiveState"),
            "active",
            "{}: {} not reached by booting to {default}\n{}",
            pc.name,
            pc.target,
            pc.journal()
        );
        // ... as part of the boot itself: the target was reached before systemd finished
        // booting (the manager's FinishTimestamp).
        let finished = String::from_utf8_lossy(
            &sd.systemctl(&["show", "-p", "FinishTimestampMonotonic", "--value"])
                .stdout,
        )
        .trim()
        .parse::<u64>()
        .unwrap_or(0);
        let reached = number(sd, pc.target, "ActiveEnterTimestampMonotonic");
        assert!(
            reached > 0 && reached <= finished,
            "{}: {} reached at {reached} µs, not during the boot (finished at {finished} µs)",
            pc.name,
            pc.target
        );
        let units = pc.units();
        let all_active = sd.wait_until(Duration::from_secs(20), |sd| {
            units
                .iter()
                .all(|u| sd.property(u, "ActiveState") == "active")
        });
        assert!(
            all_active,
            "{}: not all services of {} came up at boot: {}\n{}",
            pc.name,
            pc.target,
            states(sd, &units),
            pc.journal()
        );
        // The other role's target and services are not part of this PC's boot.
        assert_eq!(
            sd.property(pc.other_target, "ActiveState"),
            "inactive",
            "{}: {} started too",
            pc.name,
            pc.other_target
        );
        let failed = String::from_utf8_lossy(
            &sd.systemctl(&["list-units", "--failed", "--plain", "--no-legend"])
                .stdout,
        )
        .into_owned();
        eprintln!(
            "{}: booted to {default}, {} active; units failed at boot (none of keymash's): {:?}",
            pc.name,
            pc.target,
            failed.lines().collect::<Vec<_>>()
        );
        assert!(
            !failed.contains("keymash"),
            "{}: failed at boot: {failed}",
            pc.name
        );
        // The net stages keep the allow list they ship with.
        for s in &pc.services {
            if matches!(s, Service::NetTx | Service::NetRx) {
                let allow = sd.property(&unit(s.name()), "IPAddressAllow");
                assert!(
                    allow.contains("192.168.0.0/16") && !allow.contains("198.18"),
                    "{}: {} IPAddressAllow is not the shipped list: {allow}",
                    pc.name,
                    s.name()
                );
            }
        }
    }

    // Video flows from the sender PC's camera to the receiver PC's screen.
    let flowing = receiver_sd.wait_until(Duration::from_secs_f64(DELAY_SECONDS + 30.0), |_| {
        cells.counter(Service::Display, "frames") > 2 * FPS
    });
    assert!(
        flowing,
        "no video on the receiver PC's screen within {DELAY_SECONDS} s + 30 s after boot: display frames {}, net-rx packets {}, net-tx packets {} and send errors {}\n{}\n{}",
        cells.counter(Service::Display, "frames"),
        cells.counter(Service::NetRx, "packets"),
        cells.counter(Service::NetTx, "packets"),
        cells.counter(Service::NetTx, "send_errors"),
        pcs[0].journal(),
        pcs[1].journal()
    );
    assert_eq!(
        cells.counter(Service::NetTx, "send_errors"),
        0,
        "net-tx could not send to {}, a private address the shipped IPAddressAllow admits",
        link.receiver
    );
    eprintln!(
        "video on screen between 192.168.50.1 and .2 after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The same PCs with addresses outside the allow list (both already on the veth ends):
    // the filter refuses net-tx's packets, so nothing reaches the screen.
    let (outside_tx, outside_rx) = (NetnsPair::LEFT_V4, NetnsPair::RIGHT_V4);
    for pc in &pcs {
        let edit = pc.sd.exec(
            "sed",
            &[
                "-i",
                &format!(
                    "s/\"{}\"/\"{outside_tx}\"/; s/\"{}\"/\"{outside_rx}\"/",
                    link.sender, link.receiver
                ),
                "/etc/keymash/keymash.toml",
            ],
        );
        assert!(edit.status.success(), "{}: edit the configuration", pc.name);
        let out = pc.sd.systemctl(&["restart", pc.target]);
        assert!(
            out.status.success(),
            "{}: restart {}: {}",
            pc.name,
            pc.target,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let restarted = receiver_sd.wait_until(Duration::from_secs(30), |_| {
        pcs.iter().all(|pc| pc.all_publishing(&cells))
    });
    assert!(
        restarted,
        "not every stage came back with the new addresses within 30 s\n{}\n{}",
        pcs[0].journal(),
        pcs[1].journal()
    );
    // net-tx is refused (EPERM from the cgroup's address filter) once it starts sending.
    let refused = sender_sd.wait_until(Duration::from_secs_f64(DELAY_SECONDS + 20.0), |_| {
        cells.counter(Service::NetTx, "send_errors") > FPS
    });
    assert!(
        refused,
        "net-tx sending to {outside_rx} was not refused within {DELAY_SECONDS} s + 20 s: {} send errors, {} packets\n{}",
        cells.counter(Service::NetTx, "send_errors"),
        cells.counter(Service::NetTx, "packets"),
        pcs[0].journal()
    );
    // The refusals are the filter's: net-tx logs the error.
    let log = journal(&sender_sd, &unit("net-tx"), 50);
    assert!(
        log.contains("Operation not permitted"),
        "net-tx's send errors are not the address filter's EPERM:\n{log}"
    );
    // Three more seconds of sending: nothing arrives and the screen stays dark.
    std::thread::sleep(Duration::from_secs(3));
    let (received, presented) = (
        cells.counter(Service::NetRx, "packets"),
        cells.counter(Service::Display, "frames"),
    );
    assert_eq!(
        (received, presented),
        (0, 0),
        "from {outside_tx} to {outside_rx}, outside the shipped IPAddressAllow: net-rx received {received} packets and the display presented {presented} frames"
    );
    eprintln!(
        "outside the allow list: {} send errors, nothing received; {:.1} s in all",
        cells.counter(Service::NetTx, "send_errors"),
        started.elapsed().as_secs_f64()
    );
}
