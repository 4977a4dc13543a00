//! A [`StatusReport`] as OpenMetrics text for Prometheus, built afresh on every scrape with the
//! Prometheus project's `prometheus-client` (a [`Registry`] holding one [`Collector`]).
//!
//! # Families
//!
//! Every name starts with `keymash_`. Per stage, from the report (labels `stage`, `role`):
//!
//! | family | type | source |
//! |---|---|---|
//! | `keymash_stage_up` | gauge | 1 when the stage's state is `up`, else 0 |
//! | `keymash_stage_state{state}` | gauge | 1, with the state (`up`, `starting`, `stale`, `dead`, `absent`, ...) as label |
//! | `keymash_stage_heartbeat_age_seconds` | gauge | age of the stage's heartbeat (left out when it has none) |
//! | `keymash_stage_rate{unit}` | gauge | the stage's `rate` gauge: frames, packets or keys per second |
//! | `keymash_stage_dropped_total` | counter | the stage's `dropped` counter |
//! | `keymash_shm_{total,used,free,prefix}_bytes`, `keymash_shm_prefix_segments` | gauge | the tmpfs under /dev/shm and this prefix's share of it |
//! | `keymash_web_*` | see [`WebFigures`] | keymash-web itself, when given |
//!
//! Every other counter a stage publishes becomes `keymash_<name>_total{stage}` and every other
//! gauge `keymash_<name>{stage}`, with the name reduced to `[a-zA-Z0-9_]`. The figures the exhibit
//! is watched by, and where they come from:
//!
//! | figure | metric | published by |
//! |---|---|---|
//! | up / state / heartbeat | `keymash_stage_up`, `keymash_stage_state`, `keymash_stage_heartbeat_age_seconds` | every stage's stats cell |
//! | frames per second | `keymash_stage_rate{unit="frames"}` (capture, delay-buffer, encoder, display); `keymash_fps{stage="display"}` | `rate` gauge; display `fps` |
//! | packets per second | `keymash_stage_rate{unit="packets"}` (net-tx, net-rx, loss-controller) | `rate` gauge |
//! | kernel drops (the loss filter) | `keymash_stage_dropped_total{stage="loss-controller"}`, of `keymash_seen_total{stage="loss-controller"}`; `keymash_drop_percent`, `keymash_target_drop_percent` | loss-controller `dropped`, `seen`, `drop_percent`, `target_drop_percent` |
//! | received | `keymash_packets_total{stage="net-rx"}`, `keymash_delivered_total{stage="net-rx"}` | net-rx `packets`, `delivered` |
//! | lost | `keymash_lost_total{stage="net-rx"}`, `keymash_loss_percent{stage="net-rx"}`, `keymash_remote_loss{stage="net-tx"}` | net-rx `lost`, `loss_percent`; net-tx `remote_loss` |
//! | recovered | `keymash_recovered_fec_total`, `keymash_recovered_nack_total`, `keymash_retransmitted_total`, `keymash_repair_sent_total` | net-rx `recovered_fec`, `recovered_nack`; net-tx `retransmitted`, `repair_sent` |
//! | late | `keymash_late_total{stage="net-rx"}`, `keymash_late_payloads_total{stage="display"}` | net-rx `late`; display `late_payloads` |
//! | quality | `keymash_quality{stage="net-rx"}` (asked for), `{stage="net-tx"}` (asked for, as the sender hears it), `{stage="encoder"}` (coded at) | `quality` gauges |
//! | mash level | `keymash_level{stage="mash-input"}`, `keymash_mash{stage="display"\|"net-rx"}`, `keymash_mash_level{stage="loss-controller"}` | mash-input `level`; display and net-rx `mash`; loss-controller `mash_level` |
//! | fail-safe | `keymash_loss_filter_failsafe` (1 when receiver stages run but loss-controller is not up, so the filter's setting expires and it passes everything), `keymash_passed_expired_total{stage="loss-controller"}` (packets the filter let through because its setting had expired) | loss-controller's state, `passed_expired` |
//! | encode time | `keymash_encode_ms_p50`, `keymash_encode_ms_p99`, `keymash_encode_ms_max` | encoder |
//! | decode time | `keymash_decode_ms{stage="display"}` (mean) | display `decode_ms` |
//! | camera to screen | `keymash_camera_to_screen_p50_ms`, `keymash_camera_to_screen_p99_ms`, `keymash_capture_to_present_p50_ms`, `keymash_capture_to_present_p99_ms` | display (once measured) |
//!
//! # Choices
//!
//! - Only a stage whose heartbeat is fresh (any state but `stale`, `dead`, `absent`,
//!   `unreadable`) has its rate, drops, counters and gauges exported: a hung or dead stage's last
//!   words are not current values, and leaving them out lets Prometheus mark the series stale.
//!   Its up, state and heartbeat age still say what happened.
//! - The `rate` gauge and `dropped` counter every stage publishes are exported once, as
//!   `keymash_stage_rate` and `keymash_stage_dropped_total`, not again under their own names.
//! - A duplicate family is invalid OpenMetrics, so names are handed out in a fixed order (the
//!   families above, then counters, then gauges, each sorted by their published name) and a name
//!   already taken (as a family or as a counter's `_total` / `_created` sample) gets `_counter` or
//!   `_gauge` appended, then `_2`, `_3`, ... The services' names clash with none of them today, so
//!   every figure keeps its plain name.
//! - Gauges that are not finite are left out: OpenMetrics spells them `+Inf`/`NaN`, the encoder
//!   would not.
//! - Series are written in stage order (the pipeline's data flow), not through a metric `Family`
//!   whose hash map would shuffle them on every scrape.

