//! `keymash camera`: the capture devices with their formats, sizes, rates and controls, and what
//! keymash-capture would make of each with the configuration (`keymash_camera::listing`);
//! `keymash camera --snapshot FILE` saves one frame as the pipeline would see it, opening the
//! camera exactly as keymash-capture does (`keymash_camera::Camera`: the configuration's size,
//! rate, format and controls).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use keymash_camera::listing::{list_devices, Wanted};
use keymash_camera::{Camera, CameraEvent};
use keymash_codec::y4m::{Y4mHeader, Y4mWriter};
use keymash_codec::{FrameGeometry, I420Frame};
use keymash_core::config::{Config, DEFAULT_CONFIG_PATH};
use keymash_media::negotiate::CameraMode;
use keymash_shm::monotonic_now_ns;

#[derive(Debug, clap::Args)]
pub(crate) struct CameraArgs {
    /// The configuration whose video size, rate, capture.format and capture.controls to use
    /// (default /etc/keymash/keymash.toml; the defaults if that file does not exist).
    #[arg(long)]
    config: Option<PathBuf>,
    /// List (or take the snapshot from) this device only, instead of every /dev/video* (for
    /// the snapshot: instead of capture.device).
    #[arg(long)]
    device: Option<PathBuf>,
    /// Print the listing as JSON.
    #[arg(long, conflicts_with = "snapshot")]
    json: bool,
    /// Save one frame to FILE: `.y4m` for the I420 picture exactly as the raw-frame ring would
    /// get it, `.png` for it converted to RGB.
    #[arg(long, value_name = "FILE")]
    snapshot: Option<PathBuf>,
    /// Whole frames to let pass before the one saved, so automatic exposure and white balance
    /// settle (half a second at 30 fps).
    #[arg(long, default_value_t = 15, requires = "snapshot")]
    skip: u32,
    /// Seconds to wait for the frame.
    #[arg(long, default_value_t = 10.0, requires = "snapshot")]
    timeout: f64,
}

pub(crate) fn run(args: &CameraArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.as_deref())?;
    match &args.snapshot {
        Some(file) => snapshot(args, &config, file).map(|()| ExitCode::SUCCESS),
        None => list(args, &config),
    }
}

/// The named configuration, or the default file, or (when that does not exist) the defaults.
fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let (path, named) = match path {
        Some(path) => (path, true),
        None => (Path::new(DEFAULT_CONFIG_PATH), false),
    };
    if !named && !path.exists() {
        eprintln!(
            "keymash: no {DEFAULT_CONFIG_PATH}: using the default configuration (--config FILE to \
             name one)"
        );
        return Ok(Config::default());
    }
    Ok(keymash_service::preflight::load(path)?)
}

fn wanted(config: &Config) -> Wanted {
    Wanted {
        mode: camera_mode(config),
        format: config.capture.format,
        controls: config.capture.controls.clone(),
    }
}

fn camera_mode(config: &Config) -> CameraMode {
    CameraMode {
        width: config.video.width,
        height: config.video.height,
        fps: config.video.fps,
    }
}

