//! The receiving endpoint: datagrams in, payloads out in sequence order (or recovered), and
//! RTCP feedback (receiver report, NACKs, the KMSH quality/mash APP) back to the sender.
//!
//! Sans-IO, in the quinn-proto manner. Feed input with [`Receiver::handle_datagram`]; take
//! payloads with [`Receiver::poll_payload`] until it returns `None`; drain feedback with
//! [`Receiver::poll_transmit`]; then sleep until [`Receiver::poll_timeout`] (or the next
//! datagram) and call [`Receiver::handle_timeout`]. Tell it what to ask the sender for with
//! [`Receiver::set_feedback`]. Time is always passed in.
//!
//! A gap at the consumer cursor holds later payloads back until the missing packet has waited
//! [`crate::gap::loss_wait`] (reorder tolerance, plus what FEC and NACK can still recover when
//! those are on) since the first packet after it arrived; then it is given up and counted lost.
//! Many losses thus wait in parallel, and loss never builds latency (see [`crate::gap`]).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use keymash_core::{MashLevel, Quality};

use crate::config::{ConfigError, TransportConfig};
use crate::fec::{FecDecoder, RecoveredPacket, RepairPacket};
use crate::gap::{loss_wait, GapClock};
use crate::keepalive::Liveness;
use crate::nack::{Arrival, NackTracker};
use crate::quality_push::QualityPush;
use crate::rtcp::nack::entries_for;
use crate::rtcp::sr::{duration_from_compact_ntp, ntp_from_duration};
use crate::rtcp::{self, parse_compound, DlrrItem, KeymashApp, ReportBlockFields, RtcpPacket};
use crate::rtp::{classify, CaptureAge, DatagramKind, RtpPacket, Ssrc, VIDEO_CLOCK_RATE_HZ};
use crate::security::{Direction, Endpoint, Protection, SecurityAlarm, SessionSalt};
use crate::sender::StreamIds;
use crate::seq::{SeqExtender, SeqNo};
use crate::stats::{LossWindow, ReceiverStats};
use crate::window::{Insert, ReceiveWindow};
use crate::{Transmit, TransmitKind};

/// How a payload reached the consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Recovery {
    /// Arrived as sent.
    Direct,
    /// Rebuilt from FEC repair packets.
    Fec,
    /// Arrived again after a NACK.
    Nack,
}

/// A payload handed to the consumer, in sequence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedPayload {
    /// The sender stream it came from: a new one after the sender restarted (a consumer that
    /// groups payloads into frames joins the new stream part-way, see `keymash_codec::FrameJoin`).
    pub ssrc: Ssrc,
    pub seq: SeqNo,
    /// 90 kHz RTP timestamp: the same for every payload of one frame.
    pub rtp_timestamp: u32,
    /// Set on a frame's last payload.
    pub marker: bool,
    pub recovery: Recovery,
    /// The frame's age when this packet left the sender (its RFC 8285 extension); `None` for
    /// a payload rebuilt by FEC, whose header was not sent, or a picture no camera took.
    pub capture_age: Option<CaptureAge>,
    /// When the datagram that brought it arrived: the `now` given to
    /// [`Receiver::handle_datagram`] with it (for one rebuilt by FEC, with the packet that
    /// completed it).
    pub arrival: Instant,
    pub payload: Vec<u8>,
}

#[derive(Debug)]
struct Held {
    timestamp: u32,
    marker: bool,
    recovery: Recovery,
    capture_age: Option<CaptureAge>,
    arrival: Instant,
    payload: Vec<u8>,
}

/// Per-stream state that starts over when the sender restarts with a new SSRC.
#[derive(Debug)]
struct MediaStream {
    ids: StreamIds,
    seqs: SeqExtender,
    /// Lowest sequence number received or recovered (RFC 3550's base_seq).
    lowest: Option<SeqNo>,
    /// Media packets received from the network (unique; late ones included, duplicates not).
    received: u64,
    jitter_ticks: f64,
    last_transit: Option<u32>,
    expected_prior: u64,
    received_prior: u64,
    /// Compact NTP of the last SR and when it arrived.
    last_sr: Option<(u32, Instant)>,
    last_heard: Instant,
}

/// Smoothing of the RTT measured from NACK round trips (as TCP's SRTT).
const RTT_GAIN: f64 = 0.125;

