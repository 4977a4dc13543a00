//! keymash: the operator's tool for a keymash installation.
//!
//! `keymash check-config [FILE]` validates a configuration file; more subcommands arrive with
//! the parts they operate (status of the running pipeline, codec preview, the demo).
#![forbid(unsafe_code)]

mod check_config;

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
    /// Validate a configuration file; exits non-zero on any problem, naming the key.
    CheckConfig(check_config::CheckConfigArgs),
}

fn main() -> ExitCode {
    keymash_service::logging::init("keymash");
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CheckConfig(args) => check_config::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("keymash: {e:#}");
            ExitCode::FAILURE
        }
    }
}
