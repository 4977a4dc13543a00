//! keymash-capture: captures frames (V4L2 webcam, synthetic scene or Y4M file) into the
//! raw-frame ring as I420 with CLOCK_MONOTONIC capture timestamps.
//!
//! Frame numbers are the raw ring's sequence numbers, so they continue across restarts. The
//! webcam source starts READY even without a camera and keeps looking for it (every 250 ms
//! while it is absent, with a growing backoff while it refuses; said in STATUS), so the
//! pipeline stays up while someone finds the USB cable, and a replug streams again at once.
#![forbid(unsafe_code)]

mod y4m_loop;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use keymash_codec::{FrameGeometry, I420Frame};
use keymash_core::config::{CaptureSource, Config};
use keymash_core::FrameNo;
use keymash_media::negotiate::CameraMode;
use keymash_media::SyntheticScene;
use keymash_pipeline::{FrameSlot, Segments, Service};
use keymash_service::{Lifecycle, ServiceArgs, StatsPublisher};
use keymash_shm::monotonic_now_ns;

use crate::y4m_loop::Y4mLoop;
use keymash_camera::{Camera, CameraEvent};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Captures frames (V4L2 webcam, synthetic scene or Y4M file) into the raw-frame ring."
)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    keymash_service::run("keymash-capture", &args.service, run)
}

/// Where frames come from.
enum Source {
    /// Generated on a clock at `video.fps`.
    Synthetic(SyntheticScene),
    /// Read from a file on a clock at `video.fps`.
    Y4m(Y4mLoop),
    /// Paced by the camera. Boxed: an open camera holds its stream and decoder state, far
    /// larger than the other sources.
    Camera(Box<Camera>),
}

fn run(lifecycle: &mut Lifecycle, config: Config) -> anyhow::Result<()> {
    let video = &config.video;
    let geometry = FrameGeometry::new(video.width as usize, video.height as usize)
        .context("`video.width`/`video.height` do not give a frame the codec can code")?;
    let raw_frames = Segments::new(&config)?.raw_frames()?;
    let (mut ring, attach) = raw_frames.create()?;
    let mut stats = StatsPublisher::open(&config, Service::Capture, "frames", monotonic_now_ns())?;
    let mut source = match &config.capture.source {
        CaptureSource::Synthetic => {
            Source::Synthetic(SyntheticScene::new(geometry, u64::from(std::process::id())))
        }
        CaptureSource::Y4m(path) => Source::Y4m(Y4mLoop::open(path, geometry)?),
        CaptureSource::V4l2 => Source::Camera(Box::new(
            Camera::new(
                &config.capture.device,
                CameraMode {
                    width: video.width,
                    height: video.height,
                    fps: video.fps,
                },
                config.capture.format,
                geometry,
            )
            .with_controls(config.capture.controls.clone()),
        )),
    };
    let source_name = String::from(config.capture.source.clone());
    lifecycle.ready(&format!(
        "capturing {source_name} at {geometry} {} fps into {} ({:?}, next frame #{})",
        video.fps,
        raw_frames.id(),
        attach.attach,
        attach.next_seq
    ));
    stats.set_state(keymash_shm::ServiceState::Running);

    let interval_ns = 1_000_000_000 / u64::from(video.fps.max(1));
    let mut next_due_ns = monotonic_now_ns();
    let mut frame = I420Frame::grey(geometry);
    let mut last_publish = Instant::now();
    let mut frames_since_publish = 0u64;
    while !lifecycle.stop_requested() {
        let captured = match &mut source {
            Source::Synthetic(_) | Source::Y4m(_) => {
                // A clocked source: sleep until the frame is due, in bounded steps.
                let now = monotonic_now_ns();
                if now < next_due_ns {
                    std::thread::sleep(
                        Duration::from_nanos(next_due_ns - now).min(Lifecycle::MAX_WAIT),
                    );
                    None
                } else {
                    // Late by more than a frame (the machine stalled): skip ahead, do not burst.
                    next_due_ns = if now - next_due_ns > interval_ns {
                        now + interval_ns
                    } else {
                        next_due_ns + interval_ns
                    };
                    let frame_no = FrameNo(ring.next_seq());
                    match &mut source {
                        Source::Synthetic(scene) => {
                            scene.render(frame_no, now, &mut frame);
                        }
                        Source::Y4m(file) => file.next_frame(&mut frame)?,
                        Source::Camera(_) => {}
                    }
                    Some(now)
                }
            }
            Source::Camera(camera) => match camera.poll(monotonic_now_ns, &mut frame) {
                CameraEvent::Frame { capture_ns } => Some(capture_ns),
                CameraEvent::Idle => None,
            },
        };
        if let Some(capture_ns) = captured {
            let meta = FrameSlot::video(FrameNo(ring.next_seq()), capture_ns).meta(video);
            let mut slot = ring.begin();
            let payload = slot.payload_mut();
            let (y_len, c_len) = (frame.y().len(), frame.u().len());
            payload[..y_len].copy_from_slice(frame.y());
            payload[y_len..y_len + c_len].copy_from_slice(frame.u());
            payload[y_len + c_len..y_len + 2 * c_len].copy_from_slice(frame.v());
            slot.commit(y_len + 2 * c_len, &meta)?;
            stats.count("frames", 1);
            frames_since_publish += 1;
        } else {
            ring.heartbeat();
        }
        let now = Instant::now();
        lifecycle.progress(now);
        let elapsed = now.duration_since(last_publish);
        if elapsed >= Duration::from_millis(500) {
            last_publish = now;
            let now_ns = monotonic_now_ns();
            let detail = match &source {
                Source::Synthetic(_) => "synthetic scene".to_owned(),
                Source::Y4m(file) => format!("{source_name}, loop {}", file.loops() + 1),
                Source::Camera(camera) => {
                    stats.set_count("reconnects", camera.reconnects());
                    stats.set_count("bad_frames", camera.bad_frames());
                    stats.gauge("camera_open", if camera.is_open() { 1.0 } else { 0.0 });
                    camera.status(now_ns)
                }
            };
            let rate = frames_since_publish as f64 / elapsed.as_secs_f64();
            frames_since_publish = 0;
            // Without a camera, why leads the line (a status line is cut at 128 bytes).
            let camera_missing = matches!(&source, Source::Camera(c) if !c.is_open());
            let line = if camera_missing {
                format!("{detail}; {rate:.1} fps, frame #{}", ring.next_seq())
            } else {
                format!("{rate:.1} fps, frame #{}; {detail}", ring.next_seq())
            };
            stats.set_status_line(&line);
            stats.publish(now_ns);
            lifecycle.status(now, &line);
        }
    }
    stats.set_state(keymash_shm::ServiceState::Stopping);
    stats.publish(monotonic_now_ns());
    Ok(())
}
