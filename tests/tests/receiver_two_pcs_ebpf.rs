//! The whole installation on one machine: the four sender services in one network namespace,
//! the four receiver services (with the eBPF loss filter at the receiver's ingress) in another,
//! joined by a veth pair. With nobody mashing the filter drops about 40% of the video; keystrokes
//! fed through mash-input's FIFO bring the measured loss down to 0 and raise the bytes per frame.
//! The capture-to-present latency (from the synthetic scene's stamp, playout delay left out) is
//! printed for the loss levels seen (about 40%, 0% and 10%).
//!
//! The filter's loss is judged by the kernel's own counters (seen and dropped video packets,
//! which loss-controller publishes), over the same windows as net-rx's loss gauge, which is
//! printed beside it: what net-rx counts missing also includes what a starved machine loses
//! elsewhere (net-tx dropping packets that waited too long to be paced, a full socket buffer).

use std::time::{Duration, Instant};

use keymash_pipeline::Service;
use keymash_tests::receiver::{type_into_fifo, typist_level, ReceiverSetup};
use keymash_tests::{require_root, NetnsPair};

/// Averages gauge `name` of `service` over `duration`, sampled every 100 ms.
fn mean_gauge(setup: &ReceiverSetup, service: Service, name: &str, duration: Duration) -> f64 {
    let until = Instant::now() + duration;
    let mut samples = Vec::new();
    while Instant::now() < until {
        if let Some(v) = setup.gauge(service, name) {
            samples.push(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!samples.is_empty(), "{service} never published {name}");
    samples.iter().sum::<f64>() / samples.len() as f64
}

/// The loss-controller's kernel counters (video packets seen, dropped) now.
fn kernel_counters(setup: &ReceiverSetup) -> (u64, u64) {
    let counter = |name| setup.counter(Service::LossController, name).unwrap_or(0);
    (counter("seen"), counter("dropped"))
}

/// Over `duration`: net-rx's loss gauge (mean, percent), the filter's drops as the kernel
/// counted them (percent of the video packets it saw), and net-tx's packets dropped as stale.
fn loss_over(setup: &ReceiverSetup, duration: Duration) -> (f64, f64, u64) {
    let stale = || {
        setup
            .counter(Service::NetTx, "send_queue_dropped")
            .unwrap_or(0)
    };
    let ((seen, dropped), stale_before) = (kernel_counters(setup), stale());
    let net_rx = mean_gauge(setup, Service::NetRx, "loss_percent", duration);
    let ((seen_after, dropped_after), stale_after) = (kernel_counters(setup), stale());
    let seen = seen_after - seen;
    assert!(seen > 0, "the filter saw no video packet in {duration:?}");
    (
        net_rx,
        100.0 * (dropped_after - dropped) as f64 / seen as f64,
        stale_after - stale_before,
    )
}

/// Display's capture-to-present p50/p99, as text; absent while the stamp cannot be read (it
/// needs quality 30 or more, so not at the quality asked for with nobody mashing).
fn latency(setup: &ReceiverSetup) -> String {
    match (
        setup.gauge(Service::Display, "capture_to_present_p50_ms"),
        setup.gauge(Service::Display, "capture_to_present_p99_ms"),
    ) {
        (Some(p50), Some(p99)) => format!("{p50:.1}/{p99:.1} ms"),
        _ => "n/a (stamp unreadable)".to_owned(),
    }
}

#[test]
fn mashing_brings_the_filtered_loss_from_forty_percent_to_zero_and_raises_the_bytes_per_frame() {
    require_root();
    let pair = NetnsPair::create("rx2pc").expect("network namespaces");
    let setup = ReceiverSetup::two_pcs(
        "rx-2pc",
        "[display]\noutput = \"frames:{dir}/shown\"\nplayout_max_ms = 50\n[input]\nsource = \"fifo:{dir}/keys\"\n",
    );
    let _installation = setup.start_installation(&pair);

    // Nobody mashing: the filter's rest loss (loss.drop_at_rest, 40%). The wait only lets the
    // stream and net-rx's one-second loss window fill; the bound is statistical (about 100
    // packets a second at 320x240 q10), not a matter of time.
    std::thread::sleep(Duration::from_secs(3));
    let (rx_at_rest, loss_at_rest, stale_at_rest) = loss_over(&setup, Duration::from_secs(3));
    let bytes_at_rest = mean_gauge(
        &setup,
        Service::Encoder,
        "bytes_per_frame",
        Duration::from_secs(1),
    );
    let latency_at_rest = latency(&setup);
    assert!(
        (28.0..=52.0).contains(&loss_at_rest),
        "the filter dropped {loss_at_rest:.1}% with nobody mashing (net-rx saw {rx_at_rest:.1}% lost)"
    );

    // 14 varied keys a second: the mash model gives 0.92 for them, above loss.zero_loss_at_mash
    // (0.8), where the loss curve reaches 0. The typist keeps to its schedule on a loaded
    // machine (see type_records_into_fifo), so the level is the model's, not the scheduler's.
    let typist = type_into_fifo(setup.dir.join("keys"), 14, Duration::from_secs(17));
    std::thread::sleep(Duration::from_secs(4));
    let (rx_mashing, loss_mashing, stale_mashing) = loss_over(&setup, Duration::from_secs(10));
    let bytes_mashing = mean_gauge(
        &setup,
        Service::Encoder,
        "bytes_per_frame",
        Duration::from_secs(1),
    );
    let level = setup.mash().expect("mash cell").level().get();
    let latency_clear = latency(&setup);
    typist.join().expect("typist");
    eprintln!(
        "at rest: filter drops {loss_at_rest:.1}%, net-rx loss {rx_at_rest:.1}% ({stale_at_rest} packets stale in net-tx), \
         {bytes_at_rest:.0} B/frame, capture-to-present p50/p99 {latency_at_rest}"
    );
    eprintln!(
        "mashing (level {level:.2}): filter drops {loss_mashing:.2}%, net-rx loss {rx_mashing:.2}% ({stale_mashing} packets stale \
         in net-tx), {bytes_mashing:.0} B/frame, capture-to-present p50/p99 {latency_clear}"
    );
    eprintln!(
        "display (debug build, frames:DIR): decode {:.2} ms, present {:.2} ms per frame",
        setup
            .gauge(Service::Display, "decode_ms")
            .unwrap_or(f64::NAN),
        setup
            .gauge(Service::Display, "present_ms")
            .unwrap_or(f64::NAN)
    );
    assert!(
        level >= 0.8,
        "mash level while typing 14 keys/s: {level} (the model gives {:.2})",
        typist_level(14, Duration::from_secs(14))
    );
    assert!(
        loss_mashing < 1.0,
        "the filter dropped {loss_mashing:.2}% while mashing (net-rx saw {rx_mashing:.2}% lost)"
    );
    assert!(
        bytes_mashing > 2.0 * bytes_at_rest,
        "bytes per frame {bytes_mashing:.0} vs {bytes_at_rest:.0} at rest"
    );

    // About 10% loss, for the latency figure under loss: 6 varied keys a second hold the mash
    // level near 0.4, where the default loss curve gives 0.4 * (1 - 0.4 / 0.8)^2 = 10%.
    let typist = type_into_fifo(setup.dir.join("keys"), 6, Duration::from_secs(16));
    std::thread::sleep(Duration::from_secs(5));
    let (rx_some, loss_some, stale_some) = loss_over(&setup, Duration::from_secs(10));
    let level = setup.mash().expect("mash cell").level().get();
    let latency_lossy = latency(&setup);
    typist.join().expect("typist");
    eprintln!(
        "6 keys/s (level {level:.2}): filter drops {loss_some:.1}%, net-rx loss {rx_some:.1}% ({stale_some} packets stale in \
         net-tx), capture-to-present p50/p99 {latency_lossy}"
    );
    assert!(
        (3.0..=20.0).contains(&loss_some),
        "the filter dropped {loss_some:.1}% at 6 keys/s (net-rx saw {rx_some:.1}% lost)"
    );
}
