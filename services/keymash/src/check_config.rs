//! `keymash check-config [FILE]`: is this configuration file one every service will accept? It
//! runs the check every service runs at start (`keymash_service::preflight`), so it refuses
//! what any of them would, with the same message. With `security.mode = "psk"` that includes
//! its key file.

use std::path::PathBuf;
use std::process::ExitCode;

use keymash_core::config::DEFAULT_CONFIG_PATH;

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
    /// Also print every shared-memory segment with its bytes, the total per PC, and whether
    /// /dev/shm on this machine holds it.
    #[arg(long)]
    memory: bool,
}

pub(crate) fn run(args: &CheckConfigArgs) -> anyhow::Result<ExitCode> {
    // With security.mode = "psk" the services refuse to start without a readable, well-formed key.
    let checked = keymash_service::preflight::load(&args.file).and_then(|config| {
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
            if args.memory {
                // A delay or ring the services would refuse is refused here the same way.
                match crate::memory::report(&config) {
                    Ok(table) => print!("{table}"),
                    Err(e) => {
                        eprintln!("{e}");
                        return Ok(ExitCode::from(keymash_service::EXIT_BAD_CONFIG));
                    }
                }
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
