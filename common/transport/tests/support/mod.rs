//! Deterministic sans-IO harness: a virtual clock, a seeded lossy link each way, and a
//! Sender -> Receiver pair stepped from one wake-up to the next (quinn's `Pair`, str0m's netem).
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use keymash_core::FrameNo;
use keymash_transport::fec::SplitMix64;
use keymash_transport::rtp::{RtpPacket, RTP_HEADER_LEN};
use keymash_transport::{ReceivedPayload, Receiver, Sender, TransmitKind, TransportConfig};

/// Decides from (index on the link, datagram) whether to drop it.
pub(crate) type DropChooser = Box<dyn FnMut(u64, &[u8]) -> bool>;

/// Which packets a link drops.
pub(crate) enum LossModel {
    None,
    /// Each packet independently with this probability.
    Bernoulli(f64),
    /// Two-state burst loss: (p good->bad, p bad->good, loss in good, loss in bad).
    GilbertElliott {
        to_bad: f64,
        to_good: f64,
        loss_good: f64,
        loss_bad: f64,
        bad: bool,
    },
    /// Drop when the function says so (sees the datagram and its index on this link).
    Chosen(DropChooser),
    /// Drop everything (a cut cable).
    All,
}

impl LossModel {
    pub(crate) fn gilbert_elliott(to_bad: f64, to_good: f64) -> Self {
        LossModel::GilbertElliott {
            to_bad,
            to_good,
            loss_good: 0.0,
            loss_bad: 1.0,
            bad: false,
        }
    }

    fn drops(&mut self, rng: &mut SplitMix64, index: u64, datagram: &[u8]) -> bool {
        let mut chance =
            |p: f64| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0;
        match self {
            LossModel::None => false,
            LossModel::All => true,
            LossModel::Bernoulli(p) => chance(*p),
            LossModel::GilbertElliott {
                to_bad,
                to_good,
                loss_good,
                loss_bad,
                bad,
            } => {
                let flip = if *bad { *to_good } else { *to_bad };
                if chance(flip) {
                    *bad = !*bad;
                }
                chance(if *bad { *loss_bad } else { *loss_good })
            }
            LossModel::Chosen(f) => f(index, datagram),
        }
    }
}

/// One direction of the network: loss, fixed latency plus seeded extra delay (which reorders).
pub(crate) struct Link {
    pub loss: LossModel,
    pub latency: Duration,
    /// Extra delay drawn uniformly in 0..reorder_jitter per packet.
    pub reorder_jitter: Duration,
    rng: SplitMix64,
    in_flight: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    sent: u64,
    pub dropped: u64,
}

impl Link {
    pub(crate) fn new(loss: LossModel, latency: Duration, seed: u64) -> Self {
        Link {
            loss,
            latency,
            reorder_jitter: Duration::ZERO,
            rng: SplitMix64::new(seed),
            in_flight: BinaryHeap::new(),
            sent: 0,
            dropped: 0,
        }
    }

    pub(crate) fn send(&mut self, now: Instant, datagram: Vec<u8>) {
        let index = self.sent;
        self.sent += 1;
        if self.loss.drops(&mut self.rng, index, &datagram) {
            self.dropped += 1;
            return;
        }
        let extra = if self.reorder_jitter.is_zero() {
            Duration::ZERO
        } else {
            self.reorder_jitter
                .mul_f64((self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
        };
        self.in_flight
            .push(Reverse((now + self.latency + extra, index, datagram)));
    }

    pub(crate) fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.peek().map(|Reverse((t, _, _))| *t)
    }

    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.next_arrival()? <= now {
            self.in_flight.pop().map(|Reverse((_, _, d))| d)
        } else {
            None
        }
    }
}

/// A payload as the sender sent it.
#[derive(Debug, Clone)]
pub(crate) struct SentPayload {
    pub bytes: Vec<u8>,
    pub sent_at: Option<Instant>,
}

/// A sender and a receiver joined by two links, on a virtual clock.
pub(crate) struct Pair {
    pub start: Instant,
    pub now: Instant,
    pub sender: Sender,
    pub receiver: Receiver,
    pub forward: Link,
    pub back: Link,
    /// Payloads per frame.
    pub packets_per_frame: usize,
    pub frames_left: u64,
    next_frame: Instant,
    frame_no: FrameNo,
    rng: SplitMix64,
    /// What was sent, by wire sequence number (runs stay below 65536 packets or accept overwrite).
    pub sent: HashMap<u16, SentPayload>,
    pub delivered: Vec<(Instant, ReceivedPayload)>,
    /// (time, kind, bytes) of everything the sender emitted.
    pub sender_log: Vec<(Instant, TransmitKind, usize)>,
    /// Extra datagrams to put on the forward link at a given time.
    pub inject: Vec<(Instant, Vec<u8>)>,
}

