//! Every stage and segment of the pipeline on this machine, in one report: what `keymash
//! status` prints, keymash-web serves as `/status.json` and turns into metrics.
//!
//! It reads only shared memory: each service's `stats.<service>` cell (state, pid, heartbeat,
//! counters, gauges, status line, last error) and the header of every ring and cell under the
//! configured prefix. A stage with a fresh heartbeat is up (or whatever state it declares);
//! otherwise it is `absent` (never started on this machine), `dead` (heartbeat stopped and its
//! process gone) or `stale` (heartbeat stopped but the process still there: hung). The heartbeat
//! decides first because a pid can only be checked from the stage's own PID namespace.

use std::time::Duration;

use anyhow::Context;
use keymash_core::config::Config;
use keymash_pipeline::{stat, Segments, Service};
use keymash_shm::{
    list_segments, prefix_usage, CellReader, OpenError, Prefix, SegmentKind, ServiceStats, ShmSpace,
};
use serde::Serialize;

/// A heartbeat older than this means the stage is hung. Services publish several times a
/// second, so this is generous enough for a loaded machine.
pub const STALE_AFTER: Duration = Duration::from_secs(5);

/// What `keymash status --json` prints.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub prefix: String,
    pub stages: Vec<StageStatus>,
    pub segments: Vec<SegmentStatus>,
    /// Use of the tmpfs holding /dev/shm; `None` if it could not be read.
    pub shm: Option<ShmStatus>,
}

