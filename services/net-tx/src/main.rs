//! keymash-net-tx: sends the encoded frames to the receiver as paced RTP (with FEC repair and a
//! NACK history when configured), takes in the receiver's RTCP feedback, and writes the quality
//! it asks for into the quality cell (the transport falls back to `codec.quality` after
//! `transport.quality_fallback_ms` of silence).
//!
//! One thread, one loop: it sleeps on the payload ring's futex until the next frame or the next
//! paced packet is due (at most [`FEEDBACK_POLL`], so feedback is read promptly), reads feedback
//! without blocking, and drains the transport's transmits.
#![forbid(unsafe_code)]

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use keymash_core::config::Config;
use keymash_core::{Percentiles, Quality};
use keymash_media::{Departed, Departures};
use keymash_pipeline::{
    stat, Follow, FrameKind, PackedPayloads, PayloadSlot, QualityRecord, Segments, Service,
};
use keymash_service::{Lifecycle, ServiceArgs, StatsPublisher};
use keymash_shm::{monotonic_now_ns, RecvError, RingReader};
use keymash_transport::udp::{PeerSocket, SocketBuffers, FEEDBACK_POLL, RECV_BUFFER_LEN};
use keymash_transport::{transport_settings, Sender, SessionSalt, TransmitKind};

/// The quality cell is rewritten at least this often, so its heartbeat shows net-tx alive.
const QUALITY_REFRESH: Duration = Duration::from_millis(100);
/// Capture-to-send latencies kept for the p50/p99 gauges.
const LATENCY_WINDOW: usize = 300;
/// Statistics and the status line are refreshed this often.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Sends encoded frames to the receiver as paced RTP and feeds its quality requests back to the encoder."
)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    keymash_service::run("keymash-net-tx", &args.service, run)
}

/// A random seed for SSRC and sequence numbers (RFC 3550 wants them unpredictable).
fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)) {
        Ok(()) => u64::from_le_bytes(bytes),
        // Not secret, only distinct per start: time and pid will do.
        Err(_) => monotonic_now_ns() ^ (u64::from(std::process::id()) << 32),
    }
}

/// The RTP sequence number of a media packet.
fn rtp_seq(packet: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]))
}

