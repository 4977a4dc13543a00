//! The statistics record every service publishes in its own cell (`<prefix>.stats.<service>`),
//! which `keymash status` prints without knowing anything about the service.

use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// Bytes of a counter or gauge name.
pub const STAT_NAME_LEN: usize = 24;
/// Counters and gauges a service can publish.
pub const STAT_SLOTS: usize = 16;
/// Bytes of the last error and of the status line.
pub const STAT_TEXT_LEN: usize = 128;

/// Where a service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ServiceState {
    Starting = 1,
    Running = 2,
    Stopping = 3,
    Failed = 4,
}

impl ServiceState {
    pub fn from_word(word: u32) -> Option<Self> {
        match word {
            1 => Some(ServiceState::Starting),
            2 => Some(ServiceState::Running),
            3 => Some(ServiceState::Stopping),
            4 => Some(ServiceState::Failed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Stopping => "stopping",
            ServiceState::Failed => "failed",
        }
    }
}

/// A monotonically growing total, e.g. "frames", "packets_dropped".
#[derive(Debug, Clone, Copy, PartialEq, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct NamedCounter {
    name: [u8; STAT_NAME_LEN],
    total: u64,
}

/// A current reading, e.g. "fps", "loss_pct", "encode_ms_p99".
#[derive(Debug, Clone, Copy, PartialEq, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct NamedGauge {
    name: [u8; STAT_NAME_LEN],
    value: f64,
}

/// All counters (or all gauges) are taken by other names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("all {STAT_SLOTS} {what} slots are in use; cannot add {name:?}")]
pub struct StatsFull {
    pub what: &'static str,
    pub name: String,
}

/// A service's published statistics. Plain data: build it locally, then store it in its cell.
#[derive(Debug, Clone, PartialEq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct ServiceStats {
    state: u32,
    pid: u32,
    started_ns: u64,
    heartbeat_ns: u64,
    counters: [NamedCounter; STAT_SLOTS],
    gauges: [NamedGauge; STAT_SLOTS],
    last_error: [u8; STAT_TEXT_LEN],
    status_line: [u8; STAT_TEXT_LEN],
}

const _: () = assert!(size_of::<NamedCounter>() == 32);
const _: () = assert!(size_of::<NamedGauge>() == 32);
const _: () = assert!(size_of::<ServiceStats>() == 24 + 2 * STAT_SLOTS * 32 + 2 * STAT_TEXT_LEN);

impl Default for ServiceStats {
    fn default() -> Self {
        ServiceStats::new_zeroed()
    }
}

impl ServiceStats {
    /// Statistics of process `pid`, started at `started_ns` (CLOCK_MONOTONIC), in `Starting`.
    pub fn new(pid: u32, started_ns: u64) -> Self {
        let mut stats = ServiceStats::new_zeroed();
        stats.state = ServiceState::Starting as u32;
        stats.pid = pid;
        stats.started_ns = started_ns;
        stats.heartbeat_ns = started_ns;
        stats
    }

    /// `None` for a state word this build does not know (or an unset record).
    pub fn state(&self) -> Option<ServiceState> {
        ServiceState::from_word(self.state)
    }

    pub fn set_state(&mut self, state: ServiceState) {
        self.state = state as u32;
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn started_ns(&self) -> u64 {
        self.started_ns
    }

    pub fn heartbeat_ns(&self) -> u64 {
        self.heartbeat_ns
    }

    pub fn set_heartbeat_ns(&mut self, now_ns: u64) {
        self.heartbeat_ns = now_ns;
    }

    /// Sets counter `name` (truncated to 24 bytes at a char boundary) to `total`, taking a free
    /// slot the first time the name is used.
    pub fn set_counter(&mut self, name: &str, total: u64) -> Result<(), StatsFull> {
        let index = slot_for(self.counters.iter().map(|c| &c.name), name, "counter")?;
        let counter = &mut self.counters[index];
        counter.name = encode_name(name);
        counter.total = total;
        Ok(())
    }

    /// Adds `delta` to counter `name` (wrapping, as counters of a long-running service may).
    pub fn add_counter(&mut self, name: &str, delta: u64) -> Result<(), StatsFull> {
        let total = self.counter(name).unwrap_or(0).wrapping_add(delta);
        self.set_counter(name, total)
    }

    pub fn counter(&self, name: &str) -> Option<u64> {
        let key = encode_name(name);
        self.counters
            .iter()
            .find(|c| c.name[0] != 0 && c.name == key)
            .map(|c| c.total)
    }

    /// Every named counter, in slot order.
    pub fn counters(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.counters
            .iter()
            .filter(|c| c.name[0] != 0)
            .map(|c| (decode_text(&c.name), c.total))
    }

    /// Sets gauge `name` (truncated like counter names) to `value`.
    pub fn set_gauge(&mut self, name: &str, value: f64) -> Result<(), StatsFull> {
        let index = slot_for(self.gauges.iter().map(|g| &g.name), name, "gauge")?;
        let gauge = &mut self.gauges[index];
        gauge.name = encode_name(name);
        gauge.value = value;
        Ok(())
    }

    pub fn gauge(&self, name: &str) -> Option<f64> {
        let key = encode_name(name);
        self.gauges
            .iter()
            .find(|g| g.name[0] != 0 && g.name == key)
            .map(|g| g.value)
    }

    pub fn gauges(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.gauges
            .iter()
            .filter(|g| g.name[0] != 0)
            .map(|g| (decode_text(&g.name), g.value))
    }

    /// Records the last error (truncated to 128 bytes at a char boundary); "" clears it.
    pub fn set_last_error(&mut self, error: &str) {
        self.last_error = encode_text(error);
    }

    pub fn last_error(&self) -> &str {
        decode_text(&self.last_error)
    }

    /// The one-line live summary (also what systemd's STATUS= shows), truncated to 128 bytes.
    pub fn set_status_line(&mut self, line: &str) {
        self.status_line = encode_text(line);
    }

    pub fn status_line(&self) -> &str {
        decode_text(&self.status_line)
    }
}

/// The slot holding `name`, else the first free slot.
fn slot_for<'a>(
    names: impl Iterator<Item = &'a [u8; STAT_NAME_LEN]> + Clone,
    name: &str,
    what: &'static str,
) -> Result<usize, StatsFull> {
    let key = encode_name(name);
    let existing = names.clone().position(|n| n[0] != 0 && *n == key);
    existing
        .or_else(|| names.clone().position(|n| n[0] == 0))
        .ok_or_else(|| StatsFull {
            what,
            name: name.to_owned(),
        })
}

