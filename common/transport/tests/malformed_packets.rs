//! Malformed, truncated and foreign datagrams injected into a live stream are counted and
//! ignored; the stream carries on untouched.

mod support;

use std::time::Duration;

use keymash_transport::rtp::{PayloadType, RtpHeader, Ssrc};
use keymash_transport::TransportConfig;
use support::{LossModel, Pair};

#[test]
fn malformed_truncated_and_foreign_packets_are_counted_and_ignored() {
    let config = TransportConfig {
        fec: true,
        ..TransportConfig::default()
    };
    let mut pair = Pair::new(
        config,
        LossModel::None,
        LossModel::None,
        Duration::from_millis(5),
        33,
    );
    pair.frames_left = 30;
    let at = |ms: u64| pair.start + Duration::from_millis(ms);
    let ms200 = at(200);
    let malformed: Vec<Vec<u8>> = vec![
        vec![0x80, 96, 0, 1, 0, 0, 0],                // RTP header cut short
        vec![0x8F, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1], // 15 CSRCs that are not there
        vec![0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xBE], // extension cut short
        vec![0xA0, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 200], // padding longer than the packet
        vec![0x81, 201, 0, 9, 0, 0, 0, 1],            // RTCP length runs past the end
        vec![0x80, 205, 0, 1, 0, 0, 0, 1],            // NACK with FMT 0: unsupported
    ];
    let foreign: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x00; 40], // not version 2
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        RtpHeader {
            payload_type: PayloadType::new(100).unwrap(),
            marker: false,
            seq: 1,
            timestamp: 0,
            ssrc: Ssrc(5),
        }
        .to_packet(b"other stream"),
    ];
    let (n_malformed, n_foreign) = (malformed.len() as u64, foreign.len() as u64);
    for d in malformed.into_iter().chain(foreign) {
        pair.inject.push((ms200, d));
    }
    pair.run_until(
        Duration::from_secs(2),
        TransportConfig::default().frame_interval,
    );
    let stats = pair.receiver.stats(pair.now);
    assert_eq!(stats.malformed, n_malformed, "{stats:?}");
    assert_eq!(stats.foreign, n_foreign, "{stats:?}");
    assert_eq!(stats.lost, 0);
    assert_eq!(pair.delivered.len(), 30 * 20);
    pair.assert_delivered_payloads_are_byte_identical();
}

#[test]
fn media_from_a_second_sender_is_foreign_while_the_first_is_alive() {
    let mut pair = Pair::new(
        TransportConfig::default(),
        LossModel::None,
        LossModel::None,
        Duration::from_millis(5),
        34,
    );
    pair.frames_left = 30;
    let intruder = RtpHeader {
        payload_type: PayloadType::DYNAMIC_VIDEO,
        marker: true,
        seq: 7,
        timestamp: 0,
        ssrc: Ssrc(0xDEAD_BEE0),
    }
    .to_packet(b"intruder");
    pair.inject
        .push((pair.start + Duration::from_millis(300), intruder));
    pair.run_until(
        Duration::from_secs(2),
        TransportConfig::default().frame_interval,
    );
    let stats = pair.receiver.stats(pair.now);
    assert_eq!(stats.foreign, 1);
    assert_eq!(pair.delivered.len(), 30 * 20);
    pair.assert_delivered_payloads_are_byte_identical();
}
