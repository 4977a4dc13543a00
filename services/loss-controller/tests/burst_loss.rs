//! Gilbert-Elliott mode: the receiver sees bursts of consecutive losses whose mean length is
//! the configured 1/r (within 20 %), and the overall loss the chain's stationary share.

// A test crate: helpers panic on setup failure, with their location, like the tests do.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::AtomicBool;

use keymash_tests::{require_root, NetnsPair};
use support::{
    flow, kernel_counters, receive_until, send_paced, traffic_lock, Controller, SetOnDrop,
    VIDEO_PORT,
};

const PACKETS: u64 = 40_000;
/// netem `loss gemodel 5% 25% 100% 0%`: bursts of mean length 1/r = 4, loss p/(p+r) = 1/6.
const GE_P: f64 = 0.05;
const GE_R: f64 = 0.25;

#[test]
fn gilbert_elliott_bursts_have_the_configured_mean_length() {
    require_root();
    let pair = NetnsPair::create("burst").unwrap();
    let (p, r) = (GE_P.to_string(), GE_R.to_string());
    let controller = Controller::start(
        &pair.right,
        NetnsPair::RIGHT_INTERFACE,
        &[
            "--model",
            "gilbert-elliott",
            "--ge-p",
            &p,
            "--ge-r",
            &r,
            "--ge-1-h",
            "1",
            "--ge-1-k",
            "0",
        ],
    );
    let (tx, rx, to) = flow(&pair, VIDEO_PORT, false);
    let _traffic = traffic_lock();
    let done = AtomicBool::new(false);
    let received = std::thread::scope(|s| {
        let receiver = s.spawn(|| receive_until(&rx, &done));
        {
            // Set when sending ends, also by a panic: the receiver stops either way.
            let _done = SetOnDrop(&done);
            send_paced(&tx, to, PACKETS, 200, 40_000);
        }
        receiver.join().expect("the receiving thread")
    });
    let counters = kernel_counters(&pair.right, NetnsPair::RIGHT_INTERFACE);
    drop(controller);

    // Runs of consecutive missing sequence numbers.
    let mut bursts = Vec::new();
    let mut run = 0u64;
    for seq in 0..PACKETS {
        if received.sequence.contains(&seq) {
            if run > 0 {
                bursts.push(run);
            }
            run = 0;
        } else {
            run += 1;
        }
    }
    if run > 0 {
        bursts.push(run);
    }
    let lost: u64 = bursts.iter().sum();
    let mean_burst = lost as f64 / bursts.len().max(1) as f64;
    let loss = lost as f64 / PACKETS as f64;
    let expected_burst = 1.0 / GE_R;
    let expected_loss = GE_P / (GE_P + GE_R);
    eprintln!(
        "{} bursts, mean length {mean_burst:.2} (configured {expected_burst:.2}), loss {:.2}% (stationary {:.2}%)",
        bursts.len(),
        loss * 100.0,
        expected_loss * 100.0
    );
    assert!(
        bursts.len() > 500,
        "too few bursts to judge: {}",
        bursts.len()
    );
    assert!(
        (mean_burst - expected_burst).abs() <= 0.2 * expected_burst,
        "mean burst {mean_burst} not within 20% of {expected_burst}"
    );
    assert!(
        (loss - expected_loss).abs() <= 0.2 * expected_loss,
        "loss {loss} far from {expected_loss}"
    );
    assert_eq!(
        counters.dropped, lost,
        "kernel drops differ from the receiver's losses"
    );
}