fn encode_name(name: &str) -> [u8; STAT_NAME_LEN] {
    encode_text(name)
}

/// `text` cut at the last char boundary that fits, NUL-padded (no terminator when full).
fn encode_text<const N: usize>(text: &str) -> [u8; N] {
    let mut end = text.len().min(N);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = [0u8; N];
    out[..end].copy_from_slice(&text.as_bytes()[..end]);
    out
}

/// The text up to the first NUL; bytes that are not UTF-8 (a foreign or corrupt writer) end it.
fn decode_text(bytes: &[u8]) -> &str {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let bytes = &bytes[..end];
    match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => std::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_truncated_at_a_char_boundary_without_panicking() {
        let cases: &[(&str, &str)] = &[
            ("fps", "fps"),
            ("exactly_twenty_four_byte", "exactly_twenty_four_byte"),
            (
                "a_name_that_is_much_longer_than_24",
                "a_name_that_is_much_long",
            ),
            // 23 ASCII bytes then a 2-byte char: the char would straddle byte 24, so it goes.
            ("aaaaaaaaaaaaaaaaaaaaaaaé", "aaaaaaaaaaaaaaaaaaaaaaa"),
            ("ééééééééééééééé", "éééééééééééé"),
            ("", ""),
        ];
        for (name, stored) in cases {
            let mut stats = ServiceStats::new(1, 0);
            stats.set_counter(name, 7).unwrap();
            let names: Vec<_> = stats.counters().map(|(n, _)| n.to_owned()).collect();
            if stored.is_empty() {
                assert!(names.is_empty(), "an empty name reads as an unused slot");
            } else {
                assert_eq!(names, vec![stored.to_string()], "name {name:?}");
                assert_eq!(
                    stats.counter(name),
                    Some(7),
                    "lookup by the untruncated name {name:?}"
                );
            }
        }
    }

    #[test]
    fn counters_and_gauges_update_in_place_and_refuse_a_seventeenth_name() {
        let mut stats = ServiceStats::new(42, 1_000);
        assert_eq!(stats.state(), Some(ServiceState::Starting));
        stats.add_counter("frames", 3).unwrap();
        stats.add_counter("frames", 4).unwrap();
        assert_eq!(stats.counter("frames"), Some(7));
        for i in 1..STAT_SLOTS {
            stats.set_counter(&format!("c{i}"), i as u64).unwrap();
        }
        let full = stats.set_counter("one_too_many", 1).unwrap_err();
        assert_eq!(full.what, "counter");
        stats.set_counter("frames", 100).unwrap();
        assert_eq!(
            stats.counter("frames"),
            Some(100),
            "an existing name still updates when full"
        );

        stats.set_gauge("fps", 29.97).unwrap();
        stats.set_gauge("fps", 30.0).unwrap();
        assert_eq!(stats.gauges().collect::<Vec<_>>(), vec![("fps", 30.0)]);
        assert_eq!(stats.gauge("loss_pct"), None);
    }

    #[test]
    fn text_fields_truncate_and_decode_invalid_bytes_safely() {
        let mut stats = ServiceStats::new(1, 0);
        let long = "x".repeat(200);
        stats.set_last_error(&long);
        assert_eq!(stats.last_error().len(), STAT_TEXT_LEN);
        stats.set_status_line("30.0 fps, q80");
        assert_eq!(stats.status_line(), "30.0 fps, q80");
        stats.set_last_error("");
        assert_eq!(stats.last_error(), "");

        let mut raw = [0u8; 8];
        raw[..4].copy_from_slice(&[b'o', b'k', 0xff, b'!']);
        assert_eq!(decode_text(&raw), "ok");
    }

    #[test]
    fn state_words_round_trip_and_unknown_words_read_as_none() {
        for state in [
            ServiceState::Starting,
            ServiceState::Running,
            ServiceState::Stopping,
            ServiceState::Failed,
        ] {
            assert_eq!(ServiceState::from_word(state as u32), Some(state));
        }
        assert_eq!(ServiceStats::default().state(), None);
        assert_eq!(ServiceState::from_word(99), None);
    }
}
