//! The headless display output shows exactly what the installation is about: blocks of lost
//! packets keep their old content (the glitch), and without loss the picture is as clear as the
//! codec makes it. Runs net-rx and display as real processes, fed over loopback UDP by a test
//! sender that leaves out chosen payloads.

use std::time::Duration;

use keymash_codec::frame::{psnr_from_squared_error, squared_error};
use keymash_codec::{Decoder, I420Frame};
use keymash_core::{FrameNo, Quality};
use keymash_tests::receiver::{
    crop_picture, differing_macroblocks, payload_macroblocks, read_tagged_y4m, test_picture,
    ReceiverSetup, SentFrame,
};

/// The border the test configures; a multiple of 8, so the headless canvas uses it as is.
const BORDER: usize = 16;
const FRAMES: u64 = 40;

fn psnr(a: &I420Frame, b: &I420Frame) -> f64 {
    let se =
        squared_error(a.y(), b.y()) + squared_error(a.u(), b.u()) + squared_error(a.v(), b.v());
    psnr_from_squared_error(se, (a.y().len() + a.u().len() + a.v().len()) as u64)
}

/// Streams `FRAMES` frames (leaving out payload `drop_index` of every frame `drop_every`-th frame, if
/// set) through net-rx and display, and returns what was sent and what display wrote.
fn run(
    tag: &str,
    drop: Option<(u64, u16)>,
) -> (ReceiverSetup, Vec<SentFrame>, Vec<(FrameNo, I420Frame)>) {
    let setup = ReceiverSetup::new(
        tag,
        &format!("[display]\noutput = \"y4m:{{dir}}/shown.y4m\"\nglow_border_px = {BORDER}\nplayout_max_ms = 50\n"),
    );
    let _net_rx = setup.start("keymash-net-rx");
    let mut display = setup.start("keymash-display");
    let mut sender = setup.sender();
    let quality = Quality::new(75).expect("valid quality");
    let mut sent = Vec::new();
    for n in 1..=FRAMES {
        let picture = test_picture(sender.geometry(), n);
        let frame = sender.send_frame(&picture, quality, |index| {
            drop.is_some_and(|(every, which)| n > 3 && n % every == 0 && index == which)
        });
        assert_eq!(frame.frame, FrameNo(n));
        sent.push(frame);
    }
    // The last frame is the newest, so display shows it: waited for (with a deadline) rather
    // than assumed after a fixed time, which a loaded machine can stretch.
    let output = setup.dir.join("shown.y4m");
    let waiting = std::time::Instant::now();
    let header_written =
        |path: &std::path::Path| std::fs::read(path).is_ok_and(|bytes| bytes.contains(&b'\n'));
    while !header_written(&output)
        || read_tagged_y4m(&output)
            .last()
            .is_none_or(|(f, _)| *f < FrameNo(FRAMES))
    {
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "display did not show frame {FRAMES}, the last sent, within 10 s"
        );
        sender.idle(Duration::from_millis(50));
    }
    display
        .terminate(Duration::from_secs(2))
        .expect("display stops cleanly");
    let shown = read_tagged_y4m(&setup.dir.join("shown.y4m"));
    (setup, sent, shown)
}

#[test]
fn headless_output_shows_stale_blocks_exactly_where_payloads_were_lost() {
    let (setup, sent, shown) = run("rx-glitch", Some((4, 1)));
    let geometry = setup.geometry();
    assert!(
        shown.len() >= (FRAMES as usize) * 2 / 3,
        "display showed only {} of {FRAMES} frames",
        shown.len()
    );

    // What a receiver that got exactly the delivered payloads must show after each frame.
    let mut mirror = Decoder::new(geometry);
    let mut after_frame = Vec::new();
    for frame in &sent {
        for payload in frame.delivered() {
            mirror.apply(payload).unwrap();
        }
        after_frame.push(mirror.frame().clone());
    }
    let mut glitched_frames_checked = 0;
    for (frame_no, canvas) in &shown {
        let index = usize::try_from(frame_no.0 - 1).unwrap();
        let picture = crop_picture(canvas, BORDER, geometry);
        assert!(
            picture == after_frame[index],
            "frame {frame_no}: display differs from the delivered payloads"
        );
        let frame = &sent[index];
        if frame.dropped.is_empty() {
            continue;
        }
        // Against the frame as it was sent, the picture differs exactly in the lost blocks.
        let mut clean = Decoder::new(geometry);
        for payload in &frame.payloads {
            clean.apply(payload).unwrap();
        }
        let mut lost: Vec<usize> = frame
            .payloads
            .iter()
            .filter(|p| {
                keymash_codec::PayloadHeader::parse(p)
                    .is_ok_and(|h| frame.dropped.contains(&h.payload_index))
            })
            .flat_map(|p| payload_macroblocks(p, geometry))
            .collect();
        lost.sort_unstable();
        assert!(!lost.is_empty());
        assert_eq!(
            differing_macroblocks(&picture, clean.frame()),
            lost,
            "frame {frame_no}: stale blocks"
        );
        glitched_frames_checked += 1;
    }
    assert!(
        glitched_frames_checked >= 4,
        "only {glitched_frames_checked} frames with loss were shown"
    );
}

#[test]
fn without_loss_the_displayed_picture_is_as_clear_as_the_codec_makes_it() {
    let (setup, sent, shown) = run("rx-clear", None);
    let geometry = setup.geometry();
    assert!(
        shown.len() >= (FRAMES as usize) * 2 / 3,
        "display showed only {} of {FRAMES} frames",
        shown.len()
    );
    for (frame_no, canvas) in &shown {
        let index = usize::try_from(frame_no.0 - 1).unwrap();
        let source = test_picture(geometry, frame_no.0);
        let mut codec = Decoder::new(geometry);
        for payload in &sent[index].payloads {
            codec.apply(payload).unwrap();
        }
        let codec_psnr = psnr(codec.frame(), &source);
        let shown_psnr = psnr(&crop_picture(canvas, BORDER, geometry), &source);
        assert!(
            shown_psnr >= codec_psnr - 0.5,
            "frame {frame_no}: shown at {shown_psnr:.2} dB, the codec alone gives {codec_psnr:.2} dB"
        );
    }
}
