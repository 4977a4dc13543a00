//! keymash-encoder: encodes the newest delayed frame at the quality in the quality cell into the
//! payload ring.
//!
//! Live video wants the newest frame, not all frames: when encoding falls behind, the encoder
//! skips to the newest delayed frame (counted as dropped) instead of queueing. The quality is
//! read per frame, so a change the receiver asks for applies to the very next frame; an empty or
//! invalid cell means `codec.quality`.
//!
//! Payload ring layout: one slot per encoded frame, holding all its payloads, described by a
//! `keymash_pipeline::PayloadSlot` (the delayed frame's number, capture time and kind).
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use keymash_codec::{
    Encoder, EncoderConfig, FrameGeometry, I420View, Layout, PayloadSink, QualitySpec, Simd,
};
use keymash_core::config::{Config, PayloadLayout};
use keymash_core::{Percentiles, Quality};
use keymash_media::NewestFrame;
use keymash_pipeline::{
    pack_payloads, stat, Follow, FrameSlot, PayloadSlot, QualityRecord, Segments, Service,
};
use keymash_service::{Lifecycle, ServiceArgs, StatsPublisher};
use keymash_shm::{monotonic_now_ns, CellReader, RecvError, RingReader, RingWriter};

/// Encode times kept for the p50/p99 gauges: ten seconds at 30 fps.
const ENCODE_WINDOW: usize = 300;
/// Statistics and the status line are refreshed this often.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(500);

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
    // The widest vector unit the CPU has, unless KEYMASH_CODEC_SIMD names another.
    let simd = Simd::from_env()?;
    let mut encoder = Encoder::with_simd(encoder_config.clone(), simd)
        .context("`codec` settings refused by the encoder")?;
    let segments = Segments::new(&config)?;
    let (mut payloads, _) = segments.payloads()?.create()?;
    let mut delayed = segments.delayed_frames()?.follow();
    let mut quality_cell = segments.quality_cell()?.follow();
    let mut stats = StatsPublisher::open(&config, Service::Encoder, "frames", monotonic_now_ns())?;
    lifecycle.ready(&format!(
        "encoding {geometry} ({:?}, {} threads, {simd}) from {} into {}, default {}",
        encoder_config.layout,
        if encoder_config.threads == 0 {
            "per-core".to_owned()
        } else {
            encoder_config.threads.to_string()
        },
        delayed.id(),
        segments.payloads()?.id(),
        config.codec.quality
    ));
    stats.set_state(keymash_shm::ServiceState::Running);

    let mut frame = Vec::new();
    let mut sink = PayloadSink::new();
    let mut figures = Figures {
        encode_ms: Percentiles::new(ENCODE_WINDOW),
        quality: config.codec.quality,
        bytes: 0,
        payloads: 0,
    };
    let mut last_publish = Instant::now();
    while !lifecycle.stop_requested() {
        let now = Instant::now();
        lifecycle.progress(now);
        if now.duration_since(last_publish) >= PUBLISH_INTERVAL {
            last_publish = now;
            // Without the quality cell (net-tx not running) the encoder codes at its configured
            // quality: said after the frames it waits for, which matter more.
            quality_cell.reader();
            let waiting: Vec<&str> = [delayed.waiting(), quality_cell.waiting()]
                .into_iter()
                .flatten()
                .collect();
            let waiting = (!waiting.is_empty()).then(|| waiting.join("; "));
            let line = figures.publish(&mut stats, geometry, waiting.as_deref());
            lifecycle.status(now, &line);
        }
        let Some(meta) = next_newest_frame(&mut delayed, &payloads, &mut stats, &mut frame) else {
            continue;
        };
        let slot = match FrameSlot::read(&meta, video, frame.len()) {
            Ok(slot) => slot,
            Err(e) => {
                log::warn!("delayed frame {} refused: {e}", meta.frame());
                stats.count(stat::DROPPED, 1);
                continue;
            }
        };
        let view = I420View::from_contiguous(geometry, &frame)?;
        let quality = current_quality(&mut quality_cell, config.codec.quality);
        let started = Instant::now();
        encoder.encode(slot.frame, view, QualitySpec::Uniform(quality), &mut sink)?;
        figures
            .encode_ms
            .record(started.elapsed().as_secs_f64() * 1e3);
        let out = PayloadSlot {
            frame: slot.frame,
            capture_ns: slot.capture_ns,
            kind: slot.kind,
        };
        if commit_payloads(&mut payloads, &sink, &out)? {
            stats.count("frames", 1);
            stats.count("bytes", sink.total_bytes() as u64);
            (figures.quality, figures.bytes, figures.payloads) =
                (quality, sink.total_bytes(), sink.len());
        } else {
            stats.count(stat::DROPPED, 1);
        }
    }
    stats.set_state(keymash_shm::ServiceState::Stopping);
    stats.publish(monotonic_now_ns());
    Ok(())
}

