//! Keystrokes raise the picture quality: `struct input_event` records written into mash-input's
//! FIFO (12 varied keys a second) raise the mash level in the mash cell, net-rx's feedback asks
//! the sender for a higher quality, and the frames get bigger. Autorepeat does not count.

use std::fs::OpenOptions;
use std::io::Write;
use std::time::{Duration, Instant};

use keymash_input::event::{KEY_AUTOREPEAT, KEY_PRESSED};
use keymash_input::InputEvent;
use keymash_tests::receiver::{ReceiverSetup, SentFrame, TestSender};

/// Letter keys (evdev codes of Q..P, A..L, Z..M): varied mashing.
const KEYS: [u16; 26] = [16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 30, 31, 32, 33, 34, 35, 36, 37, 38, 44, 45, 46, 47, 48, 49, 50];

fn mean_bytes(frames: &[SentFrame]) -> f64 {
    frames.iter().map(|f| f.bytes as f64).sum::<f64>() / frames.len().max(1) as f64
}

/// Streams while a thread writes `events_per_second` records of `value` for `duration`.
fn stream_while_typing(setup: &ReceiverSetup, sender: &mut TestSender, value: i32, events_per_second: u32, duration: Duration) -> Vec<SentFrame> {
    let fifo = setup.dir.join("keys");
    let typist = std::thread::spawn(move || {
        let mut pipe = OpenOptions::new().write(true).open(&fifo).expect("open the FIFO");
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed() < duration {
            let key = KEYS[n as usize % KEYS.len()];
            let mut bytes = InputEvent::key(key, value).to_bytes().to_vec();
            if value == KEY_PRESSED {
                bytes.extend(InputEvent::key(key, 0).to_bytes());
            }
            pipe.write_all(&bytes).expect("write key events");
            n += 1;
            std::thread::sleep(Duration::from_secs(1) / events_per_second);
        }
    });
    let sent = sender.stream_at_requested_quality(duration);
    typist.join().expect("typist thread");
    sent
}

#[test]
fn twelve_varied_keys_a_second_raise_the_mash_level_the_requested_quality_and_the_frame_size() {
    let setup = ReceiverSetup::new("rx-keys", "[input]\nsource = \"fifo:{dir}/keys\"\n");
    let _mash_input = setup.start("keymash-mash-input");
    let _net_rx = setup.start("keymash-net-rx");
    let mut sender = setup.sender();

    // Nobody mashing, but a key held down (autorepeat at 30/s): still idle.
    let idle = stream_while_typing(&setup, &mut sender, KEY_AUTOREPEAT, 30, Duration::from_secs(2));
    let level = setup.mash().expect("mash-input publishes the mash cell").level().get();
    assert_eq!(level, 0.0, "autorepeat must not count as mashing");
    let quality_at_rest = sender.requested_quality();
    assert_eq!(quality_at_rest.get(), 10, "net-rx asks for quality.at_rest with nobody mashing");
    let bytes_at_rest = mean_bytes(&idle[idle.len() / 2..]);

    let mashing = stream_while_typing(&setup, &mut sender, KEY_PRESSED, 12, Duration::from_secs(4));
    let record = setup.mash().expect("mash cell");
    assert!(record.level().get() >= 0.6, "12 varied keys/s for 4 s: mash level {}", record.level().get());
    assert!(record.presses_total() >= 40, "presses counted: {}", record.presses_total());
    let quality = sender.requested_quality();
    assert!(quality.get() >= 55, "requested quality while mashing: {quality}");
    let bytes_mashing = mean_bytes(&mashing[mashing.len() * 3 / 4..]);
    assert!(
        bytes_mashing > 1.5 * bytes_at_rest,
        "bytes per frame {bytes_mashing:.0} while mashing vs {bytes_at_rest:.0} at rest"
    );
}
