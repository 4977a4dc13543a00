//! The working loop: datagrams in, payloads out to the ring, feedback back to the sender.
//!
//! Each slot of the received-payload ring holds one codec payload with this metadata:
//! `frame` = the payload header's frame number (0 if it does not parse: display refuses it),
//! `capture_ns` = when net-rx received it (CLOCK_MONOTONIC; display's playout delay counts from
//! here), `flags` = how it arrived ([`RECOVERY_DIRECT`], [`RECOVERY_FEC`], [`RECOVERY_NACK`]),
//! `words` = [extended RTP sequence number low 32 bits, high 32 bits, RTP timestamp, marker, 0].

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use keymash_codec::{FrameJoin, PayloadHeader};
use keymash_core::config::Config;
use keymash_core::curves::QualityCurve;
use keymash_core::pipeline::{stat, MashRecord, Service, MASH_CELL, RECEIVED_PAYLOADS};
use keymash_core::{FrameNo, MashLevel};
use keymash_service::stats::{permissions, segment_id};
use keymash_service::{Lifecycle, StatsPublisher};
use keymash_shm::{monotonic_now_ns, CellReader, FrameMeta, RingWriter, SegmentId};
use keymash_transport::udp::{PeerSocket, SocketBuffers, RECV_BUFFER_LEN};
use keymash_transport::{ReceivedPayload, Receiver, Recovery, SessionSalt};

use crate::settings::{local_address, received_ring_geometry, sender_address};

pub const RECOVERY_DIRECT: u32 = 0;
pub const RECOVERY_FEC: u32 = 1;
pub const RECOVERY_NACK: u32 = 2;

/// Datagrams taken off the socket in one go before the loop turns to payloads and feedback.
const RECV_BATCH: usize = 64;
/// Statistics are refreshed this often.
const REFRESH_INTERVAL: Duration = Duration::from_millis(100);
/// The mash level is read this often (a cell load is a small copy): keypress-to-quality
/// latency is this plus the RTCP feedback interval.
const MASH_READ_INTERVAL: Duration = Duration::from_millis(10);
/// How often a missing mash cell is looked for again (mash-input may start later).
const MASH_CELL_RETRY: Duration = Duration::from_secs(1);

/// The mash cell, opened when it exists.
struct MashInput {
    id: SegmentId,
    reader: Option<CellReader<MashRecord>>,
    last_try: Option<Instant>,
}

impl MashInput {
    fn level(&mut self, now: Instant) -> MashLevel {
        if self.reader.is_none()
            && self
                .last_try
                .is_none_or(|t| now.saturating_duration_since(t) >= MASH_CELL_RETRY)
        {
            self.last_try = Some(now);
            self.reader = CellReader::open(&self.id).ok();
        }
        match self.reader.as_ref().map(CellReader::load) {
            Some(Ok(record)) => keymash_input::current_level(&record, monotonic_now_ns()),
            _ => MashLevel::IDLE,
        }
    }
}

