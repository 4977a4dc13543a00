//! The configuration file's `[transport]`, `[video]` and `[codec]` keys as the transport
//! crate's settings, and the received-payload ring's shape.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use keymash_core::config::Config;
use keymash_shm::RingGeometry;
use keymash_transport::{FecOverhead, PayloadType, TransportConfig};

/// Slots of the received-payload ring: about 4 s of 640x480 video at high quality (~30
/// payloads a frame at 30 fps), far more than display ever lags behind.
pub const RECEIVED_RING_SLOTS: usize = 4096;

/// The transport settings for this configuration (both ends derive them the same way).
pub fn transport_config(config: &Config) -> anyhow::Result<TransportConfig> {
    let t = &config.transport;
    let frame_interval = Duration::from_nanos(1_000_000_000 / u64::from(config.video.fps.max(1)));
    let defaults = TransportConfig::default();
    Ok(TransportConfig {
        payload_type: PayloadType::new(t.payload_type).context("transport.payload_type")?,
        repair_payload_type: PayloadType::new(t.fec_payload_type).context("transport.fec_payload_type")?,
        fec: t.fec_overhead_percent > 0,
        fec_overhead: if t.fec_overhead_percent > 0 {
            FecOverhead::new(f64::from(t.fec_overhead_percent) / 100.0).context("transport.fec_overhead_percent")?
        } else {
            FecOverhead::OFF
        },
        nack: t.nack,
        frame_interval,
        frame_spread: frame_interval.mul_f64(t.pacing_fraction.clamp(0.0, 1.0)),
        feedback_interval: Duration::from_millis(u64::from(t.feedback_interval_ms)),
        quality_fallback_timeout: Duration::from_millis(u64::from(t.quality_fallback_ms)),
        fallback_quality: config.codec.quality,
        keepalive_interval: Duration::from_millis(u64::from(t.keepalive_interval_ms)),
        peer_timeout: Duration::from_millis(u64::from(t.peer_timeout_ms)),
        ..defaults
    })
}

/// Where net-rx listens: the video port on every address of the sender's family.
pub fn local_address(config: &Config) -> SocketAddr {
    let any = match config.network.sender_address {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(any, config.network.video_port)
}

/// The only source video is accepted from: net-tx's socket on the sender PC.
pub fn sender_address(config: &Config) -> SocketAddr {
    SocketAddr::new(config.network.sender_address, config.network.sender_port)
}

/// Slots big enough for the largest codec payload the configuration allows.
pub fn received_ring_geometry(config: &Config) -> anyhow::Result<RingGeometry> {
    let slot = usize::try_from(config.codec.max_payload_bytes).context("codec.max_payload_bytes")?;
    RingGeometry::new(slot.max(keymash_transport::udp::RECV_BUFFER_LEN), RECEIVED_RING_SLOTS)
        .context("received-payload ring geometry")
}
