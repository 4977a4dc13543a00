//! `keymash status` tells the truth about a running pipeline.
//!
//! 1. With all eight services running (the sender's four in one network namespace, the
//!    receiver's four, with the eBPF loss filter on the receiver's veth end, in another, as on
//!    the exhibit's two PCs), `keymash status --json` shows every stage `up`: its declared state
//!    running, its heartbeat fresh, and its pid that of the process the test started. And once
//!    every producer is there, no stage's status line still says it waits for an input.
//! 2. A stage started without the stage that feeds it (encoder without delay-buffer, display
//!    without net-rx, ...) says so at the start of its status line, naming the segment and the
//!    service to start, within two seconds of its READY=1; `keymash status --json` shows the
//!    same line, and the stage as `up` (it runs and waits).
//!
//! Everything is waited for with a deadline on the product's own statistics, never a fixed
//! sleep; the processes, segments (by prefix) and namespaces are removed by guards, also when
//! an assertion fails.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keymash_pipeline::{
    Service, DELAYED_FRAMES, MASH_CELL, PAYLOADS, RAW_FRAMES, RECEIVED_PAYLOADS,
};
use keymash_shm::{CellReader, Prefix, SegmentId, SegmentName, ServiceStats};
use keymash_tests::json::Json;
use keymash_tests::receiver::{ReceiverSetup, RunningService};
use keymash_tests::{require_root, service_binary, NetnsPair};

/// How long the whole pipeline may take to show every stage up once every service said
/// READY=1: each publishes its statistics at least twice a second, so this is only a deadline
/// for a loaded machine.
const ALL_UP_DEADLINE: Duration = Duration::from_secs(30);
/// `keymash status` reads a few segments; a run that takes longer than this is hung.
const STATUS_DEADLINE: Duration = Duration::from_secs(20);
/// How long after READY=1 a stage may take to say that its input is missing (the brief's bound).
const WAITING_SAID_WITHIN: Duration = Duration::from_secs(2);
/// `keymash status`'s own freshness bound (a heartbeat older than this is `stale`).
const FRESH_HEARTBEAT_S: f64 = 5.0;

/// Runs `keymash status --json --config CONFIG` (bounded by [`STATUS_DEADLINE`]) and returns
/// the parsed report; fails the test if it fails or prints something else than one JSON object.
fn status_json(config: &Path) -> Json {
    let text = run_status(config, true);
    Json::parse(text.trim())
        .unwrap_or_else(|e| panic!("keymash status --json printed no JSON ({e}):\n{text}"))
}

/// The output of `keymash status [--json] --config CONFIG`, bounded by [`STATUS_DEADLINE`].
fn run_status(config: &Path, json: bool) -> String {
    let mut command = Command::new(service_binary("keymash"));
    command.arg("status").arg("--config").arg(config);
    if json {
        command.arg("--json");
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run keymash status");
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout is piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr is piped")));
    let deadline = Instant::now() + STATUS_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for keymash status") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("keymash status did not finish within {STATUS_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (stdout, stderr) = (
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default(),
    );
    assert!(
        status.success(),
        "keymash status failed ({status}):\n{stdout}\n{stderr}"
    );
    stdout
}

/// The stage `name` of a status report.
fn stage<'a>(report: &'a Json, name: &str) -> &'a Json {
    report
        .get("stages")
        .and_then(Json::as_array)
        .and_then(|stages| {
            stages
                .iter()
                .find(|s| s.get("name").and_then(Json::as_str) == Some(name))
        })
        .unwrap_or_else(|| panic!("keymash status --json has no stage {name:?}"))
}

fn text_of<'a>(stage: &'a Json, field: &str) -> &'a str {
    stage.get(field).and_then(Json::as_str).unwrap_or_default()
}