/// Waits (a bounded time) for the next delayed frame and copies the newest one into `frame`,
/// counting the frames passed over. `None` when there is nothing to encode yet.
fn next_newest_frame(
    delayed: &mut Follow<RingReader>,
    payloads: &RingWriter,
    stats: &mut StatsPublisher,
    frame: &mut Vec<u8>,
) -> Option<keymash_shm::FrameMeta> {
    let Some(reader) = delayed.reader() else {
        payloads.heartbeat();
        std::thread::sleep(Duration::from_millis(50));
        return None;
    };
    let arrival = match reader.next(Lifecycle::MAX_WAIT) {
        Ok(arrival) => arrival,
        Err(RecvError::TimedOut) => {
            delayed.silent();
            payloads.heartbeat();
            return None;
        }
        Err(e) => {
            delayed.reopen(&e);
            return None;
        }
    };
    let pick = NewestFrame::pick(arrival.seq, arrival.missed, reader.write_seq());
    if pick.skips_ahead_of(arrival.seq) {
        reader.seek(pick.seq + 1);
    }
    stats.count(stat::DROPPED, pick.skipped);
    match reader.read_seq_into(pick.seq, frame) {
        Ok(meta) => Some(meta),
        Err(_) => {
            stats.count(stat::DROPPED, 1);
            None
        }
    }
}

/// Packs the encoded frame into one payload-ring slot. `false` (logged) when it does not fit.
fn commit_payloads(
    payloads: &mut RingWriter,
    sink: &PayloadSink,
    out: &PayloadSlot,
) -> anyhow::Result<bool> {
    let mut slot = payloads.begin();
    match pack_payloads(sink.iter(), slot.payload_mut()) {
        Ok(len) => {
            slot.commit(len, &out.meta())?;
            Ok(true)
        }
        Err(e) => {
            drop(slot);
            log::warn!("frame {} dropped: {e}", out.frame);
            Ok(false)
        }
    }
}

/// The encoder's figures for its status line and gauges.
struct Figures {
    encode_ms: Percentiles,
    quality: Quality,
    bytes: usize,
    payloads: usize,
}

impl Figures {
    /// Publishes the gauges and returns the status line (led by why there is no input, if so).
    fn publish(
        &mut self,
        stats: &mut StatsPublisher,
        geometry: FrameGeometry,
        waiting: Option<&str>,
    ) -> String {
        let (p50, p99) = (
            self.encode_ms.quantile(0.5).unwrap_or(0.0),
            self.encode_ms.quantile(0.99).unwrap_or(0.0),
        );
        stats.gauge("encode_ms_p50", p50);
        stats.gauge("encode_ms_p99", p99);
        stats.gauge("encode_ms_max", self.encode_ms.max().unwrap_or(0.0));
        stats.gauge("quality", f64::from(self.quality.get()));
        stats.gauge("bytes_per_frame", self.bytes as f64);
        stats.gauge("payloads_per_frame", self.payloads as f64);
        let line = format!(
            "{} at {}: {} B in {} payloads, encode p50 {p50:.1} ms p99 {p99:.1} ms; {} frames, {} skipped",
            geometry,
            self.quality,
            self.bytes,
            self.payloads,
            stats.counter("frames").unwrap_or(0),
            stats.counter(stat::DROPPED).unwrap_or(0),
        );
        let line = match waiting {
            Some(why) => format!("{why}; {line}"),
            None => line,
        };
        stats.set_status_line(&line);
        stats.publish(monotonic_now_ns());
        line
    }
}

/// The quality the receiver asks for (via net-tx), or the configured one when the cell is
/// missing, unreadable or holds no valid request.
fn current_quality(cell: &mut Follow<CellReader<QualityRecord>>, fallback: Quality) -> Quality {
    cell.reader()
        .and_then(|c| c.load().ok())
        .and_then(|record| record.quality())
        .unwrap_or(fallback)
}
