//! The sending endpoint: codec payloads in, paced RTP (+ FEC repair, retransmissions, sender
//! reports) out; RTCP feedback in, requested quality and link statistics out.
//!
//! Sans-IO, in the quinn-proto manner. Feed input with [`Sender::push_frame`] (a frame's
//! payloads) and [`Sender::handle_datagram`] (whatever arrives from the receiver); drain output
//! with [`Sender::poll_transmit`] until it returns `None`; then sleep until
//! [`Sender::poll_timeout`] (or the next input) and call [`Sender::handle_timeout`]. Time is
//! always passed in; nothing here reads a clock or touches a socket.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use keymash_core::{FrameNo, MashLevel, Quality};

use crate::config::{ConfigError, TransportConfig, RETRANSMIT_BURST_BYTES};
use crate::fec::{FecEncoder, SplitMix64};
use crate::keepalive::Liveness;
use crate::nack::RetransmitHistory;
use crate::pacer::Pacer;
use crate::rtcp::sr::{self, duration_from_compact_ntp, ntp_from_duration, SenderInfoFields};
use crate::rtcp::{parse_compound, xr, DlrrItem, RtcpPacket};
use crate::rtp::{
    classify, rtp_timestamp_90khz, set_capture_age, CaptureAge, DatagramKind, RtpHeader, Ssrc,
    MAX_PAYLOAD_LEN,
};
use crate::security::{
    Direction, Endpoint, Protection, SealError, SecurityAlarm, SessionSalt, MAX_COUNTER,
    RTP_OVERHEAD,
};
use crate::seq::SeqNo;
use crate::stats::SenderStats;
use crate::{Transmit, TransmitKind};

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("a frame needs at least one payload")]
    EmptyFrame,
    #[error("payload {index} is {len} bytes, more than the {max} that fit one packet")]
    PayloadTooLarge {
        index: usize,
        len: usize,
        max: usize,
    },
    #[error("cannot seal: {0}")]
    Seal(#[from] SealError),
}

/// Where a frame went: its packets' first and last sequence numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameQueued {
    pub frame: FrameNo,
    pub first_seq: SeqNo,
    pub last_seq: SeqNo,
    pub rtp_timestamp: u32,
    pub repair_packets: usize,
}

/// The identity of the two RTP streams a sender emits, derived from the caller's seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamIds {
    pub media_ssrc: Ssrc,
    pub repair_ssrc: Ssrc,
}

impl StreamIds {
    /// The repair stream's SSRC follows from the media SSRC, so receivers need no signalling.
    pub fn from_media(media_ssrc: Ssrc) -> Self {
        StreamIds {
            media_ssrc,
            repair_ssrc: Ssrc(media_ssrc.0 ^ 0x0000_0001),
        }
    }
}

/// A frame whose media packets wait in the pacer: what they need when they leave.
#[derive(Debug, Clone, Copy)]
struct Unsent {
    last_seq: SeqNo,
    /// When the camera captured it; `None` for a picture no camera took (no extension).
    capture_time: Option<Instant>,
}

/// The sending endpoint; see the module documentation for the calling order.
#[derive(Debug)]
pub struct Sender {
    config: TransportConfig,
    ids: StreamIds,
    started: Instant,
    initial_timestamp: u32,
    next_seq: SeqNo,
    /// Extended sequence number of the repair stream (its nonce counter when sealing).
    next_repair_seq: u64,
    last_timestamp: u32,
    pacer: Pacer,
    fec: Option<FecEncoder>,
    history: Option<RetransmitHistory>,
    rtcp_out: VecDeque<Transmit>,
    feedback: Option<(Quality, MashLevel, Instant)>,
    last_sender_report: Option<Instant>,
    liveness: Liveness,
    stats: SenderStats,
    packet_count: u32,
    octet_count: u32,
    /// Sealing and opening; `None` when unprotected.
    security: Option<Endpoint>,
    /// Send a sender report at once (a receiver session was just confirmed: it waits for it).
    report_now: bool,
    /// Bytes of retransmission still allowed (see `TransportConfig::retransmit_share`).
    retransmit_budget: f64,
    /// Frames with media packets still in the pacer, oldest first.
    unsent: VecDeque<Unsent>,
    /// The receiver's last RRTR (RFC 3611): its SSRC, the compact timestamp, when it came. The
    /// next sender report answers it with a DLRR block, so the receiver knows the round trip.
    last_rr: Option<(Ssrc, u32, Instant)>,
}

