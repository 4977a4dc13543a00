//! The shape of the pipeline: its eight services and the names of the shared-memory segments
//! that join them. One list, so a service and `keymash status` can never disagree on a name.
//!
//! Segments live at `/dev/shm/<shm.prefix>.<name>`; [`crate::segments`] opens them.

use std::fmt;

/// Raw frames from the camera: capture writes, delay-buffer reads.
pub const RAW_FRAMES: &str = "raw-frames";
/// The delay buffer's store of held video (`delay.seconds` of frames): delay-buffer writes and
/// reads it; it survives a restart of any sender process.
pub const DELAY_HOLD: &str = "delay-hold";
/// Frames released after the delay: delay-buffer writes, encoder reads.
pub const DELAYED_FRAMES: &str = "delayed-frames";
/// Encoded payloads: encoder writes, net-tx reads.
pub const PAYLOADS: &str = "payloads";
/// Cell with the quality the receiver asks for: net-tx writes, encoder reads.
pub const QUALITY_CELL: &str = "quality";
/// Received and recovered payloads: net-rx writes, display reads. One codec payload per slot;
/// metadata: frame = the payload header's frame number, capture_ns = arrival at net-rx,
/// flags = 0 direct / 1 recovered by FEC / 2 recovered by NACK, words = [extended RTP sequence
/// low 32 bits, high 32 bits, RTP timestamp, marker, 0].
pub const RECEIVED_PAYLOADS: &str = "received";
/// Cell with the mash level: mash-input writes; loss-controller, display and net-rx read.
pub const MASH_CELL: &str = "mash";
/// The picture on the screen: display writes (`display.publish_picture`), keymash-web and
/// keymash-archive read. One whole I420 picture per slot (see [`crate::screen`]).
pub const SCREEN: &str = "screen";

/// Names of the statistics every service publishes in its `stats.<service>` cell, so
/// `keymash status` can show any stage without knowing it.
pub mod stat {
    /// Gauge: the stage's main rate, in [`super::Service::rate_unit`] per second.
    pub const RATE: &str = "rate";
    /// Counter: frames or packets the stage lost or discarded.
    pub const DROPPED: &str = "dropped";
}

/// Which PC a service runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Sender,
    Receiver,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Sender => "sender",
            Role::Receiver => "receiver",
        })
    }
}

/// The eight processes of the pipeline, in data-flow order on each PC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Capture,
    DelayBuffer,
    Encoder,
    NetTx,
    NetRx,
    Display,
    MashInput,
    LossController,
}

impl Service {
    pub const ALL: [Service; 8] = [
        Service::Capture,
        Service::DelayBuffer,
        Service::Encoder,
        Service::NetTx,
        Service::NetRx,
        Service::Display,
        Service::MashInput,
        Service::LossController,
    ];

    /// Short name, as in `keymash status` and the stats cell's name.
    pub fn name(self) -> &'static str {
        match self {
            Service::Capture => "capture",
            Service::DelayBuffer => "delay-buffer",
            Service::Encoder => "encoder",
            Service::NetTx => "net-tx",
            Service::NetRx => "net-rx",
            Service::Display => "display",
            Service::MashInput => "mash-input",
            Service::LossController => "loss-controller",
        }
    }

    /// The binary and its systemd unit.
    pub fn binary(self) -> &'static str {
        match self {
            Service::Capture => "keymash-capture",
            Service::DelayBuffer => "keymash-delay-buffer",
            Service::Encoder => "keymash-encoder",
            Service::NetTx => "keymash-net-tx",
            Service::NetRx => "keymash-net-rx",
            Service::Display => "keymash-display",
            Service::MashInput => "keymash-mash-input",
            Service::LossController => "keymash-loss-controller",
        }
    }

    pub fn role(self) -> Role {
        match self {
            Service::Capture | Service::DelayBuffer | Service::Encoder | Service::NetTx => {
                Role::Sender
            }
            Service::NetRx | Service::Display | Service::MashInput | Service::LossController => {
                Role::Receiver
            }
        }
    }

    /// What the stage's [`stat::RATE`] counts.
    pub fn rate_unit(self) -> &'static str {
        match self {
            Service::NetTx | Service::NetRx | Service::LossController => "packets",
            Service::MashInput => "keys",
            _ => "frames",
        }
    }

    /// Name of the cell holding this service's statistics.
    pub fn stats_cell(self) -> String {
        format!("stats.{}", self.name())
    }

    /// The segments this service creates and writes (besides its statistics cell).
    pub fn owned_segments(self) -> &'static [&'static str] {
        match self {
            Service::Capture => &[RAW_FRAMES],
            Service::DelayBuffer => &[DELAY_HOLD, DELAYED_FRAMES],
            Service::Encoder => &[PAYLOADS],
            Service::NetTx => &[QUALITY_CELL],
            Service::NetRx => &[RECEIVED_PAYLOADS],
            Service::MashInput => &[MASH_CELL],
            Service::Display => &[SCREEN],
            Service::LossController => &[],
        }
    }

    /// The service that creates and writes the segment `name`.
    pub fn writer_of(name: &str) -> Option<Service> {
        Service::ALL
            .into_iter()
            .find(|s| s.owned_segments().contains(&name))
    }

    pub fn from_name(name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_name_round_trips_and_binaries_are_prefixed() {
        for s in Service::ALL {
            assert_eq!(Service::from_name(s.name()), Some(s));
            assert_eq!(s.binary(), format!("keymash-{}", s.name()));
            assert_eq!(s.stats_cell(), format!("stats.{}", s.name()));
        }
        assert_eq!(Service::from_name("nope"), None);
    }

    #[test]
    fn every_pipeline_segment_has_exactly_one_owner() {
        let all = [
            RAW_FRAMES,
            DELAY_HOLD,
            DELAYED_FRAMES,
            PAYLOADS,
            QUALITY_CELL,
            RECEIVED_PAYLOADS,
            MASH_CELL,
            SCREEN,
        ];
        for name in all {
            let owners = Service::ALL
                .iter()
                .filter(|s| s.owned_segments().contains(&name))
                .count();
            assert_eq!(owners, 1, "{name}");
        }
        let owned: usize = Service::ALL.iter().map(|s| s.owned_segments().len()).sum();
        assert_eq!(owned, all.len());
    }

    #[test]
    fn each_pc_runs_four_services() {
        let senders = Service::ALL
            .iter()
            .filter(|s| s.role() == Role::Sender)
            .count();
        assert_eq!(senders, 4);
    }
}