/// The receiving endpoint; see the module documentation for the calling order.
#[derive(Debug)]
pub struct Receiver {
    config: TransportConfig,
    ssrc: Ssrc,
    started: Instant,
    media: Option<MediaStream>,
    window: ReceiveWindow<Held>,
    fec: FecDecoder,
    nack: NackTracker,
    /// When each missing packet is given up.
    gap: GapClock,
    quality: Quality,
    mash: MashLevel,
    next_feedback: Instant,
    /// Whether a change of `quality` goes before `next_feedback`.
    push: QualityPush,
    liveness: Liveness,
    stats: ReceiverStats,
    loss_window: LossWindow,
    /// From NACK round trips: what the loss wait and re-NACKs go by.
    rtt: Option<Duration>,
    /// From RFC 3611 RRTR/DLRR, measured whether packets are lost or not.
    xr_rtt: Option<Duration>,
    out: VecDeque<Transmit>,
    /// Sealing and opening; `None` when unprotected.
    security: Option<Endpoint>,
    /// A new sender session was confirmed: follow its stream at once (the old one is retired).
    switch_now: bool,
}

impl Receiver {
    /// A receiver started at `now`; `seed` (random, from the caller) picks its RTCP SSRC.
    ///
    /// With protection on, the session salt is drawn from `seed` too; services use
    /// [`Receiver::with_salt`] and a salt from the OS's random source instead.
    pub fn new(config: TransportConfig, seed: u64, now: Instant) -> Result<Self, ConfigError> {
        let salt = SessionSalt::from_seed(seed, 0x005A_170F_5A17);
        Self::with_salt(config, seed, salt, now)
    }

    /// [`Receiver::new`] with the session salt given (random, new on every start).
    pub fn with_salt(
        config: TransportConfig,
        seed: u64,
        salt: SessionSalt,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let security = match &config.security {
            Protection::Unprotected => None,
            Protection::PreShared(key) => Some(Endpoint::new(
                key.clone(),
                Direction::ReceiverToSender,
                salt,
            )),
        };
        let ssrc = Ssrc(crate::fec::SplitMix64::new(seed ^ 0x005E_ED0F_FEED).next_u64() as u32);
        Ok(Receiver {
            window: ReceiveWindow::new(config.window_packets),
            nack: NackTracker::new(
                config.reorder_tolerance,
                config.retransmit_deadline,
                config.max_nack_tries,
            ),
            liveness: Liveness::new(config.keepalive_interval, config.peer_timeout),
            quality: config.fallback_quality,
            push: QualityPush::new(config.frame_interval, config.push_quality_changes, now),
            config,
            ssrc,
            started: now,
            media: None,
            fec: FecDecoder::new(),
            gap: GapClock::new(),
            mash: MashLevel::IDLE,
            next_feedback: now,
            stats: ReceiverStats::default(),
            loss_window: LossWindow::default(),
            rtt: None,
            xr_rtt: None,
            out: VecDeque::new(),
            security,
            switch_now: false,
        })
    }

    /// What the next feedback asks the sender for. A quality different from the one last sent
    /// goes at once, or a frame interval after the last change sent ([`QualityPush`]); the
    /// mash level alone waits for the periodic feedback (the sender only shows it).
    pub fn set_feedback(&mut self, quality: Quality, mash: MashLevel) {
        self.quality = quality;
        self.mash = mash;
    }

    /// The sender's stream identity once a media packet has been seen.
    pub fn sender_stream(&self) -> Option<StreamIds> {
        self.media.as_ref().map(|m| m.ids)
    }

    pub fn peer_alive(&self, now: Instant) -> bool {
        self.liveness.peer_alive(now)
    }

    /// A snapshot of the counters, with the windowed loss computed at `now`.
    pub fn stats(&self, now: Instant) -> ReceiverStats {
        let mut s = self.stats.clone();
        if let Some(m) = &self.media {
            s.jitter =
                Duration::from_nanos((m.jitter_ticks * 1e9 / VIDEO_CLOCK_RATE_HZ as f64) as u64);
        }
        s.rtt = self.xr_rtt.or(self.rtt);
        s.loss_percent_1s = self.loss_window.percent(now);
        if let Some(sec) = &self.security {
            let x = sec.stats();
            (s.auth_failed, s.replayed, s.unconfirmed) = (x.auth_failed, x.replayed, x.unconfirmed);
        }
        s
    }

    /// What the operator must hear about the protection, if anything.
    pub fn security_alarm(&self, now: Instant) -> Option<SecurityAlarm> {
        self.security.as_ref().and_then(|s| s.alarm(now))
    }

