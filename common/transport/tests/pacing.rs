//! Pacing: a frame's packets leave spread over the configured time, not in one burst.

mod support;

use std::time::Duration;

use keymash_transport::{TransmitKind, TransportConfig};
use support::{LossModel, Pair};

fn frame_send_times(config: TransportConfig, packets_per_frame: usize) -> Vec<Vec<Duration>> {
    let interval = config.frame_interval;
    let mut pair = Pair::new(
        config,
        LossModel::None,
        LossModel::None,
        Duration::from_millis(5),
        44,
    );
    pair.packets_per_frame = packets_per_frame;
    pair.frames_left = 10;
    pair.run_until(Duration::from_secs(1), interval);
    let media: Vec<Duration> = pair
        .sender_log
        .iter()
        .filter(|(_, k, _)| *k == TransmitKind::Media)
        .map(|(t, _, _)| *t - pair.start)
        .collect();
    media
        .chunks(packets_per_frame)
        .map(<[Duration]>::to_vec)
        .collect()
}

#[test]
fn by_default_a_frame_leaves_evenly_within_a_third_of_the_frame_interval() {
    let config = TransportConfig::default();
    let spread = config.frame_interval / 3;
    for n in [10usize, 40] {
        let frames = frame_send_times(config.clone(), n);
        assert_eq!(frames.len(), 10);
        for (f, times) in frames.iter().enumerate() {
            let frame_start = config.frame_interval * f as u32;
            assert_eq!(times[0], frame_start, "frame {f} starts when pushed");
            assert!(
                *times.last().unwrap() - times[0] < spread,
                "frame {f} took too long"
            );
            let step = spread / n as u32;
            for w in times.windows(2) {
                assert_eq!(w[1] - w[0], step, "frame {f}: uneven gap");
            }
        }
    }
}

#[test]
fn a_rate_limit_slower_than_the_spread_stretches_the_gaps() {
    // 40 packets of up to 1200 bytes at 2 MB/s take at least 0.6 ms each.
    let config = TransportConfig {
        max_rate_bytes_per_sec: Some(2_000_000),
        ..TransportConfig::default()
    };
    let mut pair = Pair::new(
        config.clone(),
        LossModel::None,
        LossModel::None,
        Duration::from_millis(5),
        45,
    );
    pair.packets_per_frame = 40;
    pair.frames_left = 3;
    pair.run_until(Duration::from_secs(1), config.frame_interval);
    let log: Vec<_> = pair
        .sender_log
        .iter()
        .filter(|(_, k, _)| *k != TransmitKind::Rtcp)
        .collect();
    for w in log.windows(2) {
        let (t0, _, len0) = w[0];
        let (t1, _, _) = w[1];
        let min_gap = Duration::from_nanos(*len0 as u64 * 1_000_000_000 / 2_000_000);
        assert!(
            *t1 - *t0 >= min_gap,
            "gap {:?} shorter than {:?} for {} bytes",
            *t1 - *t0,
            min_gap,
            len0
        );
    }
}

#[test]
fn when_the_rate_limit_cannot_keep_up_stale_packets_are_dropped_not_queued_forever() {
    // About 20 x 600 B every 33 ms (360 kB/s) into a 100 kB/s limit.
    let config = TransportConfig {
        max_rate_bytes_per_sec: Some(100_000),
        ..TransportConfig::default()
    };
    let mut pair = Pair::new(
        config.clone(),
        LossModel::None,
        LossModel::None,
        Duration::from_millis(5),
        46,
    );
    pair.frames_left = 60;
    pair.run_until(Duration::from_secs(2), config.frame_interval);
    let dropped = pair.sender.stats().send_queue_dropped;
    assert!(dropped > 60 * 20 / 2, "dropped only {dropped}");
    // Whatever did leave, left within the maximum queue delay of its slot plus one packet time,
    // so the queue never holds more than that delay's worth.
    assert!(
        pair.sender.queued_packets() < 20 * 4,
        "queue grew to {}",
        pair.sender.queued_packets()
    );
    pair.run_until(Duration::from_secs(3), config.frame_interval);
    assert_eq!(pair.sender.queued_packets(), 0);
    let dropped = pair.sender.stats().send_queue_dropped;
    assert_eq!(
        pair.media_sent() as u64 + dropped,
        60 * 20,
        "{:?}",
        pair.sender.stats()
    );
}
