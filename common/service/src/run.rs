//! The one way a keymash service runs: the same start, configuration, error and exit handling
//! for all eight, so their `main`s only wire their own pieces.

use std::process::ExitCode;

use keymash_core::config::Config;
use keymash_pipeline::PipelineError;

use crate::{Lifecycle, ServiceArgs};

/// Exit status for a configuration that cannot work (sysexits' EX_CONFIG). The units list it in
/// `RestartPreventExitStatus=`, so a bad file stops the unit with a clear log line instead of a
/// restart loop.
pub const EXIT_BAD_CONFIG: u8 = 78;

/// Start the lifecycle, load the configuration and run `body`, which must call
/// [`Lifecycle::ready`] once initialised and return when [`Lifecycle::stop_requested`] is set.
/// Errors are logged with their whole chain of causes; the process exits 0 after a clean stop,
/// [`EXIT_BAD_CONFIG`] for a refused configuration or segment (see [`is_refusal`]) and 1 for any
/// other failure.
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
    if let Err(e) = check_room(name, &config) {
        log::error!("{e:#}");
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    match body(&mut lifecycle, config) {
        Ok(()) => {
            lifecycle.stopping();
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("{e:#}");
            if is_refusal(&e) {
                ExitCode::from(EXIT_BAD_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Refuses a start whose segments cannot all fit `/dev/shm` before the service creates the
/// first of them (see [`keymash_pipeline::Segments::check_room_for`]). A `/dev/shm` that cannot
/// be measured is left to each segment's own check.
fn check_room(name: &str, config: &Config) -> Result<(), PipelineError> {
    let Some(service) = name
        .strip_prefix("keymash-")
        .and_then(keymash_pipeline::Service::from_name)
    else {
        return Ok(());
    };
    match keymash_shm::ShmSpace::now() {
        Ok(space) => keymash_pipeline::Segments::new(config)?.check_room_for(service, &space),
        Err(e) => {
            log::warn!("cannot measure the free space of /dev/shm ({e}); each segment is checked as it is created");
            Ok(())
        }
    }
}

/// Whether `error` is one a restart cannot fix, so the service exits [`EXIT_BAD_CONFIG`] and
/// systemd leaves it stopped with its message rather than restarting it into the same refusal.
///
/// - A [`ConfigError`](keymash_core::config::ConfigError) anywhere in the chain: also one found
///   while starting (the key file named by `security.key_file`).
/// - A [`PipelineError`] that [`PipelineError::is_permanent`] calls so: a refused delay or ring
///   geometry, `/dev/shm` too full for a segment, a segment that cannot be replaced. Transient
///   ones (another writer still holding a segment, a failed system call) stay at exit 1.
pub fn is_refusal(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.is::<keymash_core::config::ConfigError>()
            || cause
                .downcast_ref::<PipelineError>()
                .is_some_and(PipelineError::is_permanent)
    })
}

#[cfg(test)]
mod tests {
    use keymash_shm::OpenError;

    use super::*;

    #[test]
    fn refused_segments_and_configurations_exit_78_and_transient_failures_do_not() {
        let no_space = PipelineError::NoSpace {
            segment: "/dev/shm/keymash.delay-hold".to_owned(),
            needed: 2 << 20,
            available: 1 << 20,
        };
        assert!(is_refusal(&anyhow::Error::from(no_space)));
        // Wrapped, as the statistics publisher and `.context()` wrap it.
        let wrapped = anyhow::Error::from(PipelineError::Create {
            segment: "/dev/shm/keymash.raw-frames".to_owned(),
            source: OpenError::InsufficientPermissions {
                segment: "/dev/shm/keymash.raw-frames".to_owned(),
            },
        })
        .context("starting capture");
        assert!(is_refusal(&wrapped));
        let busy = anyhow::Error::from(PipelineError::Create {
            segment: "/dev/shm/keymash.raw-frames".to_owned(),
            source: OpenError::WriterActive {
                segment: "/dev/shm/keymash.raw-frames".to_owned(),
            },
        });
        assert!(!is_refusal(&busy));
        assert!(!is_refusal(&anyhow::anyhow!("camera unplugged")));
    }
}
