//! `keymash check-config [FILE]`: is this configuration file one every service will accept?

use std::path::PathBuf;
use std::process::ExitCode;

use keymash_core::config::{Config, DEFAULT_CONFIG_PATH};

#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The file to check.
    #[arg(default_value = DEFAULT_CONFIG_PATH)]
    file: PathBuf,
    /// Print the configuration as the services will see it (every key, defaults filled in).
    #[arg(long)]
    print: bool,
}

pub fn run(args: &CheckConfigArgs) -> anyhow::Result<ExitCode> {
    match Config::load(&args.file) {
        Ok(config) => {
            if args.print {
                print!("{}", toml::to_string(&config)?);
            }
            println!("{}: OK", args.file.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(keymash_service::EXIT_BAD_CONFIG))
        }
    }
}
