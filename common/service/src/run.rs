//! The one way a keymash service runs: the same start, configuration, error and exit handling
//! for all eight, so their `main`s only wire their own pieces.

use std::process::ExitCode;

use keymash_core::config::Config;

use crate::{Lifecycle, ServiceArgs};

/// Exit status for a configuration that cannot work (sysexits' EX_CONFIG). The units list it in
/// `RestartPreventExitStatus=`, so a bad file stops the unit with a clear log line instead of a
/// restart loop.
pub const EXIT_BAD_CONFIG: u8 = 78;

/// Start the lifecycle, load the configuration and run `body`, which must call
/// [`Lifecycle::ready`] once initialised and return when [`Lifecycle::stop_requested`] is set.
/// Errors are logged with their whole chain of causes; the process exits 0 after a clean stop,
/// [`EXIT_BAD_CONFIG`] for a refused configuration and 1 for any other failure.
pub fn run<F>(name: &'static str, args: &ServiceArgs, body: F) -> ExitCode
where
    F: FnOnce(&mut Lifecycle, Config) -> anyhow::Result<()>,
{
    let mut lifecycle = match Lifecycle::start(name) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = match args.load_config() {
        Ok(c) => c,
        Err(e) => {
            log::error!("configuration refused: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    match body(&mut lifecycle, config) {
        Ok(()) => {
            lifecycle.stopping();
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("{e:#}");
            // A refusal found while starting (the key file named by security.key_file) is a
            // configuration error too: no restart loop, the same exit status.
            if e.chain()
                .any(|c| c.is::<keymash_core::config::ConfigError>())
            {
                ExitCode::from(EXIT_BAD_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
