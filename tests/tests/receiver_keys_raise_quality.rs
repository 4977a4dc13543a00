//! Keystrokes raise the picture quality: `struct input_event` records written into mash-input's
//! FIFO (12 varied keys a second) raise the mash level in the mash cell, net-rx's feedback asks
//! the sender for a higher quality, and the frames get bigger. Autorepeat does not count.
//!
//! The mash level is judged from every value mash-input stored in its cell (watched by a
//! thread), not from one look at the end, and against what the mash model gives for the keys
//! the typist was scheduled to press: a loaded machine changes when the test looks, not what
//! the product computes.

use std::time::{Duration, Instant};

use keymash_core::config::QualityCurveConfig;
use keymash_core::curves::QualityCurve;
use keymash_core::MashLevel;
use keymash_input::event::{KEY_AUTOREPEAT, KEY_PRESSED};
use keymash_pipeline::{MashRecord, MASH_CELL};
use keymash_tests::receiver::{
    type_records_into_fifo, typist_level, CellWatch, ReceiverSetup, SentFrame, TestSender,
};

const KEYS_PER_SECOND: u32 = 12;
const MASHING: Duration = Duration::from_secs(4);

fn mean_bytes(frames: &[SentFrame]) -> f64 {
    frames.iter().map(|f| f.bytes as f64).sum::<f64>() / frames.len().max(1) as f64
}

/// Streams while a thread writes `events_per_second` records of `value` for `duration`.
fn stream_while_typing(
    setup: &ReceiverSetup,
    sender: &mut TestSender,
    value: i32,
    events_per_second: u32,
    duration: Duration,
) -> Vec<SentFrame> {
    let typist = type_records_into_fifo(setup.dir.join("keys"), value, events_per_second, duration);
    let sent = sender.stream_at_requested_quality(duration);
    typist.join().expect("typist thread");
    sent
}

/// The highest level among the cell's stores from `from` on.
fn peak_level(stores: &[(u64, MashRecord)], from: usize) -> f32 {
    stores[from..]
        .iter()
        .map(|(_, r)| r.level().get())
        .fold(0.0, f32::max)
}

#[test]
fn twelve_varied_keys_a_second_raise_the_mash_level_the_requested_quality_and_the_frame_size() {
    let setup = ReceiverSetup::new("rx-keys", "[input]\nsource = \"fifo:{dir}/keys\"\n");
    let _mash_input = setup.start("keymash-mash-input");
    let mash = CellWatch::<MashRecord>::start(setup.segment(MASH_CELL));
    let _net_rx = setup.start("keymash-net-rx");
    let mut sender = setup.sender();

    // Nobody mashing, but a key held down (autorepeat at 30/s): still idle, all along.
    let idle = stream_while_typing(
        &setup,
        &mut sender,
        KEY_AUTOREPEAT,
        30,
        Duration::from_secs(2),
    );
    let stores = mash.stores();
    assert!(!stores.is_empty(), "mash-input publishes the mash cell");
    assert_eq!(
        peak_level(&stores, 0),
        0.0,
        "autorepeat must not count as mashing"
    );
    let quality_at_rest = sender.requested_quality();
    assert_eq!(
        quality_at_rest.get(),
        10,
        "net-rx asks for quality.at_rest with nobody mashing"
    );
    let bytes_at_rest = mean_bytes(&idle[idle.len() / 2..]);

    let mashing_from = stores.len();
    let mashing = stream_while_typing(&setup, &mut sender, KEY_PRESSED, KEYS_PER_SECOND, MASHING);
    // Every press counted, and only the presses (not the autorepeat, not the releases): wait
    // for mash-input to have read the last ones.
    let typed = u64::from(KEYS_PER_SECOND) * MASHING.as_secs();
    let deadline = Instant::now() + Duration::from_secs(2);
    while setup.mash().map(|r| r.presses_total()) != Some(typed) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        setup.mash().map(|r| r.presses_total()),
        Some(typed),
        "presses counted by mash-input"
    );

    // The model gives 0.81 for these keys (37 presses in its 3 s window, 11 of them repeats).
    // A typist or mash-input woken late can push a few presses out of the window at its peak:
    // 0.1 is four and a half presses, 375 ms of lateness at 12 keys/s.
    let expected = typist_level(KEYS_PER_SECOND, MASHING);
    let peak = peak_level(&mash.stores(), mashing_from);
    assert!(peak >= expected - 0.1, "{KEYS_PER_SECOND} varied keys/s for {MASHING:?}: peak mash level {peak}, the model gives {expected}");
    // net-rx asks for the quality its curve gives at that level (10 + 80 x level by default).
    let curve = QualityCurve::from_config(&QualityCurveConfig::default());
    let least = curve.quality(MashLevel::new(expected - 0.1).expect("a level"));
    let asked = mashing
        .iter()
        .map(|f| f.quality)
        .max()
        .expect("frames sent while mashing");
    assert!(
        asked >= least,
        "highest quality asked for while mashing: {asked} (the curve gives {least} at level {})",
        expected - 0.1
    );
    let bytes_mashing = mean_bytes(&mashing[mashing.len() * 3 / 4..]);
    eprintln!(
        "peak mash level {peak:.3} (model {expected:.3}), highest quality asked {asked} (curve floor {least}), \
         {bytes_mashing:.0} B/frame vs {bytes_at_rest:.0} at rest"
    );
    assert!(
        bytes_mashing > 1.5 * bytes_at_rest,
        "bytes per frame {bytes_mashing:.0} while mashing vs {bytes_at_rest:.0} at rest"
    );
}
