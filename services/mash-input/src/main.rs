//! keymash-mash-input: Reads keyboards (evdev) and publishes the mash level.
//!
//! This build does not contain the stage's work yet (the receiver issue adds it): the binary runs
//! under systemd like every other stage (config, READY, watchdog, clean SIGTERM) and says plainly
//! in its status that it is idle, so the pipeline's supervision can be exercised end to end.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use keymash_service::ServiceArgs;

#[derive(Debug, Parser)]
#[command(version, about = "Reads keyboards (evdev) and publishes the mash level.")]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    keymash_service::run("keymash-mash-input", &args.service, |lifecycle, _config| {
        lifecycle.ready("idle: this build has no mash-input stage yet");
        lifecycle.wait_for_stop();
        Ok(())
    })
}
