//! With the filter on the receiving side of a veth pair, the loss the receiver sees is the
//! configured drop probability (within 1 percentage point over 40,000 packets; exactly none at
//! 0 and all at 1), the kernel's counters agree with what the receiver counted, and traffic to
//! another port is never dropped.

// A test crate: helpers panic on setup failure, with their location, like the tests do.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::AtomicBool;

use keymash_tests::{require_root, NetnsPair};
use support::{
    flow, kernel_counters, receive_until, send_paced, traffic_lock, Controller, SetOnDrop,
    OTHER_PORT, VIDEO_PORT,
};

/// Enough packets that 1 percentage point is about 4 standard deviations at p = 0.4.
const VIDEO_PACKETS: u64 = 40_000;
const OTHER_PACKETS: u64 = 4_000;
const V6_PACKETS: u64 = 4_000;
const PACKET_SIZE: usize = 1000;
/// Slow enough that the veth and the receiving socket never drop on their own (the 0 % case
/// proves it), fast enough to keep the test short.
const RATE: u64 = 40_000;

struct Outcome {
    video_sent: u64,
    video_received: u64,
    v6_sent: u64,
    v6_received: u64,
    other_sent: u64,
    other_received: u64,
    kernel_seen: u64,
    kernel_dropped: u64,
    kernel_expired: u64,
}

fn run_at(drop_arg: &str) -> Outcome {
    require_root();
    let pair = NetnsPair::create("rates").unwrap();
    let controller = Controller::start(
        &pair.right,
        NetnsPair::RIGHT_INTERFACE,
        &["--fixed-drop", drop_arg],
    );

    let (video_tx, video_rx, video_to) = flow(&pair, VIDEO_PORT, false);
    let (v6_tx, v6_rx, v6_to) = flow(&pair, VIDEO_PORT, true);
    let (other_tx, other_rx, other_to) = flow(&pair, OTHER_PORT, false);

    let _traffic = traffic_lock();
    let done = AtomicBool::new(false);
    let (video, v6, other) = std::thread::scope(|s| {
        let video = s.spawn(|| receive_until(&video_rx, &done));
        let v6 = s.spawn(|| receive_until(&v6_rx, &done));
        let other = s.spawn(|| receive_until(&other_rx, &done));
        {
            // Set when sending ends, also by a panic: the receivers stop either way.
            let _done = SetOnDrop(&done);
            send_paced(&video_tx, video_to, VIDEO_PACKETS, PACKET_SIZE, RATE);
            send_paced(&v6_tx, v6_to, V6_PACKETS, PACKET_SIZE, RATE);
            send_paced(&other_tx, other_to, OTHER_PACKETS, PACKET_SIZE, RATE);
        }
        (
            video.join().expect("the IPv4 video receiver"),
            v6.join().expect("the IPv6 video receiver"),
            other.join().expect("the other port's receiver"),
        )
    });

    let counters = kernel_counters(&pair.right, NetnsPair::RIGHT_INTERFACE);
    drop(controller);
    Outcome {
        video_sent: VIDEO_PACKETS,
        video_received: video.sequence.len() as u64,
        v6_sent: V6_PACKETS,
        v6_received: v6.sequence.len() as u64,
        other_sent: OTHER_PACKETS,
        other_received: other.sequence.len() as u64,
        kernel_seen: counters.seen,
        kernel_dropped: counters.dropped,
        kernel_expired: counters.passed_expired,
    }
}

fn check(drop: f64, o: &Outcome) {
    let observed = 1.0 - o.video_received as f64 / o.video_sent as f64;
    eprintln!(
        "target {:.1}%: observed {:.2}% (IPv4 {}/{} received, IPv6 {}/{}), kernel seen {} dropped {} expired {}",
        drop * 100.0,
        observed * 100.0,
        o.video_received,
        o.video_sent,
        o.v6_received,
        o.v6_sent,
        o.kernel_seen,
        o.kernel_dropped,
        o.kernel_expired
    );
    assert!(
        (observed - drop).abs() <= 0.01,
        "observed loss {observed} not within 1 point of {drop}"
    );
    assert_eq!(
        o.other_received, o.other_sent,
        "traffic to another port was dropped"
    );
    // Kernel truth: it saw every video packet (IPv4 and IPv6) and dropped exactly what the
    // receivers missed; nothing passed because of an expired deadline.
    assert_eq!(
        o.kernel_seen,
        o.video_sent + o.v6_sent,
        "kernel saw a different number of video packets"
    );
    let missed = (o.video_sent - o.video_received) + (o.v6_sent - o.v6_received);
    assert_eq!(
        o.kernel_dropped, missed,
        "kernel drops differ from what the receivers missed"
    );
    assert_eq!(
        o.kernel_expired, 0,
        "the controller let its deadline expire while running"
    );
}

#[test]
fn at_zero_drop_probability_every_packet_arrives() {
    let o = run_at("0");
    check(0.0, &o);
    assert_eq!(o.video_received, o.video_sent);
    assert_eq!(o.v6_received, o.v6_sent);
    assert_eq!(o.kernel_dropped, 0);
}

#[test]
fn at_ten_percent_the_receiver_loses_ten_percent() {
    check(0.1, &run_at("0.1"));
}

#[test]
fn at_forty_percent_the_receiver_loses_forty_percent() {
    check(0.4, &run_at("0.4"));
}

#[test]
fn at_full_drop_probability_no_video_packet_arrives_but_other_ports_do() {
    let o = run_at("1.0");
    check(1.0, &o);
    assert_eq!(o.video_received, 0);
    assert_eq!(o.v6_received, 0, "IPv6 video packets got through");
}
