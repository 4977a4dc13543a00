//! RTP timestamps come from the frames' capture times at 90 kHz, also for frames captured long
//! before the sender started (the 30 s delay buffer, a restarted net-tx).

use std::time::{Duration, Instant};

use keymash_core::FrameNo;
use keymash_transport::{Sender, TransportConfig};

#[test]
fn timestamps_follow_capture_times_at_90_khz_even_before_the_sender_started() {
    let start = Instant::now() + Duration::from_secs(60);
    let mut sender = Sender::new(TransportConfig::default(), 7, start).unwrap();
    let payload: &[&[u8]] = &[b"x"];
    // (capture time relative to the sender's start in ms, sign)
    let offsets: &[i64] = &[-30_000, -29_967, 0, 33, 1000];
    let stamps: Vec<u32> = offsets
        .iter()
        .enumerate()
        .map(|(i, &ms)| {
            let capture = if ms < 0 {
                start - Duration::from_millis(ms.unsigned_abs())
            } else {
                start + Duration::from_millis(ms as u64)
            };
            sender
                .push_frame(start, FrameNo(i as u64), capture, payload)
                .unwrap()
                .rtp_timestamp
        })
        .collect();
    for (w, o) in stamps.windows(2).zip(offsets.windows(2)) {
        let ticks = w[1].wrapping_sub(w[0]);
        let want = ((o[1] - o[0]) * 90) as u32;
        assert!(
            ticks.abs_diff(want) <= 1,
            "{} ms apart gave {ticks} ticks, want {want}",
            o[1] - o[0]
        );
    }
}

#[test]
fn frames_without_payloads_or_with_oversized_ones_are_refused() {
    let now = Instant::now();
    let mut sender = Sender::new(TransportConfig::default(), 7, now).unwrap();
    assert_eq!(
        sender.push_frame(now, FrameNo(0), now, &[]),
        Err(keymash_transport::SendError::EmptyFrame)
    );
    let big = vec![0u8; 1189];
    assert!(matches!(
        sender.push_frame(now, FrameNo(0), now, &[b"ok", &big]),
        Err(keymash_transport::SendError::PayloadTooLarge {
            index: 1,
            len: 1189,
            max: 1188
        })
    ));
    assert_eq!(
        sender.queued_packets(),
        0,
        "a refused frame must not be half-queued"
    );
}