/// Why a stage of `report` is not (yet) what the first test wants, or `None` if it is: up,
/// a fresh heartbeat, the pid of the process the test started, and no input missing.
fn not_up_yet(report: &Json, service: Service, pid: u32) -> Option<String> {
    let s = stage(report, service.name());
    let state = text_of(s, "state");
    let beat = s.get("heartbeat_age_s").and_then(Json::as_f64);
    let shown_pid = s.get("pid").and_then(Json::as_f64);
    let line = text_of(s, "status_line");
    if state != "up" {
        return Some(format!("{service} is {state:?}"));
    }
    if beat.is_none_or(|age| !(0.0..FRESH_HEARTBEAT_S).contains(&age)) {
        return Some(format!("{service}'s heartbeat age is {beat:?}"));
    }
    if shown_pid != Some(f64::from(pid)) {
        return Some(format!(
            "{service} shows pid {shown_pid:?}, the test started pid {pid}"
        ));
    }
    // Every producer runs: no stage may still lead its line with a missing input.
    if line.contains("(is keymash-") || line.starts_with("cannot open") {
        return Some(format!("{service} still waits for an input: {line:?}"));
    }
    None
}

#[test]
fn with_all_eight_services_running_status_shows_every_stage_up() {
    require_root();
    let pair = NetnsPair::create("stup").expect("network namespaces");
    let setup = ReceiverSetup::two_pcs(
        "status-up",
        "[display]\noutput = \"y4m:/dev/null\"\n[input]\nsource = \"fifo:{dir}/keys\"\n",
    );
    let (left, right) = (&pair.left, &pair.right);
    // Receiver first (the order of `keymash demo`), then the sender.
    let started: Vec<(Service, RunningService)> = [
        (Service::LossController, right),
        (Service::NetRx, right),
        (Service::Display, right),
        (Service::MashInput, right),
        (Service::Capture, left),
        (Service::DelayBuffer, left),
        (Service::Encoder, left),
        (Service::NetTx, left),
    ]
    .into_iter()
    .map(|(service, netns)| (service, setup.start_in(netns, service.binary(), &[])))
    .collect();
    assert_eq!(started.len(), Service::ALL.len());

    let start = Instant::now();
    let mut report;
    loop {
        report = status_json(&setup.config);
        let problems: Vec<String> = started
            .iter()
            .filter_map(|(service, running)| not_up_yet(&report, *service, running.pid()))
            .collect();
        if problems.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < ALL_UP_DEADLINE,
            "{ALL_UP_DEADLINE:?} after every service said READY=1, keymash status still shows: {}\n\
             keymash status:\n{}",
            problems.join("; "),
            run_status(&setup.config, false)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = start.elapsed();
    assert_eq!(
        report.get("prefix").and_then(Json::as_str),
        Some(setup.prefix.as_str()),
        "keymash status read another prefix than the configured one"
    );
    // Still up a moment later, on their own heartbeats: not a last word before dying.
    let again = status_json(&setup.config);
    for (service, running) in &started {
        if let Some(problem) = not_up_yet(&again, *service, running.pid()) {
            panic!("after all were up, {problem}");
        }
    }
    eprintln!(
        "all eight stages up {:.2} s after the last READY=1:\n{}",
        took.as_secs_f64(),
        run_status(&setup.config, false)
    );
}

/// `service`'s statistics under `prefix`, read straight from its cell.
fn stats_of(prefix: &str, service: Service) -> Option<ServiceStats> {
    let id = SegmentId::new(
        Prefix::new(prefix).ok()?,
        SegmentName::new(&service.stats_cell()).ok()?,
    );
    CellReader::<ServiceStats>::open(&id).ok()?.load().ok()
}

/// Whether `line` starts by saying that `segment` under `prefix` is missing and which service
/// writes it: "waiting for [/dev/shm/]<prefix>.<segment> (is <writer> running?)".
fn leads_with_waiting_for(line: &str, prefix: &str, segment: &str, writer: Service) -> bool {
    let Some(rest) = line.strip_prefix("waiting for ") else {
        return false;
    };
    let clause = rest.split(';').next().unwrap_or_default();
    let (id, ask) = clause.split_once(' ').unwrap_or((clause, ""));
    let wanted = format!("{prefix}.{segment}");
    (id == wanted || id == format!("/dev/shm/{wanted}"))
        && ask.trim() == format!("(is {} running?)", writer.binary())
}

/// Starts `service` (its input's writer is not running) and waits, at most
/// [`WAITING_SAID_WITHIN`] from its READY=1, for its status line to lead with what it waits for.
fn start_and_expect_waiting(
    setup: &ReceiverSetup,
    service: Service,
    segment: &str,
    writer: Service,
) -> RunningService {
    let running = setup.start(service.binary());
    // start() returns as soon as READY=1 has arrived: this is READY's time (to the wake-up).
    let ready = Instant::now();
    let mut last = None;
    loop {
        let stats = stats_of(&setup.prefix, service);
        let line = stats.as_ref().map(|s| s.status_line().to_owned());
        if line
            .as_deref()
            .is_some_and(|l| leads_with_waiting_for(l, &setup.prefix, segment, writer))
        {
            let stats = stats.expect("read above");
            assert_eq!(
                stats.pid(),
                running.pid(),
                "{service}'s statistics are not those of the process started"
            );
            eprintln!(
                "{service} said {:?} {} ms after READY=1",
                stats.status_line(),
                ready.elapsed().as_millis()
            );
            return running;
        }
        last = line.or(last);
        assert!(
            ready.elapsed() < WAITING_SAID_WITHIN,
            "{WAITING_SAID_WITHIN:?} after READY=1, {service} (started without {}) does not lead its status \
             line with \"waiting for {}.{segment} (is {} running?)\"; its line: {last:?}",
            writer.binary(),
            setup.prefix,
            writer.binary()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What `keymash status --json` shows for each `(service, segment, writer)`: the stage up,
/// its line leading with the segment it waits for.
fn status_shows_waiting(setup: &ReceiverSetup, stages: &[(Service, &str, Service)]) {
    let report = status_json(&setup.config);
    for &(service, segment, writer) in stages {
        let s = stage(&report, service.name());
        let line = text_of(s, "status_line");
        assert!(
            leads_with_waiting_for(line, &setup.prefix, segment, writer),
            "keymash status --json shows {service}'s line as {line:?}, not that it waits for {segment}"
        );
        assert_eq!(
            text_of(s, "state"),
            "up",
            "{service} runs and waits for its input, yet keymash status shows it {:?} (heartbeat age {:?})",
            text_of(s, "state"),
            s.get("heartbeat_age_s").and_then(Json::as_f64)
        );
    }
}

#[test]
fn a_stage_without_its_input_says_what_it_waits_for_within_two_seconds_of_ready() {
    let common = "[capture]\nsource = \"synthetic\"\n[delay]\nseconds = 1.0\n\
                  [display]\noutput = \"y4m:/dev/null\"\n";

    // The encoder without a delay buffer, the display without net-rx.
    let a = ReceiverSetup::new("status-wait-a", common);
    let _encoder =
        start_and_expect_waiting(&a, Service::Encoder, DELAYED_FRAMES, Service::DelayBuffer);
    let _display =
        start_and_expect_waiting(&a, Service::Display, RECEIVED_PAYLOADS, Service::NetRx);
    status_shows_waiting(
        &a,
        &[
            (Service::Encoder, DELAYED_FRAMES, Service::DelayBuffer),
            (Service::Display, RECEIVED_PAYLOADS, Service::NetRx),
        ],
    );

    // The delay buffer without capture, net-tx without the encoder, net-rx without mash-input.
    let b = ReceiverSetup::new("status-wait-b", common);
    let _delay = start_and_expect_waiting(&b, Service::DelayBuffer, RAW_FRAMES, Service::Capture);
    let _net_tx = start_and_expect_waiting(&b, Service::NetTx, PAYLOADS, Service::Encoder);
    let _net_rx = start_and_expect_waiting(&b, Service::NetRx, MASH_CELL, Service::MashInput);
    status_shows_waiting(
        &b,
        &[
            (Service::DelayBuffer, RAW_FRAMES, Service::Capture),
            (Service::NetTx, PAYLOADS, Service::Encoder),
            (Service::NetRx, MASH_CELL, Service::MashInput),
        ],
    );
}
