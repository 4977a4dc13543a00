//! The capture age travels from the sender to every media payload the receiver hands out (RFC
//! 8285 header extension), taken as each packet leaves: pacing and a late poll are counted, so
//! the receiver can count from the packet's arrival. A generated picture (the countdown card)
//! carries none, and a retransmission resends the very bytes sent first.

use std::time::{Duration, Instant};

use keymash_core::key::PreSharedKey;
use keymash_core::FrameNo;
use keymash_transport::rtp::{CaptureAge, RtpPacket};
use keymash_transport::{
    Protection, Receiver, Recovery, Sender, Transmit, TransmitKind, TransportConfig,
};

fn configs() -> [(&'static str, TransportConfig); 2] {
    let protected = TransportConfig {
        security: Protection::PreShared(PreSharedKey::from_bytes([7; 32])),
        ..TransportConfig::default()
    };
    [
        ("unprotected", TransportConfig::default()),
        ("protected", protected),
    ]
}

/// Polls `sender` at `at` and hands everything to `receiver`; the media packets' departures.
fn poll(sender: &mut Sender, receiver: &mut Receiver, at: Instant) -> Vec<Transmit> {
    let mut media = Vec::new();
    while let Some(t) = sender.poll_transmit(at) {
        receiver.handle_datagram(at, &t.contents);
        if t.kind == TransmitKind::Media {
            media.push(t);
        }
    }
    // The receiver's feedback confirms the sender's session (protected) as it would live.
    while let Some(t) = receiver.poll_transmit(at) {
        sender.handle_datagram(at, &t.contents);
    }
    media
}

#[test]
fn every_media_payload_carries_its_frames_age_when_it_left_and_a_card_none() {
    for (name, config) in configs() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut sender = Sender::new(config.clone(), 7, t0).unwrap();
        let mut receiver = Receiver::new(config.clone(), 8, t0).unwrap();
        // Let the protected sessions confirm each other first.
        for i in 0..5 {
            poll(
                &mut sender,
                &mut receiver,
                t0 + Duration::from_millis(10 * i),
            );
        }
        let payloads: &[&[u8]] = &[b"one", b"two", b"three"];
        let spread = config.frame_spread;
        let mut got = Vec::new();
        let mut want = Vec::new();
        // (video?, the frame's age when queued)
        let frames = [(true, 30_000u64), (false, 5), (true, 30_033)];
        for (i, &(video, age_ms)) in frames.iter().enumerate() {
            let queued = t0 + Duration::from_millis(100 + 40 * i as u64);
            let capture = queued - Duration::from_millis(age_ms);
            let frame = FrameNo(i as u64 + 1);
            if video {
                sender.push_frame(queued, frame, capture, payloads).unwrap();
            } else {
                sender
                    .push_generated_frame(queued, frame, capture, payloads)
                    .unwrap();
            }
            // Each packet's slot is a third of the spread apart; poll each one 1.3 ms late.
            for k in 0..payloads.len() as u32 {
                let at = queued + spread / 3 * k + Duration::from_micros(1300);
                for _ in poll(&mut sender, &mut receiver, at) {
                    let age = video.then(|| CaptureAge::new(at - capture));
                    want.push((i, age));
                }
            }
            while let Some(p) = receiver.poll_payload(queued + spread * 2) {
                assert_eq!(p.recovery, Recovery::Direct);
                got.push((i, p.capture_age));
            }
        }
        assert_eq!(want.len(), frames.len() * payloads.len(), "{name}");
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn a_retransmission_resends_the_bytes_first_sent_with_their_age() {
    let config = TransportConfig {
        nack: true,
        security: Protection::PreShared(PreSharedKey::from_bytes([7; 32])),
        ..TransportConfig::default()
    };
    let t0 = Instant::now() + Duration::from_secs(100);
    let mut sender = Sender::new(config.clone(), 7, t0).unwrap();
    let mut receiver = Receiver::new(config.clone(), 8, t0).unwrap();
    for i in 0..5 {
        poll(
            &mut sender,
            &mut receiver,
            t0 + Duration::from_millis(10 * i),
        );
    }
    let queued = t0 + Duration::from_millis(100);
    let capture = queued - Duration::from_millis(1000);
    // Ten payloads of 1000 bytes: their share earns the retransmission's budget.
    let payload = [0x5A; 1000];
    let payloads: Vec<&[u8]> = vec![&payload[..]; 10];
    sender
        .push_frame(queued, FrameNo(1), capture, &payloads)
        .unwrap();
    // The second packet is lost on the way (the first starts the receiver's window); the
    // others arrive.
    let (mut media, mut lost) = (0, None);
    let mut at = queued;
    while at < queued + config.frame_spread * 2 {
        while let Some(t) = sender.poll_transmit(at) {
            if t.kind == TransmitKind::Media {
                media += 1;
                if media == 2 {
                    lost = Some((at, t.contents));
                    continue;
                }
            }
            receiver.handle_datagram(at, &t.contents);
        }
        at += Duration::from_millis(1);
    }
    let (left_at, first) = lost.expect("the second packet left");
    // Feedback with the NACK, then the retransmission.
    let mut resent = None;
    for _ in 0..200 {
        at += Duration::from_millis(1);
        while let Some(t) = receiver.poll_transmit(at) {
            sender.handle_datagram(at, &t.contents);
        }
        while let Some(t) = sender.poll_transmit(at) {
            if t.kind == TransmitKind::Retransmission {
                resent = Some(t.contents.clone());
            }
            receiver.handle_datagram(at, &t.contents);
        }
        if resent.is_some() {
            break;
        }
    }
    let resent = resent.expect("retransmitted after the NACK");
    assert_eq!(resent, first, "the very bytes sealed when it first left");
    // Its clear header still says the age it had when it first left.
    let age = RtpPacket::parse(&resent[..resent.len() - 28])
        .expect("clear header")
        .capture_age;
    assert_eq!(age, Some(CaptureAge::new(left_at - capture)));
    assert!(
        left_at > queued,
        "paced: the second packet left after the first"
    );
    let mut recovered = Vec::new();
    while let Some(p) = receiver.poll_payload(at) {
        recovered.push((p.recovery, p.capture_age.is_some()));
    }
    let mut want = vec![(Recovery::Direct, true); 10];
    want[1].0 = Recovery::Nack;
    assert_eq!(recovered, want);
}
