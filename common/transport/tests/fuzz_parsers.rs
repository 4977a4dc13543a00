//! A smaller run of the seeded parser fuzzer (the million-case run is
//! `cargo bench -p keymash-transport --bench fuzz_parsers`).

#[path = "support/fuzz.rs"]
mod fuzz;

#[test]
fn every_parser_survives_mutated_packets_and_keeps_its_invariants() {
    let report = fuzz::run(60_000, 0xF022);
    assert_eq!(report.cases, 60_000);
    // The mutations must leave enough valid packets for the deeper paths to be reached.
    assert!(report.rtp_ok > 10_000, "{report:?}");
    assert!(report.rtcp_ok > 1_000, "{report:?}");
    assert!(report.repair_ok > 1_000, "{report:?}");
    assert!(report.receiver_malformed > 1_000, "{report:?}");
    assert!(report.receiver_delivered > 100, "{report:?}");
}

#[test]
fn every_corpus_packet_is_valid_before_mutation() {
    for d in fuzz::corpus() {
        fuzz::check_parsers(&d);
        assert!(
            keymash_transport::rtp::RtpPacket::parse(&d).is_ok()
                || keymash_transport::rtcp::validate_compound(&d).is_ok(),
            "corpus packet parses as neither RTP nor RTCP: {d:?}"
        );
    }
}
