//! The receiver knows the round trip without loss and without NACK: its feedback carries an
//! RFC 3611 RRTR block, the sender's next report answers with a DLRR block. With the capture
//! age each packet carries (taken as it leaves), half the round trip back from the arrival is
//! when the frame was captured, on the receiver's own clock.

mod support;

use std::time::Duration;

use keymash_transport::TransportConfig;
use support::{LossModel, Pair};

const ONE_WAY: Duration = Duration::from_millis(10);

fn pair(config: TransportConfig) -> Pair {
    let mut pair = Pair::new(config, LossModel::None, LossModel::None, ONE_WAY, 11);
    pair.packets_per_frame = 5;
    pair
}

#[test]
fn without_loss_or_nack_the_receiver_measures_the_round_trip() {
    for nack in [false, true] {
        let config = TransportConfig {
            nack,
            ..TransportConfig::default()
        };
        let mut pair = pair(config);
        assert_eq!(pair.receiver.stats(pair.now).rtt, None);
        pair.run_frames(60, Duration::from_secs(2));
        let stats = pair.receiver.stats(pair.now);
        assert_eq!((stats.lost, stats.nacks_sent), (0, 0), "nack {nack}");
        let rtt = stats.rtt.expect("rtt measured from RRTR/DLRR");
        // Two 10 ms hops; compact NTP counts in 1/65536 s (15 us), three values go into it.
        let error = rtt.abs_diff(2 * ONE_WAY);
        assert!(
            error <= Duration::from_micros(50),
            "rtt {rtt:?}, nack {nack}"
        );
    }
}

#[test]
fn the_capture_time_is_the_arrival_less_the_age_and_half_the_round_trip() {
    let mut pair = pair(TransportConfig::default());
    pair.run_frames(90, Duration::from_secs(3));
    let rtt = pair.receiver.stats(pair.now).rtt.expect("rtt measured");
    // The harness's frames are captured as they are queued, one frame interval apart from the
    // start; packets leave paced over the frame spread after that.
    let interval = TransportConfig::default().frame_interval;
    let mut checked = 0;
    for (_, p) in &pair.delivered {
        let age = p
            .capture_age
            .expect("every media payload carries its age")
            .get();
        let captured = p.arrival - age - rtt / 2;
        let frame = (captured - pair.start).as_secs_f64() / interval.as_secs_f64();
        let want = pair.start + interval * frame.round() as u32;
        // The age is in 100 us units; the round trip within 50 us.
        assert!(
            captured.max(want) - captured.min(want) <= Duration::from_micros(100),
            "payload {}: captured {:?} after the start, the frame was {:?}",
            p.seq,
            captured - pair.start,
            want - pair.start
        );
        checked += 1;
    }
    assert_eq!(checked, 90 * 5);
}
