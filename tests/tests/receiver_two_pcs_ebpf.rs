//! The whole installation on one machine: the four sender services in one network namespace,
//! the four receiver services (with the eBPF loss filter at the receiver's ingress) in another,
//! joined by a veth pair. With nobody mashing the filter drops about 40% of the video; keystrokes
//! fed through mash-input's FIFO bring the measured loss down to 0 and raise the bytes per frame.
//! The capture-to-present latency (from the synthetic scene's stamp, playout delay left out) is
//! printed for the loss levels seen (about 40%, 0% and 10%).

use std::time::{Duration, Instant};

use keymash_core::pipeline::Service;
use keymash_tests::receiver::{type_into_fifo, ReceiverSetup};
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
        "[display]\noutput = \"frames:{dir}/shown\"\nplayout_delay_ms = 50\n[input]\nsource = \"fifo:{dir}/keys\"\n",
    );
    let (left, right) = (&pair.left, &pair.right);
    let _mash_input = setup.start_in(right, "keymash-mash-input", &[]);
    let _loss_controller = setup.start_in(right, "keymash-loss-controller", &[]);
    let _net_rx = setup.start_in(right, "keymash-net-rx", &[]);
    let _display = setup.start_in(right, "keymash-display", &[]);
    let _capture = setup.start_in(left, "keymash-capture", &[]);
    let _delay = setup.start_in(left, "keymash-delay-buffer", &[]);
    let _encoder = setup.start_in(left, "keymash-encoder", &[]);
    let _net_tx = setup.start_in(left, "keymash-net-tx", &[]);

    // Nobody mashing: the filter's rest loss (loss.drop_at_rest, 40%).
    std::thread::sleep(Duration::from_secs(3));
    let loss_at_rest = mean_gauge(&setup, Service::NetRx, "loss_percent", Duration::from_secs(3));
    let bytes_at_rest = mean_gauge(&setup, Service::Encoder, "bytes_per_frame", Duration::from_secs(1));
    let latency_at_rest = latency(&setup);
    assert!((28.0..=52.0).contains(&loss_at_rest), "loss with nobody mashing: {loss_at_rest:.1}%");

    // 14 varied keys a second (level above loss.zero_loss_at_mash = 0.8).
    let typist = type_into_fifo(setup.dir.join("keys"), 14, Duration::from_secs(17));
    std::thread::sleep(Duration::from_secs(4));
    let loss_mashing = mean_gauge(&setup, Service::NetRx, "loss_percent", Duration::from_secs(10));
    let bytes_mashing = mean_gauge(&setup, Service::Encoder, "bytes_per_frame", Duration::from_secs(1));
    let level = setup.mash().expect("mash cell").level().get();
    let latency_clear = latency(&setup);
    typist.join().expect("typist");
    eprintln!(
        "at rest: loss {loss_at_rest:.1}%, {bytes_at_rest:.0} B/frame, capture-to-present p50/p99 {latency_at_rest}"
    );
    eprintln!(
        "mashing (level {level:.2}): loss {loss_mashing:.2}%, {bytes_mashing:.0} B/frame, capture-to-present p50/p99 {latency_clear}"
    );
    eprintln!(
        "display (debug build, frames:DIR): decode {:.2} ms, present {:.2} ms per frame",
        setup.gauge(Service::Display, "decode_ms").unwrap_or(f64::NAN),
        setup.gauge(Service::Display, "present_ms").unwrap_or(f64::NAN)
    );
    assert!(level >= 0.8, "mash level while typing 14 keys/s: {level}");
    assert!(loss_mashing < 1.0, "loss while mashing: {loss_mashing:.2}%");
    assert!(bytes_mashing > 2.0 * bytes_at_rest, "bytes per frame {bytes_mashing:.0} vs {bytes_at_rest:.0} at rest");

    // About 10% loss, for the latency figure under loss: 6 varied keys a second hold the mash
    // level near 0.4, where the default loss curve gives 0.4 * (1 - 0.4 / 0.8)^2 = 10%.
    let typist = type_into_fifo(setup.dir.join("keys"), 6, Duration::from_secs(16));
    std::thread::sleep(Duration::from_secs(5));
    let loss_some = mean_gauge(&setup, Service::NetRx, "loss_percent", Duration::from_secs(10));
    let level = setup.mash().expect("mash cell").level().get();
    let latency_lossy = latency(&setup);
    typist.join().expect("typist");
    eprintln!("6 keys/s (level {level:.2}): loss {loss_some:.1}%, capture-to-present p50/p99 {latency_lossy}");
    assert!((3.0..=20.0).contains(&loss_some), "loss at 6 keys/s: {loss_some:.1}%");
}