fn list(args: &CameraArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let devices = list_devices(args.device.as_deref());
    let wanted = wanted(config);
    if args.json {
        let json: Vec<serde_json::Value> = devices.iter().map(|d| d.to_json(&wanted)).collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        for (i, device) in devices.iter().enumerate() {
            if i > 0 {
                println!();
            }
            print!("{}", device.render(&wanted));
        }
    }
    let cameras = devices.iter().filter(|d| d.camera().is_some()).count();
    if devices.is_empty() {
        eprintln!(
            "keymash: no video device (/dev/video*) on this machine: plug the camera in, check \
             `dmesg` for what the kernel said about it, or name one with --device PATH"
        );
    } else if cameras == 0 && !args.json {
        eprintln!("keymash: none of these captures video");
    }
    Ok(if cameras > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What a snapshot file holds, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SnapshotFormat {
    Y4m,
    Png,
}

fn snapshot_format(file: &Path) -> anyhow::Result<SnapshotFormat> {
    let extension = file
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match extension.as_deref() {
        Some("y4m") => Ok(SnapshotFormat::Y4m),
        Some("png") => Ok(SnapshotFormat::Png),
        _ => bail!(
            "--snapshot {}: name a .y4m file (the I420 picture as the pipeline gets it) or a .png \
             file",
            file.display()
        ),
    }
}

fn snapshot(args: &CameraArgs, config: &Config, file: &Path) -> anyhow::Result<()> {
    let format = snapshot_format(file)?;
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        bail!("--timeout must be a number of seconds above 0");
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let video = &config.video;
    let geometry = FrameGeometry::new(video.width as usize, video.height as usize)
        .context("`video.width`/`video.height` do not give a frame the codec can code")?;
    let device = match &args.device {
        Some(path) => path.display().to_string(),
        None => config.capture.device.clone(),
    };
    let mut camera = Camera::new(
        &device,
        camera_mode(config),
        config.capture.format,
        geometry,
    )
    .with_controls(config.capture.controls.clone());
    camera
        .open_now(monotonic_now_ns())
        .map_err(|e| explain_busy(e, &device))?;
    eprintln!("keymash: {}", camera.status(monotonic_now_ns()));

    let mut frame = I420Frame::grey(geometry);
    let started = Instant::now();
    let mut frames = 0u32;
    while frames <= args.skip {
        if started.elapsed() > timeout {
            bail!(
                "no whole frame within {:.1} s ({frames} of {} arrived; the camera: {})",
                timeout.as_secs_f64(),
                args.skip + 1,
                camera.status(monotonic_now_ns())
            );
        }
        match camera.poll(monotonic_now_ns, &mut frame) {
            CameraEvent::Frame { .. } => frames += 1,
            CameraEvent::Idle if !camera.is_open() => {
                bail!("the camera stopped: {}", camera.status(monotonic_now_ns()))
            }
            CameraEvent::Idle => {}
        }
    }
    match format {
        SnapshotFormat::Y4m => write_y4m(file, &frame, video.fps)?,
        SnapshotFormat::Png => {
            let mut rgb = Vec::new();
            keymash_present::i420_to_rgb(frame.view(), &mut rgb);
            crate::png_file::write_png(file, geometry.width(), geometry.height(), &rgb)?;
        }
    }
    eprintln!(
        "keymash: wrote {} ({} after {} frames)",
        file.display(),
        geometry,
        args.skip
    );
    Ok(())
}

fn write_y4m(file: &Path, frame: &I420Frame, fps: u32) -> anyhow::Result<()> {
    let out =
        std::fs::File::create(file).with_context(|| format!("creating {}", file.display()))?;
    let header = Y4mHeader::new(frame.geometry(), &format!("{fps}:1"));
    let mut writer = Y4mWriter::new(std::io::BufWriter::new(out), &header)
        .with_context(|| format!("writing {}", file.display()))?;
    writer
        .write_frame(frame.view())
        .with_context(|| format!("writing {}", file.display()))?;
    writer
        .finish()
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(())
}

/// A camera another process streams from refuses a new format or buffers with EBUSY; say who
/// that usually is and how to stop it.
fn explain_busy(error: anyhow::Error, device: &str) -> anyhow::Error {
    let busy = error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            == Some(nix::errno::Errno::EBUSY as i32)
    });
    if !busy {
        return error;
    }
    let device = if device.is_empty() {
        "the camera"
    } else {
        device
    };
    error.context(format!(
        "{device} is in use by another program, most likely keymash-capture: stop it with \
         `systemctl stop keymash-capture` (the sender's other stages keep running), take the \
         snapshot, then `systemctl start keymash-capture`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_format_comes_from_the_extension() {
        assert_eq!(
            snapshot_format(Path::new("a.y4m")).unwrap(),
            SnapshotFormat::Y4m
        );
        assert_eq!(
            snapshot_format(Path::new("/tmp/A.PNG")).unwrap(),
            SnapshotFormat::Png
        );
        for bad in ["a.jpg", "a", "y4m"] {
            assert!(snapshot_format(Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_busy_camera_is_explained_and_other_errors_are_kept() {
        let busy = anyhow::Error::from(std::io::Error::from_raw_os_error(libc_ebusy()))
            .context("cannot set the format");
        let text = format!("{:#}", explain_busy(busy, "/dev/video0"));
        assert!(
            text.starts_with(
                "/dev/video0 is in use by another program, most likely keymash-capture"
            ) && text.contains("systemctl stop keymash-capture"),
            "{text}"
        );
        let other = anyhow::Error::from(std::io::Error::from_raw_os_error(2));
        assert!(!format!("{:#}", explain_busy(other, "/dev/video0")).contains("in use"));
    }

    fn libc_ebusy() -> i32 {
        nix::errno::Errno::EBUSY as i32
    }
}
