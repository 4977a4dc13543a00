//! keymash-net-rx: receives the RTP stream from the configured sender, runs the receive window,
//! FEC and NACK as configured, writes received and recovered payloads into the received-payload
//! ring in sequence order, and sends RTCP feedback with the quality the mash level asks for.
//! The protocol is keymash-transport's sans-IO `Receiver`; this binary owns the socket and the
//! shared memory.
#![forbid(unsafe_code)]

mod service;
mod settings;

use std::process::ExitCode;

use clap::Parser;
use keymash_service::ServiceArgs;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Receives the RTP stream, runs the receive window, FEC and NACK, and sends RTCP feedback."
)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    keymash_service::run("keymash-net-rx", &args.service, service::run)
}
