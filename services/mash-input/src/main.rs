//! keymash-mash-input: turns keystrokes into the mash level.
//!
//! Reads every keyboard under /dev/input (found by its sysfs capabilities, followed through
//! hot-plug), or raw `struct input_event` records from a FIFO, or a scripted pattern; feeds key
//! presses (never autorepeat) to the mash model in keymash-core and publishes the level in the
//! mash cell at `input.publish_hz`. The logic lives in keymash-input and keymash-core.
#![forbid(unsafe_code)]

mod keys;
mod service;

use std::process::ExitCode;

use clap::Parser;
use keymash_service::ServiceArgs;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Reads keyboards (evdev), a FIFO or a script and publishes the mash level."
)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    keymash_service::run("keymash-mash-input", &args.service, service::run)
}
