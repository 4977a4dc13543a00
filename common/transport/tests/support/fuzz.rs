//! Seeded mutation fuzzing of every parser, on stable Rust: valid packets from our own writers
//! are mutated (bit flips, byte stores, truncation, extension, splices, length-field values)
//! and fed to each parser and to both endpoints. A panic anywhere is the failure; parsers must
//! also uphold their own invariants (round trips, consistent lengths).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use keymash_core::{MashLevel, Quality};
use keymash_transport::fec::{FecEncoder, FecOverhead, RepairPacket, SplitMix64};
use keymash_transport::rtcp::{
    self, parse_compound, validate_compound, KeymashApp, ReportBlockFields,
};
use keymash_transport::rtp::{PayloadType, RtpHeader, RtpPacket, Ssrc};
use keymash_transport::{Receiver, Sender, TransportConfig};

/// Valid datagrams of every kind keymash sends.
pub(crate) fn corpus() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let media = Ssrc(0x1000);
    for (i, len) in [0usize, 1, 100, 1188].into_iter().enumerate() {
        let h = RtpHeader {
            payload_type: PayloadType::DYNAMIC_VIDEO,
            marker: i % 2 == 1,
            seq: 65534u16.wrapping_add(i as u16),
            timestamp: 9000,
            ssrc: media,
        };
        out.push(h.to_packet(&vec![i as u8; len]));
    }
    let sources: Vec<Vec<u8>> = (0..6).map(|i| vec![i as u8 + 1; 10 + i * 30]).collect();
    let refs: Vec<&[u8]> = sources.iter().map(Vec::as_slice).collect();
    for (i, r) in FecEncoder::new(FecOverhead::new(0.5).unwrap_or(FecOverhead::DEFAULT), 5)
        .encode_frame(65534, &refs)
        .iter()
        .enumerate()
    {
        let h = RtpHeader {
            payload_type: PayloadType::DYNAMIC_REPAIR,
            marker: false,
            seq: i as u16,
            timestamp: 9000,
            ssrc: Ssrc(0x1001),
        };
        out.push(h.to_packet(r));
    }
    let block = ReportBlockFields {
        ssrc: media,
        fraction_lost: 3,
        cumulative_lost: 7,
        extended_highest_seq: 70000,
        jitter: 12,
        last_sr: 5,
        delay_since_last_sr: 6,
    };
    let mut compound = Vec::new();
    let _ = rtcp::rr::write(Ssrc(2), &[block], &mut compound);
    let _ = rtcp::nack::write(
        Ssrc(2),
        media,
        &rtcp::nack::entries_for([1u16, 3, 40]),
        &mut compound,
    );
    let _ = rtcp::app::write(
        Ssrc(2),
        &KeymashApp {
            quality: Quality::MAX,
            mash: MashLevel::FULL,
        },
        &mut compound,
    );
    out.push(compound);
    let mut sr = Vec::new();
    let _ = rtcp::sr::write(
        &rtcp::sr::SenderInfoFields {
            ssrc: media,
            ntp_timestamp: 1 << 32,
            rtp_timestamp: 1,
            packet_count: 2,
            octet_count: 3,
        },
        &[block, block],
        &mut sr,
    );
    out.push(sr);
    out
}

/// Mutate `input` with 1..=4 random operations.
pub(crate) fn mutate(rng: &mut SplitMix64, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut d = input.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(9) {
            0 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            1 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] = [0, 1, 0x7F, 0x80, 0xFF, 200, 201, 204, 205][rng.below(9)];
            }
            2 if !d.is_empty() => d.truncate(rng.below(d.len())),
            3 => d.extend((0..rng.below(64)).map(|_| rng.next_u64() as u8)),
            4 => {
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(d.len() + 1);
                let from = rng.below(other.len() + 1);
                d.truncate(cut);
                d.extend_from_slice(&other[from..]);
            }
            5 if d.len() >= 4 => {
                // A 16-bit length-like field anywhere, often an RTCP length word.
                let i = if rng.below(2) == 0 {
                    2
                } else {
                    rng.below(d.len() - 1)
                };
                let v = [
                    0u16,
                    1,
                    2,
                    3,
                    0xFFFF,
                    (d.len() / 4) as u16,
                    (d.len() / 4) as u16 + 1,
                ][rng.below(7)];
                d[i..i + 2].copy_from_slice(&v.to_be_bytes());
            }
            6 if !d.is_empty() => {
                // Flags byte: toggle padding / extension / CSRC count bits.
                d[0] ^= [0x20, 0x10, 0x0F, 0x01, 0x1F][rng.below(5)];
            }
            7 => d = (0..rng.below(80)).map(|_| rng.next_u64() as u8).collect(),
            _ => {
                let other = corpus[rng.below(corpus.len())].clone();
                d.extend_from_slice(&other);
            }
        }
    }
    d
}

