//! Addresses from the configuration. The transport settings come from
//! `keymash_transport::transport_settings`, which net-tx uses too, so both ends derive them the
//! same way; the received-payload ring's shape comes from `keymash_pipeline::Segments`, which
//! display uses too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use keymash_core::config::Config;

/// Where net-rx listens: the video port on every address of the sender's family.
pub(crate) fn local_address(config: &Config) -> SocketAddr {
    let any = match config.network.sender_address {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(any, config.network.video_port)
}

/// The only source video is accepted from: net-tx's socket on the sender PC.
pub(crate) fn sender_address(config: &Config) -> SocketAddr {
    SocketAddr::new(config.network.sender_address, config.network.sender_port)
}
