//! keymash-capture: Captures frames (V4L2 webcam, synthetic scene or Y4M file) into the raw-frame ring.
//!
//! This build does not contain the stage's work yet (the sender issue adds it): the binary runs
//! under systemd like every other stage (config, READY, watchdog, clean SIGTERM) and says plainly
//! in its status that it is idle, so the pipeline's supervision can be exercised end to end.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use keymash_service::ServiceArgs;

#[derive(Debug, Parser)]
#[command(version, about = "Captures frames (V4L2 webcam, synthetic scene or Y4M file) into the raw-frame ring.")]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    keymash_service::run("keymash-capture", &args.service, |lifecycle, _config| {
        lifecycle.ready("idle: this build has no capture stage yet");
        lifecycle.wait_for_stop();
        Ok(())
    })
}