impl Sender {
    /// A sender started at `now`. `seed` (random, from the caller) picks the SSRC, the first
    /// sequence number and RTP timestamp as RFC 3550 asks, and the FEC subsets.
    ///
    /// With protection on, the session salt is drawn from `seed` too; services use
    /// [`Sender::with_salt`] and a salt from the OS's random source instead.
    pub fn new(config: TransportConfig, seed: u64, now: Instant) -> Result<Self, ConfigError> {
        let salt = SessionSalt::from_seed(seed, 0x5A17_5A17_5A17_5A17);
        Self::with_salt(config, seed, salt, now)
    }

    /// [`Sender::new`] with the session salt given (random, new on every start).
    pub fn with_salt(
        config: TransportConfig,
        seed: u64,
        salt: SessionSalt,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut rng = SplitMix64::new(seed);
        let ids = StreamIds::from_media(Ssrc(rng.next_u64() as u32 & !1));
        let next_seq = SeqNo::new((1 << 16) | (rng.next_u64() & 0xFFFF));
        let initial_timestamp = rng.next_u64() as u32;
        let next_repair_seq = (1 << 16) | (rng.next_u64() & 0xFFFF);
        let fec = config
            .fec
            .then(|| FecEncoder::new(config.fec_overhead, rng.next_u64()));
        let history = config.nack.then(|| {
            RetransmitHistory::new(
                config.retransmit_history_packets,
                config.retransmit_deadline,
            )
        });
        let security = match &config.security {
            Protection::Unprotected => None,
            Protection::PreShared(key) => Some(Endpoint::new(
                key.clone(),
                Direction::SenderToReceiver,
                salt,
            )),
        };
        Ok(Sender {
            security,
            report_now: false,
            retransmit_budget: 0.0,
            unsent: VecDeque::new(),
            last_rr: None,
            pacer: Pacer::new(config.max_rate_bytes_per_sec),
            liveness: Liveness::new(config.keepalive_interval, config.peer_timeout),
            config,
            ids,
            started: now,
            initial_timestamp,
            next_seq,
            next_repair_seq,
            last_timestamp: initial_timestamp,
            fec,
            history,
            rtcp_out: VecDeque::new(),
            feedback: None,
            last_sender_report: None,
            stats: SenderStats::default(),
            packet_count: 0,
            octet_count: 0,
        })
    }

    pub fn stream_ids(&self) -> StreamIds {
        self.ids
    }

    /// Queue one frame's payloads (in order; the last gets the RTP marker), captured at
    /// `capture_time`. They leave paced over the configured frame spread, then the repair packets.
    /// Each media packet says the frame's age in an RFC 8285 header extension, taken as it
    /// leaves ([`Sender::poll_transmit`]), so pacing and the caller's wake-up are counted.
    pub fn push_frame(
        &mut self,
        now: Instant,
        frame: FrameNo,
        capture_time: Instant,
        payloads: &[&[u8]],
    ) -> Result<FrameQueued, SendError> {
        self.queue_frame(now, frame, capture_time, true, payloads)
    }

    /// [`Sender::push_frame`] for a picture no camera took (the delay buffer's countdown card,
    /// stamped when it was drawn): without the capture-age extension, so the receiver does not
    /// take its age for the camera's delay.
    pub fn push_generated_frame(
        &mut self,
        now: Instant,
        frame: FrameNo,
        capture_time: Instant,
        payloads: &[&[u8]],
    ) -> Result<FrameQueued, SendError> {
        self.queue_frame(now, frame, capture_time, false, payloads)
    }

