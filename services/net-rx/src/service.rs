//! The working loop: datagrams in, payloads out to the ring, feedback back to the sender.
//!
//! Each slot of the received-payload ring holds one codec payload, described by a
//! [`ReceivedSlot`]: the payload header's frame number (0 if it does not parse: display refuses
//! it), when its datagram arrived (the kernel's receive timestamp, on CLOCK_MONOTONIC; display's
//! playout delay counts from here), how it arrived (directly, rebuilt by FEC, resent after a
//! NACK) and, for a direct arrival, the frame's age when the sender sent it (its RTP header
//! extension) with the round trip time known then.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use keymash_codec::{FrameJoin, PayloadHeader};
use keymash_core::config::Config;
use keymash_core::curves::QualityCurve;
use keymash_core::{FrameNo, MashLevel, Quality};
use keymash_input::MASH_READ_INTERVAL;
use keymash_pipeline::{
    stat, Arrived, CameraTiming, Follow, MashRecord, ReceivedSlot, Segments, Service,
};
use keymash_service::{Lifecycle, StatsPublisher};
use keymash_shm::{monotonic_now_ns, CellReader, RingWriter, ServiceState};
use keymash_transport::udp::{PeerSocket, SocketBuffers, RECV_BUFFER_LEN};
use keymash_transport::{MediaSilence, ReceivedPayload, Receiver, Recovery, SessionSalt};

use crate::settings::{local_address, sender_address};

// A slot of the received ring holds any datagram net-rx can read, whatever the configuration.
const _: () = assert!(
    keymash_transport::udp::RECV_BUFFER_LEN <= keymash_pipeline::received::MIN_RECEIVED_SLOT
);

/// Datagrams taken off the socket in one go before the loop turns to payloads and feedback.
const RECV_BATCH: usize = 64;
/// Statistics are refreshed this often.
const REFRESH_INTERVAL: Duration = Duration::from_millis(100);
/// With no video packet for this long the status says so instead of a loss figure (which is
/// 0% of nothing).
const NO_VIDEO_AFTER: Duration = Duration::from_secs(1);

pub(crate) fn run(lifecycle: &mut Lifecycle, config: Config) -> anyhow::Result<()> {
    let (mut rx, ready) = NetRx::open(&config)?;
    lifecycle.ready(&ready);
    rx.stats.set_state(ServiceState::Running);
    while !lifecycle.stop_requested() {
        rx.receive()?;
        let now = Instant::now();
        rx.deliver(now);
        rx.feedback(now);
        lifecycle.progress(now);
        if let Some(line) = rx.refresh(now) {
            lifecycle.status(now, &line);
        }
    }
    Ok(())
}

/// The receiver's state between loop turns: the socket, the protocol, the ring it fills and the
/// mash cell it follows.
struct NetRx {
    socket: PeerSocket,
    receiver: Receiver,
    ring: RingWriter,
    mash: Follow<CellReader<MashRecord>>,
    curve: QualityCurve,
    stats: StatsPublisher,
    buf: Vec<u8>,
    /// A restarted net-rx, or a restarted sender's new stream, is joined part-way through a
    /// frame: its tail is not written, so the display never shows a frame torn by a restart.
    join: FrameJoin,
    unparseable: u64,
    level: MashLevel,
    quality: Quality,
    next_refresh: Instant,
    next_mash_read: Instant,
    silence: MediaSilence,
}

impl NetRx {
    /// Binds the socket, creates the ring and the statistics cell; returns the ready line too.
    fn open(config: &Config) -> anyhow::Result<(Self, String)> {
        let transport = keymash_transport::transport_settings(config)?;
        let (local, sender) = (local_address(config), sender_address(config));
        let socket = PeerSocket::bind(local, sender, SocketBuffers::default())?;
        if let Ok((rcv, snd)) = socket.buffer_sizes() {
            log::info!("UDP {local} from {sender}, buffers {rcv}/{snd} bytes");
        }
        let segments = Segments::new(config)?;
        let received = segments.received()?;
        let (ring, attach) = received.create()?;
        log::info!(
            "received-payload ring {}: continuing at slot sequence {}",
            received.id(),
            attach.next_seq
        );
        let mash = segments.mash_cell()?.follow();
        let curve = QualityCurve::from_config(&config.quality);
        let stats = StatsPublisher::open(config, Service::NetRx, "packets", monotonic_now_ns())?;

        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        // A fresh random session salt on every start: new keys, so no nonce is ever reused.
        let salt = SessionSalt::new(keymash_service::random::bytes()?);
        let receiver = Receiver::with_salt(transport, seed, salt, Instant::now())
            .context("transport settings")?;
        let protection = match receiver.key_fingerprint() {
            Some(fp) => format!("protected, key {fp}"),
            None => {
                log::warn!("security.mode = \"none\": the link is UNPROTECTED; anyone on the network can put a picture on the screen");
                "UNPROTECTED".to_owned()
            }
        };
        let now = Instant::now();
        let rx = NetRx {
            socket,
            receiver,
            ring,
            mash,
            quality: curve.quality(MashLevel::IDLE),
            curve,
            stats,
            buf: vec![0u8; RECV_BUFFER_LEN],
            join: FrameJoin::new(),
            unparseable: 0,
            level: MashLevel::IDLE,
            next_refresh: now,
            next_mash_read: now,
            silence: MediaSilence::new(now),
        };
        Ok((
            rx,
            format!("listening on {local} for {sender}, {protection}"),
        ))
    }

