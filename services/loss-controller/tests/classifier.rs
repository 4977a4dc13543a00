//! The classifier on synthetic packets, without attaching it anywhere (BPF_PROG_TEST_RUN via
//! aya's `test_run`): what it drops, what it always passes, what it counts, and its random
//! models' statistics.

// A test crate: helpers panic on setup failure, with their location, like the tests do.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use keymash_core::DropProbability;
use keymash_loss_controller::filter::{LossFilter, Verdict};
use keymash_loss_controller::layout::{LossConfigRecord, LossCounters};
use keymash_loss_controller::loss_model::{GilbertElliott, LossModel};
use keymash_loss_controller::runner::monotonic_now_ns;
use keymash_tests::require_root;

const PORT: u16 = 5004;

// ---- packet builders (checksums are irrelevant to the classifier and left zero) ----

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_ARP: u16 = 0x0806;
const ETH_VLAN: u16 = 0x8100;
const UDP: u8 = 17;
const TCP: u8 = 6;

fn ethernet(ethertype: u16) -> Vec<u8> {
    let mut p = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    p.extend_from_slice(&ethertype.to_be_bytes());
    p
}

fn ports(dst: u16) -> Vec<u8> {
    // Source port, destination port, and for UDP length + checksum (TCP gets more below).
    let mut l4 = 40000u16.to_be_bytes().to_vec();
    l4.extend_from_slice(&dst.to_be_bytes());
    l4.extend_from_slice(&[0, 16, 0, 0]);
    l4
}

fn ipv4(protocol: u8, options_words: u8, frag_off: u16, l4: &[u8]) -> Vec<u8> {
    let header_len = 20 + 4 * usize::from(options_words);
    let total = (header_len + l4.len()) as u16;
    let mut p = vec![0x40 | (5 + options_words), 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 1]);
    p.extend_from_slice(&frag_off.to_be_bytes());
    p.extend_from_slice(&[64, protocol, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2]);
    p.extend(std::iter::repeat_n(1u8, 4 * usize::from(options_words))); // NOP options
    p.extend_from_slice(l4);
    p
}

