//! A restarted sender (net-tx killed and started again by systemd) comes back with a new SSRC
//! and new sequence numbers; the receiver follows it once the old stream has gone quiet.

mod support;

use std::time::Duration;

use keymash_transport::{Sender, TransportConfig};
use support::{LossModel, Pair};

#[test]
fn the_receiver_follows_a_restarted_sender_after_the_old_stream_falls_silent() {
    let config = TransportConfig::default();
    let mut pair = Pair::new(
        config.clone(),
        LossModel::None,
        LossModel::None,
        Duration::from_millis(5),
        60,
    );
    pair.frames_left = 30;
    pair.run_until(Duration::from_secs(1), config.frame_interval);
    let before = pair.delivered.len();
    assert_eq!(before, 30 * 20);
    let old = pair.receiver.sender_stream().expect("locked on");

    // The sender process dies and a new one starts at once, with a new random seed.
    pair.sender = Sender::new(config.clone(), 0xD1FF_E4E7, pair.now).expect("valid config");
    let new = pair.sender.stream_ids();
    assert_ne!(old, new);
    pair.sent.clear();
    pair.frames_left = 60;
    pair.run_until(Duration::from_secs(4), config.frame_interval);

    let stats = pair.receiver.stats(pair.now);
    assert_eq!(pair.receiver.sender_stream(), Some(new));
    assert_eq!(stats.stream_switches, 1);
    // While the old stream was still possibly alive, the newcomer's packets were foreign.
    let switch_frames =
        config.stream_switch_silence.as_millis() / config.frame_interval.as_millis() + 1;
    assert!(
        stats.foreign > 0 && stats.foreign <= (switch_frames as u64 + 1) * 20,
        "{stats:?}"
    );
    let after = &pair.delivered[before..];
    assert!(
        after.len() as u64 + stats.foreign >= 60 * 20 - 20,
        "{} delivered after the restart, {stats:?}",
        after.len()
    );
    for (_, p) in after {
        assert_eq!(p.payload, pair.sent[&p.seq.wire()].bytes);
    }
}
