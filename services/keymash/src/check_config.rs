//! `keymash check-config [FILE]`: is this configuration file one every service will accept? With
//! `security.mode = "psk"` that includes its key file.

use std::path::PathBuf;
use std::process::ExitCode;

use keymash_core::config::{Config, DEFAULT_CONFIG_PATH};

#[derive(Debug, clap::Args)]
pub(crate) struct CheckConfigArgs {
    /// The file to check.
    #[arg(default_value = DEFAULT_CONFIG_PATH)]
    file: PathBuf,
    /// Print the configuration as the services will see it (every key, defaults filled in).
    #[arg(long)]
    print: bool,
    /// Do not read `security.key_file` (install.sh checks a configuration before it creates the key).
    #[arg(long)]
    no_key: bool,
}

pub(crate) fn run(args: &CheckConfigArgs) -> anyhow::Result<ExitCode> {
    // With security.mode = "psk" the services refuse to start without a readable, well-formed key.
    let checked = Config::load(&args.file).and_then(|config| {
        if args.no_key {
            Ok(config)
        } else {
            config.load_key().map(|_| config)
        }
    });
    match checked {
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
