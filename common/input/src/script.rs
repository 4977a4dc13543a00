//! The scripted mash pattern: key presses over time without a keyboard, for the demo and tests.
//!
//! Syntax (`input.source = "script:PATTERN"`):
//!
//! ```text
//! PATTERN := SEGMENT ("," SEGMENT)*
//! SEGMENT := START "-" END "s:" RATE "/s"      e.g. 0-10s:0/s  or  2.5-4s:12/s
//! ```
//!
//! Times are seconds from the start (decimals allowed), rates are key presses per second.
//! Segments must come in time order and must not overlap; time not covered by any segment has no
//! presses. When the last segment ends the pattern starts again from 0, so the demo runs for as
//! long as the service does. Presses cycle through the 26 letter keys, so the mash model scores
//! them as varied mashing (not as one key held down).
//!
//! ```
//! use keymash_input::MashScript;
//! let script: MashScript = "0-10s:0/s,10-20s:12/s,20-30s:4/s".parse()?;
//! assert_eq!(script.period_seconds(), 30.0);
//! assert_eq!(script.presses_by(15.0), 60);
//! # Ok::<(), keymash_input::ScriptError>(())
//! ```

use std::str::FromStr;
use std::time::Instant;

use keymash_core::mash::KeyCode;

/// Faster than this no group of visitors can press keys; a higher rate is a typo.
pub const MAX_RATE_PER_SECOND: f64 = 200.0;

/// The shortest segment: a millisecond, the resolution a script is played at. A segment of
/// 5e-324 s once parsed, and the player divided the time by it into infinitely many presses
/// (mash-input died allocating them, and systemd restarted it into the same death).
pub const MIN_SEGMENT_SECONDS: f64 = 0.001;

/// Evdev codes of the letter keys (`KEY_Q`..`KEY_P`, `KEY_A`..`KEY_L`, `KEY_Z`..`KEY_M`), the keys
/// a scripted visitor presses in turn.
const LETTER_KEYS: [KeyCode; 26] = [
    16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 30, 31, 32, 33, 34, 35, 36, 37, 38, 44, 45, 46, 47, 48,
    49, 50,
];

/// Why a pattern was refused. Segments are numbered from 1 as a person counts them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScriptError {
    #[error("the mash pattern is empty; expected segments like \"0-10s:12/s\"")]
    Empty,
    #[error("segment {segment} {text:?} is not START-ENDs:RATE/s (e.g. \"0-10s:12/s\")")]
    Malformed { segment: usize, text: String },
    #[error("segment {segment}: {what} {text:?} is not a number")]
    NotANumber {
        segment: usize,
        what: &'static str,
        text: String,
    },
    #[error("segment {segment}: {what} {value} must be a finite number of at least 0")]
    Negative {
        segment: usize,
        what: &'static str,
        value: f64,
    },
    #[error("segment {segment}: it must end after it starts ({start}s-{end}s)")]
    EndNotAfterStart {
        segment: usize,
        start: f64,
        end: f64,
    },
    #[error(
        "segment {segment} starts at {start}s, before the previous one ends at {previous_end}s"
    )]
    Overlap {
        segment: usize,
        start: f64,
        previous_end: f64,
    },
    #[error("segment {segment}: {rate}/s is faster than the {MAX_RATE_PER_SECOND}/s anyone can press keys")]
    RateTooHigh { segment: usize, rate: f64 },
    #[error(
        "segment {segment}: {start:?}s-{end:?}s is shorter than {MIN_SEGMENT_SECONDS}s, the shortest a script plays"
    )]
    TooShort {
        segment: usize,
        start: f64,
        end: f64,
    },
}

/// One stretch of constant mashing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    pub start_seconds: f64,
    pub end_seconds: f64,
    pub presses_per_second: f64,
}

impl Segment {
    /// Presses of this segment up to `t` seconds into a cycle (fractional).
    fn presses_by(&self, t: f64) -> f64 {
        let covered = (t.min(self.end_seconds) - self.start_seconds).max(0.0);
        covered * self.presses_per_second
    }
}

/// A validated pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct MashScript {
    segments: Vec<Segment>,
}

impl MashScript {
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Length of one cycle: the end of the last segment.
    pub fn period_seconds(&self) -> f64 {
        self.segments.last().map_or(0.0, |s| s.end_seconds)
    }

    fn presses_per_cycle(&self) -> f64 {
        self.segments
            .iter()
            .map(|s| s.presses_by(s.end_seconds))
            .sum()
    }

