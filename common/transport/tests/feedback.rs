//! Feedback: requested quality with fallback after silence, RTT from sender reports,
//! receiver-report loss figures, and keepalive on an idle path.

mod support;

use std::time::Duration;

use keymash_core::{MashLevel, Quality};
use keymash_transport::{TransmitKind, TransportConfig};
use support::{LossModel, Pair};

#[test]
fn the_sender_follows_the_requested_quality_and_falls_back_when_feedback_stops() {
    let config = TransportConfig::default();
    let timeout = config.quality_fallback_timeout;
    let fallback = config.fallback_quality;
    let mut pair = Pair::new(
        config.clone(),
        LossModel::None,
        LossModel::None,
        Duration::from_millis(5),
        50,
    );
    pair.frames_left = 200;
    let q = Quality::new(83).unwrap();
    assert_ne!(q, fallback);
    pair.receiver.set_feedback(q, MashLevel::new(0.75).unwrap());
    pair.run_until(Duration::from_secs(1), config.frame_interval);
    assert_eq!(pair.sender.requested_quality(pair.now), q);
    let mash = pair.sender.remote_mash(pair.now).expect("mash reported");
    assert!((mash.get() - 0.75).abs() < 1e-3);

    // Cut the feedback path: the quality holds until the timeout, then falls back.
    pair.back.loss = LossModel::All;
    let cut = pair.now;
    pair.run_until(
        Duration::from_secs(1) + timeout - Duration::from_millis(200),
        config.frame_interval,
    );
    assert_eq!(
        pair.sender.requested_quality(pair.now),
        q,
        "fell back too early"
    );
    pair.run_until(
        Duration::from_secs(1) + timeout + Duration::from_millis(10),
        config.frame_interval,
    );
    assert!(pair.now - cut >= timeout);
    assert_eq!(pair.sender.requested_quality(pair.now), fallback);
    assert_eq!(pair.sender.remote_mash(pair.now), None);
}

#[test]
fn feedback_arrives_about_every_100_ms_and_carries_rtt_loss_and_jitter() {
    let config = TransportConfig::default();
    // Every 20th media packet lost: an exact figure to find in the receiver reports.
    let mut media_index = 0u64;
    let loss = LossModel::Chosen(Box::new(move |_, d| {
        if support::media_seq(d).is_none() {
            return false;
        }
        media_index += 1;
        media_index % 20 == 7
    }));
    let mut pair = Pair::new(
        config.clone(),
        loss,
        LossModel::None,
        Duration::from_millis(15),
        51,
    );
    pair.frames_left = 75;
    pair.run_until(Duration::from_millis(2500), config.frame_interval);
    let mid = pair.sender.stats().clone();
    assert!((mid.remote_fraction_lost - 0.05).abs() < 0.03, "{mid:?}");
    // Let the last reports arrive after the stream stops.
    pair.run_until(Duration::from_millis(3000), config.frame_interval);
    let rx = pair.receiver.stats(pair.now);
    // 3 s / 100 ms, plus the first one at start.
    assert!((29..=32).contains(&rx.feedback_sent), "{rx:?}");
    let tx = pair.sender.stats();
    assert!(tx.reports_received >= 28, "{tx:?}");
    let rtt = tx.rtt.expect("rtt from LSR/DLSR");
    assert!(
        rtt >= Duration::from_millis(29) && rtt <= Duration::from_millis(31),
        "rtt {rtt:?}"
    );
    assert_eq!(
        tx.remote_cumulative_lost as u64, pair.forward.dropped,
        "{tx:?}"
    );
    assert_eq!(rx.lost, pair.forward.dropped);
    assert!((rx.loss_percent_1s - 5.0).abs() < 1.0, "{rx:?}");
    // Packets of a frame share a timestamp but leave over 11 ms: RFC 3550 jitter shows it.
    assert!(
        tx.remote_jitter > Duration::ZERO && tx.remote_jitter < config.frame_spread,
        "{tx:?}"
    );
}

#[test]
fn an_idle_path_still_carries_keepalives_both_ways_and_each_side_sees_the_other() {
    let config = TransportConfig::default();
    let mut pair = Pair::new(
        config.clone(),
        LossModel::None,
        LossModel::None,
        Duration::from_millis(5),
        52,
    );
    pair.frames_left = 0;
    pair.run_until(Duration::from_secs(5), config.frame_interval);
    let keepalives: Vec<Duration> = pair
        .sender_log
        .iter()
        .filter(|(_, k, _)| *k == TransmitKind::Rtcp)
        .map(|(t, _, _)| *t - pair.start)
        .collect();
    assert!(keepalives.len() >= 9, "{keepalives:?}");
    for w in keepalives.windows(2) {
        assert!(
            w[1] - w[0] <= config.keepalive_interval,
            "quiet for {:?}",
            w[1] - w[0]
        );
    }
    assert!(pair.sender.peer_alive(pair.now));
    assert!(pair.receiver.peer_alive(pair.now));

    pair.forward.loss = LossModel::All;
    pair.back.loss = LossModel::All;
    pair.run_until(
        Duration::from_secs(5) + config.peer_timeout + Duration::from_millis(10),
        config.frame_interval,
    );
    assert!(!pair.sender.peer_alive(pair.now));
    assert!(!pair.receiver.peer_alive(pair.now));
}

