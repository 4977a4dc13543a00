//! The protected link end to end on the virtual clock: forged, replayed and injected packets
//! change nothing, NACK cannot amplify, mutated packets never authenticate, restarted senders
//! never repeat a nonce, and a wrong key is named.

#[path = "support/security.rs"]
mod fixtures;
mod support;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use fixtures::{endpoint, key, nack_for_newest, protected, receiver_report, video_header};
use keymash_core::{FrameNo, MashLevel, Quality};
use keymash_transport::fec::SplitMix64;
use keymash_transport::rtcp::{self, KeymashApp};
use keymash_transport::rtp::{RtpHeader, RtpPacket};
use keymash_transport::security::{
    sealed_identity, Direction, SecurityAlarm, SessionSalt, RTP_OVERHEAD,
};
use keymash_transport::{Protection, Receiver, Sender, Ssrc, TransmitKind, TransportConfig};
use support::{LossModel, Pair};

/// A protected pair on links of 10 ms each way, the forward one as `forward` says, the way back
/// lossless.
fn protected_pair(nack: bool, forward: LossModel, seed: u64) -> Pair {
    Pair::new(
        protected(nack),
        forward,
        LossModel::None,
        Duration::from_millis(10),
        seed,
    )
}

/// Everything the sender put on the forward link, as an eavesdropper records it.
fn recording_link() -> (LossModel, Rc<RefCell<Vec<Vec<u8>>>>) {
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = Rc::clone(&log);
    (
        LossModel::Chosen(Box::new(move |_, d| {
            l.borrow_mut().push(d.to_vec());
            false
        })),
        log,
    )
}

#[test]
fn a_protected_stream_arrives_byte_identical_once_both_sessions_are_confirmed() {
    let mut pair = protected_pair(false, LossModel::None, 11);
    pair.run_frames(60, Duration::from_secs(3));
    pair.assert_delivered_payloads_are_byte_identical();
    // Media before the receiver confirmed the sender's session (about one feedback round trip,
    // here 20 ms plus a frame's spread) is authenticated but not used.
    assert!(
        pair.delivered.len() >= 58 * 20,
        "delivered {}",
        pair.delivered.len()
    );
    let stats = pair.receiver.stats(pair.now);
    assert_eq!(
        (stats.auth_failed, stats.replayed, stats.lost),
        (0, 0, 0),
        "{stats:?}"
    );
    assert!(pair.receiver.security_alarm(pair.now).is_none());
}

#[test]
fn forged_replayed_and_injected_packets_reach_nothing_and_are_counted() {
    let (recorder, recorded) = recording_link();
    let mut pair = protected_pair(false, recorder, 12);
    pair.run_frames(30, Duration::from_secs(1));
    let ssrc = pair.receiver.sender_stream().expect("locked on").media_ssrc;
    let delivered_before = pair.delivered.len();
    let stats_before = pair.receiver.stats(pair.now);

    let mut forged = 0;
    let mut replayed = 0;
    let t = pair.now;
    // (a) Replays of every recorded packet, media, repair and sender reports alike.
    for d in recorded.borrow().iter() {
        pair.inject.push((t + Duration::from_millis(1), d.clone()));
        replayed += 1;
    }
    // (b) Valid-looking RTP with the live SSRC and a payload of our own, 5000 and 32768 ahead,
    // unsealed and sealed under another key.
    let mut other = endpoint(8, Direction::SenderToReceiver, [9; 8]);
    for ahead in [1u16, 5000, 32768] {
        let seq = (ahead as u64) + 0x1_0000;
        let header = RtpHeader {
            marker: true,
            timestamp: 1,
            ..video_header(seq as u16, ssrc)
        };
        let plain = header.to_packet(b"SPOOFED picture payload");
        let mut sealed = plain.clone();
        other.seal_rtp(&mut sealed, seq).unwrap();
        pair.inject.push((t + Duration::from_millis(2), plain));
        pair.inject.push((t + Duration::from_millis(2), sealed));
        forged += 2;
    }
    // (c) A recorded packet with its payload swapped for another picture: its counter was seen,
    // so it is dropped as a replay before the (failing) authentication is even tried.
    let mut swapped = recorded
        .borrow()
        .iter()
        .find(|d| RtpPacket::parse(d).is_ok_and(|p| p.payload_type == 96))
        .unwrap()
        .clone();
    swapped[20] ^= 0xFF;
    pair.inject.push((t + Duration::from_millis(3), swapped));
    replayed += 1;
    pair.run_frames(30, Duration::from_secs(2));

    pair.assert_delivered_payloads_are_byte_identical();
    let seqs: Vec<u64> = pair.delivered.iter().map(|(_, p)| p.seq.get()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "every payload delivered once, in order"
    );
    assert!(
        pair.delivered.len() >= delivered_before + 29 * 20,
        "the live stream went on"
    );
    let stats = pair.receiver.stats(pair.now);
    assert_eq!(
        stats.auth_failed - stats_before.auth_failed,
        forged,
        "{stats:?}"
    );
    assert_eq!(
        stats.replayed - stats_before.replayed,
        replayed,
        "{stats:?}"
    );
    assert_eq!(
        (stats.jumped, stats.lost, stats.stream_switches),
        (0, 0, 0),
        "the window never moved for them: {stats:?}"
    );
    assert_eq!(
        pair.receiver.sender_stream().map(|s| s.media_ssrc),
        Some(ssrc)
    );
}