    /// Whole presses due from the start to `elapsed_seconds`, cycles included.
    pub fn presses_by(&self, elapsed_seconds: f64) -> u64 {
        let period = self.period_seconds();
        // A parsed script's period is > 0 (every segment ends after it starts at or after 0).
        if elapsed_seconds.is_nan() || elapsed_seconds <= 0.0 || period <= 0.0 {
            return 0;
        }
        let cycles = (elapsed_seconds / period).floor();
        let within = elapsed_seconds - cycles * period;
        let partial: f64 = self.segments.iter().map(|s| s.presses_by(within)).sum();
        // A tiny epsilon keeps 12/s * 0.5 s from landing at 5.999999 presses.
        (cycles * self.presses_per_cycle() + partial + 1e-9).floor() as u64
    }

    /// The rate at `elapsed_seconds` (0 between segments).
    pub fn rate_at(&self, elapsed_seconds: f64) -> f64 {
        let period = self.period_seconds();
        if elapsed_seconds.is_nan() || elapsed_seconds < 0.0 || period <= 0.0 {
            return 0.0;
        }
        let within = elapsed_seconds % period;
        self.segments
            .iter()
            .find(|s| s.start_seconds <= within && within < s.end_seconds)
            .map_or(0.0, |s| s.presses_per_second)
    }
}

fn number(segment: usize, what: &'static str, text: &str) -> Result<f64, ScriptError> {
    let value: f64 = text.trim().parse().map_err(|_| ScriptError::NotANumber {
        segment,
        what,
        text: text.trim().to_owned(),
    })?;
    if !value.is_finite() || value < 0.0 {
        return Err(ScriptError::Negative {
            segment,
            what,
            value,
        });
    }
    Ok(value)
}

impl FromStr for MashScript {
    type Err = ScriptError;

    fn from_str(pattern: &str) -> Result<Self, ScriptError> {
        if pattern.trim().is_empty() {
            return Err(ScriptError::Empty);
        }
        let mut segments: Vec<Segment> = Vec::new();
        for (i, text) in pattern.split(',').enumerate() {
            let segment = i + 1;
            let malformed = || ScriptError::Malformed {
                segment,
                text: text.trim().to_owned(),
            };
            let (span, rate) = text.split_once(':').ok_or_else(malformed)?;
            let span = span.trim().strip_suffix('s').ok_or_else(malformed)?;
            let rate = rate.trim().strip_suffix("/s").ok_or_else(malformed)?;
            let (start, end) = span.split_once('-').ok_or_else(malformed)?;
            let start_seconds = number(segment, "start", start)?;
            let end_seconds = number(segment, "end", end)?;
            let presses_per_second = number(segment, "rate", rate)?;
            if end_seconds <= start_seconds {
                return Err(ScriptError::EndNotAfterStart {
                    segment,
                    start: start_seconds,
                    end: end_seconds,
                });
            }
            // The tolerance keeps "1000.001-1000.002s", a millisecond, from being refused for
            // its rounding.
            if end_seconds - start_seconds < MIN_SEGMENT_SECONDS * 0.999 {
                return Err(ScriptError::TooShort {
                    segment,
                    start: start_seconds,
                    end: end_seconds,
                });
            }
            if let Some(previous) = segments.last() {
                if start_seconds < previous.end_seconds {
                    return Err(ScriptError::Overlap {
                        segment,
                        start: start_seconds,
                        previous_end: previous.end_seconds,
                    });
                }
            }
            if presses_per_second > MAX_RATE_PER_SECOND {
                return Err(ScriptError::RateTooHigh {
                    segment,
                    rate: presses_per_second,
                });
            }
            segments.push(Segment {
                start_seconds,
                end_seconds,
                presses_per_second,
            });
        }
        Ok(MashScript { segments })
    }
}

/// Plays a [`MashScript`] from a start time: each [`ScriptPlayer::poll`] returns the presses
/// that fell due since the previous one.
#[derive(Debug, Clone)]
pub struct ScriptPlayer {
    script: MashScript,
    start: Instant,
    emitted: u64,
}

impl ScriptPlayer {
    pub fn new(script: MashScript, start: Instant) -> Self {
        ScriptPlayer {
            script,
            start,
            emitted: 0,
        }
    }

    pub fn script(&self) -> &MashScript {
        &self.script
    }

