//! Each receiver service can die by SIGKILL and be restarted (as systemd would), and the
//! pipeline carries on: display shows new frames again, net-rx's feedback resumes, mash-input's
//! level comes back.

use std::path::Path;
use std::time::Duration;

use keymash_tests::receiver::{ReceiverSetup, TestSender};

/// The newest frame number among `frame-NNNNNNNN.ppm` files written by display.
fn newest_shown(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_prefix("frame-")?.strip_suffix(".ppm")?.parse().ok()
                })
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Streams for `duration` and returns the newest frame number sent.
fn stream(sender: &mut TestSender, duration: Duration) -> u64 {
    sender.stream_at_requested_quality(duration).last().map_or(0, |f| f.frame.0)
}

#[test]
fn every_receiver_service_killed_with_sigkill_is_recovered_from_by_a_restart() {
    let setup = ReceiverSetup::new(
        "rx-kill9",
        "[display]\noutput = \"frames:{dir}/shown\"\nplayout_delay_ms = 50\n[input]\nsource = \"script:0-600s:12/s\"\n",
    );
    let shown = setup.dir.join("shown");
    let mut mash_input = setup.start("keymash-mash-input");
    let mut net_rx = setup.start("keymash-net-rx");
    let mut display = setup.start("keymash-display");
    let mut sender = setup.sender();

    let last = stream(&mut sender, Duration::from_secs(3));
    assert!(newest_shown(&shown) + 10 >= last, "pipeline is running before the kills");
    assert!(sender.requested_quality().get() > 40, "scripted mashing raised the quality: {}", sender.requested_quality());

    // net-rx: the ring survives; display picks the stream up again after the restart.
    net_rx.kill_hard().expect("kill -9 net-rx");
    let before = stream(&mut sender, Duration::from_millis(500));
    net_rx = setup.start("keymash-net-rx");
    let last = stream(&mut sender, Duration::from_secs(2));
    assert!(newest_shown(&shown) > before, "no new frame shown after net-rx restarted");
    assert!(newest_shown(&shown) + 15 >= last, "display lags after net-rx restart");

    // display: a new one resumes at the newest payloads.
    display.kill_hard().expect("kill -9 display");
    let before = stream(&mut sender, Duration::from_millis(500));
    display = setup.start("keymash-display");
    stream(&mut sender, Duration::from_secs(2));
    assert!(newest_shown(&shown) > before, "no new frame shown after display restarted");

    // mash-input: the cell is re-attached and the level rises again from the script.
    mash_input.kill_hard().expect("kill -9 mash-input");
    let total_before = setup.mash().expect("mash cell").presses_total();
    mash_input = setup.start("keymash-mash-input");
    stream(&mut sender, Duration::from_secs(3));
    let record = setup.mash().expect("mash cell after restart");
    assert!(record.presses_total() < total_before, "a restarted mash-input counts afresh");
    assert!(record.level().get() > 0.5, "mash level after restart: {}", record.level().get());
    assert!(sender.requested_quality().get() > 40, "quality after mash-input restart: {}", sender.requested_quality());

    for service in [&mut mash_input, &mut net_rx, &mut display] {
        let status = service.terminate(Duration::from_secs(2)).expect("clean stop");
        assert!(status.success(), "exit status {status:?}");
    }
}
