//! The keymash transport: RTP/RTCP, receive window, pacing, XOR FEC and NACK, as sans-IO state machines.
#![forbid(unsafe_code)]

pub mod config;
pub mod fec;
pub mod keepalive;
pub mod nack;
pub mod pacer;
pub mod receiver;
pub mod rtcp;
pub mod rtp;
pub mod sender;
pub mod seq;
pub mod stats;
pub mod udp;
pub mod window;

pub use config::TransportConfig;
pub use fec::FecOverhead;
pub use receiver::{ReceivedPayload, Receiver, Recovery};
pub use rtp::{PayloadType, Ssrc};
pub use sender::{FrameQueued, SendError, Sender, StreamIds};
pub use seq::SeqNo;
pub use stats::{ReceiverStats, SenderStats};

/// A datagram the caller should send to the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub contents: Vec<u8>,
    pub kind: TransmitKind,
}

/// What a [`Transmit`] carries, for statistics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransmitKind {
    /// An RTP packet with a codec payload, first transmission.
    Media,
    /// An RTP packet with an FEC repair payload.
    Repair,
    /// A media packet sent again because the receiver NACKed it.
    Retransmission,
    /// An RTCP compound packet (reports, NACK, APP); also serves as keepalive.
    Rtcp,
}
