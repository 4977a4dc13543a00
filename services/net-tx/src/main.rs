//! keymash-net-tx: sends the encoded frames to the receiver as paced RTP (with FEC repair and a
//! NACK history when configured), takes in the receiver's RTCP feedback, and writes the quality
//! it asks for into the quality cell (the transport falls back to `codec.quality` after
//! `transport.quality_fallback_ms` of silence).
//!
//! One thread, one loop: it sleeps on the payload ring's futex until the next frame or the next
//! paced packet is due (at most [`FEEDBACK_POLL`], so feedback is read promptly), reads feedback
//! without blocking, and drains the transport's transmits.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use keymash_core::config::Config;
use keymash_core::pipeline::{stat, QualityRecord, Service, PAYLOADS, QUALITY_CELL};
use keymash_core::Quality;
use keymash_media::framing::PackedPayloads;
use keymash_media::{transport_settings, Percentiles};
use keymash_service::stats::{permissions, segment_id};
use keymash_service::{Lifecycle, ServiceArgs, StatsPublisher};
use keymash_shm::{monotonic_now_ns, CellWriter, OpenError, RecvError, RingReader};
use keymash_transport::udp::{PeerSocket, SocketBuffers, RECV_BUFFER_LEN};
use keymash_transport::{Sender, SessionSalt, TransmitKind};