use std::collections::{BTreeMap, BTreeSet};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::status::{StageStatus, StatusReport};
use keymash_pipeline::stat;

/// The media type of [`render`]'s text, for the `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every family name starts with this (and `_`).
pub const PREFIX: &str = "keymash";

/// Figures of keymash-web itself, exported beside the pipeline's.
#[derive(Debug, Clone, Default)]
pub struct WebFigures {
    /// Clients connected now (every route).
    pub clients: u64,
    /// Viewers of the MJPEG stream now.
    pub stream_viewers: u64,
    /// Requests refused because `web.max_clients` were connected.
    pub refused_total: u64,
    /// Clients dropped because they took no data for `web.stall_timeout_ms`.
    pub stalled_total: u64,
    /// Pictures encoded to JPEG for the stream and snapshots.
    pub jpeg_encoded_total: u64,
    /// Mean time to encode one of them, ms.
    pub jpeg_encode_ms: f64,
}

/// The OpenMetrics exposition of `report` (and of the web service's own figures), ending in
/// `# EOF`.
pub fn render(report: &StatusReport, web: Option<&WebFigures>) -> String {
    let mut registry = Registry::with_prefix(PREFIX);
    registry.register_collector(Box::new(Exposition {
        families: families(report, web),
    }));
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &registry) {
        Ok(()) => out,
        Err(e) => {
            // Only a failing writer could get here, and a String does not fail; an empty but
            // valid exposition beats half of one.
            log::error!("cannot encode the metrics: {e}");
            "# EOF\n".to_owned()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn metric_type(self) -> MetricType {
        match self {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }

    /// The names one family of this kind takes in the exposition: its own and its samples'.
    fn taken_names(self, family: &str) -> Vec<String> {
        match self {
            Kind::Counter => vec![
                family.to_owned(),
                format!("{family}_total"),
                format!("{family}_created"),
            ],
            Kind::Gauge => vec![family.to_owned()],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    Counter(u64),
    Gauge(f64),
}

#[derive(Debug)]
struct Series {
    labels: Vec<(&'static str, String)>,
    value: Value,
}

/// One family as it will be written; `name` is without [`PREFIX`] and unit.
#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    unit: Option<Unit>,
    kind: Kind,
    series: Vec<Series>,
}

impl Family {
    fn new(name: &str, help: &str, unit: Option<Unit>, kind: Kind) -> Self {
        Family {
            name: name.to_owned(),
            help: escape_help(help),
            unit,
            kind,
            series: Vec::new(),
        }
    }

    fn gauge(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        if value.is_finite() {
            self.series.push(Series {
                labels,
                value: Value::Gauge(value),
            });
        }
    }

    fn counter(&mut self, labels: Vec<(&'static str, String)>, value: u64) {
        self.series.push(Series {
            labels,
            value: Value::Counter(value),
        });
    }
}

/// The families of one scrape, written in order.
#[derive(Debug)]
struct Exposition {
    families: Vec<Family>,
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for family in &self.families {
            let mut metric = encoder.encode_descriptor(
                &family.name,
                &family.help,
                family.unit.as_ref(),
                family.kind.metric_type(),
            )?;
            for series in &family.series {
                let point = metric.encode_family(&series.labels)?;
                match series.value {
                    Value::Counter(v) => ConstCounter::new(v).encode(point)?,
                    Value::Gauge(v) => ConstGauge::new(v).encode(point)?,
                }
            }
        }
        Ok(())
    }
}

/// Help is an escaped string in OpenMetrics: backslash, newline and double quote are escaped
/// (a published name may hold any of them). The registry does not add the full stop for a
/// collector, so it is added here.
fn escape_help(help: &str) -> String {
    let mut out = String::with_capacity(help.len() + 1);
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out.push('.');
    out
}

/// A published name reduced to what a metric name may hold.
fn sanitise(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Whether the stage's figures are current (its heartbeat is fresh).
fn is_live(stage: &StageStatus) -> bool {
    !matches!(
        stage.state.as_str(),
        "stale" | "dead" | "absent" | "unreadable"
    )
}

fn stage_labels(stage: &StageStatus) -> Vec<(&'static str, String)> {
    vec![
        ("stage", stage.name.to_owned()),
        ("role", stage.role.clone()),
    ]
}

/// What the figures the exhibit is watched by mean; any other name gets a generic help.
fn known_help(name: &str) -> Option<&'static str> {
    Some(match name {
        "frames" => "Frames handled since the stage started",
        "packets" => "Packets sent (net-tx) or received (net-rx) since the stage started",
        "lost" => "Packets lost for good after FEC and retransmission",
        "recovered_fec" => "Packets recovered by forward error correction",
        "recovered_nack" => "Packets recovered by retransmission after a NACK",
        "late" => "Packets that arrived too late to be used",
        "delivered" => "Payloads handed on to the display",
        "seen" => "Packets the loss filter saw",
        "passed_expired" => {
            "Packets the loss filter passed because its setting had expired (the fail-safe)"
        }
        "retransmitted" => "Packets sent again after a NACK",
        "repair_sent" => "FEC repair packets sent",
        "late_payloads" => "Payloads that reached the display too late for their frame",
        "quality" => "Codec quality asked for (net-rx, net-tx) or coded at (encoder)",
        "mash" | "mash_level" | "level" => "Mash level, 0 to 1",
        "fps" => "Frames presented per second",
        "loss_percent" => "Packets lost after recovery over the last second, percent",
        "drop_percent" => "Packets the loss filter dropped over its last window, percent",
        "target_drop_percent" => "Drop probability the loss filter is set to, percent",
        "encode_ms_p50" => "Encode time per frame, median, ms",
        "encode_ms_p99" => "Encode time per frame, 99th percentile, ms",
        "encode_ms_max" => "Encode time per frame, maximum, ms",
        "decode_ms" => "Decode time per frame, mean, ms",
        "present_ms" => "Present time per frame, mean, ms",
        "camera_to_screen_p50_ms" => "Camera to screen, median, ms",
        "camera_to_screen_p99_ms" => "Camera to screen, 99th percentile, ms",
        "capture_to_present_p50_ms" => "Capture to presentation, median, ms",
        "capture_to_present_p99_ms" => "Capture to presentation, 99th percentile, ms",
        "rtt_ms" => "Round trip time, ms (-1 before one is measured)",
        "jitter_ms" => "Interarrival jitter, ms",
        _ => return None,
    })
}

/// Hands out family names so that no two families share one, in the order asked.
#[derive(Debug, Default)]
struct Names {
    taken: BTreeSet<String>,
}

impl Names {
    fn is_free(&self, kind: Kind, family: &str) -> bool {
        kind.taken_names(family)
            .iter()
            .all(|name| !self.taken.contains(name))
    }

    /// Takes `wanted` (`unit` appended, as the exposition writes it) for a family of `kind`, or
    /// the first free of `wanted_<kind>`, `wanted_<kind>_2`, ... Returns the name without unit.
    fn take(&mut self, kind: Kind, wanted: &str, unit: Option<&Unit>) -> String {
        let written = |name: &str| match unit {
            Some(unit) => format!("{name}_{}", unit.as_str()),
            None => name.to_owned(),
        };
        let mut candidate = wanted.to_owned();
        let mut attempt = 0u32;
        while !self.is_free(kind, &written(&candidate)) {
            attempt += 1;
            candidate = match attempt {
                1 => format!("{wanted}_{}", kind.word()),
                n => format!("{wanted}_{}_{n}", kind.word()),
            };
        }
        self.taken.extend(kind.taken_names(&written(&candidate)));
        candidate
    }

    fn family(&mut self, name: &str, help: &str, unit: Option<Unit>, kind: Kind) -> Family {
        let name = self.take(kind, name, unit.as_ref());
        Family::new(&name, help, unit, kind)
    }
}

/// Every family of `report` (and `web`), in the order they are written.
fn families(report: &StatusReport, web: Option<&WebFigures>) -> Vec<Family> {
    let mut names = Names::default();
    let mut up = names.family(
        "stage_up",
        "1 when the stage is up (running with a fresh heartbeat), else 0",
        None,
        Kind::Gauge,
    );
    let mut state = names.family(
        "stage_state",
        "The stage's state as label: up, starting, stopping, failed, stale (hung), dead, absent, unreadable",
        None,
        Kind::Gauge,
    );
    let mut heartbeat = names.family(
        "stage_heartbeat_age",
        "Time since the stage last stamped its heartbeat",
        Some(Unit::Seconds),
        Kind::Gauge,
    );
    let mut rate = names.family(
        "stage_rate",
        "The stage's main rate per second, in the unit its label names (frames, packets, keys)",
        None,
        Kind::Gauge,
    );
    let mut dropped = names.family(
        "stage_dropped",
        "Frames or packets the stage lost or discarded since it started",
        None,
        Kind::Counter,
    );
    let mut failsafe = names.family(
        "loss_filter_failsafe",
        "On a receiver: 1 when loss-controller is not up, so the eBPF filter's last setting expires \
         within loss.failsafe_ms and it passes every packet (fail-safe), 0 while loss-controller \
         refreshes it",
        None,
        Kind::Gauge,
    );
    let mut shm = ShmFamilies::new(&mut names);
    // Taken whether or not keymash-web is exporting, so no stage figure's name depends on it.
    let mut web_families = WebFamilies::new(&mut names);

    // Published name -> (stage index, value), by kind; BTreeMap for a fixed order.
    let mut counters: BTreeMap<&str, Vec<(usize, u64)>> = BTreeMap::new();
    let mut gauges: BTreeMap<&str, Vec<(usize, f64)>> = BTreeMap::new();
    for (index, stage) in report.stages.iter().enumerate() {
        up.gauge(
            stage_labels(stage),
            if stage.state == "up" { 1.0 } else { 0.0 },
        );
        let mut labels = stage_labels(stage);
        labels.push(("state", stage.state.clone()));
        state.gauge(labels, 1.0);
        if let Some(age) = stage.heartbeat_age_s {
            heartbeat.gauge(stage_labels(stage), age);
        }
        if !is_live(stage) {
            continue;
        }
        if let Some(r) = stage.rate {
            let mut labels = stage_labels(stage);
            labels.push(("unit", stage.rate_unit.to_owned()));
            rate.gauge(labels, r);
        }
        if let Some(d) = stage.dropped {
            dropped.counter(stage_labels(stage), d);
        }
        for (name, value) in &stage.counters {
            if name != stat::DROPPED {
                counters.entry(name).or_default().push((index, *value));
            }
        }
        for (name, value) in &stage.gauges {
            if name != stat::RATE {
                gauges.entry(name).or_default().push((index, *value));
            }
        }
    }
    if let Some(passing) = failsafe_passing(report) {
        failsafe.gauge(Vec::new(), if passing { 1.0 } else { 0.0 });
    }
    let mut out = vec![up, state, heartbeat, rate, dropped, failsafe];
    if let Some(s) = &report.shm {
        shm.fill(s);
        out.extend(shm.into_families());
    }
    if let Some(w) = web {
        web_families.fill(w);
        out.extend(web_families.into_families());
    }
    let stage_of = |index: usize| ("stage", report.stages[index].name.to_owned());
    for (name, points) in counters {
        let help = figure_help(name, Kind::Counter, report, points.iter().map(|p| p.0));
        let mut family = names.family(&sanitise(name), &help, None, Kind::Counter);
        for (index, value) in points {
            family.counter(vec![stage_of(index)], value);
        }
        out.push(family);
    }
    for (name, points) in gauges {
        let help = figure_help(name, Kind::Gauge, report, points.iter().map(|p| p.0));
        let mut family = names.family(&sanitise(name), &help, None, Kind::Gauge);
        for (index, value) in points {
            family.gauge(vec![stage_of(index)], value);
        }
        out.push(family);
    }
    out
}

/// Whether the loss filter is in its fail-safe (passing everything) on a receiver: the filter
/// fails safe when loss-controller stops refreshing it, so that is when it is not up. `None` on
/// a PC with no receiver stage running (a sender): no filter there.
fn failsafe_passing(report: &StatusReport) -> Option<bool> {
    let receiver_running = report
        .stages
        .iter()
        .any(|s| s.role == "receiver" && s.name != "loss-controller" && s.state == "up");
    let controller_up = report
        .stages
        .iter()
        .any(|s| s.name == "loss-controller" && s.state == "up");
    (receiver_running || controller_up).then_some(!controller_up)
}

/// The help of a stage figure: what it means if known, and always its published name and the
/// stages publishing it (the name as published may differ from the metric's).
fn figure_help(
    name: &str,
    kind: Kind,
    report: &StatusReport,
    stages: impl Iterator<Item = usize>,
) -> String {
    let stages: Vec<&str> = stages.map(|i| report.stages[i].name).collect();
    let source = format!("{} {name} of {}", kind.word(), stages.join(", "));
    match known_help(name) {
        Some(meaning) => format!("{meaning} ({source})"),
        None => format!("The stage {source}"),
    }
}

/// /dev/shm: a writer that finds too little room refuses to start.
#[derive(Debug)]
struct ShmFamilies {
    total: Family,
    used: Family,
    free: Family,
    prefix: Family,
    prefix_segments: Family,
}

impl ShmFamilies {
    fn new(names: &mut Names) -> Self {
        ShmFamilies {
            total: names.family(
                "shm_total",
                "Capacity of the tmpfs holding /dev/shm (0: no size limit)",
                Some(Unit::Bytes),
                Kind::Gauge,
            ),
            used: names.family(
                "shm_used",
                "Bytes used in the tmpfs holding /dev/shm",
                Some(Unit::Bytes),
                Kind::Gauge,
            ),
            free: names.family(
                "shm_free",
                "Bytes free in the tmpfs holding /dev/shm; a stage that finds too little refuses to start",
                Some(Unit::Bytes),
                Kind::Gauge,
            ),
            prefix: names.family(
                "shm_prefix",
                "Bytes the tmpfs allocated to this prefix's segments",
                Some(Unit::Bytes),
                Kind::Gauge,
            ),
            prefix_segments: names.family(
                "shm_prefix_segments",
                "Segments under this prefix in /dev/shm",
                None,
                Kind::Gauge,
            ),
        }
    }

    fn fill(&mut self, shm: &crate::status::ShmStatus) {
        self.total.gauge(Vec::new(), shm.total_bytes as f64);
        self.used.gauge(Vec::new(), shm.used_bytes as f64);
        self.free.gauge(Vec::new(), shm.free_bytes as f64);
        self.prefix.gauge(Vec::new(), shm.prefix_bytes as f64);
        self.prefix_segments
            .gauge(Vec::new(), shm.prefix_segments as f64);
    }

    fn into_families(self) -> [Family; 5] {
        [
            self.total,
            self.used,
            self.free,
            self.prefix,
            self.prefix_segments,
        ]
    }
}

/// keymash-web's own figures.
#[derive(Debug)]
struct WebFamilies {
    clients: Family,
    stream_viewers: Family,
    refused: Family,
    stalled: Family,
    jpeg_encoded: Family,
    jpeg_encode_ms: Family,
}

impl WebFamilies {
    fn new(names: &mut Names) -> Self {
        WebFamilies {
            clients: names.family(
                "web_clients",
                "Clients connected to keymash-web now",
                None,
                Kind::Gauge,
            ),
            stream_viewers: names.family(
                "web_stream_viewers",
                "Viewers of keymash-web's MJPEG stream now",
                None,
                Kind::Gauge,
            ),
            refused: names.family(
                "web_refused",
                "Requests keymash-web refused because web.max_clients were connected",
                None,
                Kind::Counter,
            ),
            stalled: names.family(
                "web_stalled",
                "Clients keymash-web dropped because they took no data for web.stall_timeout_ms",
                None,
                Kind::Counter,
            ),
            jpeg_encoded: names.family(
                "web_jpeg_encoded",
                "Pictures keymash-web encoded to JPEG for the stream and snapshots",
                None,
                Kind::Counter,
            ),
            jpeg_encode_ms: names.family(
                "web_jpeg_encode_ms",
                "Mean time keymash-web took to encode one picture to JPEG, ms",
                None,
                Kind::Gauge,
            ),
        }
    }

    fn fill(&mut self, web: &WebFigures) {
        self.clients.gauge(Vec::new(), web.clients as f64);
        self.stream_viewers
            .gauge(Vec::new(), web.stream_viewers as f64);
        self.refused.counter(Vec::new(), web.refused_total);
        self.stalled.counter(Vec::new(), web.stalled_total);
        self.jpeg_encoded
            .counter(Vec::new(), web.jpeg_encoded_total);
        self.jpeg_encode_ms.gauge(Vec::new(), web.jpeg_encode_ms);
    }

    fn into_families(self) -> [Family; 6] {
        [
            self.clients,
            self.stream_viewers,
            self.refused,
            self.stalled,
            self.jpeg_encoded,
            self.jpeg_encode_ms,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::ShmStatus;

    fn stage(name: &'static str, role: &str, state: &str) -> StageStatus {
        StageStatus {
            name,
            role: role.to_owned(),
            state: state.to_owned(),
            pid: None,
            heartbeat_age_s: None,
            rate: None,
            rate_unit: "frames",
            dropped: None,
            counters: Vec::new(),
            gauges: Vec::new(),
            status_line: String::new(),
            last_error: String::new(),
        }
    }

    fn live(
        name: &'static str,
        role: &str,
        rate_unit: &'static str,
        counters: &[(&str, u64)],
        gauges: &[(&str, f64)],
    ) -> StageStatus {
        let mut s = stage(name, role, "up");
        s.pid = Some(4242);
        s.heartbeat_age_s = Some(0.25);
        s.rate_unit = rate_unit;
        s.counters = counters
            .iter()
            .map(|(n, v)| ((*n).to_owned(), *v))
            .collect();
        s.gauges = gauges.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect();
        s.rate = s.gauges.iter().find(|g| g.0 == stat::RATE).map(|g| g.1);
        s.dropped = s
            .counters
            .iter()
            .find(|c| c.0 == stat::DROPPED)
            .map(|c| c.1);
        s
    }

    fn report(stages: Vec<StageStatus>) -> StatusReport {
        StatusReport {
            prefix: "keymash-test".to_owned(),
            stages,
            segments: Vec::new(),
            shm: Some(ShmStatus {
                total_bytes: 1 << 30,
                used_bytes: 3 << 20,
                free_bytes: (1 << 30) - (3 << 20),
                prefix_segments: 9,
                prefix_bytes: 3 << 20,
            }),
        }
    }

    fn receiver() -> StatusReport {
        let mut capture = stage("capture", "sender", "absent");
        capture.rate_unit = "frames";
        report(vec![
            capture,
            live(
                "net-rx",
                "receiver",
                "packets",
                &[
                    ("packets", 12_000),
                    ("dropped", 7),
                    ("lost", 7),
                    ("recovered_fec", 30),
                    ("late", 2),
                ],
                &[
                    ("rate", 1500.0),
                    ("loss_percent", 0.5),
                    ("quality", 72.0),
                    ("mash", 0.25),
                ],
            ),
            live(
                "display",
                "receiver",
                "frames",
                &[("frames", 900), ("dropped", 0)],
                &[
                    ("rate", 30.0),
                    ("fps", 29.97),
                    ("decode_ms", 1.5),
                    ("mash", 0.25),
                    ("camera_to_screen_p50_ms", 183.5),
                ],
            ),
        ])
    }

    fn parse(text: &str) -> prometheus_parse::Scrape {
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        prometheus_parse::Scrape::parse(lines).unwrap()
    }

    fn value(v: &prometheus_parse::Value) -> f64 {
        match v {
            prometheus_parse::Value::Counter(x)
            | prometheus_parse::Value::Gauge(x)
            | prometheus_parse::Value::Untyped(x) => *x,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// The value of `metric` with exactly these labels, if exported.
    fn find(
        scrape: &prometheus_parse::Scrape,
        metric: &str,
        labels: &[(&str, &str)],
    ) -> Option<f64> {
        let hits: Vec<f64> = scrape
            .samples
            .iter()
            .filter(|s| {
                s.metric == metric
                    && s.labels.len() == labels.len()
                    && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            })
            .map(|s| value(&s.value))
            .collect();
        assert!(hits.len() <= 1, "{metric} {labels:?} twice");
        hits.first().copied()
    }

    /// What prometheus-parse lets pass but OpenMetrics does not: checks the structure and
    /// returns the families as (name, type).
    fn check_openmetrics(text: &str) -> Vec<(String, String)> {
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
        let mut families: Vec<(String, String)> = Vec::new();
        let mut last_help: Option<String> = None;
        for line in text.lines() {
            if line == "# EOF" {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                assert!(help.ends_with('.'), "{line}");
                let unescaped = help
                    .replace("\\\\", "")
                    .replace("\\\"", "")
                    .replace("\\n", "");
                assert!(
                    !unescaped.contains('"') && !unescaped.contains('\\'),
                    "{line}"
                );
                last_help = Some(name.to_owned());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_eq!(last_help.as_deref(), Some(name), "HELP before TYPE: {line}");
                assert!(
                    families.iter().all(|(f, _)| f != name),
                    "family {name} twice:\n{text}"
                );
                families.push((name.to_owned(), kind.to_owned()));
                continue;
            }
            if line.starts_with("# UNIT ") {
                continue;
            }
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(name.starts_with("keymash_"), "{line}");
            let (family, kind) = families.last().unwrap();
            let expected = match kind.as_str() {
                "counter" => format!("{family}_total"),
                "gauge" => family.clone(),
                other => panic!("type {other}"),
            };
            assert_eq!(name, expected, "sample outside its family: {line}");
        }
        // No sample name of one family is another family's name either.
        for (name, _) in &families {
            assert!(!families
                .iter()
                .any(|(other, kind)| kind == "counter" && format!("{other}_total") == *name));
        }
        families
    }

    #[test]
    fn stage_states_rates_counters_and_gauges_round_trip() {
        let report = receiver();
        let web = WebFigures {
            clients: 3,
            stream_viewers: 1,
            refused_total: 4,
            stalled_total: 5,
            jpeg_encoded_total: 600,
            jpeg_encode_ms: 2.5,
        };
        let text = render(&report, Some(&web));
        let families = check_openmetrics(&text);
        let scrape = parse(&text);
        let rx = [("stage", "net-rx"), ("role", "receiver")];
        let display = [("stage", "display"), ("role", "receiver")];
        let capture = [("stage", "capture"), ("role", "sender")];

        assert_eq!(find(&scrape, "keymash_stage_up", &rx), Some(1.0));
        assert_eq!(find(&scrape, "keymash_stage_up", &capture), Some(0.0));
        let rx_up = [("stage", "net-rx"), ("role", "receiver"), ("state", "up")];
        assert_eq!(find(&scrape, "keymash_stage_state", &rx_up), Some(1.0));
        assert_eq!(
            find(&scrape, "keymash_stage_heartbeat_age_seconds", &display),
            Some(0.25)
        );
        let rx_rate = [
            ("stage", "net-rx"),
            ("role", "receiver"),
            ("unit", "packets"),
        ];
        assert_eq!(find(&scrape, "keymash_stage_rate", &rx_rate), Some(1500.0));
        assert_eq!(find(&scrape, "keymash_stage_dropped_total", &rx), Some(7.0));

        let at = |stage| [("stage", stage)];
        assert_eq!(
            find(&scrape, "keymash_packets_total", &at("net-rx")),
            Some(12_000.0)
        );
        assert_eq!(
            find(&scrape, "keymash_lost_total", &at("net-rx")),
            Some(7.0)
        );
        assert_eq!(
            find(&scrape, "keymash_recovered_fec_total", &at("net-rx")),
            Some(30.0)
        );
        assert_eq!(
            find(&scrape, "keymash_frames_total", &at("display")),
            Some(900.0)
        );
        assert_eq!(
            find(&scrape, "keymash_loss_percent", &at("net-rx")),
            Some(0.5)
        );
        assert_eq!(find(&scrape, "keymash_quality", &at("net-rx")), Some(72.0));
        assert_eq!(find(&scrape, "keymash_mash", &at("net-rx")), Some(0.25));
        assert_eq!(find(&scrape, "keymash_mash", &at("display")), Some(0.25));
        assert_eq!(find(&scrape, "keymash_fps", &at("display")), Some(29.97));
        assert_eq!(
            find(&scrape, "keymash_camera_to_screen_p50_ms", &at("display")),
            Some(183.5)
        );

        assert_eq!(
            find(&scrape, "keymash_shm_free_bytes", &[]),
            Some(((1u64 << 30) - (3 << 20)) as f64)
        );
        assert_eq!(find(&scrape, "keymash_shm_prefix_segments", &[]), Some(9.0));
        assert_eq!(find(&scrape, "keymash_web_clients", &[]), Some(3.0));
        assert_eq!(find(&scrape, "keymash_web_stream_viewers", &[]), Some(1.0));
        assert_eq!(find(&scrape, "keymash_web_refused_total", &[]), Some(4.0));
        assert_eq!(find(&scrape, "keymash_web_stalled_total", &[]), Some(5.0));
        assert_eq!(
            find(&scrape, "keymash_web_jpeg_encoded_total", &[]),
            Some(600.0)
        );
        assert_eq!(find(&scrape, "keymash_web_jpeg_encode_ms", &[]), Some(2.5));

        // rate and dropped are the stage_ families, not figures of their own.
        let names: Vec<&str> = families.iter().map(|(n, _)| n.as_str()).collect();
        assert!(!names.contains(&"keymash_rate") && !names.contains(&"keymash_dropped"));
        assert!(families.contains(&("keymash_frames".to_owned(), "counter".to_owned())));
        assert!(families.contains(&("keymash_fps".to_owned(), "gauge".to_owned())));
        assert!(text.contains("# UNIT keymash_stage_heartbeat_age_seconds seconds\n"));
        assert!(scrape.docs["keymash_lost"].contains("lost for good"));
        assert!(scrape.docs["keymash_lost"].contains("net-rx"));
        // A fixed order: the same report gives the same text.
        assert_eq!(render(&report, Some(&web)), text);
    }

    #[test]
    fn without_web_figures_no_web_family_is_written() {
        let text = render(&receiver(), None);
        check_openmetrics(&text);
        assert!(!text.contains("keymash_web_"));
    }

    #[test]
    fn the_loss_filter_is_in_fail_safe_when_its_controller_is_not_up_on_a_receiver() {
        let failsafe = |report: &StatusReport| {
            let text = render(report, None);
            check_openmetrics(&text);
            find(&parse(&text), "keymash_loss_filter_failsafe", &[])
        };
        // net-rx and display up, loss-controller absent: the filter passes everything.
        assert_eq!(failsafe(&receiver()), Some(1.0));
        let mut refreshed = receiver();
        refreshed.stages.push(live(
            "loss-controller",
            "receiver",
            "packets",
            &[("seen", 10)],
            &[("target_drop_percent", 40.0)],
        ));
        assert_eq!(failsafe(&refreshed), Some(0.0));
        // A sender has no filter.
        let sender = report(vec![live("encoder", "sender", "frames", &[], &[])]);
        assert_eq!(failsafe(&sender), None);
    }

    #[test]
    fn an_absent_stage_is_down_with_no_figures() {
        let report = report(vec![stage("encoder", "sender", "absent")]);
        let text = render(&report, None);
        check_openmetrics(&text);
        let scrape = parse(&text);
        let labels = [("stage", "encoder"), ("role", "sender")];
        assert_eq!(find(&scrape, "keymash_stage_up", &labels), Some(0.0));
        let absent = [
            ("stage", "encoder"),
            ("role", "sender"),
            ("state", "absent"),
        ];
        assert_eq!(find(&scrape, "keymash_stage_state", &absent), Some(1.0));
        let about_encoder: Vec<&str> = scrape
            .samples
            .iter()
            .filter(|s| s.labels.get("stage") == Some("encoder"))
            .map(|s| s.metric.as_str())
            .collect();
        assert_eq!(about_encoder, ["keymash_stage_up", "keymash_stage_state"]);
    }

    #[test]
    fn a_dead_stage_keeps_its_heartbeat_but_not_its_last_figures() {
        let mut dead = live(
            "encoder",
            "sender",
            "frames",
            &[("frames", 10), ("dropped", 1)],
            &[("rate", 30.0), ("quality", 60.0)],
        );
        dead.state = "dead".to_owned();
        dead.heartbeat_age_s = Some(42.0);
        let text = render(&report(vec![dead]), None);
        check_openmetrics(&text);
        let scrape = parse(&text);
        let labels = [("stage", "encoder"), ("role", "sender")];
        assert_eq!(find(&scrape, "keymash_stage_up", &labels), Some(0.0));
        assert_eq!(
            find(&scrape, "keymash_stage_heartbeat_age_seconds", &labels),
            Some(42.0)
        );
        assert!(!text.contains("keymash_quality"));
        assert!(!text.contains("keymash_frames"));
        assert!(find(&scrape, "keymash_stage_dropped_total", &labels).is_none());
    }

    #[test]
    fn clashing_names_still_give_one_family_each() {
        let report = report(vec![
            live(
                "capture",
                "sender",
                "frames",
                // A counter "frames" and, in the next stage, a gauge "frames"; two names that
                // sanitise alike; one that would be a fixed family's name.
                &[("frames", 5), ("a-b", 1), ("a.b", 2), ("stage_up", 3)],
                &[("packets_total", 9.0)],
            ),
            live(
                "display",
                "receiver",
                "frames",
                &[("packets", 11)],
                &[("frames", 29.5), ("we\"ird\\name\n", 1.0)],
            ),
        ]);
        let text = render(&report, None);
        let families = check_openmetrics(&text);
        let scrape = parse(&text);
        let capture = [("stage", "capture")];
        let display = [("stage", "display")];
        assert_eq!(find(&scrape, "keymash_frames_total", &capture), Some(5.0));
        assert_eq!(find(&scrape, "keymash_frames_gauge", &display), Some(29.5));
        assert_eq!(find(&scrape, "keymash_a_b_total", &capture), Some(1.0));
        assert_eq!(
            find(&scrape, "keymash_a_b_counter_total", &capture),
            Some(2.0)
        );
        assert_eq!(
            find(&scrape, "keymash_stage_up_counter_total", &capture),
            Some(3.0)
        );
        // Counters are named first, so the gauge gives way to the counter's sample name.
        assert_eq!(find(&scrape, "keymash_packets_total", &display), Some(11.0));
        assert!(families.contains(&("keymash_packets_total_gauge".to_owned(), "gauge".to_owned())));
        assert_eq!(find(&scrape, "keymash_we_ird_name_", &display), Some(1.0));
        assert!(text.contains("we\\\"ird\\\\name\\n of display"), "{text}");
    }

    #[test]
    fn a_gauge_that_is_not_finite_is_left_out() {
        let report = report(vec![live(
            "display",
            "receiver",
            "frames",
            &[],
            &[
                ("fps", f64::NAN),
                ("decode_ms", f64::INFINITY),
                ("present_ms", 1.0),
            ],
        )]);
        let text = render(&report, None);
        check_openmetrics(&text);
        let scrape = parse(&text);
        assert!(find(&scrape, "keymash_fps", &[("stage", "display")]).is_none());
        assert!(find(&scrape, "keymash_decode_ms", &[("stage", "display")]).is_none());
        assert_eq!(
            find(&scrape, "keymash_present_ms", &[("stage", "display")]),
            Some(1.0)
        );
    }

    #[test]
    fn names_are_reduced_to_letters_digits_and_underscores() {
        assert_eq!(
            sanitise("capture_to_present_p50_ms"),
            "capture_to_present_p50_ms"
        );
        assert_eq!(sanitise("a-b.c d/é"), "a_b_c_d__");
    }
}