#[test]
fn forged_feedback_changes_no_quality_and_forged_nacks_resend_nothing() {
    let mut pair = protected_pair(true, LossModel::None, 13);
    pair.receiver
        .set_feedback(Quality::new(20).unwrap(), MashLevel::IDLE);
    pair.run_frames(30, Duration::from_secs(1));
    assert_eq!(pair.sender.requested_quality(pair.now).get(), 20);
    let media_ssrc = pair.sender.stream_ids().media_ssrc;
    let first = pair.sender.stats().clone();
    let auth_before = pair.sender.security_stats().unwrap().auth_failed;

    // An RTCP APP asking for quality 100, and a NACK for 8,000 packets, unsealed and sealed
    // under another key.
    let mut other = endpoint(8, Direction::ReceiverToSender, [5; 8]);
    let mut sent = 0;
    for sealed in [false, true] {
        let mut app = receiver_report(Ssrc(1));
        rtcp::app::write(
            Ssrc(1),
            &KeymashApp {
                quality: Quality::new(100).unwrap(),
                mash: MashLevel::FULL,
            },
            &mut app,
        )
        .unwrap();
        let newest = pair.sender.stats().media_sent as u16;
        let nack = nack_for_newest(media_ssrc, newest, 8000);
        for mut d in [app, nack] {
            if sealed {
                other.seal_rtcp(&mut d).unwrap();
            }
            pair.sender.handle_datagram(pair.now, &d);
            sent += 1;
        }
    }
    assert_eq!(
        pair.sender.requested_quality(pair.now).get(),
        20,
        "the forged APP changed the quality"
    );
    assert_eq!(
        pair.sender.stats().nacks_received,
        first.nacks_received,
        "a forged NACK was looked at"
    );
    assert_eq!(pair.sender.stats().retransmitted, first.retransmitted);
    assert_eq!(
        pair.sender.security_stats().unwrap().auth_failed - auth_before,
        sent
    );
    assert_eq!(
        pair.sender.security_alarm(pair.now),
        None,
        "the real receiver still authenticates"
    );
}

