//! FEC end to end: a sender and a receiver with FEC on, over links that drop on purpose.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use keymash_transport::fec::{blocks_of_frame, FecDecoder, FecEncoder, FecOverhead, RepairPacket};
use keymash_transport::seq::SeqExtender;
use keymash_transport::{Recovery, TransportConfig};
use support::{media_seq, LossModel, Pair};

fn fec_config() -> TransportConfig {
    TransportConfig {
        fec: true,
        ..TransportConfig::default()
    }
}

/// Drop one media packet per FEC block of every frame, at a position that moves each frame.
fn one_loss_per_block(packets_per_frame: usize) -> LossModel {
    let blocks: Vec<(usize, usize)> = blocks_of_frame(packets_per_frame).collect();
    let mut media_index = 0u64;
    LossModel::Chosen(Box::new(move |_, d| {
        if media_seq(d).is_none() {
            return false;
        }
        let i = media_index;
        media_index += 1;
        let frame = (i / packets_per_frame as u64) as usize;
        let pos = (i % packets_per_frame as u64) as usize;
        blocks
            .iter()
            .any(|&(offset, k)| pos == offset + (frame * 7 + 3) % k)
    }))
}

#[test]
fn every_single_loss_per_fec_block_is_recovered_byte_identical() {
    for packets_per_frame in [1usize, 2, 20, 100, 300] {
        let mut pair = Pair::new(
            fec_config(),
            one_loss_per_block(packets_per_frame),
            LossModel::None,
            Duration::from_millis(10),
            7,
        );
        pair.packets_per_frame = packets_per_frame;
        pair.frames_left = 30;
        let interval = TransportConfig::default().frame_interval;
        pair.run_until(Duration::from_secs(3), interval);
        let blocks = blocks_of_frame(packets_per_frame).count() as u64;
        let stats = pair.receiver.stats(pair.now);
        assert_eq!(
            pair.forward.dropped,
            30 * blocks,
            "k={packets_per_frame}: dropped"
        );
        assert_eq!(
            stats.recovered_fec,
            30 * blocks,
            "k={packets_per_frame}: recovered {stats:?}"
        );
        assert_eq!(stats.lost, 0, "k={packets_per_frame}");
        assert_eq!(
            pair.delivered.len(),
            30 * packets_per_frame,
            "k={packets_per_frame}"
        );
        pair.assert_delivered_payloads_are_byte_identical();
        let fec_delivered = pair
            .delivered
            .iter()
            .filter(|(_, p)| p.recovery == Recovery::Fec)
            .count() as u64;
        assert_eq!(fec_delivered, 30 * blocks);
        // Delivered in sequence order with the frame's marker on its last packet.
        let seqs: Vec<u64> = pair.delivered.iter().map(|(_, p)| p.seq.get()).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "k={packets_per_frame}: out of order"
        );
        let markers = pair.delivered.iter().filter(|(_, p)| p.marker).count();
        assert_eq!(markers, 30, "k={packets_per_frame}: markers");
    }
}

#[test]
fn with_fec_off_the_same_losses_stay_lost() {
    let mut pair = Pair::new(
        TransportConfig::default(),
        one_loss_per_block(20),
        LossModel::None,
        Duration::from_millis(10),
        7,
    );
    pair.frames_left = 30;
    pair.run_until(
        Duration::from_secs(3),
        TransportConfig::default().frame_interval,
    );
    let stats = pair.receiver.stats(pair.now);
    assert_eq!(stats.recovered_fec, 0);
    assert_eq!(stats.lost, 30);
    assert_eq!(pair.delivered.len(), 30 * 19);
    assert!(pair
        .sender_log
        .iter()
        .all(|(_, k, _)| *k != keymash_transport::TransmitKind::Repair));
}

#[test]
fn random_and_burst_loss_never_yield_a_wrong_payload() {
    let models: Vec<(&str, LossModel)> = vec![
        ("bernoulli 3%", LossModel::Bernoulli(0.03)),
        ("bernoulli 10%", LossModel::Bernoulli(0.10)),
        ("gilbert-elliott", LossModel::gilbert_elliott(0.01, 0.3)),
    ];
    for (name, loss) in models {
        let mut pair = Pair::new(
            fec_config(),
            loss,
            LossModel::None,
            Duration::from_millis(10),
            11,
        );
        pair.packets_per_frame = 40;
        pair.frames_left = 60;
        pair.forward.reorder_jitter = Duration::from_millis(2);
        pair.run_until(
            Duration::from_secs(4),
            TransportConfig::default().frame_interval,
        );
        pair.assert_delivered_payloads_are_byte_identical();
        let stats = pair.receiver.stats(pair.now);
        assert!(
            stats.recovered_fec > 0,
            "{name}: nothing recovered {stats:?}"
        );
        let unique: HashSet<u64> = pair.delivered.iter().map(|(_, p)| p.seq.get()).collect();
        assert_eq!(
            unique.len(),
            pair.delivered.len(),
            "{name}: a payload was delivered twice"
        );
        // Every packet is delivered or counted lost, except a lost tail of the last frame, which
        // no later packet reveals.
        let accounted = stats.delivered + stats.lost;
        assert!(
            accounted <= 60 * 40 && accounted > 60 * 40 - 40,
            "{name}: {accounted} accounted for {stats:?}"
        );
    }
}

