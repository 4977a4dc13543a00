//! keymash: the operator's tool for a keymash installation.
//!
//! - `keymash status`: every stage and segment on this machine (`--json`, `--watch`).
//! - `keymash check-config [FILE]`: validate a configuration file (`--memory`: the shared memory
//!   it takes, per PC).
//! - `keymash codec roundtrip`: preview a codec quality on a Y4M video.
//! - `keymash clean --role ...`: remove a role's shared-memory segments.
//! - `keymash keygen`: write a new pre-shared key file for the link between the PCs.
//! - `keymash camera`: the capture devices, their formats and controls (`--snapshot FILE`: one
//!   frame as the pipeline would see it).
#![forbid(unsafe_code)]

mod camera_cmd;
mod check_config;
mod clean;
mod codec_cmd;
mod demo;
mod keygen;
mod memory;
mod png_file;
mod status;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(version, about = "Operate a keymash installation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show every stage and shared-memory segment of the pipeline on this machine.
    Status(status::StatusArgs),
    /// Validate a configuration file; exits non-zero on any problem, naming the key.
    CheckConfig(check_config::CheckConfigArgs),
    /// The codec on its own: preview a quality on your own footage.
    Codec(codec_cmd::CodecArgs),
    /// The whole pipeline on this machine for a bounded time, with a table and a contact sheet.
    Demo(demo::DemoArgs),
    /// Remove a role's shared-memory segments (run by the targets' cleanup units on stop).
    Clean(clean::CleanArgs),
    /// Write a new pre-shared key file (default /etc/keymash/keymash.key, mode 0640 root:keymash).
    Keygen(keygen::KeygenArgs),
    /// List the cameras with their formats, sizes, rates and controls; `--snapshot FILE` saves
    /// one frame as the pipeline would see it.
    Camera(camera_cmd::CameraArgs),
}

fn main() -> ExitCode {
    keymash_service::logging::init("keymash");
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Status(args) => status::run(&args),
        Command::CheckConfig(args) => check_config::run(&args),
        Command::Codec(args) => codec_cmd::run(args).map(|()| ExitCode::SUCCESS),
        Command::Demo(args) => demo::run(&args),
        Command::Clean(args) => clean::run(&args),
        Command::Keygen(args) => keygen::run(&args),
        Command::Camera(args) => camera_cmd::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keymash: {e:#}");
            ExitCode::FAILURE
        }
    }
}
