//! Drives a Sender and a Receiver over real UDP sockets with the real clock, in one thread.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use keymash_core::FrameNo;
use keymash_transport::udp::{PeerSocket, SocketBuffers, RECV_BUFFER_LEN};
use keymash_transport::{
    ReceivedPayload, Receiver, ReceiverStats, Sender, SenderStats, TransportConfig,
};

pub(crate) struct UdpPair {
    pub tx: PeerSocket,
    pub rx: PeerSocket,
}

impl UdpPair {
    /// Both sockets bound on `ip` with free ports, each knowing the other as its peer.
    pub(crate) fn bind(ip: IpAddr) -> Result<Self, keymash_transport::udp::UdpError> {
        let any = SocketAddr::new(ip, 0);
        let mut tx = PeerSocket::bind(any, any, SocketBuffers::default())?;
        let rx = PeerSocket::bind(any, tx.local_addr()?, SocketBuffers::default())?;
        tx.set_peer(rx.local_addr()?);
        Ok(UdpPair { tx, rx })
    }
}

pub(crate) struct UdpRun {
    pub sent: Vec<Vec<u8>>,
    pub delivered: Vec<ReceivedPayload>,
    pub sender: SenderStats,
    pub receiver: ReceiverStats,
    /// The sender's media sequence numbers, in order (wire values).
    pub sent_seqs: Vec<u16>,
}

/// Stream `frames` frames of `per_frame` payloads, one every `interval`, then linger for the
/// last feedback.
pub(crate) fn stream(
    pair: &mut UdpPair,
    config: TransportConfig,
    frames: u64,
    per_frame: usize,
    interval: Duration,
) -> UdpRun {
    let start = Instant::now();
    let mut sender = Sender::new(config.clone(), 0xC0FFEE, start).expect("valid config");
    let mut receiver = Receiver::new(config, 0xBEEF, start).expect("valid config");
    let mut buf = vec![0u8; RECV_BUFFER_LEN];
    let mut next_frame = start;
    let mut frame_no = FrameNo(0);
    let mut sent = Vec::new();
    let mut sent_seqs = Vec::new();
    let mut delivered = Vec::new();
    let linger = Duration::from_millis(400);
    let end = start + interval * frames as u32 + linger;
    loop {
        let now = Instant::now();
        if frame_no.0 < frames && now >= next_frame {
            let payloads: Vec<Vec<u8>> = (0..per_frame)
                .map(|i| {
                    format!("frame {} payload {i} ", frame_no.0)
                        .repeat(1 + i % 40)
                        .into_bytes()
                })
                .collect();
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let queued = sender
                .push_frame(now, frame_no, now, &refs)
                .expect("frame accepted");
            sent_seqs.extend((0..per_frame as u64).map(|i| queued.first_seq.add(i).wire()));
            sent.extend(payloads);
            frame_no = frame_no.next();
            next_frame += interval;
        }
        while let Some(t) = sender.poll_transmit(now) {
            pair.tx.send(&t).expect("send");
        }
        while let Some(n) = pair.rx.recv(&mut buf, Duration::ZERO).expect("recv") {
            receiver.handle_datagram(Instant::now(), &buf[..n]);
        }
        while let Some(p) = receiver.poll_payload(Instant::now()) {
            delivered.push(p);
        }
        while let Some(t) = receiver.poll_transmit(Instant::now()) {
            pair.rx.send(&t).expect("send feedback");
        }
        while let Some(n) = pair
            .tx
            .recv(&mut buf, Duration::ZERO)
            .expect("recv feedback")
        {
            sender.handle_datagram(Instant::now(), &buf[..n]);
        }
        if now >= end {
            break;
        }
        if let Some(n) = pair
            .rx
            .recv(&mut buf, Duration::from_micros(500))
            .expect("recv")
        {
            receiver.handle_datagram(Instant::now(), &buf[..n]);
        }
    }
    UdpRun {
        sent,
        delivered,
        sender: sender.stats().clone(),
        receiver: receiver.stats(Instant::now()),
        sent_seqs,
    }
}
