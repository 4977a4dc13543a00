//! FEC end to end: a sender and a receiver with FEC on, over links that drop on purpose.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use keymash_transport::fec::blocks_of_frame;
use keymash_transport::{Recovery, TransportConfig};
use support::{media_seq, LossModel, Pair};

fn fec_config() -> TransportConfig {
    TransportConfig { fec: true, ..TransportConfig::default() }
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
        blocks.iter().any(|&(offset, k)| pos == offset + (frame * 7 + 3) % k)
    }))
}

#[test]
fn every_single_loss_per_fec_block_is_recovered_byte_identical() {
    for packets_per_frame in [1usize, 2, 20, 100, 300] {
        let mut pair = Pair::new(fec_config(), one_loss_per_block(packets_per_frame), LossModel::None, Duration::from_millis(10), 7);
        pair.packets_per_frame = packets_per_frame;
        pair.frames_left = 30;
        let interval = TransportConfig::default().frame_interval;
        pair.run_until(Duration::from_secs(3), interval);
        let blocks = blocks_of_frame(packets_per_frame).count() as u64;
        let stats = pair.receiver.stats(pair.now);
        assert_eq!(pair.forward.dropped, 30 * blocks, "k={packets_per_frame}: dropped");
        assert_eq!(stats.recovered_fec, 30 * blocks, "k={packets_per_frame}: recovered {stats:?}");
        assert_eq!(stats.lost, 0, "k={packets_per_frame}");
        assert_eq!(pair.delivered.len(), 30 * packets_per_frame, "k={packets_per_frame}");
        pair.assert_delivered_payloads_are_byte_identical();
        let fec_delivered = pair.delivered.iter().filter(|(_, p)| p.recovery == Recovery::Fec).count() as u64;
        assert_eq!(fec_delivered, 30 * blocks);
        // Delivered in sequence order with the frame's marker on its last packet.
        let seqs: Vec<u64> = pair.delivered.iter().map(|(_, p)| p.seq.get()).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "k={packets_per_frame}: out of order");
        let markers = pair.delivered.iter().filter(|(_, p)| p.marker).count();
        assert_eq!(markers, 30, "k={packets_per_frame}: markers");
    }
}

#[test]
fn with_fec_off_the_same_losses_stay_lost() {
    let mut pair = Pair::new(TransportConfig::default(), one_loss_per_block(20), LossModel::None, Duration::from_millis(10), 7);
    pair.frames_left = 30;
    pair.run_until(Duration::from_secs(3), TransportConfig::default().frame_interval);
    let stats = pair.receiver.stats(pair.now);
    assert_eq!(stats.recovered_fec, 0);
    assert_eq!(stats.lost, 30);
    assert_eq!(pair.delivered.len(), 30 * 19);
    assert!(pair.sender_log.iter().all(|(_, k, _)| *k != keymash_transport::TransmitKind::Repair));
}

#[test]
fn random_and_burst_loss_never_yield_a_wrong_payload() {
    let models: Vec<(&str, LossModel)> = vec![
        ("bernoulli 3%", LossModel::Bernoulli(0.03)),
        ("bernoulli 10%", LossModel::Bernoulli(0.10)),
        ("gilbert-elliott", LossModel::gilbert_elliott(0.01, 0.3)),
    ];
    for (name, loss) in models {
        let mut pair = Pair::new(fec_config(), loss, LossModel::None, Duration::from_millis(10), 11);
        pair.packets_per_frame = 40;
        pair.frames_left = 60;
        pair.forward.reorder_jitter = Duration::from_millis(2);
        pair.run_until(Duration::from_secs(4), TransportConfig::default().frame_interval);
        pair.assert_delivered_payloads_are_byte_identical();
        let stats = pair.receiver.stats(pair.now);
        assert!(stats.recovered_fec > 0, "{name}: nothing recovered {stats:?}");
        let unique: HashSet<u64> = pair.delivered.iter().map(|(_, p)| p.seq.get()).collect();
        assert_eq!(unique.len(), pair.delivered.len(), "{name}: a payload was delivered twice");
        // Every packet is delivered or counted lost, except a lost tail of the last frame, which
        // no later packet reveals.
        let accounted = stats.delivered + stats.lost;
        assert!(accounted <= 60 * 40 && accounted > 60 * 40 - 40, "{name}: {accounted} accounted for {stats:?}");
    }
}
