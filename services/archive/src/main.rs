//! keymash-archive: records what the receiver's screen shows. It follows the screen ring the
//! display publishes, encodes the newest picture `archive.fps` times a second as a JPEG and
//! writes hourly MJPEG AVI files (UTC hours, `keymash-YYYYMMDD-HH.avi`) that ffplay and VLC
//! play, each with a `.jsonl` beside it: one line a second of the figures the status page
//! plots. The oldest hours are deleted when the archive outgrows `archive.max_gib`.
//!
//! A file cut off by a crash or kill -9 still plays (its header is rewritten each second); a
//! restarted archive starts the hour's next part instead of overwriting it. The file formats
//! and policies live in keymash-watch (`avi`, `jpeg`); this binary owns the clock, the ring and
//! the files.
#![forbid(unsafe_code)]

mod files;
mod screen;
mod service;
mod ticks;

use std::process::ExitCode;

use clap::Parser;
use keymash_service::ServiceArgs;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Records the picture on the receiver's screen into hourly MJPEG AVI files."
)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    keymash_service::run("keymash-archive", &args.service, service::run)
}
