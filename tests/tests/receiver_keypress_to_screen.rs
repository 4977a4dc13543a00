//! How fast mashing shows: from a burst of key presses written into mash-input's FIFO to the
//! first picture on the (headless) screen that was encoded at a higher quality. Runs mash-input,
//! net-rx and display as processes over loopback UDP with a test sender that encodes at the
//! quality net-rx asks for; prints the figures and fails if any trial takes longer than a
//! second.

use std::io::Write;
use std::time::{Duration, SystemTime};

use keymash_input::InputEvent;
use keymash_tests::receiver::{ReceiverSetup, LETTER_KEYS};

const TRIALS: usize = 4;
const PLAYOUT_DELAY_MS: u64 = 50;

#[test]
fn a_burst_of_keys_reaches_the_screen_as_higher_quality_within_a_second() {
    let setup = ReceiverSetup::new(
        "rx-keyscreen",
        &format!(
            "[display]\noutput = \"frames:{{dir}}/shown\"\nplayout_delay_ms = {PLAYOUT_DELAY_MS}\n[input]\nsource = \"fifo:{{dir}}/keys\"\n"
        ),
    );
    let _mash_input = setup.start("keymash-mash-input");
    let _net_rx = setup.start("keymash-net-rx");
    let _display = setup.start("keymash-display");
    let mut sender = setup.sender();
    let mut pipe = std::fs::OpenOptions::new().write(true).open(setup.dir.join("keys")).expect("FIFO");
    let burst: Vec<u8> = LETTER_KEYS[..20]
        .iter()
        .flat_map(|&k| [InputEvent::key(k, 1).to_bytes(), InputEvent::key(k, 0).to_bytes()])
        .flatten()
        .collect();

    let mut to_sender = Vec::new();
    let mut to_screen = Vec::new();
    for trial in 0..TRIALS {
        // The previous burst leaves the 3 s mash window first.
        sender.stream_at_requested_quality(Duration::from_millis(3500));
        let rest = sender.requested_quality();
        assert_eq!(rest.get(), 10, "trial {trial}: quality at rest");
        let pressed = SystemTime::now();
        pipe.write_all(&burst).expect("write the burst");
        let sent = sender.stream_at_requested_quality(Duration::from_millis(1000));
        let first = sent.iter().find(|f| f.quality > rest).expect("a frame at higher quality was sent");
        to_sender.push(first.encoded_at.duration_since(pressed).unwrap_or_default());
        let file = setup.dir.join("shown").join(format!("frame-{:08}.ppm", first.frame.0));
        // Later frames may show first if this one was merged into the next presentation.
        let shown = sent
            .iter()
            .filter(|f| f.frame >= first.frame)
            .find_map(|f| std::fs::metadata(setup.dir.join("shown").join(format!("frame-{:08}.ppm", f.frame.0))).ok())
            .and_then(|m| m.modified().ok())
            .unwrap_or_else(|| panic!("{} (or a later frame) was never shown", file.display()));
        to_screen.push(shown.duration_since(pressed).unwrap_or_default());
    }
    to_sender.sort();
    to_screen.sort();
    eprintln!(
        "keypress -> sender encodes at higher quality: {:?}; -> on screen (incl. {PLAYOUT_DELAY_MS} ms playout delay): {:?}",
        to_sender, to_screen
    );
    assert!(to_screen.iter().all(|d| *d < Duration::from_secs(1)), "{to_screen:?}");
}
