//! The thin UDP glue net-tx and net-rx use: **the only I/O in this crate**. Everything else is
//! sans-IO; this module owns a socket, and nothing more: bind, socket buffer sizes, a
//! loop-friendly receive with a timeout, sending [`Transmit`]s, and filtering by the configured
//! peer address (datagrams from anyone else are counted and dropped, never handed on).
//!
//! The socket is deliberately not `connect()`ed, so that foreign datagrams reach us and can be
//! counted, rather than vanishing in the kernel.
//!
//! Every datagram is read with the kernel's receive timestamp (`SO_TIMESTAMPNS`): when it
//! arrived, not when the service woke up to read it ([`PeerSocket::recv_at`]). The receiver's
//! camera-to-screen figure counts from there, so a descheduled net-rx does not hide its own wait. IPv4 and IPv6 both work; an IPv6 socket bound
//! to `[::]` also accepts IPv4 peers (as v4-mapped addresses), which compare equal to the plain
//! IPv4 peer address.

use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage,
};
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

/// A kernel receive timestamp further back than this is not believed (the wall clock was
/// stepped between the datagram's arrival and its reading): the read time stands instead.
pub const MAX_STAMP_AGE: Duration = Duration::from_secs(10);

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
    /// Room for the `SCM_TIMESTAMPNS` control message.
    cmsg: Vec<u8>,
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
        // The kernel stamps each datagram as it arrives (CLOCK_REALTIME; see `recv_at`).
        setsockopt(&socket, sockopt::ReceiveTimestampns, &true)
            .map_err(|e| opt("SO_TIMESTAMPNS")(io::Error::from(e)))?;
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
            cmsg: nix::cmsg_space!(TimeSpec),
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
        Ok(self.recv_at(buf, timeout)?.map(|(len, _)| len))
    }

    /// [`PeerSocket::recv`], with when the datagram arrived: the kernel's receive timestamp,
    /// moved from the wall clock to [`Instant`]'s (see [`arrival_instant`]); the read time if
    /// the kernel gave none.
    pub fn recv_at(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<Option<(usize, Instant)>, UdpError> {
        let deadline = Instant::now() + timeout;
        let peer = canonical(self.peer);
        loop {
            // The socket never blocks: the wait is `ppoll`'s, to the microsecond.
            let (len, from, stamp) = match self.read_one(buf) {
                Ok(r) => r,
                Err(Errno::EAGAIN) => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    if remaining.is_zero() {
                        return Ok(None);
                    }
                    self.wait_readable(remaining)?;
                    continue;
                }
                Err(Errno::EINTR) => continue,
                // An ICMP error from an earlier send (port unreachable while the peer restarts)
                // surfaces here on Linux; it is not a failure of this socket.
                Err(Errno::ECONNREFUSED) => continue,
                Err(errno) => {
                    return Err(UdpError::Recv {
                        source: io::Error::from(errno),
                    })
                }
            };
            let read_at = Instant::now();
            let wall = SystemTime::now();
            if from.map(canonical) != Some(peer) {
                self.foreign += 1;
            } else if len >= buf.len() {
                self.oversized += 1;
            } else {
                return Ok(Some((len, arrival_instant(stamp, read_at, wall))));
            }
            if read_at >= deadline {
                return Ok(None);
            }
        }
    }

    /// One `recvmsg`: the length, the sender, the kernel's timestamp (wall clock) if any.
    fn read_one(
        &mut self,
        buf: &mut [u8],
    ) -> Result<(usize, Option<SocketAddr>, Option<Duration>), Errno> {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<SockaddrStorage>(
            self.socket.as_raw_fd(),
            &mut iov,
            Some(&mut self.cmsg),
            MsgFlags::empty(),
        )?;
        let stamp = msg.cmsgs().ok().and_then(|mut cmsgs| {
            cmsgs.find_map(|c| match c {
                ControlMessageOwned::ScmTimestampns(ts) => Some(Duration::from(ts)),
                _ => None,
            })
        });
        let from = msg.address.as_ref().and_then(socket_addr);
        let len = if msg.flags.contains(MsgFlags::MSG_TRUNC) {
            usize::MAX
        } else {
            msg.bytes
        };
        Ok((len, from, stamp))
    }
}

/// The std address of a received datagram's sender.
fn socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
}

/// When a datagram arrived, on [`Instant`]'s clock (CLOCK_MONOTONIC): the kernel stamps it on
/// the wall clock (`stamp`, since the Unix epoch), so its age is taken on the wall clock
/// (`wall`, read at `read_at`) and counted back from `read_at`. No stamp, one in the future or
/// one older than [`MAX_STAMP_AGE`] (the wall clock was stepped): `read_at`.
pub fn arrival_instant(stamp: Option<Duration>, read_at: Instant, wall: SystemTime) -> Instant {
    let age = stamp.and_then(|stamp| {
        wall.duration_since(UNIX_EPOCH)
            .ok()?
            .checked_sub(stamp)
            .filter(|age| *age <= MAX_STAMP_AGE)
    });
    age.and_then(|age| read_at.checked_sub(age))
        .unwrap_or(read_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_stamp_moves_to_the_monotonic_clock_and_a_stepped_wall_clock_is_not_believed() {
        let read_at = Instant::now() + Duration::from_secs(1000);
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let since_epoch = Duration::from_secs(1_700_000_000);
        let ms = Duration::from_millis;
        let table = [
            // (kernel stamp, arrival)
            (Some(since_epoch - ms(3)), read_at - ms(3)),
            (Some(since_epoch), read_at),
            (None, read_at),
            // In the future, or further back than MAX_STAMP_AGE: the wall clock was stepped.
            (Some(since_epoch + ms(5)), read_at),
            (Some(since_epoch - MAX_STAMP_AGE - ms(1)), read_at),
            (Some(since_epoch - MAX_STAMP_AGE), read_at - MAX_STAMP_AGE),
        ];
        for (stamp, arrival) in table {
            assert_eq!(arrival_instant(stamp, read_at, wall), arrival, "{stamp:?}");
        }
    }
}
