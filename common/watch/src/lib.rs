//! keymash-watch: what the operator watches the exhibit through, as plain code the services
//! (`keymash status`, keymash-web, keymash-archive) wire to shared memory, sockets and files.
//!
//! - [`status`]: every stage and segment of the pipeline on this machine ([`StatusReport`]),
//!   read from the stats cells, and its table.
//! - [`metrics`]: a [`StatusReport`] as OpenMetrics text for Prometheus.
//! - [`history`]: per-second samples of the figures the page plots, over the last minutes.
//! - [`jpeg`]: an I420 picture as a baseline JPEG (the MJPEG stream, the snapshot, the archive).
//! - [`avi`]: MJPEG in an AVI file that ffplay and VLC play, and the archive's rotation and cap.
//! - [`page`]: the self-contained status page.
#![forbid(unsafe_code)]

pub mod avi;
pub mod history;
pub mod jpeg;
pub mod metrics;
pub mod page;
pub mod status;