pub fn run(lifecycle: &mut Lifecycle, config: Config) -> anyhow::Result<()> {
    let transport = keymash_media::transport_settings(&config)?;
    let mut socket = PeerSocket::bind(
        local_address(&config),
        sender_address(&config),
        SocketBuffers::default(),
    )?;
    if let Ok((rcv, snd)) = socket.buffer_sizes() {
        log::info!(
            "UDP {} from {}, buffers {rcv}/{snd} bytes",
            local_address(&config),
            sender_address(&config)
        );
    }
    let ring_id = segment_id(&config, RECEIVED_PAYLOADS)?;
    let (mut ring, attach) = RingWriter::open(
        &ring_id,
        received_ring_geometry(&config)?,
        permissions(&config),
    )
    .with_context(|| format!("opening the received-payload ring {ring_id}"))?;
    log::info!(
        "received-payload ring {ring_id}: continuing at slot sequence {}",
        attach.next_seq
    );
    let mut mash = MashInput {
        id: segment_id(&config, MASH_CELL)?,
        reader: None,
        last_try: None,
    };
    let curve = QualityCurve::from_config(&config.quality);
    let mut stats = StatsPublisher::open(&config, Service::NetRx, "packets", monotonic_now_ns())?;

    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    // A fresh random session salt on every start: new keys, so no nonce is ever reused.
    let salt = SessionSalt::new(keymash_service::random::bytes()?);
    let mut receiver =
        Receiver::with_salt(transport, seed, salt, Instant::now()).context("transport settings")?;
    let protection = match receiver.key_fingerprint() {
        Some(fp) => format!("protected, key {fp}"),
        None => {
            log::warn!("security.mode = \"none\": the link is UNPROTECTED; anyone on the network can put a picture on the screen");
            "UNPROTECTED".to_owned()
        }
    };
    let mut buf = vec![0u8; RECV_BUFFER_LEN];
    let mut next_refresh = Instant::now();
    let mut next_mash_read = Instant::now();
    let mut quality = curve.quality(MashLevel::IDLE);
    let mut level = MashLevel::IDLE;
    let mut unparseable: u64 = 0;
    // A restarted net-rx, or a restarted sender's new stream, is joined part-way through a
    // frame: its tail is not written, so the display never shows a frame torn by a restart.
    let mut join = FrameJoin::new();
    lifecycle.ready(&format!(
        "listening on {} for {}, {protection}",
        local_address(&config),
        sender_address(&config)
    ));

    while !lifecycle.stop_requested() {
        let now = Instant::now();
        let wait = receiver
            .poll_timeout()
            .map_or(Lifecycle::MAX_WAIT, |t| t.saturating_duration_since(now))
            .min(Lifecycle::MAX_WAIT)
            .min(next_refresh.saturating_duration_since(now))
            .min(next_mash_read.saturating_duration_since(now));
        let mut wait = wait;
        for _ in 0..RECV_BATCH {
            match socket.recv(&mut buf, wait)? {
                Some(len) => receiver.handle_datagram(Instant::now(), &buf[..len]),
                None => break,
            }
            wait = Duration::ZERO;
        }
        let now = Instant::now();
        while let Some(payload) = receiver.poll_payload(now) {
            let header = PayloadHeader::parse(&payload.payload).ok();
            if header.is_some_and(|h| !join.admit(u64::from(payload.ssrc.0), &h)) {
                continue;
            }
            write_payload(&mut ring, &payload, header);
            if header.is_none() {
                unparseable += 1;
            }
        }
        if now >= next_mash_read {
            next_mash_read = now + MASH_READ_INTERVAL;
            level = mash.level(now);
            quality = curve.quality(level);
            receiver.set_feedback(quality, level);
        }
        while let Some(transmit) = receiver.poll_transmit(now) {
            if let Err(e) = socket.send(&transmit) {
                // The sender PC may be down or rebooting; feedback resumes when it is back.
                log::debug!("feedback: {e}");
            }
        }
        lifecycle.progress(now);
        if now >= next_refresh {
            next_refresh = now + REFRESH_INTERVAL;
            ring.heartbeat();
            let s = receiver.stats(now);
            stats.set_count("packets", s.received);
            stats.set_count("lost", s.lost);
            stats.set_count(stat::DROPPED, s.lost);
            stats.set_count("recovered_fec", s.recovered_fec);
            stats.set_count("recovered_nack", s.recovered_nack);
            stats.set_count("late", s.late);
            stats.set_count("duplicate", s.duplicate);
            stats.set_count("malformed", s.malformed);
            stats.set_count("foreign", s.foreign + socket.foreign_datagrams());
            stats.set_count("delivered", s.delivered);
            stats.set_count("unparseable_payloads", unparseable);
            stats.set_count("joined_mid_frame", join.skipped());
            stats.set_count("nacks_sent", s.nacks_sent);
            // Forged, replayed and switched: 16 counters in all, the most a stats cell holds.
            stats.set_count("auth_failed", s.auth_failed);
            stats.set_count("replayed", s.replayed);
            stats.set_count("stream_switches", s.stream_switches);
            stats.gauge("protected", if receiver.protected() { 1.0 } else { 0.0 });
            stats.gauge("unconfirmed", s.unconfirmed as f64);
            stats.gauge("loss_percent", s.loss_percent_1s);
            stats.gauge("jitter_ms", s.jitter.as_secs_f64() * 1e3);
            stats.gauge("quality", f64::from(quality.get()));
            stats.gauge("mash", f64::from(level.get()));
            let line = format!(
                "{} received, loss {:.1}%, {} lost, {} recovered, {} late; asking {quality} at mash {:.2}{}",
                s.received,
                s.loss_percent_1s,
                s.lost,
                s.recovered_fec + s.recovered_nack,
                s.late,
                level.get(),
                if receiver.peer_alive(now) { "" } else { "; sender silent" },
            );
            let line = match receiver.security_alarm(now) {
                Some(alarm) => {
                    stats.set_last_error(&alarm.to_string());
                    format!("{alarm}; {line}")
                }
                None if !receiver.protected() => format!("UNPROTECTED; {line}"),
                None if s.stream_switches > 0 => {
                    format!("{line}; {} stream switches", s.stream_switches)
                }
                None => line,
            };
            stats.set_status_line(&line);
            stats.publish(monotonic_now_ns());
            lifecycle.status(now, &line);
        }
    }
    Ok(())
}

/// Copies one payload into the ring. One whose codec `header` does not parse is still written,
/// with frame number 0, so display counts and refuses it where it decodes.
fn write_payload(ring: &mut RingWriter, payload: &ReceivedPayload, header: Option<PayloadHeader>) {
    let frame = header.map_or(FrameNo(0), |h| h.frame_no);
    let seq = payload.seq.get();
    let flags = match payload.recovery {
        Recovery::Direct => RECOVERY_DIRECT,
        Recovery::Fec => RECOVERY_FEC,
        Recovery::Nack => RECOVERY_NACK,
    };
    let meta = FrameMeta::new(frame, monotonic_now_ns())
        .with_flags(flags)
        .with_words([
            seq as u32,
            (seq >> 32) as u32,
            payload.rtp_timestamp,
            u32::from(payload.marker),
            0,
        ]);
    if let Err(e) = ring.write(&payload.payload, &meta) {
        log::warn!("payload {seq} not stored: {e}");
    }
}