    /// Key presses due by `now` and not returned before, each with its key.
    pub fn poll(&mut self, now: Instant) -> Vec<KeyCode> {
        let elapsed = now.saturating_duration_since(self.start).as_secs_f64();
        let due = self.script.presses_by(elapsed);
        let new = due.saturating_sub(self.emitted);
        let keys = (self.emitted..self.emitted + new)
            .map(|n| LETTER_KEYS[(n % LETTER_KEYS.len() as u64) as usize])
            .collect();
        self.emitted = self.emitted.max(due);
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn valid_patterns_parse_into_segments() {
        type Spans = &'static [(f64, f64, f64)];
        let table: [(&str, Spans); 3] = [
            (
                "0-10s:0/s,10-20s:12/s,20-30s:4/s",
                &[(0.0, 10.0, 0.0), (10.0, 20.0, 12.0), (20.0, 30.0, 4.0)],
            ),
            (" 2.5-4s:12.5/s ", &[(2.5, 4.0, 12.5)]),
            ("0-1s:1/s, 5-6s:2/s", &[(0.0, 1.0, 1.0), (5.0, 6.0, 2.0)]),
        ];
        for (pattern, want) in table {
            let script: MashScript = pattern.parse().unwrap();
            let got: Vec<_> = script
                .segments()
                .iter()
                .map(|s| (s.start_seconds, s.end_seconds, s.presses_per_second))
                .collect();
            assert_eq!(got, want, "{pattern}");
        }
    }

    #[test]
    fn bad_patterns_are_refused_with_the_segment_and_cause() {
        let table = [
            ("", ScriptError::Empty),
            (
                "0-10:12/s",
                ScriptError::Malformed {
                    segment: 1,
                    text: "0-10:12/s".into(),
                },
            ),
            (
                "0-10s:12",
                ScriptError::Malformed {
                    segment: 1,
                    text: "0-10s:12".into(),
                },
            ),
            (
                "0-10s:12/s,,",
                ScriptError::Malformed {
                    segment: 2,
                    text: "".into(),
                },
            ),
            (
                "0-xs:1/s",
                ScriptError::NotANumber {
                    segment: 1,
                    what: "end",
                    text: "x".into(),
                },
            ),
            (
                "0-1s:-3/s",
                ScriptError::Negative {
                    segment: 1,
                    what: "rate",
                    value: -3.0,
                },
            ),
            (
                "5-5s:1/s",
                ScriptError::EndNotAfterStart {
                    segment: 1,
                    start: 5.0,
                    end: 5.0,
                },
            ),
            (
                "0-10s:1/s,9-12s:1/s",
                ScriptError::Overlap {
                    segment: 2,
                    start: 9.0,
                    previous_end: 10.0,
                },
            ),
            (
                "0-1s:500/s",
                ScriptError::RateTooHigh {
                    segment: 1,
                    rate: 500.0,
                },
            ),
            (
                "0-5e-324s:200/s",
                ScriptError::TooShort {
                    segment: 1,
                    start: 0.0,
                    end: 5e-324,
                },
            ),
            (
                "0-1s:1/s,2-2.0005s:1/s",
                ScriptError::TooShort {
                    segment: 2,
                    start: 2.0,
                    end: 2.0005,
                },
            ),
        ];
        for (pattern, want) in table {
            assert_eq!(pattern.parse::<MashScript>(), Err(want), "{pattern}");
        }
        // A millisecond is the shortest segment, wherever it lies.
        for pattern in ["0-0.001s:200/s", "1000.001-1000.002s:200/s"] {
            assert!(pattern.parse::<MashScript>().is_ok(), "{pattern}");
        }
        // f64 parses "nan" and "inf": refused as not finite numbers.
        for pattern in ["0-1s:nan/s", "0-infs:1/s"] {
            assert!(
                matches!(
                    pattern.parse::<MashScript>(),
                    Err(ScriptError::Negative { .. })
                ),
                "{pattern}"
            );
        }
    }

    #[test]
    fn presses_accumulate_by_rate_and_the_pattern_repeats() {
        let script: MashScript = "0-10s:0/s,10-20s:12/s,20-30s:4/s".parse().unwrap();
        let table = [
            (0.0, 0),
            (10.0, 0),
            (10.5, 6),
            (20.0, 120),
            (25.0, 140),
            (30.0, 160),
            (40.5, 166),
            (60.0, 320),
        ];
        for (t, want) in table {
            assert_eq!(script.presses_by(t), want, "at {t}s");
        }
        assert_eq!(script.rate_at(15.0), 12.0);
        assert_eq!(script.rate_at(45.0), 12.0);
        assert_eq!(script.rate_at(5.0), 0.0);
    }

    #[test]
    fn the_player_hands_out_each_press_once_with_varied_keys() {
        let script: MashScript = "0-2s:13/s".parse().unwrap();
        let t0 = Instant::now();
        let mut player = ScriptPlayer::new(script, t0);
        let mut keys = Vec::new();
        for ms in (0..=2000).step_by(10) {
            keys.extend(player.poll(t0 + Duration::from_millis(ms)));
        }
        assert_eq!(keys.len(), 26);
        let mut distinct = keys.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 26, "13/s for 2 s presses every letter once");
    }
}