/// A receiver that holds the key but misbehaves: the bounds hold even for authenticated NACKs.
#[test]
fn authenticated_nack_floods_are_bounded_per_packet_per_rtt_and_by_rate() {
    let config = protected(true);
    let t0 = Instant::now();
    let mut sender = Sender::new(config.clone(), 21, t0).unwrap();
    let mut evil = endpoint(7, Direction::ReceiverToSender, [4; 8]);
    let media_ssrc = sender.stream_ids().media_ssrc;
    let ms = Duration::from_millis;
    let mut now = t0;
    let mut resends: HashMap<u16, Vec<Instant>> = HashMap::new();
    let (mut media_bytes, mut resent_bytes) = (0u64, 0u64);
    let mut frame = FrameNo(0);
    let payload = vec![0xAB; 1000];
    let mut max_queued = 0;
    let mut newest = 0u16;
    while now < t0 + Duration::from_secs(5) {
        if (now - t0).as_millis().is_multiple_of(33) {
            let refs: Vec<&[u8]> = (0..20).map(|_| &payload[..]).collect();
            newest = sender
                .push_frame(now, frame, now, &refs)
                .unwrap()
                .last_seq
                .wire();
            frame = frame.next();
        }
        // Every 10 ms, an authenticated NACK for the newest 4,000 packets.
        if (now - t0).as_millis() % 10 == 5 {
            let mut nack = nack_for_newest(media_ssrc, newest, 4000);
            evil.seal_rtcp(&mut nack).unwrap();
            sender.handle_datagram(now, &nack);
        }
        while let Some(t) = sender.poll_transmit(now) {
            match t.kind {
                TransmitKind::Media => {
                    media_bytes += t.contents.len() as u64;
                    if sealed_identity(&t.contents).is_some() && !evil.peer_confirmed() {
                        // Learn the sender's session, so our RTCP echoes it and is trusted.
                        let _ = evil.open(now, &t.contents);
                    }
                }
                TransmitKind::Retransmission => {
                    resent_bytes += t.contents.len() as u64;
                    let seq = u16::from_be_bytes([t.contents[2], t.contents[3]]);
                    resends.entry(seq).or_default().push(now);
                }
                TransmitKind::Rtcp => {
                    let _ = evil.open(now, &t.contents);
                }
                TransmitKind::Repair => {}
            }
        }
        max_queued = max_queued.max(sender.queued_packets());
        now += ms(1);
    }
    let stats = sender.stats().clone();
    assert!(
        stats.retransmitted > 0,
        "the authenticated NACKs were served at all: {stats:?}"
    );
    let cap = config.retransmit_share * media_bytes as f64
        + keymash_transport::config::RETRANSMIT_BURST_BYTES;
    assert!(
        (resent_bytes as f64) <= cap,
        "resent {resent_bytes} B of {media_bytes} B media, cap {cap}"
    );
    assert!(
        resent_bytes as f64
            <= 0.15 * media_bytes as f64 * 1.2 + keymash_transport::config::RETRANSMIT_BURST_BYTES
    );
    for (seq, times) in &resends {
        assert!(
            times.len() <= usize::from(config.max_retransmits_per_packet),
            "packet {seq} resent {} times",
            times.len()
        );
        for w in times.windows(2) {
            assert!(
                w[1] - w[0] >= config.initial_rtt,
                "packet {seq} resent twice within an RTT: {:?}",
                w[1] - w[0]
            );
        }
    }
    assert!(
        max_queued <= config.max_urgent_packets + 40,
        "queue grew to {max_queued}"
    );
    assert!(
        stats.retransmit_capped > 0 && stats.retransmit_refused > 0,
        "{stats:?}"
    );
}

/// Property: whatever is changed in a sealed packet (bit flips, bytes, truncation, extension,
/// splices of two packets), it never authenticates.
#[test]
fn random_mutations_of_sealed_packets_never_authenticate() {
    let t0 = Instant::now();
    let mut tx = endpoint(3, Direction::SenderToReceiver, [1; 8]);
    let mut rng = SplitMix64::new(0x5EA1);
    let mut sealed = Vec::new();
    for i in 0..64u64 {
        let len = rng.below(1188);
        let payload: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let header = RtpHeader {
            marker: i % 7 == 0,
            timestamp: 9,
            ..video_header(i as u16, Ssrc(2 | (i as u32 & 1)))
        };
        let mut p = header.to_packet(&payload);
        tx.seal_rtp(&mut p, 0x1_0000 + i).unwrap();
        sealed.push(p);
        let mut r = receiver_report(Ssrc(2));
        tx.seal_rtcp(&mut r).unwrap();
        sealed.push(r);
    }
    let originals: HashSet<Vec<u8>> = sealed.iter().cloned().collect();
    let cases = 200_000;
    let mut rx = endpoint(3, Direction::ReceiverToSender, [2; 8]);
    let mut tried = 0;
    for _ in 0..cases {
        let base = &sealed[rng.below(sealed.len())];
        let mut m = base.clone();
        match rng.below(6) {
            0 => {
                let i = rng.below(m.len());
                m[i] ^= 1 << rng.below(8);
            }
            1 => {
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(m.len());
                    m[i] = rng.next_u64() as u8;
                }
            }
            2 => m.truncate(rng.below(m.len())),
            3 => m.extend((0..1 + rng.below(32)).map(|_| rng.next_u64() as u8)),
            4 => {
                let other = &sealed[rng.below(sealed.len())];
                let cut = rng.below(m.len().min(other.len()));
                m[cut..]
                    .iter_mut()
                    .zip(&other[cut..])
                    .for_each(|(a, b)| *a = *b);
            }
            _ => {
                // Header fields: sequence number, SSRC, payload type, flags.
                let i = [0usize, 1, 2, 3, 8, 11][rng.below(6)];
                m[i] = m[i].wrapping_add(1 + rng.below(255) as u8);
            }
        }
        if originals.contains(&m) {
            continue;
        }
        tried += 1;
        assert!(
            rx.open(t0, &m).is_err(),
            "a mutated packet authenticated: {m:?}"
        );
    }
    assert!(tried > cases * 9 / 10);
    assert_eq!(rx.stats().auth_failed + rx.stats().replayed, tried as u64);
}