/// How full /dev/shm is, and how much of it this prefix's segments take: a writer that finds
/// too little room refuses to start (exit 78), so this is the figure to watch.
#[derive(Debug, Serialize)]
pub struct ShmStatus {
    /// Capacity of the tmpfs; 0 when it has no size limit.
    pub total_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    /// Segments under this prefix and the bytes the tmpfs allocated to them.
    pub prefix_segments: usize,
    pub prefix_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct StageStatus {
    pub name: &'static str,
    pub role: String,
    /// up, starting, stopping, failed, stale, dead, absent or unreadable.
    pub state: String,
    pub pid: Option<u32>,
    pub heartbeat_age_s: Option<f64>,
    pub rate: Option<f64>,
    pub rate_unit: &'static str,
    pub dropped: Option<u64>,
    pub counters: Vec<(String, u64)>,
    pub gauges: Vec<(String, f64)>,
    pub status_line: String,
    pub last_error: String,
}

#[derive(Debug, Serialize)]
pub struct SegmentStatus {
    pub name: String,
    pub kind: Option<&'static str>,
    pub slots: Option<usize>,
    pub slot_size: Option<usize>,
    pub writes: Option<u64>,
    pub producer_pid: Option<u32>,
    pub producer_alive: Option<bool>,
    pub heartbeat_age_s: Option<f64>,
    pub error: Option<String>,
}

/// Read every stage's statistics and every segment header under `prefix`.
pub fn gather(prefix: &Prefix) -> anyhow::Result<StatusReport> {
    let mut config = Config::default();
    config.shm.prefix = prefix.as_str().to_owned();
    let segments = Segments::new(&config)?;
    let stages = Service::ALL
        .into_iter()
        .map(|service| stage_status(&segments, service))
        .collect();
    let segments = list_segments(prefix)
        .context("cannot list /dev/shm")?
        .into_iter()
        .map(|report| match report.info {
            Ok(info) => SegmentStatus {
                name: report.id.name.as_str().to_owned(),
                kind: Some(match info.kind {
                    SegmentKind::Ring => "ring",
                    SegmentKind::Cell => "cell",
                }),
                slots: Some(info.slot_count),
                slot_size: Some(info.slot_size),
                writes: Some(info.writes),
                producer_pid: Some(info.producer.pid),
                producer_alive: Some(info.producer.alive),
                heartbeat_age_s: info.producer.heartbeat_age.map(|d| d.as_secs_f64()),
                error: None,
            },
            Err(e) => SegmentStatus {
                name: report.id.name.as_str().to_owned(),
                kind: None,
                slots: None,
                slot_size: None,
                writes: None,
                producer_pid: None,
                producer_alive: None,
                heartbeat_age_s: None,
                error: Some(e.to_string()),
            },
        })
        .collect();
    Ok(StatusReport {
        prefix: prefix.as_str().to_owned(),
        stages,
        segments,
        shm: shm_status(prefix),
    })
}

fn shm_status(prefix: &Prefix) -> Option<ShmStatus> {
    let space = ShmSpace::now().ok()?;
    let usage = prefix_usage(prefix).unwrap_or_default();
    Some(ShmStatus {
        total_bytes: space.total_bytes,
        used_bytes: space.used_bytes,
        free_bytes: space.available_bytes,
        prefix_segments: usage.segments,
        prefix_bytes: usage.allocated_bytes,
    })
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

fn stage_status(segments: &Segments, service: Service) -> StageStatus {
    let mut status = StageStatus {
        name: service.name(),
        role: service.role().to_string(),
        state: "absent".to_owned(),
        pid: None,
        heartbeat_age_s: None,
        rate: None,
        rate_unit: service.rate_unit(),
        dropped: None,
        counters: Vec::new(),
        gauges: Vec::new(),
        status_line: String::new(),
        last_error: String::new(),
    };
    // One look, not a follower: a missing cell is an absent stage, any other failure is named.
    let opened = segments
        .stats_cell(service)
        .map_err(|e| e.to_string())
        .and_then(|cell| match CellReader::<ServiceStats>::open(cell.id()) {
            Ok(reader) => Ok(Some(reader)),
            Err(OpenError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.to_string()),
        });
    let reader = match opened {
        Ok(Some(reader)) => reader,
        Ok(None) => return status,
        Err(e) => {
            status.state = "unreadable".to_owned();
            status.last_error = e;
            return status;
        }
    };
    let producer = reader.producer();
    status.heartbeat_age_s = producer.heartbeat_age.map(|d| d.as_secs_f64());
    match reader.load() {
        Ok(stats) => {
            status.pid = Some(stats.pid());
            status.rate = stats.gauge(stat::RATE);
            status.dropped = stats.counter(stat::DROPPED);
            status.counters = stats.counters().map(|(n, v)| (n.to_owned(), v)).collect();
            status.gauges = stats.gauges().map(|(n, v)| (n.to_owned(), v)).collect();
            status.status_line = stats.status_line().to_owned();
            status.last_error = stats.last_error().to_owned();
            status.state = stage_state(
                producer.alive,
                producer.heartbeat_age,
                stats.state().map(|s| s.as_str()),
            );
        }
        Err(e) => {
            status.state = "unreadable".to_owned();
            status.last_error = e.to_string();
        }
    }
    status
}

/// Liveness first (a dead or hung process's last words are not its state), then what the
/// service says about itself. A fresh heartbeat is proof of life even when the pid cannot be
/// seen (the stage runs in another PID namespace, as under a containerised systemd).
fn stage_state(alive: bool, heartbeat_age: Option<Duration>, declared: Option<&str>) -> String {
    if heartbeat_age.is_none_or(|age| age > STALE_AFTER) {
        return if alive { "stale" } else { "dead" }.to_owned();
    }
    match declared {
        Some("running") => "up".to_owned(),
        Some(other) => other.to_owned(),
        None => "unknown".to_owned(),
    }
}

fn age(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s < 10.0 => format!("{s:.2}s"),
        Some(s) => format!("{s:.0}s"),
        None => "-".to_owned(),
    }
}

/// The human table: stages, then segments.
pub fn render_table(report: &StatusReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "keymash status (shm prefix {:?})", report.prefix);
    let _ = writeln!(
        out,
        "{:<16} {:<8} {:<10} {:>7} {:>8} {:>18} {:>9}  STATUS / LAST ERROR",
        "STAGE", "ROLE", "STATE", "PID", "BEAT", "RATE", "DROPPED"
    );
    for s in &report.stages {
        let rate = s
            .rate
            .map_or("-".to_owned(), |r| format!("{r:.1} {}/s", s.rate_unit));
        let pid = s.pid.map_or("-".to_owned(), |p| p.to_string());
        let dropped = s.dropped.map_or("-".to_owned(), |d| d.to_string());
        let mut note = s.status_line.clone();
        if !s.last_error.is_empty() {
            if !note.is_empty() {
                note.push_str(" | ");
            }
            note.push_str("error: ");
            note.push_str(&s.last_error);
        }
        let _ = writeln!(
            out,
            "{:<16} {:<8} {:<10} {:>7} {:>8} {:>18} {:>9}  {}",
            s.name,
            s.role,
            s.state,
            pid,
            age(s.heartbeat_age_s),
            rate,
            dropped,
            note
        );
    }
    let _ = writeln!(out);
    match &report.shm {
        Some(shm) if shm.total_bytes == 0 => {
            let _ = writeln!(
                out,
                "/dev/shm: {} used, no size limit; {} in {} segment(s) of {:?}",
                mib(shm.used_bytes),
                mib(shm.prefix_bytes),
                shm.prefix_segments,
                report.prefix
            );
        }
        Some(shm) => {
            let _ = writeln!(
                out,
                "/dev/shm: {} used of {} ({} free); {} in {} segment(s) of {:?}",
                mib(shm.used_bytes),
                mib(shm.total_bytes),
                mib(shm.free_bytes),
                mib(shm.prefix_bytes),
                shm.prefix_segments,
                report.prefix
            );
        }
        None => {
            let _ = writeln!(out, "/dev/shm: cannot read its size");
        }
    }
    let _ = writeln!(
        out,
        "{:<24} {:<5} {:>16} {:>12} {:>12} {:>8}",
        "SEGMENT", "KIND", "SLOTS x BYTES", "WRITES", "PRODUCER", "BEAT"
    );
    if report.segments.is_empty() {
        let _ = writeln!(out, "(no segments under /dev/shm/{}.*)", report.prefix);
    }
    for g in &report.segments {
        if let Some(error) = &g.error {
            let _ = writeln!(out, "{:<24} error: {error}", g.name);
            continue;
        }
        let geometry = match (g.slots, g.slot_size) {
            (Some(n), Some(size)) => format!("{n} x {size}"),
            _ => "-".to_owned(),
        };
        let producer = match (g.producer_pid, g.producer_alive) {
            (Some(pid), Some(true)) => format!("{pid} up"),
            (Some(pid), Some(false)) => format!("{pid} gone"),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<24} {:<5} {:>16} {:>12} {:>12} {:>8}",
            g.name,
            g.kind.unwrap_or("?"),
            geometry,
            g.writes.map_or("-".to_owned(), |w| w.to_string()),
            producer,
            age(g.heartbeat_age_s)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_decides_before_the_declared_state() {
        let fresh = Some(Duration::from_millis(200));
        let table = [
            (
                false,
                Some(Duration::from_secs(60)),
                Some("running"),
                "dead",
            ),
            (false, None, Some("running"), "dead"),
            (false, fresh, Some("running"), "up"),
            (
                true,
                Some(Duration::from_secs(60)),
                Some("running"),
                "stale",
            ),
            (true, None, Some("running"), "stale"),
            (true, fresh, Some("running"), "up"),
            (true, fresh, Some("starting"), "starting"),
            (true, fresh, Some("failed"), "failed"),
            (true, fresh, None, "unknown"),
        ];
        for (alive, beat, declared, want) in table {
            assert_eq!(
                stage_state(alive, beat, declared),
                want,
                "{alive} {beat:?} {declared:?}"
            );
        }
    }
}
