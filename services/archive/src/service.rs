//! The archive's loop: at each tick the newest screen picture is encoded and appended; each
//! second the header is refreshed, a status line goes to the `.jsonl` and systemd; every few
//! seconds the size cap is enforced. It ends on SIGTERM with the file finished.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use keymash_core::config::Config;
use keymash_pipeline::Segments;
use keymash_service::Lifecycle;
use keymash_shm::Prefix;
use keymash_watch::history::Sample;
use keymash_watch::jpeg::encode_i420;

use crate::files::Archive;
use crate::screen::Screen;
use crate::ticks::Ticks;

const SECOND: Duration = Duration::from_secs(1);
/// How often the directory is listed to enforce `archive.max_gib`: at 5 fps an hour is some
/// 0.7 GB, so ten seconds overshoot the cap by a couple of MB at most.
const CAP_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// How often the files are synced to disk: what a power cut can lose at most.
const SYNC_INTERVAL: Duration = Duration::from_secs(60);
const GIB: f64 = (1u64 << 30) as f64;

pub(crate) fn run(lifecycle: &mut Lifecycle, config: Config) -> anyhow::Result<()> {
    let video = config.video.clone();
    let settings = &config.archive;
    // More pictures a second than the stream has would only repeat them.
    let fps = settings.fps.min(video.fps).max(1);
    let quality = settings.jpeg_quality;
    let prefix = Prefix::new(&config.shm.prefix).context("shm.prefix")?;
    let mut screen = Screen::new(Segments::new(&config)?.screen()?.follow(), video.clone());
    let mut archive = Archive::new(
        &settings.dir,
        video.width,
        video.height,
        fps,
        (settings.max_gib * GIB) as u64,
    )?;
    archive.enforce_cap()?;
    let target = format!(
        "{}x{} at {fps} fps to {}",
        video.width,
        video.height,
        settings.dir.display()
    );
    lifecycle.ready(&format!("recording {target}"));

    let start = Instant::now();
    let mut ticks = Ticks::new(fps, start);
    let (mut next_second, mut next_cap, mut next_sync) = (
        start + SECOND,
        start + CAP_CHECK_INTERVAL,
        start + SYNC_INTERVAL,
    );
    let mut jpeg = Vec::new();
    let mut sample_failed = false;
    while !lifecycle.stop_requested() {
        let now = Instant::now();
        let frames = ticks.due(now);
        if frames > 0 {
            if let Some(picture) = screen.newest() {
                // A picture already encoded (the display published nothing since) is not
                // encoded again.
                if picture.fresh {
                    encode_i420(picture.i420, video.width, video.height, quality, &mut jpeg)
                        .context("cannot encode the screen picture")?;
                }
                archive.record(&jpeg, frames, unix_now().as_secs())?;
            }
        }
        if now >= next_second {
            next_second = (next_second + SECOND).max(now);
            let unix = unix_now();
            let line = sample_line(&prefix, unix, &mut sample_failed);
            archive.second(&line, unix.as_secs())?;
            let line = match (archive.current(), screen.waiting()) {
                (Some(path), _) => format!(
                    "recording {}x{} at {fps} fps to {}; {:.0} MB this hour",
                    video.width,
                    video.height,
                    path.display(),
                    archive.hour_bytes() as f64 / 1e6
                ),
                (None, Some(why)) => format!("{target}: {why}"),
                (None, None) => format!("{target}: no picture on the screen yet"),
            };
            lifecycle.status(now, &line);
        }
        if now >= next_cap {
            next_cap = now + CAP_CHECK_INTERVAL;
            archive.enforce_cap()?;
        }
        if now >= next_sync {
            next_sync = now + SYNC_INTERVAL;
            archive.sync()?;
        }
        lifecycle.progress(now);
        let wake = ticks.next().min(next_second);
        let wait = wake.saturating_duration_since(Instant::now());
        std::thread::sleep(wait.min(Lifecycle::MAX_WAIT));
    }
    archive.finish()?;
    Ok(())
}

/// The second's figures as one JSON line; when the status cannot be read, a line that says why
/// (logged once), so the `.jsonl` keeps one line a second.
fn sample_line(prefix: &Prefix, unix: Duration, failed: &mut bool) -> String {
    let unix_ms = unix.as_millis() as u64;
    let sample = keymash_watch::status::gather(prefix)
        .map(|report| Sample::from_report(&report, unix_ms))
        .and_then(|sample| serde_json::to_string(&sample).map_err(anyhow::Error::from));
    match sample {
        Ok(line) => {
            *failed = false;
            line
        }
        Err(e) => {
            if !*failed {
                log::warn!("cannot read the pipeline's status for the .jsonl: {e:#}");
                *failed = true;
            }
            serde_json::json!({ "unix_ms": unix_ms, "error": format!("{e:#}") }).to_string()
        }
    }
}

/// Wall-clock time since the Unix epoch (zero on a clock set before 1970).
fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}
