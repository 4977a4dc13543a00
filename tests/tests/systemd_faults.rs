//! The faults an unattended exhibit meets, under a real systemd and the units as shipped: systemd
//! booted as PID 1 in a private PID and mount namespace, keymash installed into it by
//! deploy/install.sh, the network stages in two network namespaces (the two PCs) with private
//! addresses, so the units' own `IPAddressAllow=` applies (no drop-in widens it; the drop-ins only
//! set `NetworkNamespacePath=`). Every stage answers the watchdog and says how it is doing; then,
//! one at a time:
//!
//! - each of the eight stages is killed with SIGKILL: systemd restarts it after the unit's real
//!   `RestartSec=1s` (nothing shortens it), the stage works again, the display presents new
//!   frames, and the delay buffer's video is intact: it still holds the whole delay, every frame
//!   it releases is `delay.seconds` old (never early, never late beyond scheduling), and it never
//!   shows the countdown card, neither during the gap nor `delay.seconds` later when the gap
//!   (in capture's or the delay buffer's case, a gap in the held video) comes out of the delay;
//! - two stages are frozen with SIGSTOP until the watchdog (`WatchdogSec=10s`, as shipped) kills
//!   them and systemd restarts them; the stream resumes and the delay is unaffected.
//!
//! The countdown card is seen where it is made: a thread of the test follows the delayed-frame
//! ring (what the encoder encodes and the screen shows) and records every frame's kind, capture
//! time and release time.
//!
//! No bound here is a performance claim: each wait is a deadline after which the test fails
//! naming what it waited for, far above what the product takes (a stage is back about 1.1 s
//! after SIGKILL on an idle machine, 1.1-1.7 s with both cores busy). The delay's bound (median
//! release within 250 ms of due, five frame intervals) is far above what is measured (under 1 ms
//! idle, under 5 ms with both cores busy): it catches a delay that slipped, not scheduling.

use std::net::Ipv4Addr;
use std::time::Duration;

use keymash_pipeline::{FrameKind, Service};
use keymash_shm::{monotonic_now_ns, Prefix, RemoveSegmentsOnDrop};
use keymash_tests::installed::{
    exhibit_config, install_commands, journal, netns_drop_in, number, states, unit, work_counter,
    Cells, DelayedWatch, PrivateLink, Released,
};
use keymash_tests::require_root;
use keymash_tests::systemd::BootedSystemd;

/// Short, to keep the test short, and still longer than any gap a restart makes (about 1.1 s
/// idle, a few seconds at worst under load), so the gap's frames are held, not lost.
const DELAY_SECONDS: f64 = 4.0;
const DELAY_NS: u64 = 4_000_000_000;
/// The configured frame rate (installed::exhibit_config).
const FPS: u64 = 20;
/// What the shipped units say (checked below, so a change there shows up here).
const RESTART_SEC: &str = "1s";
const WATCHDOG_SEC: &str = "10s";
/// The most a released frame may come after its due time at the median (see the module
/// documentation).
const MEDIAN_LATENESS_NS: u64 = 250_000_000;

fn stage_unit(service: Service) -> String {
    unit(service.name())
}

fn all_units() -> Vec<String> {
    Service::ALL.iter().map(|s| stage_unit(*s)).collect()
}

struct Pipeline<'a> {
    sd: &'a BootedSystemd,
    cells: Cells,
    watch: DelayedWatch,
}

/// What one fault did, for the summary printed at the end.
struct Outcome {
    fault: String,
    /// From the fault to the restarted unit's READY=1 (systemd's ActiveEnterTimestamp).
    down_ms: u64,
    /// From READY=1 to a second of new frames presented by the display.
    resumed_ms: u64,
    video_frames: usize,
    median_lateness_ms: f64,
    /// The display's camera-to-screen p50.
    screen_delay_ms: f64,
}