impl Pair {
    pub(crate) fn new(
        config: TransportConfig,
        forward: LossModel,
        back: LossModel,
        latency: Duration,
        seed: u64,
    ) -> Self {
        let start = Instant::now();
        Pair {
            start,
            now: start,
            sender: Sender::new(config.clone(), seed, start).expect("valid config"),
            receiver: Receiver::new(config, seed.wrapping_add(1), start).expect("valid config"),
            forward: Link::new(forward, latency, seed.wrapping_add(2)),
            back: Link::new(back, latency, seed.wrapping_add(3)),
            packets_per_frame: 20,
            frames_left: 0,
            next_frame: start,
            frame_no: FrameNo(0),
            rng: SplitMix64::new(seed.wrapping_add(4)),
            sent: HashMap::new(),
            delivered: Vec::new(),
            sender_log: Vec::new(),
            inject: Vec::new(),
        }
    }

    /// Payload bytes of random length and content, so every recovered byte matters.
    fn payload(&mut self) -> Vec<u8> {
        let len = 20 + self.rng.below(1188 - 20 + 1);
        (0..len).map(|_| self.rng.next_u64() as u8).collect()
    }

    fn push_frame(&mut self, frame_interval: Duration) {
        let payloads: Vec<Vec<u8>> = (0..self.packets_per_frame)
            .map(|_| self.payload())
            .collect();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let queued = self
            .sender
            .push_frame(self.now, self.frame_no, self.now, &refs)
            .expect("frame accepted");
        for (i, p) in payloads.into_iter().enumerate() {
            self.sent.insert(
                queued.first_seq.wire().wrapping_add(i as u16),
                SentPayload {
                    bytes: p,
                    sent_at: None,
                },
            );
        }
        self.frame_no = self.frame_no.next();
        self.frames_left -= 1;
        self.next_frame += frame_interval;
    }

    /// Run until `duration` of virtual time has passed since the start.
    pub(crate) fn run_until(&mut self, duration: Duration, frame_interval: Duration) {
        let end = self.start + duration;
        loop {
            if self.frames_left > 0 && self.now >= self.next_frame {
                self.push_frame(frame_interval);
            }
            self.inject.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
            while self.inject.last().is_some_and(|(t, _)| *t <= self.now) {
                if let Some((_, d)) = self.inject.pop() {
                    self.receiver.handle_datagram(self.now, &d);
                }
            }
            while let Some(t) = self.sender.poll_transmit(self.now) {
                self.sender_log.push((self.now, t.kind, t.contents.len()));
                if t.kind == TransmitKind::Media {
                    if let Ok(p) = RtpPacket::parse(&t.contents) {
                        if let Some(s) = self.sent.get_mut(&p.seq) {
                            s.sent_at = Some(self.now);
                        }
                    }
                }
                self.forward.send(self.now, t.contents);
            }
            while let Some(d) = self.forward.pop_due(self.now) {
                self.receiver.handle_datagram(self.now, &d);
            }
            while let Some(p) = self.receiver.poll_payload(self.now) {
                self.delivered.push((self.now, p));
            }
            while let Some(t) = self.receiver.poll_transmit(self.now) {
                self.back.send(self.now, t.contents);
            }
            while let Some(d) = self.back.pop_due(self.now) {
                self.sender.handle_datagram(self.now, &d);
            }
            let frame = (self.frames_left > 0).then_some(self.next_frame);
            let injected = self.inject.iter().map(|(t, _)| *t).min();
            let next = [
                self.sender.poll_timeout(),
                self.receiver.poll_timeout(),
                self.forward.next_arrival(),
                self.back.next_arrival(),
                frame,
                injected,
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= end => {
                    self.now = if t > self.now {
                        t
                    } else {
                        self.now + Duration::from_micros(1)
                    }
                }
                _ => {
                    self.now = end;
                    break;
                }
            }
        }
    }

    /// Sends `frames` more frames, one per default frame interval, running until `duration` of
    /// virtual time has passed since the start.
    pub(crate) fn run_frames(&mut self, frames: u64, duration: Duration) {
        self.frames_left = frames;
        self.run_until(duration, TransportConfig::default().frame_interval);
    }

    /// Every delivered payload must equal what was sent under its sequence number.
    pub(crate) fn assert_delivered_payloads_are_byte_identical(&self) {
        for (_, d) in &self.delivered {
            let sent = self
                .sent
                .get(&d.seq.wire())
                .unwrap_or_else(|| panic!("delivered unknown seq {}", d.seq));
            assert_eq!(
                d.payload, sent.bytes,
                "payload {} ({:?}) differs from the one sent",
                d.seq, d.recovery
            );
        }
    }

    pub(crate) fn media_sent(&self) -> usize {
        self.sender_log
            .iter()
            .filter(|(_, k, _)| *k == TransmitKind::Media)
            .count()
    }
}

/// The wire sequence number of a media datagram, if it is one.
pub(crate) fn media_seq(datagram: &[u8]) -> Option<u16> {
    let p = RtpPacket::parse(datagram).ok()?;
    (p.payload_type == 96).then_some(p.seq)
}

pub(crate) const RTP_HEADER: usize = RTP_HEADER_LEN;
