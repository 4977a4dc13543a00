//! keymash-service: what every keymash binary shares at its edges.
//!
//! - [`lifecycle`]: sd-notify READY/WATCHDOG/STATUS and clean exit on SIGTERM/SIGINT.
//! - [`logging`]: log lines on stderr that journald files under the right priority.
//! - [`args`]: the `--config FILE` argument every service takes.
//! - [`preflight`]: the one check of a configuration that `keymash check-config` and every
//!   service's start share.
//! - [`run`]: start-up, configuration and exit handling shared by every service `main`.
//! - [`stats`]: publishing the service's statistics cell for `keymash status`.
//!
//! The logic of keymash (codec, transport, mash model, rings) lives in the other `common/`
//! crates; this one only holds the glue to the operating system that every `main` repeats.
#![forbid(unsafe_code)]

pub mod args;
pub mod lifecycle;
pub mod logging;
pub mod preflight;
pub mod random;
pub mod run;
pub mod stats;

pub use args::ServiceArgs;
pub use lifecycle::{Lifecycle, LifecycleError};
pub use run::{run, EXIT_BAD_CONFIG};
pub use stats::StatsPublisher;