/// Payloads of different lengths, so recovered lengths are checked too.
fn block_payloads(k: usize) -> Vec<Vec<u8>> {
    (0..k)
        .map(|i| {
            (0..(i * 53 % 900 + 1))
                .map(|b| (b * 13 + i * 7) as u8)
                .collect()
        })
        .collect()
}

/// Run one block through a fresh decoder with the sources in `lost` missing and every repair
/// packet received; returns the recovered source indices after checking each byte for byte.
fn recover(sources: &[Vec<u8>], repairs: &[Vec<u8>], lost: &[usize]) -> Vec<usize> {
    let first: u16 = 65_530;
    let mut seqs = SeqExtender::new();
    let mut decoder = FecDecoder::new();
    let mut got = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        let seq = seqs.extend(first.wrapping_add(i as u16));
        if !lost.contains(&i) {
            got.extend(decoder.add_source(seq, s));
        }
    }
    for r in repairs {
        got.extend(decoder.add_repair(
            &RepairPacket::parse(r).expect("own repair packet parses"),
            0,
            &seqs,
        ));
    }
    let mut indices: Vec<usize> = got
        .iter()
        .map(|g| {
            let i = usize::from(g.seq.wire().wrapping_sub(first));
            assert_eq!(
                g.payload, sources[i],
                "source {i} recovered with the wrong bytes"
            );
            i
        })
        .collect();
    indices.sort_unstable();
    indices
}

/// Which repair packets each source is a member of (bit j = repair packet j).
fn columns(repairs: &[Vec<u8>], k: usize) -> Vec<u128> {
    let members: Vec<u128> = repairs
        .iter()
        .map(|r| {
            RepairPacket::parse(r)
                .expect("own repair packet parses")
                .members()
        })
        .collect();
    (0..k)
        .map(|i| {
            members
                .iter()
                .enumerate()
                .filter(|(_, m)| *m & (1 << i) != 0)
                .fold(0, |c, (j, _)| c | 1 << j)
        })
        .collect()
}

#[test]
fn for_20_sources_and_5_repairs_every_double_loss_with_distinct_columns_is_recovered() {
    let k = 20;
    let sources = block_payloads(k);
    let refs: Vec<&[u8]> = sources.iter().map(Vec::as_slice).collect();
    for seed in 0..6 {
        let repairs = FecEncoder::new(FecOverhead::DEFAULT, seed).encode_frame(65_530, &refs);
        assert_eq!(repairs.len(), 5);
        let cols = columns(&repairs, k);
        let mut inseparable = 0;
        for a in 0..k {
            for b in a + 1..k {
                let got = recover(&sources, &repairs, &[a, b]);
                if cols[a] == cols[b] {
                    inseparable += 1;
                    // No repair packet holds one without the other: nothing can be recovered.
                    assert!(
                        got.is_empty(),
                        "seed {seed}: {a} and {b} share a column yet {got:?} came back"
                    );
                } else {
                    assert_eq!(got, vec![a, b], "seed {seed}: lost {a} and {b}");
                }
            }
        }
        // 16 distinct columns for 20 sources: four shared, the fewest possible.
        assert_eq!(inseparable, 4, "seed {seed}");
    }
}

#[test]
fn for_20_sources_and_5_repairs_every_triple_loss_with_distinct_columns_is_recovered() {
    let k = 20;
    let sources = block_payloads(k);
    let refs: Vec<&[u8]> = sources.iter().map(Vec::as_slice).collect();
    for seed in 0..2 {
        let repairs = FecEncoder::new(FecOverhead::DEFAULT, seed).encode_frame(65_530, &refs);
        let cols = columns(&repairs, k);
        let (mut distinct, mut shared) = (0, 0);
        for a in 0..k {
            for b in a + 1..k {
                for c in b + 1..k {
                    let got = recover(&sources, &repairs, &[a, b, c]);
                    if cols[a] != cols[b] && cols[b] != cols[c] && cols[a] != cols[c] {
                        distinct += 1;
                        assert_eq!(got, vec![a, b, c], "seed {seed}: lost {a}, {b}, {c}");
                    } else {
                        shared += 1;
                        // The source with a column of its own still comes back.
                        assert!(
                            got.len() <= 1,
                            "seed {seed}: lost {a}, {b}, {c}, got {got:?}"
                        );
                    }
                }
            }
        }
        assert!(
            distinct > 1000 && shared > 0,
            "seed {seed}: {distinct} distinct, {shared} shared"
        );
    }
}
