//! keymash-encoder: encodes the newest delayed frame at the quality in the quality cell into the
//! payload ring.
//!
//! Live video wants the newest frame, not all frames: when encoding falls behind, the encoder
//! skips to the newest delayed frame (counted as dropped) instead of queueing. The quality is
//! read per frame, so a change the receiver asks for applies to the very next frame; an empty or
//! invalid cell means `codec.quality`.
//!
//! Payload ring layout: one slot per encoded frame, holding all its payloads
//! (`keymash_media::framing`). Slot metadata: the delayed frame's number and capture time, its
//! flags (countdown card or video), and words [quality, payload count, payload bytes, 0, 0].
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use keymash_codec::{
    Encoder, EncoderConfig, FrameGeometry, I420View, Layout, PayloadSink, QualitySpec,
};
use keymash_core::config::{Config, PayloadLayout};
use keymash_core::pipeline::{
    stat, QualityRecord, Service, DELAYED_FRAMES, PAYLOADS, QUALITY_CELL,
};
use keymash_core::Quality;
use keymash_media::framing::pack_payloads;
use keymash_media::{rings, Percentiles, RawFrameInfo};
use keymash_service::stats::{permissions, segment_id};
use keymash_service::{Lifecycle, ServiceArgs, StatsPublisher};
use keymash_shm::{
    monotonic_now_ns, CellReader, FrameMeta, OpenError, RecvError, RingReader, RingWriter,
};

/// Encode times kept for the p50/p99 gauges: ten seconds at 30 fps.
const ENCODE_WINDOW: usize = 300;
/// A reader that has seen no frame for this long reopens its ring (see the delay buffer).
const REOPEN_AFTER: Duration = Duration::from_secs(2);

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Encodes delayed frames at the requested quality into the payload ring."
)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    keymash_service::run("keymash-encoder", &args.service, run)
}