    fn queue_frame(
        &mut self,
        now: Instant,
        frame: FrameNo,
        capture_time: Instant,
        camera: bool,
        payloads: &[&[u8]],
    ) -> Result<FrameQueued, SendError> {
        if payloads.is_empty() {
            return Err(SendError::EmptyFrame);
        }
        if let Some((index, p)) = payloads
            .iter()
            .enumerate()
            .find(|(_, p)| p.len() > MAX_PAYLOAD_LEN)
        {
            return Err(SendError::PayloadTooLarge {
                index,
                len: p.len(),
                max: MAX_PAYLOAD_LEN,
            });
        }
        // Frames are typically captured long before this sender started (the delay buffer holds
        // 30 s, and net-tx may have been restarted), so the offset may point either way.
        let timestamp = match capture_time.checked_duration_since(self.started) {
            Some(after) => rtp_timestamp_90khz(after, self.initial_timestamp),
            None => {
                let before = self.started.saturating_duration_since(capture_time);
                self.initial_timestamp
                    .wrapping_sub(rtp_timestamp_90khz(before, 0))
            }
        };
        let first_seq = self.next_seq;
        // Media packets are sealed as they leave (see `depart`); refuse the frame now if they
        // could not be.
        let last_counter = first_seq.get() + payloads.len() as u64 - 1;
        if self.security.is_some() && last_counter > MAX_COUNTER {
            return Err(SealError::CounterExhausted(last_counter).into());
        }
        // The age is written in when the packet leaves; a placeholder until then.
        let age = camera.then_some(CaptureAge::default());
        let mut packets = Vec::with_capacity(payloads.len());
        for (i, payload) in payloads.iter().enumerate() {
            let header = RtpHeader {
                payload_type: self.config.payload_type,
                marker: i + 1 == payloads.len(),
                seq: self.next_seq.wire(),
                timestamp,
                ssrc: self.ids.media_ssrc,
            };
            let mut bytes = header.to_packet_with(age, payload);
            if self.security.is_some() {
                // Room for the seal, so sealing as it leaves does not reallocate.
                bytes.reserve_exact(RTP_OVERHEAD);
            }
            packets.push(Transmit {
                contents: bytes,
                kind: TransmitKind::Media,
            });
            self.next_seq = self.next_seq.next();
        }
        let last_seq = SeqNo::new(self.next_seq.get() - 1);
        self.unsent.push_back(Unsent {
            last_seq,
            capture_time: camera.then_some(capture_time),
        });
        let mut repair_packets = 0;
        if let Some(fec) = &mut self.fec {
            for repair in fec.encode_frame(first_seq.wire(), payloads) {
                let header = RtpHeader {
                    payload_type: self.config.repair_payload_type,
                    marker: false,
                    seq: self.next_repair_seq as u16,
                    timestamp,
                    ssrc: self.ids.repair_ssrc,
                };
                let mut bytes = header.to_packet(&repair);
                if let Some(sec) = &mut self.security {
                    sec.seal_rtp(&mut bytes, self.next_repair_seq)?;
                }
                self.next_repair_seq += 1;
                packets.push(Transmit {
                    contents: bytes,
                    kind: TransmitKind::Repair,
                });
                repair_packets += 1;
            }
        }
        self.last_timestamp = timestamp;
        self.stats.frames += 1;
        // As they will be on the wire: media packets are sealed only as they leave.
        let unsealed_media = match self.security {
            Some(_) => payloads.len() * RTP_OVERHEAD,
            None => 0,
        };
        let bytes = packets.iter().map(|p| p.contents.len()).sum::<usize>() + unsealed_media;
        self.pacer
            .enqueue_frame(now, self.config.spread_for(bytes), packets);
        Ok(FrameQueued {
            frame,
            first_seq,
            last_seq,
            rtp_timestamp: timestamp,
            repair_packets,
        })
    }