fn ipv6(next: u8, l4: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next, 64]);
    p.extend_from_slice(&[0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend_from_slice(&[0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    p.extend_from_slice(l4);
    p
}

fn ipv6_fragment_header(next: u8, offset_units: u16, more: bool) -> Vec<u8> {
    let frag_off = (offset_units << 3) | u16::from(more);
    let mut h = vec![next, 0];
    h.extend_from_slice(&frag_off.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 7]);
    h
}

fn frame(ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut p = ethernet(ethertype);
    p.extend_from_slice(l3);
    p
}

fn udp4(dst: u16) -> Vec<u8> {
    frame(ETH_IPV4, &ipv4(UDP, 0, 0, &ports(dst)))
}

fn tcp4(dst: u16) -> Vec<u8> {
    let mut l4 = ports(dst);
    l4.extend_from_slice(&[0; 12]);
    frame(ETH_IPV4, &ipv4(TCP, 0, 0, &l4))
}

fn arp() -> Vec<u8> {
    let mut body = vec![0, 1, 8, 0, 6, 4, 0, 1];
    body.extend_from_slice(&[
        0x02, 0, 0, 0, 0, 1, 198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 198, 18, 0, 2,
    ]);
    frame(ETH_ARP, &body)
}

fn vlan(inner_ethertype: u16, l3: &[u8]) -> Vec<u8> {
    let mut p = ethernet(ETH_VLAN);
    p.extend_from_slice(&[0, 42]);
    p.extend_from_slice(&inner_ethertype.to_be_bytes());
    p.extend_from_slice(l3);
    p
}

fn truncated(mut p: Vec<u8>, len: usize) -> Vec<u8> {
    p.truncate(len);
    p
}

// ---- helpers ----

fn loaded_filter(model: LossModel) -> LossFilter {
    require_root();
    let mut filter = LossFilter::load().unwrap();
    configure(&mut filter, model, Duration::from_secs(60));
    filter
}

fn configure(filter: &mut LossFilter, model: LossModel, valid_for: Duration) {
    let deadline = monotonic_now_ns().unwrap() + valid_for.as_nanos() as u64;
    filter.write_config(&model.record(PORT, deadline)).unwrap();
}

fn always() -> LossModel {
    LossModel::Bernoulli(DropProbability::ALL)
}

#[test]
fn with_drop_probability_one_only_udp_to_the_port_is_dropped() {
    let mut filter = loaded_filter(always());
    // (what, packet, verdict, counts as the video flow)
    let cases: Vec<(&str, Vec<u8>, Verdict, bool)> = vec![
        ("IPv4 UDP to the port", udp4(PORT), Verdict::Drop, true),
        (
            "IPv4 UDP with IP options",
            frame(ETH_IPV4, &ipv4(UDP, 3, 0, &ports(PORT))),
            Verdict::Drop,
            true,
        ),
        (
            "IPv4 UDP first fragment",
            frame(ETH_IPV4, &ipv4(UDP, 0, 0x2000, &ports(PORT))),
            Verdict::Drop,
            true,
        ),
        (
            "IPv4 UDP later fragment",
            frame(ETH_IPV4, &ipv4(UDP, 0, 0x2000 | 185, &ports(PORT))),
            Verdict::Pass,
            false,
        ),
        (
            "IPv4 UDP last fragment",
            frame(ETH_IPV4, &ipv4(UDP, 0, 185, &ports(PORT))),
            Verdict::Pass,
            false,
        ),
        (
            "IPv4 UDP to another port",
            udp4(PORT + 1),
            Verdict::Pass,
            false,
        ),
        (
            "IPv4 UDP from the port to another",
            frame(
                ETH_IPV4,
                &ipv4(UDP, 0, 0, &{
                    let mut l4 = PORT.to_be_bytes().to_vec();
                    l4.extend_from_slice(&[0x1f, 0x90, 0, 16, 0, 0]);
                    l4
                }),
            ),
            Verdict::Pass,
            false,
        ),
        ("IPv4 TCP ssh", tcp4(22), Verdict::Pass, false),
        (
            "IPv4 TCP to the video port number",
            tcp4(PORT),
            Verdict::Pass,
            false,
        ),
        (
            "IPv6 UDP to the port",
            frame(ETH_IPV6, &ipv6(UDP, &ports(PORT))),
            Verdict::Drop,
            true,
        ),
        (
            "IPv6 UDP to another port",
            frame(ETH_IPV6, &ipv6(UDP, &ports(53))),
            Verdict::Pass,
            false,
        ),
        (
            "IPv6 TCP ssh",
            frame(
                ETH_IPV6,
                &ipv6(TCP, &{
                    let mut l4 = ports(22);
                    l4.extend_from_slice(&[0; 12]);
                    l4
                }),
            ),
            Verdict::Pass,
            false,
        ),
        (
            "IPv6 UDP first fragment",
            frame(
                ETH_IPV6,
                &ipv6(
                    44,
                    &[ipv6_fragment_header(UDP, 0, true), ports(PORT)].concat(),
                ),
            ),
            Verdict::Drop,
            true,
        ),
        (
            "IPv6 UDP later fragment",
            frame(
                ETH_IPV6,
                &ipv6(
                    44,
                    &[ipv6_fragment_header(UDP, 100, false), ports(PORT)].concat(),
                ),
            ),
            Verdict::Pass,
            false,
        ),
        (
            "IPv6 UDP behind hop-by-hop (not chased)",
            frame(
                ETH_IPV6,
                &ipv6(0, &[vec![UDP, 0, 1, 4, 0, 0, 0, 0], ports(PORT)].concat()),
            ),
            Verdict::Pass,
            false,
        ),
        (
            "VLAN-tagged IPv4 UDP to the port",
            vlan(ETH_IPV4, &ipv4(UDP, 0, 0, &ports(PORT))),
            Verdict::Drop,
            true,
        ),
        (
            "VLAN-tagged IPv6 UDP to another port",
            vlan(ETH_IPV6, &ipv6(UDP, &ports(9))),
            Verdict::Pass,
            false,
        ),
        ("ARP", arp(), Verdict::Pass, false),
        // The kernel's test runner refuses an untagged IPv4/IPv6 frame shorter than its IP
        // header (EINVAL), so headers cut inside the IP header are fed behind a VLAN tag, where
        // only the classifier looks at them.
        (
            "VLAN tag cut short",
            truncated(vlan(ETH_IPV4, &ipv4(UDP, 0, 0, &ports(PORT))), 16),
            Verdict::Pass,
            false,
        ),
        (
            "IPv4 header cut short",
            truncated(vlan(ETH_IPV4, &ipv4(UDP, 0, 0, &ports(PORT))), 18 + 12),
            Verdict::Pass,
            false,
        ),
        (
            "IPv6 header cut short",
            truncated(vlan(ETH_IPV6, &ipv6(UDP, &ports(PORT))), 18 + 30),
            Verdict::Pass,
            false,
        ),
        (
            "UDP header cut short",
            truncated(udp4(PORT), 14 + 20 + 6),
            Verdict::Pass,
            false,
        ),
        (
            "IPv6 UDP header cut short",
            truncated(frame(ETH_IPV6, &ipv6(UDP, &ports(PORT))), 14 + 40 + 4),
            Verdict::Pass,
            false,
        ),
        (
            "IPv4 options run past the end",
            truncated(frame(ETH_IPV4, &ipv4(UDP, 10, 0, &ports(PORT))), 14 + 40),
            Verdict::Pass,
            false,
        ),
        (
            "IPv4 with a bad header length",
            {
                let mut p = udp4(PORT);
                p[14] = 0x44;
                p
            },
            Verdict::Pass,
            false,
        ),
    ];
    let mut expected = LossCounters::default();
    for (what, packet, verdict, is_flow) in cases {
        let got = filter
            .test_run(&packet)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(got, verdict, "{what}");
        if is_flow {
            expected.seen += 1;
            expected.dropped += u64::from(verdict == Verdict::Drop);
        }
        assert_eq!(
            filter.counters().unwrap(),
            expected,
            "counters after {what}"
        );
    }
}

#[test]
fn a_freshly_loaded_filter_drops_nothing() {
    require_root();
    let mut filter = LossFilter::load().unwrap();
    assert_eq!(filter.read_config().unwrap(), LossConfigRecord::default());
    for _ in 0..100 {
        assert_eq!(filter.test_run(&udp4(PORT)).unwrap(), Verdict::Pass);
    }
}

#[test]
fn past_the_deadline_the_flow_passes_and_is_counted_as_expired() {
    let mut filter = loaded_filter(always());
    assert_eq!(filter.test_run(&udp4(PORT)).unwrap(), Verdict::Drop);
    let expired = monotonic_now_ns().unwrap() - 1;
    filter
        .write_config(&always().record(PORT, expired))
        .unwrap();
    for _ in 0..10 {
        assert_eq!(filter.test_run(&udp4(PORT)).unwrap(), Verdict::Pass);
    }
    assert_eq!(
        filter.counters().unwrap(),
        LossCounters {
            seen: 11,
            dropped: 1,
            passed_expired: 10
        }
    );
}

#[test]
fn a_deadline_a_moment_away_expires_on_its_own() {
    let mut filter = loaded_filter(always());
    // Judged against the clock the classifier reads (CLOCK_MONOTONIC, bpf_ktime_get_ns), not
    // against sleeps: a run that ended before the deadline must drop, one that started after
    // it must pass. A run a loaded machine stretched across the deadline proves nothing, so
    // that step is tried again (a few times) with a new deadline.
    let mut deadline = 0;
    for attempt in 1.. {
        deadline = monotonic_now_ns().unwrap() + 50_000_000;
        filter
            .write_config(&always().record(PORT, deadline))
            .unwrap();
        let verdict = filter.test_run(&udp4(PORT)).unwrap();
        if monotonic_now_ns().unwrap() < deadline {
            assert_eq!(verdict, Verdict::Drop, "before the deadline");
            break;
        }
        assert!(
            attempt < 10,
            "every run took longer than the 50 ms to the deadline"
        );
    }
    while monotonic_now_ns().unwrap() <= deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        filter.test_run(&udp4(PORT)).unwrap(),
        Verdict::Pass,
        "after the deadline"
    );
}

#[test]
fn the_pass_model_and_port_zero_drop_nothing() {
    let mut filter = loaded_filter(LossModel::Pass);
    assert_eq!(filter.test_run(&udp4(PORT)).unwrap(), Verdict::Pass);
    let deadline = monotonic_now_ns().unwrap() + 60_000_000_000;
    filter.write_config(&always().record(0, deadline)).unwrap();
    assert_eq!(filter.test_run(&udp4(0)).unwrap(), Verdict::Pass);
    assert_eq!(filter.test_run(&udp4(PORT)).unwrap(), Verdict::Pass);
}

#[test]
fn bernoulli_drops_at_the_configured_rate() {
    const RUNS: u64 = 20_000;
    let p = 0.4;
    let mut filter = loaded_filter(LossModel::Bernoulli(DropProbability::new(p).unwrap()));
    let packet = udp4(PORT);
    let dropped = (0..RUNS)
        .filter(|_| filter.test_run(&packet).unwrap() == Verdict::Drop)
        .count() as u64;
    let rate = dropped as f64 / RUNS as f64;
    // 0.015 is more than 4 standard deviations at 20,000 draws.
    assert!((rate - p).abs() < 0.015, "dropped {rate}");
    assert_eq!(
        filter.counters().unwrap(),
        LossCounters {
            seen: RUNS,
            dropped,
            passed_expired: 0
        }
    );
}

#[test]
fn gilbert_elliott_produces_bursts_of_mean_length_one_over_r() {
    const RUNS: usize = 30_000;
    let ge = GilbertElliott {
        p: DropProbability::new(0.02).unwrap(),
        r: DropProbability::new(0.2).unwrap(),
        loss_bad: DropProbability::ALL,
        loss_good: DropProbability::NONE,
    };
    let mut filter = loaded_filter(LossModel::GilbertElliott(ge));
    filter.reset_gilbert_elliott_state().unwrap();
    let packet = udp4(PORT);
    let verdicts: Vec<Verdict> = (0..RUNS)
        .map(|_| filter.test_run(&packet).unwrap())
        .collect();
    let mut bursts = Vec::new();
    let mut run = 0;
    for v in verdicts {
        if v == Verdict::Drop {
            run += 1;
        } else if run > 0 {
            bursts.push(run);
            run = 0;
        }
    }
    let mean = bursts.iter().sum::<usize>() as f64 / bursts.len() as f64;
    assert!(bursts.len() > 200, "only {} bursts", bursts.len());
    assert!(
        (mean - ge.mean_bad_run()).abs() < 0.2 * ge.mean_bad_run(),
        "mean burst {mean}"
    );
}