fn run(lifecycle: &mut Lifecycle, config: Config) -> anyhow::Result<()> {
    let video = &config.video;
    let geometry = FrameGeometry::new(video.width as usize, video.height as usize)
        .context("`video.width`/`video.height` do not give a frame the codec can code")?;
    let encoder_config = EncoderConfig {
        geometry,
        layout: match config.codec.layout {
            PayloadLayout::Strips => Layout::Strips,
            PayloadLayout::Dispersed => Layout::Dispersed,
        },
        max_payload: config.codec.max_payload_bytes as usize,
        threads: config.codec.threads as usize,
    };
    let mut encoder =
        Encoder::new(encoder_config.clone()).context("`codec` settings refused by the encoder")?;
    let payload_geometry = rings::payload_ring(video)?;
    let (mut payloads, _) = match RingWriter::open(
        &segment_id(&config, PAYLOADS)?,
        payload_geometry,
        permissions(&config),
    ) {
        Err(OpenError::GeometryMismatch { .. }) => {
            let id = segment_id(&config, PAYLOADS)?;
            log::warn!("{id} has another geometry (older configuration); replacing it");
            keymash_shm::remove_segment(&id)?;
            RingWriter::open(&id, payload_geometry, permissions(&config))?
        }
        other => other.context("cannot open the payload ring")?,
    };
    let delayed_id = segment_id(&config, DELAYED_FRAMES)?;
    let quality_id = segment_id(&config, QUALITY_CELL)?;
    let mut stats = StatsPublisher::open(&config, Service::Encoder, "frames", monotonic_now_ns())?;
    lifecycle.ready(&format!(
        "encoding {geometry} ({:?}, {} threads) from {DELAYED_FRAMES} into {PAYLOADS}, default {}",
        encoder_config.layout,
        if encoder_config.threads == 0 {
            "per-core".to_owned()
        } else {
            encoder_config.threads.to_string()
        },
        config.codec.quality
    ));
    stats.set_state(keymash_shm::ServiceState::Running);

    let fallback = config.codec.quality;
    let mut delayed: Option<RingReader> = None;
    let mut quality_cell: Option<CellReader<QualityRecord>> = None;
    let mut frame = Vec::new();
    let mut sink = PayloadSink::new();
    let mut encode_ms = Percentiles::new(ENCODE_WINDOW);
    let mut last_frame = Instant::now();
    let mut last_publish = Instant::now();
    let (mut last_quality, mut last_bytes, mut last_payloads) = (fallback, 0usize, 0usize);
    while !lifecycle.stop_requested() {
        let now = Instant::now();
        lifecycle.progress(now);
        if now.duration_since(last_publish) >= Duration::from_millis(500) {
            last_publish = now;
            stats.gauge("encode_ms_p50", encode_ms.quantile(0.5).unwrap_or(0.0));
            stats.gauge("encode_ms_p99", encode_ms.quantile(0.99).unwrap_or(0.0));
            stats.gauge("encode_ms_max", encode_ms.max().unwrap_or(0.0));
            stats.gauge("quality", f64::from(last_quality.get()));
            stats.gauge("bytes_per_frame", last_bytes as f64);
            stats.gauge("payloads_per_frame", last_payloads as f64);
            stats.publish(monotonic_now_ns());
            let line = format!(
                "{} at {}: {} B in {} payloads, encode p50 {:.1} ms p99 {:.1} ms; {} frames, {} skipped",
                geometry,
                last_quality,
                last_bytes,
                last_payloads,
                encode_ms.quantile(0.5).unwrap_or(0.0),
                encode_ms.quantile(0.99).unwrap_or(0.0),
                stats.counter("frames").unwrap_or(0),
                stats.counter(stat::DROPPED).unwrap_or(0),
            );
            stats.set_status_line(&line);
            lifecycle.status(now, &line);
        }
        if quality_cell.is_none() {
            quality_cell = CellReader::open(&quality_id).ok();
        }
        let Some(reader) = delayed.as_mut() else {
            match RingReader::open(&delayed_id) {
                Ok(reader) => delayed = Some(reader),
                Err(OpenError::NotFound { .. } | OpenError::NotReady { .. }) => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    log::warn!("{e}");
                    std::thread::sleep(Lifecycle::MAX_WAIT);
                }
            }
            last_frame = Instant::now();
            continue;
        };
        let arrival = match reader.next(Lifecycle::MAX_WAIT) {
            Ok(arrival) => arrival,
            Err(RecvError::TimedOut) => {
                if last_frame.elapsed() > REOPEN_AFTER {
                    delayed = None;
                }
                payloads.heartbeat();
                continue;
            }
            Err(e) => {
                log::warn!("delayed-frame ring: {e}; reopening");
                delayed = None;
                continue;
            }
        };
        last_frame = Instant::now();
        // Never queue: if more frames arrived meanwhile, encode only the newest.
        let newest = reader.write_seq().saturating_sub(1).max(arrival.seq);
        let skipped = arrival.missed + (newest - arrival.seq);
        if newest != arrival.seq {
            reader.seek(newest + 1);
        }
        stats.count(stat::DROPPED, skipped);
        let meta = match reader.read_seq_into(newest, &mut frame) {
            Ok(meta) => meta,
            Err(_) => {
                stats.count(stat::DROPPED, 1);
                continue;
            }
        };
        if let Err(e) = RawFrameInfo::check(&meta, video.width, video.height, frame.len()) {
            log::warn!("delayed frame {} refused: {e}", meta.frame());
            stats.count(stat::DROPPED, 1);
            continue;
        }
        let view = I420View::from_contiguous(geometry, &frame)?;
        let quality = current_quality(quality_cell.as_ref(), fallback);
        let started = Instant::now();
        encoder.encode(meta.frame(), view, QualitySpec::Uniform(quality), &mut sink)?;
        encode_ms.record(started.elapsed().as_secs_f64() * 1e3);
        let total = sink.total_bytes();
        let count = sink.len();
        let mut slot = payloads.begin();
        match pack_payloads(sink.iter(), slot.payload_mut()) {
            Ok(len) => {
                let words = [u32::from(quality.get()), count as u32, total as u32, 0, 0];
                let out = FrameMeta::new(meta.frame(), meta.capture_ns())
                    .with_flags(meta.flags())
                    .with_words(words);
                slot.commit(len, &out)?;
                stats.count("frames", 1);
                stats.count("bytes", total as u64);
                (last_quality, last_bytes, last_payloads) = (quality, total, count);
            }
            Err(e) => {
                drop(slot);
                log::warn!("frame {} dropped: {e}", meta.frame());
                stats.count(stat::DROPPED, 1);
            }
        }
    }
    stats.set_state(keymash_shm::ServiceState::Stopping);
    stats.publish(monotonic_now_ns());
    Ok(())
}

/// The quality the receiver asks for (via net-tx), or the configured one when the cell is
/// missing, unreadable or holds no valid request.
fn current_quality(cell: Option<&CellReader<QualityRecord>>, fallback: Quality) -> Quality {
    cell.and_then(|c| c.load().ok())
        .and_then(|record| record.quality())
        .unwrap_or(fallback)
}
