//! The udp module with real sockets on loopback: a whole Sender -> Receiver stream, feedback
//! back, and foreign datagrams counted and dropped.

#[path = "support/skip.rs"]
mod skip;
#[path = "support/udp_run.rs"]
mod udp_run;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::time::{Duration, Instant};

use keymash_transport::TransportConfig;
use udp_run::{stream, UdpPair};

fn stream_on(ip: IpAddr) {
    let mut pair = UdpPair::bind(ip).expect("bind loopback");
    // A stranger writes to the receiver's port before and during the stream.
    let stranger = UdpSocket::bind((ip, 0)).expect("bind stranger");
    let rx_addr = pair.rx.local_addr().expect("rx addr");
    for _ in 0..3 {
        stranger
            .send_to(&[0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 42], rx_addr)
            .expect("stranger send");
    }
    let config = TransportConfig {
        fec: true,
        nack: true,
        ..TransportConfig::default()
    };
    let run = stream(&mut pair, config, 30, 20, Duration::from_millis(10));
    assert_eq!(
        run.delivered.len(),
        run.sent.len(),
        "{ip}: {:?}",
        run.receiver
    );
    for (d, s) in run.delivered.iter().zip(&run.sent) {
        assert_eq!(&d.payload, s, "{ip}: payload {} differs", d.seq);
    }
    assert_eq!(run.receiver.lost, 0, "{ip}");
    assert_eq!(
        run.receiver.foreign, 0,
        "{ip}: foreign datagrams must stop at the socket"
    );
    assert_eq!(pair.rx.foreign_datagrams(), 3, "{ip}");
    assert!(run.receiver.repair_received > 0, "{ip}");
    assert!(run.sender.reports_received > 0, "{ip}: {:?}", run.sender);
    assert!(
        run.sender
            .rtt
            .is_some_and(|r| r < Duration::from_millis(100)),
        "{ip}: {:?}",
        run.sender
    );
    let (rcv, snd) = pair.rx.buffer_sizes().expect("buffer sizes");
    assert!(rcv > 0 && snd > 0);
}

#[test]
fn a_stream_crosses_ipv4_loopback_with_feedback_and_strangers_are_ignored() {
    stream_on(IpAddr::V4(Ipv4Addr::LOCALHOST));
}

#[test]
fn a_stream_crosses_ipv6_loopback_when_the_host_has_it() {
    if UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).is_err() {
        skip::skip_or_fail(
            "no IPv6 loopback (::1) on this host, so the IPv6 path cannot be tested",
        );
        return;
    }
    stream_on(IpAddr::V6(Ipv6Addr::LOCALHOST));
}

#[test]
fn a_dual_stack_socket_accepts_an_ipv4_peer() {
    use keymash_transport::udp::{PeerSocket, SocketBuffers};
    use keymash_transport::{Transmit, TransmitKind};
    if UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).is_err() {
        skip::skip_or_fail(
            "no IPv6 on this host (cannot bind [::]), so dual-stack cannot be tested",
        );
        return;
    }
    let v4 = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let mut dual = PeerSocket::bind(
        (Ipv6Addr::UNSPECIFIED, 0).into(),
        v4.local_addr().unwrap(),
        SocketBuffers::default(),
    )
    .unwrap();
    let port = dual.local_addr().unwrap().port();
    v4.send_to(b"\x80\x60hello", (Ipv4Addr::LOCALHOST, port))
        .unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(
        dual.recv(&mut buf, Duration::from_secs(2)).unwrap(),
        Some(7)
    );
    dual.send(&Transmit {
        contents: b"back".to_vec(),
        kind: TransmitKind::Rtcp,
    })
    .unwrap();
    let (n, _) = v4.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"back");
    assert_eq!(
        dual.recv(&mut buf, Duration::from_millis(20)).unwrap(),
        None
    );
}

#[test]
fn a_datagram_read_late_says_when_it_arrived() {
    use keymash_transport::{Transmit, TransmitKind};
    let mut pair = UdpPair::bind(IpAddr::V4(Ipv4Addr::LOCALHOST)).expect("bind loopback");
    let mut buf = [0u8; 64];
    // Linux turns receive timestamps on for the whole stack asynchronously (the first
    // SO_TIMESTAMPNS socket flips a static key from a deferred work item): until that has run,
    // a datagram is stamped when it is read. On a loaded machine that can take a while, so wait
    // for a datagram stamped on arrival first (net-rx only reads its first packets' arrival a
    // little late for it).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        pair.tx
            .send(&Transmit {
                contents: b"\x80\x60warm-up".to_vec(),
                kind: TransmitKind::Media,
            })
            .expect("send");
        std::thread::sleep(Duration::from_millis(10));
        let (_, arrival) = pair
            .rx
            .recv_at(&mut buf, Duration::from_secs(2))
            .expect("recv")
            .expect("a datagram");
        if arrival.elapsed() >= Duration::from_millis(5) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no datagram was stamped on arrival within 10 s"
        );
    }
    for _ in 0..3 {
        let sent = Instant::now();
        pair.tx
            .send(&Transmit {
                contents: b"\x80\x60stamped".to_vec(),
                kind: TransmitKind::Media,
            })
            .expect("send");
        // The reader is busy for 30 ms: the kernel's timestamp still says when it came.
        std::thread::sleep(Duration::from_millis(30));
        let (len, arrival) = pair
            .rx
            .recv_at(&mut buf, Duration::from_secs(2))
            .expect("recv")
            .expect("a datagram");
        let read = Instant::now();
        assert_eq!(&buf[..len], b"\x80\x60stamped");
        assert!(
            arrival
                >= sent
                    .checked_sub(Duration::from_millis(1))
                    .expect("after boot"),
            "arrival {:?} before the send",
            sent - arrival
        );
        assert!(
            arrival < sent + Duration::from_millis(10)
                && read - arrival >= Duration::from_millis(25),
            "arrival {:?} after the send, read {:?} after the arrival",
            arrival.saturating_duration_since(sent),
            read - arrival
        );
    }
}
