//! The mash model: how hard visitors are mashing the keyboard, as a [`MashLevel`].
//!
//! As in the original installation: every key press in a sliding window (3 s) scores one point,
//! but a key pressed again inside the window scores less each time (holding one key down or
//! drumming on the space bar is not mashing), and the score saturates. The level is the score
//! as a fraction of the saturation score. Key releases and autorepeat are the caller's business:
//! feed only presses.
//!
//! Pure and deterministic: time comes in as a parameter.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::units::MashLevel;

/// Parameters of the mash model (`[mash]` in the configuration file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MashModelConfig {
    /// Key presses count for this long.
    pub window_ms: u32,
    /// Score (about key presses in the window) at which the level saturates at 1.0.
    pub saturation_score: f64,
    /// The n-th repeat of a key inside the window scores `1 - n * repeat_penalty` (not below 0).
    pub repeat_penalty: f64,
}

impl Default for MashModelConfig {
    fn default() -> Self {
        // 45 points in 3 s is 15 varied keys a second: hard, but a group of visitors gets there.
        MashModelConfig {
            window_ms: 3000,
            saturation_score: 45.0,
            repeat_penalty: 0.04,
        }
    }
}

/// A key, as the input layer numbers it (evdev key codes in practice).
pub type KeyCode = u16;

/// Upper bound on presses kept, so a stuck or malicious input device cannot grow memory: at the
/// saturation rate a window holds far fewer.
const MAX_PRESSES_IN_WINDOW: usize = 4096;

/// The sliding window of key presses and the score computed from it.
#[derive(Debug, Clone)]
pub struct MashMeter {
    config: MashModelConfig,
    window: Duration,
    presses: VecDeque<(KeyCode, Instant)>,
    repeats: HashMap<KeyCode, u32>,
}

impl MashMeter {
    pub fn new(config: MashModelConfig) -> Self {
        let window = Duration::from_millis(u64::from(config.window_ms));
        MashMeter {
            config,
            window,
            presses: VecDeque::new(),
            repeats: HashMap::new(),
        }
    }

    /// A key went down at `at`. Presses must come in time order; an older one is treated as
    /// happening at the newest time seen, so a clock step back cannot corrupt the window.
    pub fn press(&mut self, key: KeyCode, at: Instant) {
        let at = self.presses.back().map_or(at, |&(_, last)| at.max(last));
        if self.presses.len() == MAX_PRESSES_IN_WINDOW {
            self.presses.pop_front();
        }
        self.presses.push_back((key, at));
    }

    /// The score of the presses within the window ending at `now`.
    pub fn score(&mut self, now: Instant) -> f64 {
        while let Some(&(_, at)) = self.presses.front() {
            if now.saturating_duration_since(at) > self.window {
                self.presses.pop_front();
            } else {
                break;
            }
        }
        self.repeats.clear();
        let mut score = 0.0;
        for &(key, _) in &self.presses {
            let seen = self.repeats.entry(key).or_insert(0);
            score += (1.0 - f64::from(*seen) * self.config.repeat_penalty).max(0.0);
            *seen += 1;
        }
        score
    }

    /// The mash level at `now`: the score as a fraction of the saturation score.
    pub fn level(&mut self, now: Instant) -> MashLevel {
        let score = self.score(now);
        MashLevel::saturating((score / self.config.saturation_score) as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter() -> MashMeter {
        MashMeter::new(MashModelConfig::default())
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn nobody_mashing_is_level_zero() {
        let mut m = meter();
        assert_eq!(m.level(Instant::now()), MashLevel::IDLE);
    }

    #[test]
    fn varied_keys_score_one_each() {
        let mut m = meter();
        let t0 = Instant::now();
        for i in 0..10u16 {
            m.press(i, t0 + ms(u64::from(i) * 10));
        }
        assert!((m.score(t0 + ms(100)) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn repeating_one_key_scores_less_each_time() {
        let mut m = meter();
        let t0 = Instant::now();
        for i in 0..3 {
            m.press(30, t0 + ms(i * 10));
        }
        // 1 + 0.96 + 0.92
        assert!((m.score(t0 + ms(50)) - 2.88).abs() < 1e-9);
    }

    #[test]
    fn a_key_held_long_enough_stops_scoring() {
        let mut m = meter();
        let t0 = Instant::now();
        for i in 0..40 {
            m.press(57, t0 + ms(i * 50));
        }
        // Repeats 25.. score nothing: the sum is 1 + 0.96 + ... + 0.04 = 13.
        assert!((m.score(t0 + ms(2000)) - 13.0).abs() < 1e-9);
    }

    #[test]
    fn presses_leave_the_window_after_three_seconds() {
        let mut m = meter();
        let t0 = Instant::now();
        m.press(1, t0);
        m.press(2, t0 + ms(2000));
        assert!((m.score(t0 + ms(2999)) - 2.0).abs() < 1e-9);
        assert!((m.score(t0 + ms(3001)) - 1.0).abs() < 1e-9);
        assert!((m.score(t0 + ms(5001)) - 0.0).abs() < 1e-9);
    }

    #[test]
    fn twelve_varied_keys_a_second_reach_level_point_eight() {
        let mut m = meter();
        let t0 = Instant::now();
        let mut now = t0;
        for i in 0..60u64 {
            now = t0 + ms(i * 1000 / 12);
            m.press((i % 26) as u16, now);
        }
        let level = m.level(now).get();
        assert!((0.7..=0.85).contains(&level), "level {level}");
    }

    #[test]
    fn the_level_saturates_at_one() {
        let mut m = meter();
        let t0 = Instant::now();
        for i in 0..200u16 {
            m.press(i, t0 + ms(u64::from(i)));
        }
        assert_eq!(m.level(t0 + ms(300)), MashLevel::FULL);
    }

    #[test]
    fn an_out_of_order_press_does_not_corrupt_the_window() {
        let mut m = meter();
        let t0 = Instant::now() + ms(10_000);
        m.press(1, t0);
        m.press(2, t0 - ms(5000));
        assert!((m.score(t0 + ms(100)) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn a_flood_of_presses_is_bounded_in_memory() {
        let mut m = meter();
        let t0 = Instant::now();
        for i in 0..(MAX_PRESSES_IN_WINDOW as u64 * 3) {
            m.press((i % 100) as u16, t0);
        }
        assert_eq!(m.presses.len(), MAX_PRESSES_IN_WINDOW);
        assert_eq!(m.level(t0), MashLevel::FULL);
    }
}