    /// A datagram from the receiver (RTCP feedback). Anything else is counted and ignored; with
    /// protection on, nothing that fails authentication, is replayed or comes from an
    /// unconfirmed receiver session gets past this point.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        let opened;
        let datagram = match &mut self.security {
            None => datagram,
            Some(sec) => match sec.open(now, datagram) {
                Ok(o) => {
                    if o.confirmed_now {
                        // The receiver waits for a report echoing its salt before it trusts us.
                        self.report_now = true;
                    }
                    if !o.trusted {
                        return;
                    }
                    opened = o.plain;
                    &opened[..]
                }
                Err(_) => return,
            },
        };
        if classify(datagram) != DatagramKind::Rtcp {
            self.stats.foreign += 1;
            return;
        }
        let mut any_valid = false;
        for packet in parse_compound(datagram) {
            match packet {
                Ok(p) => {
                    any_valid = true;
                    self.handle_rtcp(now, p);
                }
                Err(_) => self.stats.malformed += 1,
            }
        }
        if any_valid {
            self.liveness.heard(now);
        }
    }

    fn handle_rtcp(&mut self, now: Instant, packet: RtcpPacket<'_>) {
        match packet {
            RtcpPacket::ReceiverReport(rr) => {
                self.stats.reports_received += 1;
                for block in rr
                    .blocks
                    .iter()
                    .map(|b| b.fields())
                    .filter(|b| b.ssrc == self.ids.media_ssrc)
                {
                    self.stats.remote_fraction_lost = f64::from(block.fraction_lost) / 256.0;
                    self.stats.remote_cumulative_lost = block.cumulative_lost;
                    self.stats.remote_jitter =
                        Duration::from_nanos(u64::from(block.jitter) * 1_000_000_000 / 90_000);
                    if block.last_sr != 0 {
                        let now_compact =
                            (ntp_from_duration(now.saturating_duration_since(self.started)) >> 16)
                                as u32;
                        let rtt = now_compact
                            .wrapping_sub(block.last_sr)
                            .wrapping_sub(block.delay_since_last_sr);
                        // A wrapped (negative) result means a bogus report: ignore it.
                        if rtt < 0x8000_0000 {
                            self.stats.rtt = Some(duration_from_compact_ntp(rtt));
                        }
                    }
                }
            }
            RtcpPacket::Nack(nack) if nack.media_ssrc == self.ids.media_ssrc => {
                // Bounded so NACK cannot amplify: each packet at most `max_retransmits_per_packet`
                // times and once per RTT, all of them within `retransmit_share` of the media
                // bytes (plus a burst allowance), and a bounded queue.
                let min_interval = self.stats.rtt.unwrap_or(self.config.initial_rtt);
                for wire in nack.lost_wire_seqs() {
                    self.stats.nacks_received += 1;
                    let newest = SeqNo::new(self.next_seq.get().saturating_sub(1));
                    let Some(seq) = newest.nearest_to_wire(wire) else {
                        continue;
                    };
                    let Some(history) = self.history.as_mut() else {
                        self.stats.retransmit_refused += 1;
                        continue;
                    };
                    let len = match history.get(seq, now) {
                        Ok(bytes) => bytes.len() as f64,
                        Err(_) => {
                            self.stats.retransmit_refused += 1;
                            continue;
                        }
                    };
                    if len > self.retransmit_budget
                        || self.pacer.urgent_len() >= self.config.max_urgent_packets
                    {
                        self.stats.retransmit_capped += 1;
                        continue;
                    }
                    match history.take_for_resend(
                        seq,
                        now,
                        self.config.max_retransmits_per_packet,
                        min_interval,
                    ) {
                        Ok(bytes) => {
                            let t = Transmit {
                                contents: bytes.to_vec(),
                                kind: TransmitKind::Retransmission,
                            };
                            if self
                                .pacer
                                .enqueue_urgent(now, t, self.config.max_urgent_packets)
                            {
                                self.retransmit_budget -= len;
                                self.stats.retransmitted += 1;
                                self.stats.retransmitted_bytes += len as u64;
                            } else {
                                self.stats.retransmit_capped += 1;
                            }
                        }
                        Err(_) => self.stats.retransmit_refused += 1,
                    }
                }
            }
            RtcpPacket::Nack(_) => self.stats.foreign += 1,
            RtcpPacket::App(app) => self.feedback = Some((app.quality, app.mash, now)),
            RtcpPacket::ExtendedReport(report) => {
                if let Some(lrr) = report.compact_rrtr() {
                    self.last_rr = Some((report.sender_ssrc, lrr, now));
                }
            }
            RtcpPacket::SenderReport(_) | RtcpPacket::Other { .. } => {}
        }
    }

    /// The quality the receiver asks for, or the configured fallback when its feedback has been
    /// silent for the fallback timeout (or never came).
    pub fn requested_quality(&self, now: Instant) -> Quality {
        match self.feedback {
            Some((q, _, at))
                if now.saturating_duration_since(at) < self.config.quality_fallback_timeout =>
            {
                q
            }
            _ => self.config.fallback_quality,
        }
    }

    /// The receiver's mash level as last reported, while its feedback is fresh.
    pub fn remote_mash(&self, now: Instant) -> Option<MashLevel> {
        match self.feedback {
            Some((_, m, at))
                if now.saturating_duration_since(at) < self.config.quality_fallback_timeout =>
            {
                Some(m)
            }
            _ => None,
        }
    }

    pub fn peer_alive(&self, now: Instant) -> bool {
        self.liveness.peer_alive(now)
    }

    pub fn stats(&self) -> &SenderStats {
        &self.stats
    }

    /// Anything due: sender reports and keepalives first, then retransmissions, then paced media.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.handle_timeout(now);
        self.stats.send_queue_dropped +=
            self.pacer.drop_stale(now, self.config.max_queue_delay) as u64;
        if self.pacer.is_empty() {
            self.unsent.clear();
        }
        let t = loop {
            let mut t = self
                .rtcp_out
                .pop_front()
                .or_else(|| self.pacer.poll_transmit(now))?;
            if t.kind != TransmitKind::Media {
                break t;
            }
            match self.depart(now, &mut t.contents) {
                Ok(()) => break t,
                // Cannot happen (`queue_frame` checked the counter); dropped, not sent unsealed.
                Err(_) => self.stats.send_queue_dropped += 1,
            }
        };
        match t.kind {
            TransmitKind::Media => {
                self.retransmit_budget = (self.retransmit_budget
                    + t.contents.len() as f64 * self.config.retransmit_share)
                    .min(RETRANSMIT_BURST_BYTES);
                self.stats.media_bytes_sent += t.contents.len() as u64;
                self.count_sent(&t, |s| s.media_sent += 1)
            }
            TransmitKind::Retransmission => self.count_sent(&t, |_| {}),
            TransmitKind::Repair => self.stats.repair_sent += 1,
            TransmitKind::Rtcp => {}
        }
        self.liveness.sent(now);
        Some(t)
    }

    /// A media packet leaves at `now`: its frame's age since capture goes into its extension,
    /// then it is sealed (the extension is authenticated with the header) and kept for
    /// retransmission, which resends these very bytes (the nonce is never reused).
    fn depart(&mut self, now: Instant, packet: &mut Vec<u8>) -> Result<(), SealError> {
        let wire = u16::from_be_bytes([
            *packet.get(2).ok_or(SealError::Malformed(packet.len()))?,
            *packet.get(3).ok_or(SealError::Malformed(packet.len()))?,
        ]);
        let newest = SeqNo::new(self.next_seq.get().saturating_sub(1));
        let seq = newest
            .nearest_to_wire(wire)
            .ok_or(SealError::Malformed(packet.len()))?;
        // Frames leave in order; those whose packets are all gone (sent or dropped stale) go.
        while self.unsent.front().is_some_and(|u| u.last_seq < seq) {
            self.unsent.pop_front();
        }
        if let Some(capture_time) = self.unsent.front().and_then(|u| u.capture_time) {
            let age = CaptureAge::new(now.saturating_duration_since(capture_time));
            set_capture_age(packet, age);
        }
        if let Some(sec) = &mut self.security {
            sec.seal_rtp(packet, seq.get())?;
        }
        if let Some(h) = &mut self.history {
            h.insert(seq, now, packet);
        }
        Ok(())
    }

    fn count_sent(&mut self, t: &Transmit, f: impl FnOnce(&mut SenderStats)) {
        f(&mut self.stats);
        self.packet_count = self.packet_count.wrapping_add(1);
        // RFC 3550 counts payload octets: the header and its capture-age extension are not.
        let extension = if t.contents.first().is_some_and(|b| b & 0x10 != 0) {
            crate::rtp::CAPTURE_AGE_EXT_LEN
        } else {
            0
        };
        let header = crate::rtp::RTP_HEADER_LEN + extension;
        self.octet_count = self
            .octet_count
            .wrapping_add(t.contents.len().saturating_sub(header) as u32);
    }

    /// The next time [`Sender::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let report = match self.last_sender_report {
            None => Some(self.started),
            Some(t) => Some(t + self.config.sender_report_interval),
        };
        [
            report,
            self.liveness.next_keepalive(),
            self.pacer.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Advance timers: queue a sender report when one is due (also the keepalive).
    pub fn handle_timeout(&mut self, now: Instant) {
        let report_due = self.report_now
            || self.last_sender_report.is_none_or(|t| {
                now.saturating_duration_since(t) >= self.config.sender_report_interval
            });
        if (report_due || self.liveness.keepalive_due(now)) && self.rtcp_out.is_empty() {
            let since_start = now.saturating_duration_since(self.started);
            let info = SenderInfoFields {
                ssrc: self.ids.media_ssrc,
                ntp_timestamp: ntp_from_duration(since_start),
                rtp_timestamp: rtp_timestamp_90khz(since_start, self.initial_timestamp),
                packet_count: self.packet_count,
                octet_count: self.octet_count,
            };
            let dlrr = self.last_rr.map(|(ssrc, lrr, at)| {
                let held = ntp_from_duration(now.saturating_duration_since(at)) >> 16;
                DlrrItem::new(ssrc, lrr, held as u32)
            });
            let mut contents = Vec::with_capacity(48);
            let written = sr::write(&info, &[], &mut contents).is_ok()
                && dlrr.is_none_or(|item| {
                    xr::write_dlrr(self.ids.media_ssrc, &[item], &mut contents).is_ok()
                })
                && match &mut self.security {
                    None => true,
                    Some(sec) => sec.seal_rtcp(&mut contents).is_ok(),
                };
            if written {
                self.report_now = false;
                self.rtcp_out.push_back(Transmit {
                    contents,
                    kind: TransmitKind::Rtcp,
                });
                self.last_sender_report = Some(now);
                self.liveness.sent(now);
            }
        }
    }

    /// The protection's counters (`None` when unprotected).
    pub fn security_stats(&self) -> Option<crate::security::SecurityStats> {
        self.security.as_ref().map(Endpoint::stats)
    }

    /// What the operator must hear about the protection, if anything.
    pub fn security_alarm(&self, now: Instant) -> Option<SecurityAlarm> {
        self.security.as_ref().and_then(|s| s.alarm(now))
    }

    /// The pre-shared key's public fingerprint, when protected.
    pub fn key_fingerprint(&self) -> Option<String> {
        self.security.as_ref().map(Endpoint::key_fingerprint)
    }

    /// Packets waiting in the pacer.
    pub fn queued_packets(&self) -> usize {
        self.pacer.queued()
    }
}