    /// Whether packets are sealed and checked.
    pub fn protected(&self) -> bool {
        self.security.is_some()
    }

    /// The pre-shared key's public fingerprint, when protected.
    pub fn key_fingerprint(&self) -> Option<String> {
        self.security.as_ref().map(Endpoint::key_fingerprint)
    }

    /// Send feedback (with the quality set by [`Receiver::set_feedback`]) at the next
    /// [`Receiver::poll_transmit`] instead of waiting for the feedback interval.
    pub fn feedback_now(&mut self, now: Instant) {
        self.next_feedback = self.next_feedback.min(now);
    }

    /// How far the newest packet is ahead of the consumer (the original's early-latest span).
    pub fn early_latest_span(&self) -> Option<u64> {
        self.window.early_latest_span()
    }

    /// Anything that arrived on the socket from the sender, at `now`: when it arrived, which is
    /// the kernel's receive timestamp where the caller has one (see
    /// [`crate::udp::PeerSocket::recv_at`]), so it may be a little earlier than the `now` of
    /// calls made before this one; payloads carry it on as [`ReceivedPayload::arrival`].
    ///
    /// With protection on, a datagram is opened first: one that fails authentication, is a
    /// replay, or belongs to a sender session not yet confirmed live is counted and goes no
    /// further (no parser, no window, no stream switch).
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) {
        let opened;
        let datagram = match &mut self.security {
            None => datagram,
            Some(sec) => match sec.open(now, datagram) {
                Ok(o) => {
                    if o.new_session {
                        // Echo the new session's salt soon, so it can confirm itself.
                        self.next_feedback = self.next_feedback.min(now);
                    }
                    if o.confirmed_now && self.media.is_some() {
                        self.switch_now = true;
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
        match classify(datagram) {
            DatagramKind::Rtp => match RtpPacket::parse(datagram) {
                Ok(p) => self.handle_rtp(now, &p),
                Err(_) => self.stats.malformed += 1,
            },
            DatagramKind::Rtcp => self.handle_rtcp(now, datagram),
            DatagramKind::Other => self.stats.foreign += 1,
        }
        self.note_gap(now);
    }

    fn handle_rtcp(&mut self, now: Instant, datagram: &[u8]) {
        for packet in parse_compound(datagram) {
            match packet {
                Ok(RtcpPacket::SenderReport(sr)) => match &mut self.media {
                    Some(m) if m.ids.media_ssrc == sr.sender_ssrc => {
                        m.last_sr = Some((sr.compact_ntp(), now));
                        m.last_heard = now;
                        self.liveness.heard(now);
                    }
                    // An SR before any media (idle sender): the sender is alive all the same.
                    None => self.liveness.heard(now),
                    Some(_) => self.stats.foreign += 1,
                },
                Ok(RtcpPacket::ExtendedReport(xr))
                    if self
                        .media
                        .as_ref()
                        .is_some_and(|m| m.ids.media_ssrc == xr.sender_ssrc) =>
                {
                    if let Some(item) = xr.dlrr.iter().find(|i| i.ssrc() == self.ssrc) {
                        self.xr_round_trip(now, item);
                    }
                }
                Ok(_) => {}
                Err(_) => self.stats.malformed += 1,
            }
        }
    }

    /// The sender's answer to one of our RRTRs arrived at `now`: a round trip sample (RFC 3611
    /// 4.5), our clock now less the RRTR's time less the time the sender held it.
    fn xr_round_trip(&mut self, now: Instant, item: &DlrrItem) {
        // LRR 0 is "no RRTR received yet".
        if item.last_rr() == 0 {
            return;
        }
        let now_compact =
            (ntp_from_duration(now.saturating_duration_since(self.started)) >> 16) as u32;
        let rtt = now_compact
            .wrapping_sub(item.last_rr())
            .wrapping_sub(item.delay_since_last_rr());
        // A wrapped (negative) result means a bogus answer: ignore it.
        if rtt >= 0x8000_0000 {
            return;
        }
        let sample = duration_from_compact_ntp(rtt);
        self.xr_rtt = Some(match self.xr_rtt {
            None => sample,
            Some(r) => r.mul_f64(1.0 - RTT_GAIN) + sample.mul_f64(RTT_GAIN),
        });
    }

    fn handle_rtp(&mut self, now: Instant, packet: &RtpPacket<'_>) {
        let pt = packet.payload_type;
        let is_media = pt == self.config.payload_type.get();
        let is_repair = pt == self.config.repair_payload_type.get();
        // The media SSRC follows from either stream (repair SSRC = media SSRC ^ 1), so a
        // receiver can lock on even when every media packet of the first frames is lost.
        let media_ssrc = if is_repair {
            Ssrc(packet.ssrc.0 ^ 1)
        } else {
            packet.ssrc
        };
        let fresh_stream = (is_media || is_repair)
            && match &self.media {
                None => true,
                Some(m) => {
                    m.ids.media_ssrc != media_ssrc
                        && (self.switch_now
                            || now.saturating_duration_since(m.last_heard)
                                >= self.config.stream_switch_silence)
                }
            };
        if fresh_stream {
            if self.media.is_some() {
                self.stats.stream_switches += 1;
            }
            self.switch_now = false;
            self.start_stream(now, media_ssrc);
        }
        if is_media {
            if self
                .media
                .as_ref()
                .is_some_and(|m| m.ids.media_ssrc == packet.ssrc)
            {
                self.handle_media(now, packet);
            } else {
                self.stats.foreign += 1;
            }
        } else if is_repair
            && self
                .media
                .as_ref()
                .is_some_and(|m| m.ids.repair_ssrc == packet.ssrc)
        {
            self.handle_repair(now, packet);
        } else {
            self.stats.foreign += 1;
        }
    }

    /// Lock onto a (new) sender stream: a restarted sender comes back with a new SSRC.
    fn start_stream(&mut self, now: Instant, media_ssrc: Ssrc) {
        self.media = Some(MediaStream {
            ids: StreamIds::from_media(media_ssrc),
            seqs: SeqExtender::new(),
            lowest: None,
            received: 0,
            jitter_ticks: 0.0,
            last_transit: None,
            expected_prior: 0,
            received_prior: 0,
            last_sr: None,
            last_heard: now,
        });
        self.window = ReceiveWindow::new(self.config.window_packets);
        self.fec = FecDecoder::new();
        self.nack = NackTracker::new(
            self.config.reorder_tolerance,
            self.config.retransmit_deadline,
            self.config.max_nack_tries,
        );
        self.gap.clear();
    }

    fn arrival_ticks(&self, now: Instant) -> u32 {
        let nanos = now.saturating_duration_since(self.started).as_nanos();
        (nanos * u128::from(VIDEO_CLOCK_RATE_HZ) / 1_000_000_000) as u32
    }

    fn handle_media(&mut self, now: Instant, packet: &RtpPacket<'_>) {
        let arrival = self.arrival_ticks(now);
        let Some(m) = &mut self.media else { return };
        m.last_heard = now;
        self.liveness.heard(now);
        let highest_before = m.seqs.highest();
        let seq = m.seqs.extend(packet.seq);
        m.lowest = Some(m.lowest.map_or(seq, |l| l.min(seq)));
        // RFC 3550 A.8: jitter from the difference of relative transit times.
        let transit = arrival.wrapping_sub(packet.timestamp);
        if let Some(last) = m.last_transit {
            let d = f64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
            m.jitter_ticks += (d - m.jitter_ticks) / 16.0;
        }
        m.last_transit = Some(transit);

        let arrival_kind = if self.config.nack {
            self.nack.on_arrival(now, seq, highest_before)
        } else {
            Arrival::Expected
        };
        let recovery = match arrival_kind {
            Arrival::AfterNack { first_nack, tries } => {
                if tries == 1 {
                    let sample = now.saturating_duration_since(first_nack);
                    self.rtt = Some(match self.rtt {
                        None => sample,
                        Some(r) => r.mul_f64(1.0 - RTT_GAIN) + sample.mul_f64(RTT_GAIN),
                    });
                }
                Recovery::Nack
            }
            _ => Recovery::Direct,
        };
        let held = Held {
            timestamp: packet.timestamp,
            marker: packet.marker,
            recovery,
            capture_age: packet.capture_age,
            arrival: now,
            payload: packet.payload.to_vec(),
        };
        let outcome = self.window.insert(seq, held);
        self.gap.stored(self.window.newest(), now);
        match outcome {
            Insert::Stored | Insert::Jumped { .. } => {
                m.received += 1;
                self.stats.received += 1;
                if recovery == Recovery::Nack {
                    self.stats.recovered_nack += 1;
                }
                self.after_jump(now, outcome);
                if self.config.fec {
                    for r in self.fec.add_source(seq, packet.payload) {
                        self.insert_recovered(now, r);
                    }
                }
            }
            Insert::Late => {
                m.received += 1;
                self.stats.received += 1;
                self.stats.late += 1;
            }
            Insert::Duplicate => self.stats.duplicate += 1,
        }
    }

    fn after_jump(&mut self, now: Instant, outcome: Insert) {
        if let Insert::Jumped { missing, discarded } = outcome {
            self.stats.jumped += missing + discarded;
            self.stats.lost += missing;
            self.loss_window.lost(now, missing);
            if let Some(c) = self.window.cursor() {
                self.nack.forget_before(c);
            }
        }
    }

    fn handle_repair(&mut self, now: Instant, packet: &RtpPacket<'_>) {
        self.stats.repair_received += 1;
        if !self.config.fec {
            return;
        }
        let repair = match RepairPacket::parse(packet.payload) {
            Ok(r) => r,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        let Some(m) = &self.media else { return };
        // The sender sends a frame's repair packets after its sources, block by block in index
        // order: with this one, every repair packet of earlier blocks has come (or is lost), and
        // with the last of its block, every one of this block. What FEC has not recovered
        // there, it will not.
        let base = m.seqs.peek(repair.base_seq);
        let decided = if usize::from(repair.repair_index) + 1 == repair.repair_count {
            SeqNo::new(base.get() + repair.source_count as u64)
        } else {
            base
        };
        for r in self.fec.add_repair(&repair, packet.timestamp, &m.seqs) {
            self.insert_recovered(now, r);
        }
        // With NACK on, a retransmission may still bring it: the NACK wait stands.
        if !self.config.nack {
            self.gap.fec_decided(decided, now);
        }
    }

    fn insert_recovered(&mut self, now: Instant, r: RecoveredPacket) {
        if let Some(m) = &mut self.media {
            // A recovered packet moves the stream on as an arrival would, so the sequence
            // numbers after a run of lost packets extend from the right place.
            let seq = m.seqs.extend(r.seq.wire());
            debug_assert_eq!(seq, r.seq);
            m.lowest = Some(m.lowest.map_or(seq, |l| l.min(seq)));
        }
        let held = Held {
            timestamp: r.timestamp,
            marker: r.marker,
            recovery: Recovery::Fec,
            capture_age: None,
            arrival: now,
            payload: r.payload,
        };
        let outcome = self.window.insert(r.seq, held);
        self.gap.stored(self.window.newest(), now);
        if matches!(outcome, Insert::Stored | Insert::Jumped { .. }) {
            self.stats.recovered_fec += 1;
            self.nack.forget(r.seq);
            self.after_jump(now, outcome);
        }
    }

    /// When the missing packet at the cursor is given up (`None`: no gap at the cursor); also
    /// forgets the arrival times the cursor has passed.
    fn note_gap(&mut self, now: Instant) -> Option<Instant> {
        self.gap.deadline(
            self.window.cursor(),
            self.window.gap_at_cursor(),
            self.loss_hold(),
            self.config.reorder_tolerance,
            self.config.serial_gap_hold,
            now,
        )
    }

    /// How long a missing packet holds the later ones back.
    fn loss_hold(&self) -> Duration {
        if self.config.serial_gap_hold {
            self.config.gap_hold()
        } else {
            loss_wait(&self.config, self.rtt)
        }
    }

    /// The next payload in sequence order, if it is here; a missing one is given up (counted
    /// lost) once it has waited [`crate::gap::loss_wait`] since the first later packet arrived.
    pub fn poll_payload(&mut self, now: Instant) -> Option<ReceivedPayload> {
        loop {
            if let Some((seq, held)) = self.window.pop() {
                self.stats.delivered += 1;
                self.loss_window.delivered(now, 1);
                self.nack.forget_before(seq.next());
                self.note_gap(now);
                // The window only holds packets of the current stream: it starts over with it.
                let ssrc = self.media.as_ref().map_or(Ssrc(0), |m| m.ids.media_ssrc);
                return Some(ReceivedPayload {
                    ssrc,
                    seq,
                    rtp_timestamp: held.timestamp,
                    marker: held.marker,
                    recovery: held.recovery,
                    capture_age: held.capture_age,
                    arrival: held.arrival,
                    payload: held.payload,
                });
            }
            match self.note_gap(now) {
                Some(deadline) if now >= deadline => {
                    if let Some(skipped) = self.window.skip_missing() {
                        self.stats.lost += 1;
                        self.loss_window.lost(now, 1);
                        self.nack.forget_before(skipped.next());
                    }
                }
                _ => return None,
            }
        }
    }

    /// Feedback due: NACKs as soon as they are due (RFC 4585 early feedback), a change of the
    /// requested quality when [`QualityPush`] lets it go, the regular report every feedback
    /// interval. Each goes as one compound: RR, NACK (when any is due), APP.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.note_gap(now);
        let nacks = if self.config.nack && self.media.is_some() {
            self.nack.due(now, self.renack_interval())
        } else {
            Vec::new()
        };
        let push = self.push.due(self.quality).is_some_and(|at| now >= at);
        if nacks.is_empty() && now < self.next_feedback && !push {
            return;
        }
        let mut contents = Vec::with_capacity(128);
        let block = self.report_block(now);
        if rtcp::rr::write(self.ssrc, block.as_slice(), &mut contents).is_err() {
            return;
        }
        if let (false, Some(m)) = (nacks.is_empty(), &self.media) {
            let entries = entries_for(nacks.iter().map(|s| s.wire()));
            self.stats.nacks_sent += nacks.len() as u64;
            if rtcp::nack::write(self.ssrc, m.ids.media_ssrc, &entries, &mut contents).is_err() {
                return;
            }
        }
        let app = KeymashApp {
            quality: self.quality,
            mash: self.mash,
        };
        if rtcp::app::write(self.ssrc, &app, &mut contents).is_err() {
            return;
        }
        // The sender answers with a DLRR block: the round trip with or without loss.
        let ntp = ntp_from_duration(now.saturating_duration_since(self.started));
        if rtcp::xr::write_rrtr(self.ssrc, ntp, &mut contents).is_err() {
            return;
        }
        if let Some(sec) = &mut self.security {
            if sec.seal_rtcp(&mut contents).is_err() {
                return;
            }
        }
        self.stats.feedback_sent += 1;
        self.push.sent(now, self.quality);
        self.out.push_back(Transmit {
            contents,
            kind: TransmitKind::Rtcp,
        });
        self.next_feedback = now + self.config.feedback_interval;
    }

    /// How long to wait for a retransmission before NACKing again: the RTT plus the reorder
    /// tolerance (the sender's pacing queue and the path's jitter delay it a little).
    fn renack_interval(&self) -> Duration {
        self.rtt.unwrap_or(self.config.initial_rtt) + self.config.reorder_tolerance
    }

    /// The RFC 3550 report block on the sender's stream (none before the first packet).
    fn report_block(&mut self, now: Instant) -> Option<ReportBlockFields> {
        let m = self.media.as_mut()?;
        let highest = m.seqs.highest()?;
        let expected = highest.get() - m.lowest?.get() + 1;
        let expected_interval = expected.saturating_sub(m.expected_prior);
        let received_interval = m.received.saturating_sub(m.received_prior);
        m.expected_prior = expected;
        m.received_prior = m.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |f| f.min(255) as u8);
        let (last_sr, delay_since_last_sr) = match m.last_sr {
            Some((lsr, at)) => (
                lsr,
                (ntp_from_duration(now.saturating_duration_since(at)) >> 16) as u32,
            ),
            None => (0, 0),
        };
        Some(ReportBlockFields {
            ssrc: m.ids.media_ssrc,
            fraction_lost,
            cumulative_lost: (expected as i64 - m.received as i64)
                .clamp(i64::from(i32::MIN), i64::from(i32::MAX))
                as i32,
            // The extender starts the stream in cycle 1; RFC 3550 counts cycles from 0.
            extended_highest_seq: highest.get().saturating_sub(1 << 16) as u32,
            jitter: m.jitter_ticks as u32,
            last_sr,
            delay_since_last_sr,
        })
    }

    /// Feedback to send, if any is due.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.handle_timeout(now);
        let t = self.out.pop_front()?;
        self.liveness.sent(now);
        Some(t)
    }

    /// The next time [`Receiver::handle_timeout`] or [`Receiver::poll_payload`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let nack = if self.config.nack {
            self.nack.next_due(self.renack_interval())
        } else {
            None
        };
        let gap = self.gap.peek_deadline(
            self.window.cursor(),
            self.window.gap_at_cursor(),
            self.loss_hold(),
            self.config.reorder_tolerance,
            self.config.serial_gap_hold,
        );
        let push = self.push.due(self.quality);
        [Some(self.next_feedback), nack, gap, push]
            .into_iter()
            .flatten()
            .min()
    }
}
