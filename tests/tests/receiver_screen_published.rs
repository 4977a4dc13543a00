//! The display publishes what it presents into the `screen` segment (for keymash-web and
//! keymash-archive): every new picture, exactly as shown, with its frame number, the quality it
//! was coded at and how many of its payloads arrived; and the signal-lost card when it shows.
//! Runs net-rx and display as real processes, fed over loopback UDP by a test sender that leaves
//! out chosen payloads, and reads the segment as the web service does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keymash_codec::I420Frame;
use keymash_core::config::VideoConfig;
use keymash_core::{FrameNo, Quality};
use keymash_pipeline::{ScreenSlot, SCREEN};
use keymash_shm::RingReader;
use keymash_tests::receiver::{crop_picture, read_tagged_y4m, test_picture, ReceiverSetup};

const BORDER: usize = 16;
const FRAMES: u64 = 30;
/// Every fifth frame loses its second payload.
const LOSSY_EVERY: u64 = 5;

/// Every slot a reader took from the screen ring, by frame number (the last one of a frame
/// wins: the card repeats the last frame's number).
#[derive(Default)]
struct Seen {
    slots: Vec<(ScreenSlot, Vec<u8>)>,
}

fn read_screen(setup: &ReceiverSetup, video: VideoConfig, stop: Arc<AtomicBool>) -> Seen {
    let id = setup.segment(SCREEN);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reader = loop {
        match RingReader::open(&id) {
            Ok(reader) => break reader,
            Err(e) => {
                assert!(Instant::now() < deadline, "no screen segment: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    let mut seen = Seen::default();
    let mut buf = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if reader.next(Duration::from_millis(50)).is_err() {
            continue;
        }
        let Ok(meta) = reader.read_into(&mut buf) else {
            continue;
        };
        let slot = ScreenSlot::read(&meta, &video, buf.len()).expect("a screen slot");
        seen.slots.push((slot, buf.clone()));
    }
    seen
}

#[test]
fn every_picture_shown_is_published_with_its_quality_and_payloads_then_the_card() {
    let setup = ReceiverSetup::new(
        "rx-screen",
        &format!(
            "[display]\noutput = \"y4m:{{dir}}/shown.y4m\"\nglow_border_px = {BORDER}\n\
             playout_max_ms = 50\nsignal_lost_ms = 400\n"
        ),
    );
    let geometry = setup.geometry();
    let video = VideoConfig {
        width: geometry.width() as u32,
        height: geometry.height() as u32,
        fps: 30,
    };
    let _net_rx = setup.start("keymash-net-rx");
    let mut display = setup.start("keymash-display");
    let stop = Arc::new(AtomicBool::new(false));
    let seen = std::thread::scope(|scope| {
        let reader = scope.spawn(|| read_screen(&setup, video, stop.clone()));
        // The reader attaches before the first frame, so it sees every one.
        std::thread::sleep(Duration::from_millis(300));
        let mut sender = setup.sender();
        let quality = Quality::new(60).expect("valid quality");
        let mut sent = BTreeMap::new();
        for n in 1..=FRAMES {
            let picture = test_picture(geometry, n);
            let frame = sender.send_frame(&picture, quality, |index| {
                n % LOSSY_EVERY == 0 && index == 1
            });
            sent.insert(frame.frame, (frame.payloads.len(), frame.dropped.len()));
        }
        // Then silence: after signal_lost_ms the card shows, and is published once.
        let waiting = Instant::now();
        while display_card_count(&setup) == 0 {
            assert!(
                waiting.elapsed() < Duration::from_secs(10),
                "no signal-lost card within 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        let seen = reader.join().expect("reader thread");
        (seen, sent)
    });
    let (seen, sent) = seen;
    display
        .terminate(Duration::from_secs(2))
        .expect("display stops cleanly");
    let shown = read_tagged_y4m(&setup.dir.join("shown.y4m"));

    let live: Vec<&(ScreenSlot, Vec<u8>)> = seen.slots.iter().filter(|(s, _)| !s.card).collect();
    let cards: Vec<&(ScreenSlot, Vec<u8>)> = seen.slots.iter().filter(|(s, _)| s.card).collect();
    assert!(
        live.len() >= shown.len().saturating_sub(1) && !live.is_empty(),
        "{} pictures published, {} shown",
        live.len(),
        shown.len()
    );
    let mut compared = 0;
    let mut lossy = 0;
    for (frame_no, canvas) in &shown {
        let Some((slot, bytes)) = live.iter().rev().find(|(s, _)| s.frame == *frame_no) else {
            continue;
        };
        let picture = crop_picture(canvas, BORDER, geometry);
        let published = I420Frame::from_planes(
            geometry,
            bytes[..picture.y().len()].to_vec(),
            bytes[picture.y().len()..picture.y().len() + picture.u().len()].to_vec(),
            bytes[picture.y().len() + picture.u().len()..].to_vec(),
        )
        .expect("a whole picture");
        assert!(
            published == picture,
            "frame {frame_no}: the published picture differs from the one shown"
        );
        assert_eq!(slot.quality, Some(Quality::new(60).unwrap()), "{frame_no}");
        let (total, dropped) = sent[frame_no];
        assert_eq!(usize::from(slot.payloads_total), total, "{frame_no}");
        assert_eq!(
            usize::from(slot.payloads_arrived),
            total - dropped,
            "{frame_no}: payloads arrived"
        );
        lossy += usize::from(dropped > 0);
        compared += 1;
    }
    assert!(
        compared >= (FRAMES as usize) * 2 / 3,
        "only {compared} of {FRAMES} frames compared"
    );
    assert!(lossy >= 3, "only {lossy} lossy frames compared");
    // Presentation times go forward.
    assert!(live
        .windows(2)
        .all(|w| w[0].0.presented_ns <= w[1].0.presented_ns));

    assert_eq!(cards.len(), 1, "the card is published once, when it shows");
    let (card, _) = cards[0];
    assert_eq!(card.quality, None);
    assert_eq!(
        card.frame,
        FrameNo(FRAMES),
        "the card follows the last frame"
    );
}

fn display_card_count(setup: &ReceiverSetup) -> u64 {
    setup
        .counter(keymash_pipeline::Service::Display, "signal_lost")
        .unwrap_or(0)
}