    /// Takes up to [`RECV_BATCH`] datagrams off the socket, waiting for the first no longer
    /// than the protocol's next timer, the next refresh or mash read, or [`Lifecycle::MAX_WAIT`].
    fn receive(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        let mut wait = self
            .receiver
            .poll_timeout()
            .map_or(Lifecycle::MAX_WAIT, |t| t.saturating_duration_since(now))
            .min(Lifecycle::MAX_WAIT)
            .min(self.next_refresh.saturating_duration_since(now))
            .min(self.next_mash_read.saturating_duration_since(now));
        for _ in 0..RECV_BATCH {
            // The protocol's `now` for a datagram is when the kernel received it, not when
            // this loop woke up to read it.
            match self.socket.recv_at(&mut self.buf, wait)? {
                Some((len, arrival)) => self.receiver.handle_datagram(arrival, &self.buf[..len]),
                None => break,
            }
            wait = Duration::ZERO;
        }
        Ok(())
    }

    /// Writes the payloads the protocol releases into the ring, from the first whole frame on.
    fn deliver(&mut self, now: Instant) {
        let rtt = self.receiver.stats(now).rtt;
        while let Some(payload) = self.receiver.poll_payload(now) {
            let header = PayloadHeader::parse(&payload.payload).ok();
            if header.is_some_and(|h| !self.join.admit(u64::from(payload.ssrc.0), &h)) {
                continue;
            }
            write_payload(&mut self.ring, &payload, header, rtt);
            if header.is_none() {
                self.unparseable += 1;
            }
        }
    }

    /// Reads the mash level when due and sends the feedback the protocol has ready: a change of
    /// the quality asked for goes at once (the transport limits it to one per frame interval),
    /// so key-press-to-sender is [`MASH_READ_INTERVAL`] at most, not the feedback interval.
    fn feedback(&mut self, now: Instant) {
        if now >= self.next_mash_read {
            self.next_mash_read = now + MASH_READ_INTERVAL;
            self.level = mash_level(&mut self.mash);
            self.quality = self.curve.quality(self.level);
            self.receiver.set_feedback(self.quality, self.level);
        }
        while let Some(transmit) = self.receiver.poll_transmit(now) {
            if let Err(e) = self.socket.send(&transmit) {
                // The sender PC may be down or rebooting; feedback resumes when it is back.
                log::debug!("feedback: {e}");
            }
        }
    }

