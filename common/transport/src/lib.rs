//! The keymash transport: RTP/RTCP, receive window, pacing, XOR FEC and NACK, as sans-IO state
//! machines (quinn-proto / str0m style). Nothing here reads a clock, spawns a thread or touches a
//! socket, except the clearly separated [`udp`] module, which is the thin socket glue for the
//! services.
//!
//! - [`Sender`] (net-tx): `push_frame(now, frame, capture_time, &payloads)` and
//!   `handle_datagram(now, bytes)` feed it; `poll_transmit(now)` drains what to send;
//!   `poll_timeout()` says when to call `handle_timeout(now)`; `requested_quality(now)` is the
//!   quality for the encoder (with fallback after silence).
//! - [`Receiver`] (net-rx): `handle_datagram(now, bytes)` feeds it; `poll_payload(now)` yields
//!   payloads in sequence order; `poll_transmit(now)` drains RTCP feedback; `set_feedback`
//!   sets the quality and mash level it reports (a change of quality goes at once, at most once
//!   a frame interval: [`QualityPush`]).
//!
//! Layers, bottom up: [`seq`] (16-bit wire -> 64-bit [`SeqNo`], the only place wraparound is
//! handled), [`rtp`], [`rtcp`], [`window`], [`pacer`], [`fec`], [`nack`], [`keepalive`],
//! [`stats`], [`config`]; [`security`] seals and opens every datagram (AEAD, replay window)
//! inside [`Sender`] and [`Receiver`], so nothing unauthenticated reaches a parser. RTP and RTCP share one UDP port (RFC 5761 demultiplexing), so one
//! socket per side carries everything and keepalives hold the same NAT/conntrack entry.
#![forbid(unsafe_code)]

pub mod config;
pub mod fec;
pub mod gap;
pub mod keepalive;
pub mod nack;
pub mod pacer;
pub mod quality_push;
pub mod receiver;
pub mod rtcp;
pub mod rtp;
pub mod security;
pub mod sender;
pub mod seq;
pub mod settings;
pub mod stats;
pub mod udp;
pub mod window;

pub use config::{ConfigError, TransportConfig};
pub use fec::FecOverhead;
pub use quality_push::QualityPush;
pub use receiver::{ReceivedPayload, Receiver, Recovery};
pub use rtp::{PayloadType, Ssrc};
pub use security::{Protection, SessionSalt};
pub use sender::{FrameQueued, SendError, Sender, StreamIds};
pub use seq::SeqNo;
pub use settings::{check_settings, transport_settings};
pub use stats::{MediaSilence, ReceiverStats, SenderStats};

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