/// Longest sleep between checks for receiver feedback.
const FEEDBACK_POLL: Duration = Duration::from_millis(5);
/// The quality cell is rewritten at least this often, so its heartbeat shows net-tx alive.
const QUALITY_REFRESH: Duration = Duration::from_millis(100);
/// Capture-to-send latencies kept for the p50/p99 gauges.
const LATENCY_WINDOW: usize = 300;
/// A reader that has seen no frame for this long reopens its ring (the writer may have
/// recreated it).
const REOPEN_AFTER: Duration = Duration::from_secs(2);

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
    let (mut quality_cell, _) = CellWriter::<QualityRecord>::open(
        &segment_id(&config, QUALITY_CELL)?,
        permissions(&config),
    )
    .context("cannot open the quality cell")?;
    let payloads_id = segment_id(&config, PAYLOADS)?;
    let mut stats = StatsPublisher::open(&config, Service::NetTx, "packets", monotonic_now_ns())?;
    lifecycle.ready(&format!(
        "sending to {peer} from {}, {protection}, FEC {}, NACK {}, pacing over {:.1} ms",
        socket.local_addr()?,
        if settings.fec {
            format!("{:.0}%", settings.fec_overhead.get() * 100.0)
        } else {
            "off".to_owned()
        },
        if settings.nack { "on" } else { "off" },
        settings.frame_spread.as_secs_f64() * 1e3
    ));
    stats.set_state(keymash_shm::ServiceState::Running);

    let mut reader: Option<RingReader> = None;
    let mut datagram = vec![0u8; RECV_BUFFER_LEN];
    let mut frame = Vec::new();
    let mut latency_ms = Percentiles::new(LATENCY_WINDOW);
    // Last media sequence number of each queued frame, with its capture time.
    let mut frames_in_flight: VecDeque<(u16, u64)> = VecDeque::new();
    let mut last_quality: Option<(Quality, bool)> = None;
    let mut last_quality_write = Instant::now();
    let mut last_frame = Instant::now();
    let mut last_publish = Instant::now();
    let mut send_errors = 0u64;
    while !lifecycle.stop_requested() {
        // 1. Feedback from the receiver.
        while let Some(len) = socket.recv(&mut datagram, Duration::ZERO)? {
            sender.handle_datagram(Instant::now(), &datagram[..len]);
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
                // A frame is sent when its last packet is; frames before it whose last packet
                // the pacer dropped as stale will never complete and are forgotten here.
                let seq = rtp_seq(&transmit.contents);
                if let Some(done) = frames_in_flight
                    .iter()
                    .position(|&(last, _)| Some(last) == seq)
                {
                    if let Some((_, capture_ns)) = frames_in_flight.drain(..=done).next_back() {
                        latency_ms
                            .record(monotonic_now_ns().saturating_sub(capture_ns) as f64 / 1e6);
                    }
                }
            }
        }
        // Bounded even if the pacer drops every frame's last packet.
        while frames_in_flight.len() > 64 {
            frames_in_flight.pop_front();
        }
        // 4. Wait for the next frame, no longer than the next paced packet or feedback check.
        let now = Instant::now();
        let wait = sender
            .poll_timeout()
            .map_or(FEEDBACK_POLL, |t| t.saturating_duration_since(now))
            .min(FEEDBACK_POLL);
        match reader.as_mut() {
            None => {
                match RingReader::open(&payloads_id) {
                    Ok(r) => reader = Some(r),
                    Err(OpenError::NotFound { .. } | OpenError::NotReady { .. }) => {
                        std::thread::sleep(wait)
                    }
                    Err(e) => {
                        log::warn!("{e}");
                        std::thread::sleep(wait);
                    }
                }
                last_frame = Instant::now();
            }
            Some(r) => match r.recv_into(wait, &mut frame) {
                Ok(received) => {
                    last_frame = Instant::now();
                    stats.count(stat::DROPPED, received.missed);
                    match PackedPayloads::parse(&frame) {
                        Ok(packed) if !packed.payloads.is_empty() => {
                            let now = Instant::now();
                            let age = Duration::from_nanos(
                                monotonic_now_ns().saturating_sub(received.meta.capture_ns()),
                            );
                            let capture_time = now.checked_sub(age).unwrap_or(now);
                            match sender.push_frame(
                                now,
                                received.meta.frame(),
                                capture_time,
                                &packed.payloads,
                            ) {
                                Ok(queued) => {
                                    stats.count("frames", 1);
                                    frames_in_flight.push_back((
                                        queued.last_seq.wire(),
                                        received.meta.capture_ns(),
                                    ));
                                }
                                Err(e) => {
                                    log::warn!("frame {} not sent: {e}", received.meta.frame());
                                    stats.count(stat::DROPPED, 1);
                                }
                            }
                        }
                        Ok(_) => stats.count(stat::DROPPED, 1),
                        Err(e) => {
                            log::warn!("payload slot {} unreadable: {e}", received.seq);
                            stats.count(stat::DROPPED, 1);
                        }
                    }
                }
                Err(RecvError::TimedOut) => {
                    if last_frame.elapsed() > REOPEN_AFTER {
                        reader = None;
                    }
                }
                Err(e) => {
                    log::warn!("payload ring: {e}; reopening");
                    reader = None;
                }
            },
        }

        let now = Instant::now();
        lifecycle.progress(now);
        if now.duration_since(last_publish) >= Duration::from_millis(500) {
            last_publish = now;
            let s = sender.stats().clone();
            stats.set_count("media_sent", s.media_sent);
            stats.set_count("repair_sent", s.repair_sent);
            stats.set_count("retransmitted", s.retransmitted);
            stats.set_count("nacks_received", s.nacks_received);
            stats.set_count("reports_received", s.reports_received);
            stats.set_count("send_queue_dropped", s.send_queue_dropped);
            stats.set_count("send_errors", send_errors);
            stats.set_count("retransmit_refused", s.retransmit_refused);
            stats.set_count("retransmit_capped", s.retransmit_capped);
            let security = sender.security_stats().unwrap_or_default();
            stats.set_count("auth_failed", security.auth_failed);
            stats.set_count("replayed", security.replayed);
            stats.gauge(
                "protected",
                if sender.key_fingerprint().is_some() {
                    1.0
                } else {
                    0.0
                },
            );
            stats.gauge("rtt_ms", s.rtt.map_or(-1.0, |d| d.as_secs_f64() * 1e3));
            stats.gauge("remote_loss", s.remote_fraction_lost);
            stats.gauge("quality", f64::from(sender.requested_quality(now).get()));
            stats.gauge("peer_alive", if sender.peer_alive(now) { 1.0 } else { 0.0 });
            stats.gauge("latency_ms_p50", latency_ms.quantile(0.5).unwrap_or(0.0));
            stats.gauge("latency_ms_p99", latency_ms.quantile(0.99).unwrap_or(0.0));
            stats.publish(monotonic_now_ns());
            let alarm = sender.security_alarm(now);
            if let Some(alarm) = alarm {
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
            let line = match alarm {
                Some(alarm) => format!("{alarm}; {line}"),
                None if sender.key_fingerprint().is_none() => format!("UNPROTECTED; {line}"),
                None => line,
            };
            stats.set_status_line(&line);
            lifecycle.status(now, &line);
        }
    }
    stats.set_state(keymash_shm::ServiceState::Stopping);
    stats.publish(monotonic_now_ns());
    Ok(())
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