/// The receiver's quality after a change at `change`, as the sender sees it over a 1 ms link:
/// `(time after the change, quality)` at each 1 ms step up to `until`.
fn sender_quality_steps(
    pair: &mut Pair,
    change: Duration,
    until: Duration,
) -> Vec<(Duration, Quality)> {
    let interval = TransportConfig::default().frame_interval;
    let mut seen = Vec::new();
    let mut t = change;
    while t <= until {
        pair.run_until(t, interval);
        seen.push((t - change, pair.sender.requested_quality(pair.now)));
        t += Duration::from_millis(1);
    }
    seen
}

/// When the sender first asked for `q`, after the change.
fn first_at(steps: &[(Duration, Quality)], q: Quality) -> Option<Duration> {
    steps.iter().find(|(_, s)| *s == q).map(|(t, _)| *t)
}

#[test]
fn a_quality_change_reaches_the_sender_at_once_and_at_most_one_change_a_frame_interval() {
    let latency = Duration::from_millis(1);
    let q = |v| Quality::new(v).unwrap();
    for push in [true, false] {
        let config = TransportConfig {
            push_quality_changes: push,
            ..TransportConfig::default()
        };
        let interval = config.frame_interval;
        let mut pair = Pair::new(
            config.clone(),
            LossModel::None,
            LossModel::None,
            latency,
            53,
        );
        pair.frames_left = 100;
        pair.receiver.set_feedback(q(20), MashLevel::IDLE);
        // Just after a periodic report (one at the start, then every 100 ms): the worst phase
        // for the periodic feedback.
        let change = Duration::from_millis(1001);
        pair.run_until(change, interval);
        assert_eq!(pair.sender.requested_quality(pair.now), q(20));
        let reports = pair.receiver.stats(pair.now).feedback_sent;
        pair.receiver
            .set_feedback(q(40), MashLevel::new(0.4).unwrap());
        let first = sender_quality_steps(&mut pair, change, change + Duration::from_millis(5));
        // A second change 5 ms later (the mash level rose again).
        let second_at = change + Duration::from_millis(5);
        pair.receiver
            .set_feedback(q(60), MashLevel::new(0.6).unwrap());
        let second = sender_quality_steps(&mut pair, second_at, change + config.feedback_interval);
        let (first_lag, second_lag) = (first_at(&first, q(40)), first_at(&second, q(60)));
        eprintln!(
            "push {push}: first change at the sender after {first_lag:?}, a second 5 ms later \
             after {second_lag:?} ({latency:?} link, frame interval {interval:?})"
        );
        let second_lag = second_lag.expect("the second change arrived");
        if push {
            assert_eq!(first_lag, Some(latency), "the first change goes at once");
            // Held until a frame interval after the first went, then one link latency.
            let held = (interval - Duration::from_millis(5) + latency).as_millis();
            assert!(
                (held..=held + 1).contains(&second_lag.as_millis()),
                "second change after {second_lag:?}, want {held} ms"
            );
            // One report for each change, beside the periodic ones (none fell due here).
            assert_eq!(pair.receiver.stats(pair.now).feedback_sent, reports + 2);
        } else {
            assert_eq!(first_lag, None, "without the push the change waits");
            assert!(second_lag + Duration::from_millis(5) >= Duration::from_millis(95));
        }
    }
}

#[test]
fn a_mash_level_change_alone_waits_for_the_periodic_feedback() {
    let config = TransportConfig::default();
    let mut pair = Pair::new(
        config.clone(),
        LossModel::None,
        LossModel::None,
        Duration::from_millis(1),
        54,
    );
    let q = Quality::new(30).unwrap();
    pair.receiver.set_feedback(q, MashLevel::new(0.2).unwrap());
    pair.run_until(Duration::from_millis(1001), config.frame_interval);
    let reports = pair.receiver.stats(pair.now).feedback_sent;
    pair.receiver.set_feedback(q, MashLevel::new(0.25).unwrap());
    pair.run_until(Duration::from_millis(1090), config.frame_interval);
    assert_eq!(pair.receiver.stats(pair.now).feedback_sent, reports);
    let mash = pair.sender.remote_mash(pair.now).expect("mash reported");
    assert!((mash.get() - 0.2).abs() < 1e-3, "{mash:?}");
}
