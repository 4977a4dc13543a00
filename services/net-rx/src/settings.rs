//! Addresses and the received-payload ring's shape from the configuration. The transport
//! settings come from `keymash_media::transport_settings`, which net-tx uses too, so both ends
//! derive them the same way.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::Context;
use keymash_core::config::Config;
use keymash_shm::RingGeometry;

/// Slots of the received-payload ring: about 4 s of 640x480 video at high quality (~30
/// payloads a frame at 30 fps), far more than display ever lags behind.
pub const RECEIVED_RING_SLOTS: usize = 4096;

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
    let slot =
        usize::try_from(config.codec.max_payload_bytes).context("codec.max_payload_bytes")?;
    RingGeometry::new(
        slot.max(keymash_transport::udp::RECV_BUFFER_LEN),
        RECEIVED_RING_SLOTS,
    )
    .context("received-payload ring geometry")
}
