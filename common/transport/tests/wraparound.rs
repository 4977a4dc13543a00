//! A stream that runs across the 16-bit sequence number wrap (65535 -> 0) with loss, FEC and
//! NACK on: nothing is misplaced, duplicated or lost to the wrap.

mod support;

use std::time::Duration;

use keymash_transport::TransportConfig;
use support::{LossModel, Pair};

#[test]
fn a_lossy_stream_crosses_the_sequence_number_wrap_intact() {
    let interval = Duration::from_millis(10);
    let config = TransportConfig {
        fec: true,
        nack: true,
        frame_interval: interval,
        frame_spread: interval / 3,
        ..TransportConfig::default()
    };
    // 70,000 packets cover at least one wrap whatever the random first sequence number.
    let frames = 1400u64;
    let mut pair = Pair::new(
        config,
        LossModel::Bernoulli(0.01),
        LossModel::None,
        Duration::from_millis(5),
        21,
    );
    pair.packets_per_frame = 50;
    pair.frames_left = frames;
    pair.run_until(interval * frames as u32 + Duration::from_secs(1), interval);

    let stats = pair.receiver.stats(pair.now);
    let seqs: Vec<u64> = pair.delivered.iter().map(|(_, p)| p.seq.get()).collect();
    let first = seqs[0];
    let last = *seqs.last().expect("delivered something");
    assert!(
        last >> 16 > first >> 16,
        "the run did not cross a wrap: {first:#x}..{last:#x}"
    );
    assert!(
        seqs.windows(2).all(|w| w[1] > w[0]),
        "delivery not in extended order across the wrap"
    );
    assert_eq!(stats.lost, 0, "{stats:?}");
    assert_eq!(seqs.len() as u64, frames * 50);
    assert_eq!(last - first + 1, frames * 50);
    // The `sent` map is keyed by wire value; with 70,000 > 65,536 packets the oldest entries
    // were overwritten, so compare the payloads sent after the wrap.
    let newest: Vec<_> = pair.delivered.iter().rev().take(60_000).cloned().collect();
    for (_, p) in &newest {
        assert_eq!(
            p.payload,
            pair.sent[&p.seq.wire()].bytes,
            "payload {} differs",
            p.seq
        );
    }
}
