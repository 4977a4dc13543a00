//! A receiver whose key differs from the sender's says so in its status (what `keymash status`
//! shows) within 5 s, and shows nothing of the stream; with the same key the stream flows and
//! the status carries no such message.

use std::time::{Duration, Instant};

use keymash_core::key::PreSharedKey;
use keymash_pipeline::Service;
use keymash_shm::{CellReader, ServiceStats};
use keymash_tests::receiver::{test_picture, ReceiverSetup, TestSender};
use keymash_transport::Protection;

/// What the issue asks for: the problem named within a few seconds.
const NAMED_WITHIN: Duration = Duration::from_secs(5);

fn net_rx_stats(setup: &ReceiverSetup) -> Option<ServiceStats> {
    CellReader::<ServiceStats>::open(&setup.segment(&Service::NetRx.stats_cell()))
        .ok()?
        .load()
        .ok()
}

/// Streams from `sender` until net-rx's status line satisfies `done` or `within` passes.
fn stream_until(
    setup: &ReceiverSetup,
    sender: &mut TestSender,
    within: Duration,
    done: impl Fn(&ServiceStats) -> bool,
) -> Option<ServiceStats> {
    let until = Instant::now() + within;
    let mut frame = 1;
    while Instant::now() < until {
        sender.send_frame(
            &test_picture(sender.geometry(), frame),
            keymash_core::Quality::saturating(50),
            |_| false,
        );
        frame += 1;
        if let Some(stats) = net_rx_stats(setup).filter(&done) {
            return Some(stats);
        }
    }
    None
}

#[test]
fn a_receiver_with_another_key_names_the_problem_in_status_within_five_seconds() {
    let setup = ReceiverSetup::new("keymismatch", "");
    let _net_rx = setup.start("keymash-net-rx");

    // The same key: packets flow, no complaint.
    let mut good = setup.sender();
    let flowing = stream_until(&setup, &mut good, Duration::from_secs(5), |s| {
        s.counter("delivered").unwrap_or(0) > 50
    })
    .expect("the stream under the right key never got through");
    assert!(
        !flowing.status_line().contains("fail authentication"),
        "{}",
        flowing.status_line()
    );
    assert_eq!(flowing.counter("auth_failed"), Some(0));
    drop(good);

    // Another key, from the same address and port: named within 5 s.
    let other = PreSharedKey::from_bytes(keymash_service::random::bytes().expect("random key"));
    let mut bad = TestSender::new(
        setup.sender_port,
        setup.video_port,
        setup.geometry(),
        Protection::PreShared(other),
    );
    let started = Instant::now();
    let named = stream_until(&setup, &mut bad, NAMED_WITHIN, |s| {
        s.status_line().contains(
            "packets arrive but fail authentication: check that both PCs have the same key",
        )
    });
    let stats = named.unwrap_or_else(|| {
        panic!(
            "not named within {NAMED_WITHIN:?}: {:?}",
            net_rx_stats(&setup).map(|s| s.status_line().to_owned())
        )
    });
    assert!(stats.counter("auth_failed").unwrap_or(0) > 0);
    assert!(
        stats.last_error().contains("same key"),
        "{}",
        stats.last_error()
    );
    eprintln!("named after {:?}", started.elapsed());
}