impl Outcome {
    fn line(&self) -> String {
        format!(
            "{}: back after {} ms, the screen resumed {} ms later; {} video frames released since, \
             median {:.1} ms after due, no countdown card; camera to screen p50 {:.0} ms",
            self.fault,
            self.down_ms,
            self.resumed_ms,
            self.video_frames,
            self.median_lateness_ms,
            self.screen_delay_ms
        )
    }
}

impl Pipeline<'_> {
    fn journal_of(&self, services: &[Service]) -> String {
        services
            .iter()
            .map(|s| journal(self.sd, &stage_unit(*s), 30))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until systemd has restarted every stage in `faulted` (a new main process, active
    /// again: READY=1), returns their new pids and the latest READY time (CLOCK_MONOTONIC ns).
    fn wait_restarted(
        &self,
        faulted: &[(Service, u64, u64)],
        timeout: Duration,
        what: &str,
    ) -> (Vec<u32>, u64) {
        let restarted = self.sd.wait_until(timeout, |sd| {
            faulted.iter().all(|(service, pid, restarts)| {
                let u = stage_unit(*service);
                number(sd, &u, "NRestarts") > *restarts
                    && sd.property(&u, "ActiveState") == "active"
                    && ![0, *pid].contains(&number(sd, &u, "MainPID"))
            })
        });
        let services: Vec<Service> = faulted.iter().map(|f| f.0).collect();
        assert!(
            restarted,
            "systemd did not restart {what} within {timeout:?}: {}\n{}",
            states(
                self.sd,
                &services.iter().map(|s| stage_unit(*s)).collect::<Vec<_>>()
            ),
            self.journal_of(&services)
        );
        let pids = services
            .iter()
            .map(|s| number(self.sd, &stage_unit(*s), "MainPID") as u32)
            .collect();
        let ready_ns = services
            .iter()
            .map(|s| number(self.sd, &stage_unit(*s), "ActiveEnterTimestampMonotonic") * 1000)
            .max()
            .unwrap_or(0);
        (pids, ready_ns)
    }

    /// After a fault at `fault_ns` in `faulted` (now restarted as `pids`, the last READY at
    /// `ready_ns`): each restarted stage works, the stream resumes on the screen, and the delay
    /// buffer's video comes out intact and on time, with no countdown card.
    fn check_recovery(
        &self,
        fault: &str,
        faulted: &[Service],
        pids: &[u32],
        fault_ns: u64,
        ready_ns: u64,
    ) -> Outcome {
        // The restarted stage itself works: its statistics come from the new process, running,
        // with its work counter moving (frames, packets, keys, packets the filter saw).
        for (service, pid) in faulted.iter().zip(pids) {
            let working = self.sd.wait_until(Duration::from_secs(20), |_| {
                self.cells.working(*service, *pid, work_counter(*service))
            });
            assert!(
                working,
                "after {fault}: the restarted {} (pid {pid}) did not publish a running state with `{}` above 0 within 20 s; its cell: {:?}\n{}",
                service.name(),
                work_counter(*service),
                self.cells.stats(*service),
                self.journal_of(faulted)
            );
        }
        // The delay buffer still holds the whole delay (a restarted one found its held video).
        let held = self
            .cells
            .gauge(Service::DelayBuffer, "held_seconds")
            .unwrap_or(0.0);
        assert!(
            held >= DELAY_SECONDS - 0.5,
            "after {fault}: the delay buffer holds {held:.2} s of video, not the {DELAY_SECONDS} s delay"
        );

        // The stream resumes: the display presents a second's worth of new frames.
        let presented = self.cells.mark(Service::Display, "frames");
        let resumed = self.sd.wait_until(Duration::from_secs(20), |_| {
            self.cells.since(Service::Display, "frames", presented) >= FPS
        });
        let resumed_ns = monotonic_now_ns();
        assert!(
            resumed,
            "after {fault}: the display presented {} new frames in 20 s (wanted {FPS}); net-rx packets {}\n{}",
            self.cells.since(Service::Display, "frames", presented),
            self.cells.counter(Service::NetRx, "packets"),
            self.journal_of(&[Service::Display, Service::NetRx, Service::NetTx, Service::Encoder])
        );

        // `delay.seconds` later: the gap (frames the camera or the delay buffer did not take in
        // while a stage was down) comes out of the delay. Wait until video captured half a
        // second after the restarted stage was back has been released, so all of it has.
        let out_of_delay =
            self.sd
                .wait_until(Duration::from_secs_f64(DELAY_SECONDS + 30.0), |_| {
                    self.watch
                        .released_video_captured_after(ready_ns + 500_000_000)
                });
        assert!(
            out_of_delay,
            "after {fault}: no video captured after the restart was released within {DELAY_SECONDS} s + 30 s\n{}",
            self.journal_of(&[Service::Capture, Service::DelayBuffer])
        );
        let window = self.watch.since(fault_ns);
        let lateness = check_delayed(fault, &window, fault_ns);

        // The screen shows the delay too: the display reads the capture time stamped into each
        // frame's pixels (p50 over its last 300 stamped frames, the playout hold included).
        let p50 = self
            .cells
            .gauge(Service::Display, "capture_to_present_p50_ms")
            .unwrap_or(-1.0);
        assert!(
            // Slack below: the delay buffer releases a frame up to a frame interval early.
            (DELAY_SECONDS * 1e3 - 150.0..=DELAY_SECONDS * 1e3 + 1000.0).contains(&p50),
            "after {fault}: the display measures {p50:.0} ms from camera to screen (p50), not the {DELAY_SECONDS} s delay"
        );
        Outcome {
            fault: fault.to_owned(),
            down_ms: ready_ns.saturating_sub(fault_ns) / 1_000_000,
            resumed_ms: resumed_ns.saturating_sub(ready_ns) / 1_000_000,
            video_frames: window.iter().filter(|f| f.kind == FrameKind::Video).count(),
            median_lateness_ms: lateness as f64 / 1e6,
            screen_delay_ms: p50,
        }
    }

    /// SIGKILL of `service`'s main process; systemd restarts it.
    fn kill_9(&self, service: Service) -> Outcome {
        let u = stage_unit(service);
        assert_eq!(
            self.sd.property(&u, "RestartUSec"),
            RESTART_SEC,
            "{u}: RestartSec is not the shipped one"
        );
        let pid = number(self.sd, &u, "MainPID");
        let restarts = number(self.sd, &u, "NRestarts");
        let fault_ns = monotonic_now_ns();
        let kill = self.sd.exec("kill", &["-KILL", &pid.to_string()]);
        assert!(
            kill.status.success(),
            "kill -9 {} (pid {pid}): {}",
            service.name(),
            String::from_utf8_lossy(&kill.stderr)
        );
        let what = format!("{} after kill -9", service.name());
        let (pids, ready_ns) =
            self.wait_restarted(&[(service, pid, restarts)], Duration::from_secs(30), &what);
        // systemd waited RestartSec before starting it again (so the gap below is the real one).
        assert!(
            ready_ns.saturating_sub(fault_ns) >= 950_000_000,
            "{u} was back {} ms after kill -9, before its RestartSec={RESTART_SEC}",
            ready_ns.saturating_sub(fault_ns) / 1_000_000
        );
        self.check_recovery(&what, &[service], &pids, fault_ns, ready_ns)
    }

    /// SIGSTOP of each of `services` until the watchdog kills them and systemd restarts them.
    fn hang(&self, services: &[Service]) -> Outcome {
        let mut faulted = Vec::new();
        let fault_ns = monotonic_now_ns();
        for service in services {
            let u = stage_unit(*service);
            assert_eq!(
                self.sd.property(&u, "WatchdogUSec"),
                WATCHDOG_SEC,
                "{u}: WatchdogSec is not the shipped one"
            );
            let pid = number(self.sd, &u, "MainPID");
            faulted.push((*service, pid, number(self.sd, &u, "NRestarts")));
            let stop = self.sd.exec("kill", &["-STOP", &pid.to_string()]);
            assert!(stop.status.success(), "kill -STOP {}", service.name());
        }
        let names: Vec<&str> = services.iter().map(|s| s.name()).collect();
        let what = format!("{} after SIGSTOP", names.join(" and "));
        // WatchdogSec, then up to TimeoutAbortSec (5 s) for the abort, then RestartSec.
        let (pids, ready_ns) = self.wait_restarted(&faulted, Duration::from_secs(60), &what);
        for service in services {
            let log = journal(self.sd, &stage_unit(*service), 40);
            assert!(
                log.contains("Watchdog timeout"),
                "{}: restarted, but not by the watchdog:\n{log}",
                service.name()
            );
        }
        self.check_recovery(&what, services, &pids, fault_ns, ready_ns)
    }
}

/// The frames the delay buffer released since a fault at `fault_ns`: no countdown card, none
/// missed by the watch, camera video in capture order, none before it was due and the median
/// on time. Returns the median lateness (ns).
fn check_delayed(fault: &str, window: &[Released], fault_ns: u64) -> u64 {
    let at = |f: &Released| format!("{:.2} s", (f.seen_ns as f64 - fault_ns as f64) / 1e9);
    let cards: Vec<String> = window
        .iter()
        .filter(|f| f.kind == FrameKind::Countdown)
        .map(at)
        .collect();
    assert!(
        cards.is_empty(),
        "after {fault}: the delay buffer released the countdown card {} times, at {:?} after the fault \
         (a gap of RestartSec + start time must show the last frame, not the card)",
        cards.len(),
        cards
    );
    let missed: u64 = window.iter().map(|f| f.missed).sum();
    assert_eq!(
        missed, 0,
        "after {fault}: the test's watch missed {missed} delayed frames, so it cannot vouch that none was the card"
    );
    for pair in window.windows(2) {
        assert!(
            pair[1].capture_ns > pair[0].capture_ns,
            "after {fault}: the delay buffer released video captured at {} ns after video captured at {} ns (at {})",
            pair[1].capture_ns,
            pair[0].capture_ns,
            at(&pair[1])
        );
    }
    let mut lateness = Vec::new();
    for f in window {
        let due = f.capture_ns + DELAY_NS;
        assert!(
            f.seen_ns >= due,
            "after {fault}: a frame was released {} ms before its delay was up (at {})",
            (due - f.seen_ns) / 1_000_000,
            at(f)
        );
        lateness.push(f.seen_ns - due);
    }
    lateness.sort_unstable();
    let median = lateness
        .get(lateness.len() / 2)
        .copied()
        .unwrap_or(u64::MAX);
    assert!(
        median <= MEDIAN_LATENESS_NS,
        "after {fault}: released frames came a median {} ms after they were due (of {} frames; max {} ms)",
        median / 1_000_000,
        lateness.len(),
        lateness.last().copied().unwrap_or(0) / 1_000_000
    );
    median
}

#[test]
fn every_stage_killed_or_hung_is_restarted_by_systemd_and_the_delayed_stream_carries_on() {
    require_root();
    let started = std::time::Instant::now();
    // 10.0.0.0/8 is in the net stages' shipped IPAddressAllow=.
    let link = PrivateLink::create(
        "sf",
        Ipv4Addr::new(10, 213, 7, 1),
        Ipv4Addr::new(10, 213, 7, 2),
    );
    let prefix_name = format!("kmsf-{}", std::process::id());
    let prefix = Prefix::new(&prefix_name).unwrap();
    let _segments = RemoveSegmentsOnDrop(prefix.clone());
    let config = exhibit_config(&prefix_name, link.sender, link.receiver, DELAY_SECONDS);
    // One booted system plays both PCs: install.sh for one role enables that role's target;
    // the test starts both targets itself.
    let setup = format!(
        "{}{}{}{}",
        install_commands("receiver", &config, None),
        netns_drop_in(&unit("net-tx"), link.pair.left.name()),
        netns_drop_in(&unit("net-rx"), link.pair.right.name()),
        netns_drop_in(&unit("loss-controller"), link.pair.right.name()),
    );
    let sd = BootedSystemd::boot("faults", &setup).unwrap();
    let phase = |what: &str| eprintln!("{:6.1} s: {what}", started.elapsed().as_secs_f64());
    phase("booted");
    let pipeline = Pipeline {
        sd: &sd,
        cells: Cells::new(&prefix),
        watch: DelayedWatch::start(&prefix),
    };

    // The network stages keep the allow list they ship with.
    for stage in ["net-tx", "net-rx"] {
        let allow = sd.property(&unit(stage), "IPAddressAllow");
        assert!(
            allow.contains("10.0.0.0/8")
                && allow.contains("192.168.0.0/16")
                && !allow.contains("198.18"),
            "{stage}: IPAddressAllow is not the shipped list: {allow}"
        );
    }

    let out = sd.systemctl(&["start", "keymash-sender.target", "keymash-receiver.target"]);
    assert!(
        out.status.success(),
        "start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let units = all_units();
    let all_active = sd.wait_until(Duration::from_secs(30), |sd| {
        units
            .iter()
            .all(|u| sd.property(u, "ActiveState") == "active")
    });
    assert!(
        all_active,
        "not all services active within 30 s: {}\n{}",
        states(&sd, &units),
        String::from_utf8_lossy(&sd.exec("journalctl", &["--no-pager", "-n", "60"]).stdout)
    );
    phase("all eight services active");
    // The delay fills, then video flows to the screen.
    let video = sd.wait_until(Duration::from_secs_f64(DELAY_SECONDS + 30.0), |_| {
        pipeline.watch.released_video_captured_after(0)
            && pipeline.cells.counter(Service::Display, "frames") > FPS
    });
    assert!(
        video,
        "no video reached the screen within {DELAY_SECONDS} s + 30 s: display frames {}, net-rx packets {}, net-tx send errors {}\n{}",
        pipeline.cells.counter(Service::Display, "frames"),
        pipeline.cells.counter(Service::NetRx, "packets"),
        pipeline.cells.counter(Service::NetTx, "send_errors"),
        pipeline.journal_of(&[Service::NetTx, Service::NetRx])
    );
    assert_eq!(
        pipeline.cells.counter(Service::NetTx, "send_errors"),
        0,
        "net-tx could not send to a private address the shipped IPAddressAllow admits"
    );

    phase("video on screen");
    // Every stage tells systemd how it is doing (STATUS=) and kicks the watchdog it ships with
    // (WATCHDOG=1, a quarter of WatchdogSec apart): systemd's record of the last kick moves.
    let kicked: Vec<u64> = units
        .iter()
        .map(|u| number(&sd, u, "WatchdogTimestampMonotonic"))
        .collect();
    let all_kicked = sd.wait_until(Duration::from_secs(20), |sd| {
        units
            .iter()
            .zip(&kicked)
            .all(|(u, before)| number(sd, u, "WatchdogTimestampMonotonic") > *before)
    });
    for (u, before) in units.iter().zip(&kicked) {
        assert_eq!(
            sd.property(u, "WatchdogUSec"),
            WATCHDOG_SEC,
            "{u}: watchdog not armed"
        );
        let status = sd.property(u, "StatusText");
        assert!(!status.is_empty(), "{u}: no STATUS= text");
        eprintln!("{u}: {status}");
        assert!(
            all_kicked,
            "{u}: no WATCHDOG=1 within 20 s (last kick at {} µs, before at {before} µs)",
            number(&sd, u, "WatchdogTimestampMonotonic")
        );
    }

    phase("every stage reports its status and kicks its watchdog");
    let mut outcomes = Vec::new();
    for service in Service::ALL {
        outcomes.push(pipeline.kill_9(service));
        phase(&outcomes[outcomes.len() - 1].line());
    }
    // The encoder (on the stream's path) and the loss controller (the privileged one) hang.
    outcomes.push(pipeline.hang(&[Service::Encoder, Service::LossController]));
    phase(&outcomes[outcomes.len() - 1].line());
}