/// Checks one datagram against every standalone parser and its invariants.
pub(crate) fn check_parsers(d: &[u8]) {
    if let Ok(p) = RtpPacket::parse(d) {
        assert!(
            p.payload.len() + 12 <= d.len(),
            "RTP payload longer than the datagram"
        );
        if d[0] & 0x3F == 0 {
            // No padding, extension or CSRCs: writing it back must give the same bytes.
            let pt = PayloadType::new(p.payload_type);
            if let Ok(pt) = pt {
                let h = RtpHeader {
                    payload_type: pt,
                    marker: p.marker,
                    seq: p.seq,
                    timestamp: p.timestamp,
                    ssrc: p.ssrc,
                };
                assert_eq!(h.to_packet(p.payload), d, "RTP round trip");
            }
        }
        if let Ok(r) = RepairPacket::parse(p.payload) {
            let members = r.members();
            assert!(
                members != 0 && members.count_ones() as usize <= r.source_count,
                "repair members out of the block"
            );
        }
    }
    let mut total = 0;
    for packet in parse_compound(d) {
        total += 1;
        if let Ok(rtcp::RtcpPacket::Nack(n)) = packet {
            assert!(!n.entries.is_empty(), "NACK without entries accepted");
            assert!(n.lost_wire_seqs().count() <= n.entries.len() * 17);
        }
    }
    assert!(total <= d.len() / 4 + 1, "more RTCP packets than words");
    let _ = validate_compound(d);
}

/// Counts from a fuzz run, so the caller can see the parsers were really exercised.
#[derive(Debug, Default, Clone)]
pub(crate) struct FuzzReport {
    pub cases: u64,
    pub rtp_ok: u64,
    pub rtcp_ok: u64,
    pub repair_ok: u64,
    pub receiver_malformed: u64,
    pub receiver_delivered: u64,
}

/// Run `cases` mutated datagrams through every parser and both endpoints.
pub(crate) fn run(cases: u64, seed: u64) -> FuzzReport {
    let corpus = corpus();
    let mut rng = SplitMix64::new(seed);
    let start = Instant::now();
    let config = TransportConfig {
        fec: true,
        nack: true,
        ..TransportConfig::default()
    };
    let mut receiver = Receiver::new(config.clone(), 1, start).expect("valid config");
    let mut sender = Sender::new(config.clone(), 2, start).expect("valid config");
    // A genuine stream the receiver locks onto, so the garbage meets a live window, FEC
    // decoder and NACK tracker rather than an idle receiver; its packets are mutated too.
    let mut feeder = Sender::new(config.clone(), 3, start).expect("valid config");
    let mut genuine: std::collections::VecDeque<Vec<u8>> = Default::default();
    let mut feeder_clock = start;
    let mut frame = keymash_core::FrameNo(0);
    let mut report = FuzzReport::default();
    for case in 0..cases {
        // Start the endpoints over now and then so early-stream states are fuzzed too.
        if case % 50_000 == 0 && case > 0 {
            report.receiver_malformed += receiver.stats(start).malformed;
            report.receiver_delivered += receiver.stats(start).delivered;
            receiver = Receiver::new(config.clone(), case, start).expect("valid config");
            sender = Sender::new(config.clone(), case, start).expect("valid config");
        }
        let now = start + Duration::from_micros(case * 50);
        if genuine.is_empty() {
            let payloads: Vec<Vec<u8>> = (0..10)
                .map(|i| vec![i as u8; 50 + rng.below(1000)])
                .collect();
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            feeder_clock = feeder_clock.max(now);
            if feeder
                .push_frame(feeder_clock, frame, feeder_clock, &refs)
                .is_ok()
            {
                frame = frame.next();
            }
            feeder_clock += Duration::from_millis(20);
            while let Some(t) = feeder.poll_transmit(feeder_clock) {
                genuine.push_back(t.contents);
            }
        }
        if rng.below(2) == 0 {
            if let Some(g) = genuine.pop_front() {
                receiver.handle_datagram(now, &g);
            }
        }
        let base = match genuine.front() {
            Some(g) if rng.below(2) == 0 => g,
            _ => &corpus[rng.below(corpus.len())],
        };
        let d = if rng.below(16) == 0 {
            base.clone()
        } else {
            mutate(&mut rng, base, &corpus)
        };
        check_parsers(&d);
        if let Ok(p) = RtpPacket::parse(&d) {
            report.rtp_ok += 1;
            if RepairPacket::parse(p.payload).is_ok() {
                report.repair_ok += 1;
            }
        }
        if validate_compound(&d).is_ok() {
            report.rtcp_ok += 1;
        }
        receiver.handle_datagram(now, &d);
        while receiver.poll_payload(now).is_some() {}
        while receiver.poll_transmit(now).is_some() {}
        sender.handle_datagram(now, &d);
        while sender.poll_transmit(now).is_some() {}
        report.cases += 1;
    }
    report.receiver_malformed += receiver.stats(start).malformed;
    report.receiver_delivered += receiver.stats(start).delivered;
    report
}
