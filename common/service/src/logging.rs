//! Logging to stderr in a form journald shows well.
//!
//! Under systemd (stderr connected to the journal, `JOURNAL_STREAM` set) each line starts with
//! the syslog priority in angle brackets (`<3>` error ... `<7>` debug), which journald turns into
//! the entry's priority, so `journalctl -p warning` works; journald adds its own timestamps.
//! On a terminal the line carries a wall-clock-free elapsed time and the level instead.
//! The level comes from `KEYMASH_LOG` (error, warn, info, debug, trace; default info).

use std::io::Write;
use std::time::Instant;

use log::{Level, LevelFilter, Log, Metadata, Record};

#[derive(Debug)]
struct StderrLogger {
    name: &'static str,
    journald: bool,
    started: Instant,
    max_level: LevelFilter,
}

fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.max_level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = if self.journald {
            format!("<{}>{}\n", syslog_priority(record.level()), record.args())
        } else {
            let t = self.started.elapsed();
            format!(
                "{:>5}.{:03} {:<5} {}: {}\n",
                t.as_secs(),
                t.subsec_millis(),
                record.level(),
                self.name,
                record.args()
            )
        };
        // One write per line so lines from concurrent threads do not interleave; a failed
        // write to stderr has nowhere better to be reported.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Parse a `KEYMASH_LOG` value; unknown values fall back to info.
pub fn parse_level(value: Option<&str>) -> LevelFilter {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        Some("off") => LevelFilter::Off,
        Some("error") => LevelFilter::Error,
        Some("warn") | Some("warning") => LevelFilter::Warn,
        Some("debug") => LevelFilter::Debug,
        Some("trace") => LevelFilter::Trace,
        _ => LevelFilter::Info,
    }
}

/// Install the stderr logger for the binary `name`. Calling it twice is harmless.
pub fn init(name: &'static str) {
    let max_level = parse_level(std::env::var("KEYMASH_LOG").ok().as_deref());
    let logger = StderrLogger {
        name,
        journald: std::env::var_os("JOURNAL_STREAM").is_some(),
        started: Instant::now(),
        max_level,
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(max_level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_map_to_syslog_priorities_journald_understands() {
        assert_eq!(syslog_priority(Level::Error), 3);
        assert_eq!(syslog_priority(Level::Warn), 4);
        assert_eq!(syslog_priority(Level::Info), 6);
        assert_eq!(syslog_priority(Level::Debug), 7);
    }

    #[test]
    fn keymash_log_values_parse_and_unknown_ones_mean_info() {
        let table = [
            (None, LevelFilter::Info),
            (Some("debug"), LevelFilter::Debug),
            (Some(" WARN "), LevelFilter::Warn),
            (Some("warning"), LevelFilter::Warn),
            (Some("off"), LevelFilter::Off),
            (Some("loud"), LevelFilter::Info),
        ];
        for (input, want) in table {
            assert_eq!(parse_level(input), want, "{input:?}");
        }
    }
}
