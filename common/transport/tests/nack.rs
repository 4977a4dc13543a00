//! NACK retransmission end to end.

mod support;

use std::time::Duration;

use keymash_transport::{Recovery, TransportConfig};
use support::{media_seq, LossModel, Pair};

fn nack_config() -> TransportConfig {
    TransportConfig {
        nack: true,
        ..TransportConfig::default()
    }
}

#[test]
fn lost_packets_come_back_after_a_nack_inside_the_deadline() {
    let config = nack_config();
    let deadline = config.retransmit_deadline;
    // Drop first transmissions only: every 10th media packet the first time it is seen.
    let mut seen = std::collections::HashSet::new();
    let loss = LossModel::Chosen(Box::new(move |_, d| match media_seq(d) {
        Some(seq) => seen.insert(seq) && seq % 10 == 3,
        None => false,
    }));
    let mut pair = Pair::new(config, loss, LossModel::None, Duration::from_millis(10), 3);
    pair.frames_left = 60;
    pair.run_until(
        Duration::from_secs(3),
        TransportConfig::default().frame_interval,
    );
    let stats = pair.receiver.stats(pair.now);
    assert_eq!(stats.lost, 0, "{stats:?}");
    assert_eq!(stats.recovered_nack, pair.forward.dropped, "{stats:?}");
    assert!(pair.forward.dropped >= 100);
    assert_eq!(pair.delivered.len(), 60 * 20);
    pair.assert_delivered_payloads_are_byte_identical();
    for (at, p) in pair
        .delivered
        .iter()
        .filter(|(_, p)| p.recovery == Recovery::Nack)
    {
        let sent_at = pair.sent[&p.seq.wire()].sent_at.expect("was sent");
        assert!(
            *at - sent_at < deadline,
            "packet {} recovered {:?} after sending",
            p.seq,
            *at - sent_at
        );
    }
    // The receiver measured the RTT from its NACK round trips: two 10 ms hops.
    let rtt = stats.rtt.expect("rtt measured");
    assert!(
        rtt >= Duration::from_millis(20) && rtt < Duration::from_millis(25),
        "rtt {rtt:?}"
    );
    assert_eq!(pair.sender.stats().retransmitted, pair.forward.dropped);
}

#[test]
fn nothing_is_retransmitted_past_its_deadline() {
    // 100 ms each way: a NACK reaches the sender after 105 ms + 100 ms, past a 150 ms deadline
    // counted from the first send... except the ones sent early in the hold window.
    let config = TransportConfig {
        retransmit_deadline: Duration::from_millis(150),
        ..nack_config()
    };
    let loss = LossModel::Chosen(Box::new(|i, d| media_seq(d).is_some() && i % 10 == 5));
    let mut pair = Pair::new(config, loss, LossModel::None, Duration::from_millis(100), 5);
    pair.frames_left = 30;
    pair.run_until(
        Duration::from_secs(3),
        TransportConfig::default().frame_interval,
    );
    let sender = pair.sender.stats();
    assert!(sender.nacks_received > 0, "{sender:?}");
    assert_eq!(sender.retransmitted, 0, "{sender:?}");
    assert_eq!(sender.retransmit_refused, sender.nacks_received);
}

#[test]
fn a_lost_packet_is_nacked_a_bounded_number_of_times() {
    let config = TransportConfig {
        max_nack_tries: 2,
        ..nack_config()
    };
    // Packet 45 (by index on the link) and all its retransmissions are lost.
    let mut victim = None;
    let loss = LossModel::Chosen(Box::new(move |i, d| {
        let Some(seq) = media_seq(d) else {
            return false;
        };
        if i == 45 {
            victim = Some(seq);
        }
        victim == Some(seq)
    }));
    let mut pair = Pair::new(config, loss, LossModel::None, Duration::from_millis(5), 9);
    pair.frames_left = 30;
    pair.run_until(
        Duration::from_secs(2),
        TransportConfig::default().frame_interval,
    );
    let stats = pair.receiver.stats(pair.now);
    assert_eq!(stats.nacks_sent, 2, "{stats:?}");
    assert_eq!(stats.lost, 1);
    assert_eq!(pair.sender.stats().retransmitted, 2);
}

#[test]
fn with_nack_off_no_nacks_are_sent_and_losses_stay_lost() {
    let loss = LossModel::Chosen(Box::new(|i, d| media_seq(d).is_some() && i % 10 == 5));
    let mut pair = Pair::new(
        TransportConfig::default(),
        loss,
        LossModel::None,
        Duration::from_millis(10),
        5,
    );
    pair.frames_left = 30;
    pair.run_until(
        Duration::from_secs(2),
        TransportConfig::default().frame_interval,
    );
    let stats = pair.receiver.stats(pair.now);
    assert_eq!(stats.nacks_sent, 0);
    assert_eq!(stats.lost, pair.forward.dropped);
    assert_eq!(pair.sender.stats().retransmitted, 0);
}