/// A sender started 100 times under one key: every packet's (session salt, nonce) is new, so no
/// key ever sees a nonce twice (retransmissions resend identical bytes and are left out).
#[test]
fn a_sender_restarted_100_times_never_repeats_a_nonce() {
    let mut seen: HashSet<(SessionSalt, [u8; 12])> = HashSet::new();
    let mut salts = HashSet::new();
    let payload = vec![1u8; 900];
    let mut packets = 0;
    for start in 0..100u64 {
        let t0 = Instant::now();
        // The same seed every time, the worst case for SSRC and sequence numbers: only the
        // session salt (random per start in net-tx) differs.
        let salt = SessionSalt::new(SplitMix64::new(0xD1CE ^ start).next_u64().to_le_bytes());
        let config = TransportConfig {
            fec: true,
            ..protected(true)
        };
        let mut sender = Sender::with_salt(config, 42, salt, t0).unwrap();
        assert!(salts.insert(salt));
        let mut now = t0;
        for f in 0..10 {
            let refs: Vec<&[u8]> = (0..12).map(|_| &payload[..]).collect();
            sender.push_frame(now, FrameNo(f), now, &refs).unwrap();
            for _ in 0..34 {
                while let Some(t) = sender.poll_transmit(now) {
                    if t.kind == TransmitKind::Retransmission {
                        continue;
                    }
                    let (s, nonce) = sealed_identity(&t.contents).expect("every packet is sealed");
                    assert_eq!(s, salt);
                    assert!(
                        seen.insert((s, nonce)),
                        "start {start}: nonce {nonce:?} repeated under one key"
                    );
                    packets += 1;
                }
                now += Duration::from_millis(1);
            }
        }
    }
    assert!(packets > 100 * 10 * 12, "{packets}");
}

#[test]
fn a_receiver_with_another_key_names_the_problem_and_delivers_nothing() {
    let t0 = Instant::now();
    let mut sender = Sender::new(protected(false), 31, t0).unwrap();
    let mut receiver = Receiver::new(
        TransportConfig {
            security: Protection::PreShared(key(99)),
            ..TransportConfig::default()
        },
        32,
        t0,
    )
    .unwrap();
    let payload = vec![7u8; 500];
    let mut now = t0;
    while now < t0 + Duration::from_millis(500) {
        if (now - t0).as_millis().is_multiple_of(33) {
            sender
                .push_frame(now, FrameNo(0), now, &[&payload[..]])
                .unwrap();
        }
        while let Some(t) = sender.poll_transmit(now) {
            receiver.handle_datagram(now, &t.contents);
        }
        while let Some(t) = receiver.poll_transmit(now) {
            sender.handle_datagram(now, &t.contents);
        }
        assert!(receiver.poll_payload(now).is_none());
        now += Duration::from_millis(1);
    }
    assert_eq!(
        receiver.security_alarm(now),
        Some(SecurityAlarm::KeyMismatch)
    );
    assert_eq!(sender.security_alarm(now), Some(SecurityAlarm::KeyMismatch));
    assert!(SecurityAlarm::KeyMismatch
        .to_string()
        .contains("check that both PCs have the same key"));
    assert!(receiver.stats(now).auth_failed > 10);
}

#[test]
fn the_overhead_is_28_bytes_per_rtp_packet() {
    let t0 = Instant::now();
    let mut plain = Sender::new(TransportConfig::default(), 1, t0).unwrap();
    let mut sealed = Sender::new(protected(false), 1, t0).unwrap();
    let payload = vec![3u8; 1188];
    plain
        .push_frame(t0, FrameNo(1), t0, &[&payload[..]])
        .unwrap();
    sealed
        .push_frame(t0, FrameNo(1), t0, &[&payload[..]])
        .unwrap();
    let later = t0 + Duration::from_millis(20);
    let media = |s: &mut Sender| {
        std::iter::from_fn(|| s.poll_transmit(later))
            .find(|t| t.kind == TransmitKind::Media)
            .unwrap()
    };
    let (a, b) = (media(&mut plain), media(&mut sealed));
    assert_eq!(b.contents.len() - a.contents.len(), RTP_OVERHEAD);
    assert_eq!(
        a.contents[..12],
        b.contents[..12],
        "the header stays as it was"
    );
}