    /// Publishes the statistics when due; returns the status line then.
    fn refresh(&mut self, now: Instant) -> Option<String> {
        if now < self.next_refresh {
            return None;
        }
        self.next_refresh = now + REFRESH_INTERVAL;
        self.ring.heartbeat();
        let s = self.receiver.stats(now);
        let stats = &mut self.stats;
        stats.set_count("packets", s.received);
        stats.set_count("lost", s.lost);
        stats.set_count(stat::DROPPED, s.lost);
        stats.set_count("recovered_fec", s.recovered_fec);
        stats.set_count("recovered_nack", s.recovered_nack);
        stats.set_count("late", s.late);
        stats.set_count("duplicate", s.duplicate);
        // A datagram too large for any keymash packet is malformed too (the cell's 16 counters
        // are all in use, and a forged oversized datagram must still be counted somewhere).
        stats.set_count("malformed", s.malformed + self.socket.oversized_datagrams());
        stats.set_count("foreign", s.foreign + self.socket.foreign_datagrams());
        stats.set_count("delivered", s.delivered);
        stats.set_count("unparseable_payloads", self.unparseable);
        stats.set_count("joined_mid_frame", self.join.skipped());
        stats.set_count("nacks_sent", s.nacks_sent);
        // Forged, replayed and switched: 16 counters in all, the most a stats cell holds.
        stats.set_count("auth_failed", s.auth_failed);
        stats.set_count("replayed", s.replayed);
        stats.set_count("stream_switches", s.stream_switches);
        let protected = self.receiver.protected();
        stats.gauge("protected", if protected { 1.0 } else { 0.0 });
        stats.gauge("unconfirmed", s.unconfirmed as f64);
        stats.gauge("loss_percent", s.loss_percent_1s);
        stats.gauge("jitter_ms", s.jitter.as_secs_f64() * 1e3);
        stats.gauge("rtt_ms", s.rtt.map_or(-1.0, |d| d.as_secs_f64() * 1e3));
        stats.gauge("quality", f64::from(self.quality.get()));
        stats.gauge("mash", f64::from(self.level.get()));
        let silent_for = self.silence.observe(now, s.received);
        let alive = self.receiver.peer_alive(now);
        let flow = if silent_for < NO_VIDEO_AFTER {
            format!("loss {:.1}%", s.loss_percent_1s)
        } else if alive {
            // The sender's reports still come: it has no frames to send, or every video packet
            // is dropped before net-rx (the loss filter's counters tell which).
            format!(
                "no video for {:.1} s, sender alive",
                silent_for.as_secs_f64()
            )
        } else {
            format!(
                "no video for {:.1} s, sender silent",
                silent_for.as_secs_f64()
            )
        };
        let line = format!(
            "{flow}; {} received, {} lost, {} recovered, {} late; asking {} at mash {:.2}",
            s.received,
            s.lost,
            s.recovered_fec + s.recovered_nack,
            s.late,
            self.quality,
            self.level.get(),
        );
        // A missing mash cell (mash-input not running; the quality asked is the idle one) leads
        // the line. Only a security alarm goes before it: no picture at all is the graver
        // problem, and the 128 bytes of a status line do not hold both in full.
        let alarm = self.receiver.security_alarm(now);
        let mut clauses = Vec::new();
        if let Some(alarm) = &alarm {
            stats.set_last_error(&alarm.to_string());
            clauses.push(alarm.to_string());
        }
        clauses.extend(self.mash.waiting().map(str::to_owned));
        if alarm.is_none() && !protected {
            clauses.push("UNPROTECTED".to_owned());
        }
        clauses.push(line);
        if alarm.is_none() && protected && s.stream_switches > 0 {
            clauses.push(format!("{} stream switches", s.stream_switches));
        }
        let line = clauses.join("; ");
        stats.set_status_line(&line);
        stats.publish(monotonic_now_ns());
        Some(line)
    }
}

/// The mash level to act on: the cell's while it is fresh; idle while there is no cell, it was
/// never stored, or mash-input stopped refreshing it.
fn mash_level(mash: &mut Follow<CellReader<MashRecord>>) -> MashLevel {
    mash.reader()
        .and_then(|cell| cell.load().ok())
        .map_or(MashLevel::IDLE, |record| {
            keymash_input::current_level(&record, monotonic_now_ns())
        })
}

/// Copies one payload into the ring. One whose codec `header` does not parse is still written,
/// with frame number 0, so display counts and refuses it where it decodes.
fn write_payload(
    ring: &mut RingWriter,
    payload: &ReceivedPayload,
    header: Option<PayloadHeader>,
    rtt: Option<Duration>,
) {
    // On the ring's clock (CLOCK_MONOTONIC nanoseconds), counted back from now.
    let now_ns = monotonic_now_ns();
    let since_arrival = Instant::now().saturating_duration_since(payload.arrival);
    let slot = ReceivedSlot {
        frame: header.map_or(FrameNo(0), |h| h.frame_no),
        arrival_ns: now_ns.saturating_sub(since_arrival.as_nanos() as u64),
        arrived: match payload.recovery {
            Recovery::Direct => Arrived::Direct,
            Recovery::Fec => Arrived::Fec,
            Recovery::Nack => Arrived::Nack,
        },
        rtp_timestamp: Some(payload.rtp_timestamp),
        // A resent packet's age was taken when it was first sent: only direct arrivals say how
        // old their frame is now.
        camera: payload
            .capture_age
            .filter(|_| payload.recovery == Recovery::Direct)
            .map(|age| CameraTiming {
                age_at_send: age.get(),
                rtt,
            }),
    };
    if let Err(e) = ring.write(&payload.payload, &slot.meta()) {
        log::warn!("payload {} not stored: {e}", payload.seq.get());
    }
}