fn run(lifecycle: &mut Lifecycle, config: Config) -> anyhow::Result<()> {
    let settings = transport_settings(&config)?;
    let network = &config.network;
    let peer = SocketAddr::new(network.receiver_address, network.video_port);
    let local_ip = match network.receiver_address {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let mut socket = PeerSocket::bind(
        SocketAddr::new(local_ip, network.sender_port),
        peer,
        SocketBuffers::default(),
    )?;
    // A fresh random session salt on every start: new keys, so no nonce is ever reused.
    let salt = SessionSalt::new(keymash_service::random::bytes()?);
    let mut sender = Sender::with_salt(settings.clone(), random_seed(), salt, Instant::now())?;
    let protection = match sender.key_fingerprint() {
        Some(fp) => format!("protected, key {fp}"),
        None => {
            log::warn!("security.mode = \"none\": the link is UNPROTECTED; anyone on the network can change the quality");
            "UNPROTECTED".to_owned()
        }
    };
    let segments = Segments::new(&config)?;
    let mut quality_cell = segments.quality_cell()?.create()?;
    let mut payloads = segments.payloads()?.follow();
    let mut stats = StatsPublisher::open(&config, Service::NetTx, "packets", monotonic_now_ns())?;
    lifecycle.ready(&format!(
        "sending to {peer} from {}, {protection}, FEC {}, NACK {}, pacing {}",
        socket.local_addr()?,
        if settings.fec {
            format!("{:.0}%", settings.fec_overhead.get() * 100.0)
        } else {
            "off".to_owned()
        },
        if settings.nack { "on" } else { "off" },
        match settings.pacing_rate_bytes_per_sec {
            Some(rate) => format!(
                "at {} Mbit/s, a frame over {:.1} ms at most",
                rate * 8 / 1_000_000,
                settings.frame_spread.as_secs_f64() * 1e3
            ),
            None => format!(
                "every frame over {:.1} ms",
                settings.frame_spread.as_secs_f64() * 1e3
            ),
        }
    ));
    stats.set_state(keymash_shm::ServiceState::Running);

    let mut datagram = vec![0u8; RECV_BUFFER_LEN];
    let mut frame = Vec::new();
    let mut latency_ms = Percentiles::new(LATENCY_WINDOW);
    // Queueing with the pacer to the frame's last packet leaving.
    let mut pacing_ms = Percentiles::new(LATENCY_WINDOW);
    let mut departures = Departures::new();
    let mut last_quality: Option<(Quality, bool)> = None;
    let mut last_quality_write = Instant::now();
    let mut last_publish = Instant::now();
    let mut send_errors = 0u64;
    while !lifecycle.stop_requested() {
        // 1. Feedback from the receiver, at the time it arrived (this loop reads it up to
        // FEEDBACK_POLL later): the delay the sender reports holding an RRTR is then exact.
        while let Some((len, arrival)) = socket.recv_at(&mut datagram, Duration::ZERO)? {
            sender.handle_datagram(arrival, &datagram[..len]);
        }
        // 2. Tell the encoder the quality to use.
        let now = Instant::now();
        let quality = (
            sender.requested_quality(now),
            sender.remote_mash(now).is_some(),
        );
        if last_quality != Some(quality)
            || now.duration_since(last_quality_write) >= QUALITY_REFRESH
        {
            quality_cell.store(&QualityRecord::new(
                quality.0,
                quality.1,
                monotonic_now_ns(),
            ));
            last_quality = Some(quality);
            last_quality_write = now;
        }
        // 3. Send what is due.
        while let Some(transmit) = sender.poll_transmit(Instant::now()) {
            if let Err(e) = socket.send(&transmit) {
                send_errors += 1;
                if send_errors.is_power_of_two() {
                    log::warn!("{e} ({send_errors} send errors so far)");
                }
                continue;
            }
            stats.count("packets", 1);
            if transmit.kind == TransmitKind::Media {
                if let Some(frame) = rtp_seq(&transmit.contents).and_then(|s| departures.sent(s)) {
                    let now_ns = monotonic_now_ns();
                    latency_ms.record(now_ns.saturating_sub(frame.capture_ns) as f64 / 1e6);
                    pacing_ms.record(now_ns.saturating_sub(frame.queued_ns) as f64 / 1e6);
                }
            }
        }
        // 4. Wait for the next frame, no longer than the next paced packet or feedback check.
        let now = Instant::now();
        let wait = sender
            .poll_timeout()
            .map_or(FEEDBACK_POLL, |t| t.saturating_duration_since(now))
            .min(FEEDBACK_POLL);
        take_frame(
            &mut payloads,
            wait,
            &mut frame,
            &mut sender,
            &mut departures,
            &mut stats,
        );

        let now = Instant::now();
        lifecycle.progress(now);
        if now.duration_since(last_publish) >= PUBLISH_INTERVAL {
            last_publish = now;
            stats.set_count("send_errors", send_errors);
            // Datagrams the socket dropped before the transport saw them: from another address,
            // or too large for any keymash packet. Forged feedback is counted either way.
            stats.set_count("foreign", socket.foreign_datagrams());
            stats.set_count("oversized", socket.oversized_datagrams());
            let line = publish(
                &mut stats,
                &sender,
                &mut latency_ms,
                &mut pacing_ms,
                peer,
                payloads.waiting(),
                now,
            );
            lifecycle.status(now, &line);
        }
    }
    stats.set_state(keymash_shm::ServiceState::Stopping);
    stats.publish(monotonic_now_ns());
    Ok(())
}

/// Waits up to `wait` for the next encoded frame and queues it with the transport.
fn take_frame(
    payloads: &mut Follow<RingReader>,
    wait: Duration,
    frame: &mut Vec<u8>,
    sender: &mut Sender,
    departures: &mut Departures,
    stats: &mut StatsPublisher,
) {
    let Some(reader) = payloads.reader() else {
        std::thread::sleep(wait);
        return;
    };
    let received = match reader.recv_into(wait, frame) {
        Ok(received) => received,
        Err(RecvError::TimedOut) => {
            payloads.silent();
            return;
        }
        Err(e) => {
            payloads.reopen(&e);
            return;
        }
    };
    stats.count(stat::DROPPED, received.missed);
    let slot = PayloadSlot::read(&received.meta);
    let packed = match PackedPayloads::parse(frame) {
        Ok(packed) if !packed.payloads.is_empty() => packed,
        Ok(_) => {
            stats.count(stat::DROPPED, 1);
            return;
        }
        Err(e) => {
            log::warn!("payload slot {} unreadable: {e}", received.seq);
            stats.count(stat::DROPPED, 1);
            return;
        }
    };
    let now = Instant::now();
    let age = Duration::from_nanos(monotonic_now_ns().saturating_sub(slot.capture_ns));
    let capture_time = now.checked_sub(age).unwrap_or(now);
    // Only camera video says its age: the countdown card's time is when it was drawn, and the
    // receiver would take it for a delay of zero.
    let queued = match slot.kind {
        FrameKind::Video => sender.push_frame(now, slot.frame, capture_time, &packed.payloads),
        FrameKind::Countdown => {
            sender.push_generated_frame(now, slot.frame, capture_time, &packed.payloads)
        }
    };
    match queued {
        Ok(queued) => {
            stats.count("frames", 1);
            departures.queued(
                queued.last_seq.wire(),
                Departed {
                    capture_ns: slot.capture_ns,
                    queued_ns: monotonic_now_ns(),
                },
            );
        }
        Err(e) => {
            log::warn!("frame {} not sent: {e}", slot.frame);
            stats.count(stat::DROPPED, 1);
        }
    }
}

/// Publishes the transport's figures; returns the status line.
fn publish(
    stats: &mut StatsPublisher,
    sender: &Sender,
    latency_ms: &mut Percentiles,
    pacing_ms: &mut Percentiles,
    peer: SocketAddr,
    waiting: Option<&str>,
    now: Instant,
) -> String {
    let s = sender.stats().clone();
    stats.set_count("media_sent", s.media_sent);
    stats.set_count("repair_sent", s.repair_sent);
    stats.set_count("retransmitted", s.retransmitted);
    stats.set_count("nacks_received", s.nacks_received);
    stats.set_count("reports_received", s.reports_received);
    stats.set_count("send_queue_dropped", s.send_queue_dropped);
    stats.set_count("retransmit_refused", s.retransmit_refused);
    stats.set_count("retransmit_capped", s.retransmit_capped);
    let security = sender.security_stats().unwrap_or_default();
    stats.set_count("auth_failed", security.auth_failed);
    stats.set_count("replayed", security.replayed);
    let protected = sender.key_fingerprint().is_some();
    stats.gauge("protected", if protected { 1.0 } else { 0.0 });
    stats.gauge("rtt_ms", s.rtt.map_or(-1.0, |d| d.as_secs_f64() * 1e3));
    stats.gauge("remote_loss", s.remote_fraction_lost);
    stats.gauge("quality", f64::from(sender.requested_quality(now).get()));
    stats.gauge("peer_alive", if sender.peer_alive(now) { 1.0 } else { 0.0 });
    stats.gauge("latency_ms_p50", latency_ms.quantile(0.5).unwrap_or(0.0));
    stats.gauge("latency_ms_p99", latency_ms.quantile(0.99).unwrap_or(0.0));
    stats.gauge("pacing_ms_p50", pacing_ms.quantile(0.5).unwrap_or(0.0));
    stats.gauge("pacing_ms_p99", pacing_ms.quantile(0.99).unwrap_or(0.0));
    let alarm = sender.security_alarm(now);
    if let Some(alarm) = &alarm {
        stats.set_last_error(&alarm.to_string());
    }
    let line = format!(
        "to {peer}: {} frames, {} packets ({} repair, {} resent), quality {}{}, loss {:.1}%, rtt {}, capture-to-send p50 {:.1} ms",
        stats.counter("frames").unwrap_or(0),
        s.media_sent,
        s.repair_sent,
        s.retransmitted,
        sender.requested_quality(now),
        if sender.remote_mash(now).is_some() { " (receiver)" } else { " (fallback)" },
        s.remote_fraction_lost * 100.0,
        s.rtt.map_or("-".to_owned(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3)),
        latency_ms.quantile(0.5).unwrap_or(0.0),
    );
    let line = match (alarm, waiting) {
        (Some(alarm), _) => format!("{alarm}; {line}"),
        (None, _) if !protected => format!("UNPROTECTED; {line}"),
        (None, Some(why)) => format!("{why}; {line}"),
        (None, None) => line,
    };
    stats.set_status_line(&line);
    stats.publish(monotonic_now_ns());
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rtp_sequence_number_is_read_from_bytes_2_and_3() {
        assert_eq!(rtp_seq(&[0x80, 96, 0x12, 0x34, 0, 0]), Some(0x1234));
        assert_eq!(rtp_seq(&[0x80, 96, 0x12]), None);
    }
}
