//! keymash-web: the read-only web service on each PC. Serves the status page, OpenMetrics for
//! Prometheus, the status and its recent history as JSON and, on the receiver, the picture on
//! the screen as a JPEG snapshot and an MJPEG stream (which a plain `<img>`, VLC and ffplay
//! show).
//!
//! It only reads shared memory (the stages' statistics cells and the display's `screen` ring),
//! so no request can block or slow a pipeline stage. Three threads: the main one (lifecycle,
//! watchdog, status, the history sampled once a second), one tokio current-thread runtime for
//! every client, and one that encodes the newest screen picture to JPEG while someone wants it.
#![forbid(unsafe_code)]

mod body;
mod demand;
mod figures;
mod mjpeg;
mod pictures;
mod routes;
mod server;
mod service;
mod shared;
mod stall;

use std::process::ExitCode;

use clap::Parser;
use keymash_service::ServiceArgs;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Serves the status page, /metrics, /status.json, /history.json and, on the receiver, \
             the picture on the screen (/snapshot.jpg, /stream.mjpg) on web.listen."
)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    keymash_service::run("keymash-web", &args.service, service::run)
}
