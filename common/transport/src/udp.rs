//! The thin UDP glue net-tx and net-rx use: **the only I/O in this crate**. Everything else is
//! sans-IO; this module owns a socket, and nothing more: bind, socket buffer sizes, a
//! loop-friendly receive with a timeout, sending [`Transmit`]s, and filtering by the configured
//! peer address (datagrams from anyone else are counted and dropped, never handed on).
//!
//! The socket is deliberately not `connect()`ed, so that foreign datagrams reach us and can be
//! counted, rather than vanishing in the kernel. IPv4 and IPv6 both work; an IPv6 socket bound
//! to `[::]` also accepts IPv4 peers (as v4-mapped addresses), which compare equal to the plain
//! IPv4 peer address.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::time::TimeSpec;
use socket2::{Domain, Protocol, Socket, Type};

use crate::Transmit;

/// Longest a service loop that sleeps on something else (net-tx: the payload ring's futex)
/// leaves the peer's feedback unread. A quality change waits this long at most before net-tx
/// stores it for the encoder, so it is a small fraction of a frame interval; each check is one
/// non-blocking `recvfrom`.
pub const FEEDBACK_POLL: Duration = Duration::from_millis(2);

/// Largest datagram keymash expects, with room to spot (and count) oversized ones.
pub const RECV_BUFFER_LEN: usize = 2048;

/// Socket buffer sizes to ask the kernel for (it may cap them at net.core.rmem_max/wmem_max).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketBuffers {
    pub recv_bytes: usize,
    pub send_bytes: usize,
}

impl Default for SocketBuffers {
    /// Room for a few frames of 100 packets, so a scheduling hiccup does not become loss.
    fn default() -> Self {
        SocketBuffers {
            recv_bytes: 4 << 20,
            send_bytes: 1 << 20,
        }
    }
}

/// Why a socket operation failed.
#[derive(Debug, thiserror::Error)]
pub enum UdpError {
    #[error("cannot create a UDP socket for {addr}: {source}")]
    Create { addr: SocketAddr, source: io::Error },
    #[error("cannot set {option} on the UDP socket: {source}")]
    SetOption {
        option: &'static str,
        source: io::Error,
    },
    #[error("cannot bind UDP {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("sending to {peer} failed: {source}")]
    Send { peer: SocketAddr, source: io::Error },
    #[error("receiving failed: {source}")]
    Recv { source: io::Error },
    #[error("peer {peer} cannot be reached from a socket bound to {local} (address family)")]
    FamilyMismatch { local: SocketAddr, peer: SocketAddr },
}

/// A UDP socket that talks to one configured peer.
#[derive(Debug)]
pub struct PeerSocket {
    socket: UdpSocket,
    peer: SocketAddr,
    /// Datagrams from anyone but the peer (dropped).
    foreign: u64,
    /// Datagrams larger than the receive buffer (dropped: none of ours is).
    oversized: u64,
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

impl PeerSocket {
    /// Bind `local` (port 0 picks a free port) and talk to `peer`.
    pub fn bind(
        local: SocketAddr,
        peer: SocketAddr,
        buffers: SocketBuffers,
    ) -> Result<Self, UdpError> {
        if local.is_ipv4() && peer.is_ipv6() {
            return Err(UdpError::FamilyMismatch { local, peer });
        }
        let socket = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))
            .map_err(|source| UdpError::Create {
                addr: local,
                source,
            })?;
        let opt = |option: &'static str| move |source| UdpError::SetOption { option, source };
        if local.is_ipv6() {
            // Dual-stack when bound to [::], so one config can name an IPv4 or IPv6 peer.
            socket.set_only_v6(false).map_err(opt("IPV6_V6ONLY"))?;
        }
        socket
            .set_recv_buffer_size(buffers.recv_bytes)
            .map_err(opt("SO_RCVBUF"))?;
        socket
            .set_send_buffer_size(buffers.send_bytes)
            .map_err(opt("SO_SNDBUF"))?;
        socket
            .bind(&local.into())
            .map_err(|source| UdpError::Bind {
                addr: local,
                source,
            })?;
        // Receives wait in `ppoll` (see `wait_readable`); a send never stalls a service loop
        // (a full send buffer is a send error, counted by the caller, as a lost datagram).
        socket.set_nonblocking(true).map_err(opt("O_NONBLOCK"))?;
        Ok(PeerSocket {
            socket: socket.into(),
            peer,
            foreign: 0,
            oversized: 0,
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, UdpError> {
        self.socket
            .local_addr()
            .map_err(|source| UdpError::Recv { source })
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Talk to another peer from now on (a reloaded configuration, or a test that binds both
    /// ends before either port is known).
    pub fn set_peer(&mut self, peer: SocketAddr) {
        self.peer = peer;
    }

    /// The buffer sizes the kernel actually granted (receive, send), for the service's log.
    pub fn buffer_sizes(&self) -> Result<(usize, usize), UdpError> {
        let s = socket2::SockRef::from(&self.socket);
        let opt = |option: &'static str| move |source| UdpError::SetOption { option, source };
        Ok((
            s.recv_buffer_size().map_err(opt("SO_RCVBUF"))?,
            s.send_buffer_size().map_err(opt("SO_SNDBUF"))?,
        ))
    }

    /// Datagrams from other sources, counted and dropped.
    pub fn foreign_datagrams(&self) -> u64 {
        self.foreign
    }

    /// Datagrams too large for the receive buffer, counted and dropped.
    pub fn oversized_datagrams(&self) -> u64 {
        self.oversized
    }

    /// Send one datagram to the peer.
    pub fn send(&self, transmit: &Transmit) -> Result<(), UdpError> {
        self.socket
            .send_to(&transmit.contents, self.peer)
            .map(|_| ())
            .map_err(|source| UdpError::Send {
                peer: self.peer,
                source,
            })
    }

    /// Sleeps until a datagram can be read or `timeout` passed. `ppoll` sleeps on a
    /// high-resolution timer: a socket timeout (`SO_RCVTIMEO`) counts in scheduler ticks, which
    /// turned net-rx's 2 ms wait for its next timer into 4 to 8 ms at `CONFIG_HZ=250`.
    fn wait_readable(&self, timeout: Duration) -> Result<(), UdpError> {
        let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
        match ppoll(&mut fds, Some(TimeSpec::from_duration(timeout)), None) {
            Ok(_) | Err(Errno::EINTR) => Ok(()),
            Err(errno) => Err(UdpError::Recv {
                source: io::Error::from(errno),
            }),
        }
    }

    /// Wait up to `timeout` (zero: do not wait) for a datagram from the peer and copy it into
    /// `buf` (use [`RECV_BUFFER_LEN`]). `Ok(None)` when the time ran out; datagrams from
    /// anyone else are counted and skipped within the same time budget.
    pub fn recv(&mut self, buf: &mut [u8], timeout: Duration) -> Result<Option<usize>, UdpError> {
        let deadline = Instant::now() + timeout;
        let peer = canonical(self.peer);
        loop {
            // The socket never blocks: the wait is `ppoll`'s, to the microsecond.
            let (len, from) = match self.socket.recv_from(buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    if remaining.is_zero() {
                        return Ok(None);
                    }
                    self.wait_readable(remaining)?;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // An ICMP error from an earlier send (port unreachable while the peer restarts)
                // surfaces here on Linux; it is not a failure of this socket.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(source) => return Err(UdpError::Recv { source }),
            };
            if canonical(from) != peer {
                self.foreign += 1;
            } else if len >= buf.len() {
                self.oversized += 1;
            } else {
                return Ok(Some(len));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }
}
