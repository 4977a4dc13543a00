//! Packet protection: every datagram in both directions is sealed with an AEAD, RTP and RTCP
//! headers in the clear and authenticated, so nobody without the pre-shared key can put a
//! picture on the screen, move the receive window, switch the stream, change the quality or
//! make the sender retransmit. Sans-IO like the rest of the crate: keys, salts and `now` come
//! in as arguments.
//!
//! # Design
//!
//! **Cipher.** ChaCha20-Poly1305 (RFC 8439) from RustCrypto's `chacha20poly1305`: a well-kept,
//! audited (NCC Group) implementation, constant-time in software on any x86-64 (no reliance on
//! AES-NI), with SSE2/AVX2 backends. The 16-byte Poly1305 tag is appended; SRTP's AES-GCM
//! profile (RFC 7714) would have the same shape.
//!
//! **Keys.** One 256-bit pre-shared key file on both PCs (`keymash keygen`). Each endpoint
//! instance (every start of net-tx or net-rx) draws a fresh random 64-bit *session salt* and
//! seals what it sends under `HKDF-SHA-256(ikm = key, salt = session salt, info = "keymash v1"
//! and the direction)`; the direction label keeps sender-to-receiver and receiver-to-sender keys apart
//! even if two salts were equal. The salt travels in every packet, so the peer derives the same
//! key (once per session, cached) with no handshake.
//!
//! **Nonces.** 96 bits: the packet's SSRC (32), a class byte (RTP 0, RTCP 1) and a 56-bit
//! counter. For RTP the counter is the sender's 64-bit extended sequence number (the 16 low bits
//! are the header's sequence number, the 32 above travel as the rollover counter in the
//! trailer, as RFC 4771 does for SRTP); media and repair streams have different SSRCs. For RTCP
//! it is a per-session index carried in the trailer. Counters only go up within a session and a
//! new session has a new key, so a nonce never repeats under one key; a retransmission resends
//! the very bytes sealed the first time (same plaintext, nonce and ciphertext), which reveals
//! nothing. Sealing refuses a counter past 2^48 rather than wrap.
//!
//! **Wire.** RTP: `header | ChaCha20(payload) | ROC (4) | salt (8) | tag (16)`: 28 bytes more
//! per packet; the header is the AAD, the salt and ROC are bound through the key and the nonce.
//! RTCP is authenticated, not encrypted (as SRTCP with E = 0: reports carry no picture, and
//! tshark keeps reading the loss statistics): the compound ends with one more, well-formed RTCP
//! APP packet named `KMSE` holding `index (8) | salt (8) | echo (2 x 8) | tag (16)`, 60 bytes;
//! the AAD is the whole datagram before the tag.
//!
//! **Replay.** Per peer session, one sliding window of [`REPLAY_WINDOW`] counters for each of
//! media, repair and RTCP: a counter seen before, or too far behind the highest, is dropped
//! before anything parses it, and counted. A packet is checked against the window, then
//! authenticated, and only then marked (forgeries cannot move the window).
//!
//! **Freshness.** A replay window cannot stop a recording of an *earlier* session, whose packets
//! authenticate under its own, still valid, salt. So a peer session is trusted only once it has
//! proved it is alive now: each side's RTCP echoes the salts of the peer sessions it has
//! authenticated, and a peer session becomes trusted when one of its authenticated RTCP packets
//! echoes *our* current salt, which did not exist before we started. Until then its packets
//! are authenticated but not used (counted as `unconfirmed`); the confirmation takes one
//! feedback round trip (~0.1 s). When a new peer session is confirmed the previous one is
//! retired for good (a switch, shown in status), so the old recording stays useless too.
//!
//! **Failure reporting.** Packets that fail authentication while nothing authenticates raise
//! [`SecurityAlarm::KeyMismatch`], which the services show in their status line.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use hkdf::Hkdf;
use keymash_core::key::PreSharedKey;
use sha2::Sha256;

use crate::rtcp::PT_APP;
use crate::rtp::{classify, DatagramKind, RTP_HEADER_LEN};

/// Bytes of a session salt.
pub const SALT_LEN: usize = 8;
/// Bytes of the Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed RTP packet has beyond the plain one: ROC, salt, tag.
pub const RTP_OVERHEAD: usize = 4 + SALT_LEN + TAG_LEN;
/// Bytes of the `KMSE` APP packet that ends a sealed RTCP compound.
pub const RTCP_OVERHEAD: usize = 12 + 8 + SALT_LEN + 2 * SALT_LEN + TAG_LEN;
/// Counters a replay window remembers behind the highest one (the receive window's size).
pub const REPLAY_WINDOW: u64 = 1024;
/// Largest counter ever sealed: 2^48 packets is millennia of video.
pub const MAX_COUNTER: u64 = (1 << 48) - 1;
/// Peer sessions remembered at once (authenticated, confirmed or not).
const MAX_PEER_SESSIONS: usize = 4;
/// Retired peer sessions remembered, never accepted again.
const MAX_RETIRED: usize = 64;
/// Authentication failures with no success for this long raise [`SecurityAlarm::KeyMismatch`].
pub const ALARM_WINDOW: Duration = Duration::from_secs(3);
/// The name of the trailing APP packet of a sealed RTCP compound.
pub const RTCP_TRAILER_NAME: [u8; 4] = *b"KMSE";
/// What status says when packets fail authentication.
pub const KEY_MISMATCH_MESSAGE: &str =
    "packets arrive but fail authentication: check that both PCs have the same key (security.key_file)";

/// Whether and how packets are protected; part of [`crate::TransportConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Protection {
    /// Nothing is sealed or checked (`security.mode = "none"`). The library default, so protocol
    /// tests stay readable; the shipped configuration file is protected.
    #[default]
    Unprotected,
    /// Every packet sealed under keys derived from this pre-shared key.
    PreShared(PreSharedKey),
}

/// A per-session random salt (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionSalt(pub [u8; SALT_LEN]);

impl SessionSalt {
    const NONE: SessionSalt = SessionSalt([0; SALT_LEN]);

    /// A salt from random bytes; the all-zero value (meaning "no session" in echoes) is mapped
    /// to another.
    pub fn new(mut bytes: [u8; SALT_LEN]) -> Self {
        if bytes == [0; SALT_LEN] {
            bytes[0] = 1;
        }
        SessionSalt(bytes)
    }

    /// A salt drawn from a caller's `seed` for the seeded constructors (`Sender::new`,
    /// `Receiver::new`; tests and simulations). `domain` keeps a sender's and a receiver's salt
    /// apart when both get the same seed. Services draw salts from the OS's random source.
    pub(crate) fn from_seed(seed: u64, domain: u64) -> Self {
        Self::new(
            crate::fec::SplitMix64::new(seed ^ domain)
                .next_u64()
                .to_le_bytes(),
        )
    }

    fn is_none(self) -> bool {
        self == Self::NONE
    }
}

/// Which way a packet travels; each direction has its own keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// net-tx to net-rx: RTP media, repair, sender reports.
    SenderToReceiver,
    /// net-rx to net-tx: receiver reports, NACK, quality requests.
    ReceiverToSender,
}

impl Direction {
    fn label(self) -> &'static [u8] {
        match self {
            Direction::SenderToReceiver => b"keymash v1 sender to receiver",
            Direction::ReceiverToSender => b"keymash v1 receiver to sender",
        }
    }

    fn reverse(self) -> Direction {
        match self {
            Direction::SenderToReceiver => Direction::ReceiverToSender,
            Direction::ReceiverToSender => Direction::SenderToReceiver,
        }
    }
}

/// The AEAD key of one session and direction.
pub fn session_key(psk: &PreSharedKey, salt: SessionSalt, direction: Direction) -> [u8; 32] {
    let hk = Hkdf::<Sha256>::new(Some(&salt.0), psk.as_bytes());
    let mut okm = [0u8; 32];
    // 32 bytes is far below HKDF-SHA-256's limit of 255 * 32, so this cannot fail.
    let _ = hk.expand(direction.label(), &mut okm);
    okm
}

/// A short, public fingerprint of the pre-shared key (not the key), so operators can compare
/// the two PCs' keys in `keymash status`.
pub fn key_fingerprint(psk: &PreSharedKey) -> String {
    let hk = Hkdf::<Sha256>::new(None, psk.as_bytes());
    let mut okm = [0u8; 4];
    let _ = hk.expand(b"keymash v1 key fingerprint", &mut okm);
    okm.iter().map(|b| format!("{b:02x}")).collect()
}

/// The class byte of a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketClass {
    Rtp = 0,
    Rtcp = 1,
}

/// The 96-bit nonce of a packet: SSRC, class, 56-bit counter.
pub fn nonce(ssrc: u32, class: PacketClass, counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&ssrc.to_be_bytes());
    n[4..].copy_from_slice(&(counter | (class as u64) << 56).to_be_bytes());
    n
}

/// Why a packet could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("counter {0} is past the 48-bit limit; the session must start over")]
    CounterExhausted(u64),
    #[error("{0} bytes is not a packet this endpoint writes")]
    Malformed(usize),
}

/// Why a received datagram was dropped before anything parsed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("not a sealed RTP or RTCP packet ({0} bytes)")]
    NotSealed(usize),
    #[error("authentication failed (forged, damaged, or sealed under another key)")]
    AuthFailed,
    #[error("replayed: counter {0} was seen before or is too far behind")]
    Replayed(u64),
    #[error("from a retired session (a recording of an earlier stream)")]
    Retired,
}

/// Counters of the opening side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecurityStats {
    /// Datagrams that failed authentication or were not sealed at all.
    pub auth_failed: u64,
    /// Authentic datagrams seen before, too old for the replay window, or of a retired session.
    pub replayed: u64,
    /// Authentic datagrams of a peer session not (yet) confirmed as live; not used.
    pub unconfirmed: u64,
    /// Times a newly confirmed peer session replaced the previous one.
    pub session_switches: u64,
}

/// Something the operator must hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityAlarm {
    /// Packets arrive and fail authentication, and none has authenticated for a while.
    KeyMismatch,
}

impl std::fmt::Display for SecurityAlarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecurityAlarm::KeyMismatch => f.write_str(KEY_MISMATCH_MESSAGE),
        }
    }
}

/// A sliding window over one stream's counters (RFC 4303 / RFC 3711 style), [`REPLAY_WINDOW`]
/// wide.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    highest: Option<u64>,
    bits: [u64; (REPLAY_WINDOW / 64) as usize],
}

impl ReplayWindow {
    fn bit(counter: u64) -> (usize, u64) {
        let i = counter % REPLAY_WINDOW;
        ((i / 64) as usize, 1 << (i % 64))
    }

    /// Whether `counter` may be new: not seen, not too old.
    pub fn check(&self, counter: u64) -> bool {
        match self.highest {
            None => true,
            Some(h) if counter > h => true,
            Some(h) if h - counter >= REPLAY_WINDOW => false,
            Some(_) => {
                let (w, b) = Self::bit(counter);
                self.bits[w] & b == 0
            }
        }
    }

    /// Record an authenticated `counter` (call only after [`Self::check`] passed).
    pub fn mark(&mut self, counter: u64) {
        match self.highest {
            Some(h) if counter <= h => {}
            Some(h) if counter - h < REPLAY_WINDOW => {
                for c in h + 1..counter {
                    let (w, b) = Self::bit(c);
                    self.bits[w] &= !b;
                }
                self.highest = Some(counter);
            }
            _ => {
                self.bits = [0; (REPLAY_WINDOW / 64) as usize];
                self.highest = Some(counter);
            }
        }
        let (w, b) = Self::bit(counter);
        self.bits[w] |= b;
    }
}

/// A peer's session as this endpoint knows it.
struct PeerSession {
    salt: SessionSalt,
    cipher: ChaCha20Poly1305,
    confirmed: bool,
    last_authenticated: Instant,
    /// Media (even SSRC), repair (odd SSRC), RTCP.
    windows: [ReplayWindow; 3],
}

impl std::fmt::Debug for PeerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerSession")
            .field("salt", &self.salt)
            .field("confirmed", &self.confirmed)
            .finish_non_exhaustive()
    }
}

/// A datagram that authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The datagram as it was before sealing: plain RTP, or the RTCP compound without `KMSE`.
    pub plain: Vec<u8>,
    /// From the confirmed peer session: act on it. Otherwise only its echo was used.
    pub trusted: bool,
    /// This packet confirmed its session (a new stream is live).
    pub confirmed_now: bool,
    /// The first authenticated packet of a session not seen before.
    pub new_session: bool,
}

/// One endpoint's protection: seals what it sends under its own session, opens what the peer
/// sends under the peer's sessions.
pub struct Endpoint {
    psk: PreSharedKey,
    own_salt: SessionSalt,
    outgoing: ChaCha20Poly1305,
    incoming_direction: Direction,
    next_rtcp_index: u64,
    peers: Vec<PeerSession>,
    retired: VecDeque<SessionSalt>,
    stats: SecurityStats,
    last_failure: Option<Instant>,
    last_success: Option<Instant>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("own_salt", &self.own_salt)
            .field("peers", &self.peers)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn cipher(key: [u8; 32]) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(Key::from_slice(&key))
}

/// Length of an RTP header with its CSRCs and extension, if the bytes hold one.
fn rtp_header_len(packet: &[u8]) -> Option<usize> {
    let flags = *packet.first()?;
    let mut len = RTP_HEADER_LEN + 4 * usize::from(flags & 0x0F);
    if flags & 0x10 != 0 {
        let words = packet.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    (len <= packet.len()).then_some(len)
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn be_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn salt_at(bytes: &[u8], at: usize) -> Option<SessionSalt> {
    Some(SessionSalt(bytes.get(at..at + SALT_LEN)?.try_into().ok()?))
}

/// What a sealed datagram says about itself in the clear: its session salt and its nonce (for
/// tests that check nonces never repeat, and for diagnostics). `None` if it is not sealed.
pub fn sealed_identity(datagram: &[u8]) -> Option<(SessionSalt, [u8; 12])> {
    match classify(datagram) {
        DatagramKind::Rtp => {
            let len = datagram.len();
            let h = rtp_header_len(datagram)?;
            if len < h + RTP_OVERHEAD {
                return None;
            }
            let roc = be_u32(datagram, len - RTP_OVERHEAD)?;
            let salt = salt_at(datagram, len - RTP_OVERHEAD + 4)?;
            let seq = u16::from_be_bytes([datagram[2], datagram[3]]);
            let ssrc = be_u32(datagram, 8)?;
            Some((
                salt,
                nonce(
                    ssrc,
                    PacketClass::Rtp,
                    u64::from(roc) << 16 | u64::from(seq),
                ),
            ))
        }
        DatagramKind::Rtcp => {
            let t = datagram.len().checked_sub(RTCP_OVERHEAD)?;
            let trailer = &datagram[t..];
            if trailer[..4] != [0x80, PT_APP, 0, (RTCP_OVERHEAD / 4 - 1) as u8]
                || trailer[8..12] != RTCP_TRAILER_NAME
            {
                return None;
            }
            let ssrc = be_u32(trailer, 4)?;
            Some((
                salt_at(trailer, 20)?,
                nonce(ssrc, PacketClass::Rtcp, be_u64(trailer, 12)?),
            ))
        }
        DatagramKind::Other => None,
    }
}

impl Endpoint {
    /// The endpoint of the side that sends in `outgoing` direction, with its session `salt`
    /// (random, from the caller; a new one on every start).
    pub fn new(psk: PreSharedKey, outgoing: Direction, salt: SessionSalt) -> Self {
        Endpoint {
            outgoing: cipher(session_key(&psk, salt, outgoing)),
            incoming_direction: outgoing.reverse(),
            psk,
            own_salt: salt,
            next_rtcp_index: 0,
            peers: Vec::new(),
            retired: VecDeque::new(),
            stats: SecurityStats::default(),
            last_failure: None,
            last_success: None,
        }
    }

    pub fn own_salt(&self) -> SessionSalt {
        self.own_salt
    }

    pub fn stats(&self) -> SecurityStats {
        self.stats
    }

    pub fn key_fingerprint(&self) -> String {
        key_fingerprint(&self.psk)
    }

    /// Whether a confirmed peer session exists.
    pub fn peer_confirmed(&self) -> bool {
        self.peers.iter().any(|p| p.confirmed)
    }

    /// What the operator should be told at `now`, if anything.
    pub fn alarm(&self, now: Instant) -> Option<SecurityAlarm> {
        let recent =
            |t: Option<Instant>| t.is_some_and(|t| now.saturating_duration_since(t) < ALARM_WINDOW);
        (recent(self.last_failure) && !recent(self.last_success))
            .then_some(SecurityAlarm::KeyMismatch)
    }

    /// Seal an RTP packet written by this endpoint whose extended sequence number is `counter`
    /// (its low 16 bits are the header's sequence number).
    pub fn seal_rtp(&mut self, packet: &mut Vec<u8>, counter: u64) -> Result<(), SealError> {
        if counter > MAX_COUNTER {
            return Err(SealError::CounterExhausted(counter));
        }
        let h = rtp_header_len(packet).ok_or(SealError::Malformed(packet.len()))?;
        let ssrc = be_u32(packet, 8).ok_or(SealError::Malformed(packet.len()))?;
        debug_assert_eq!(u16::from_be_bytes([packet[2], packet[3]]), counter as u16);
        let n = nonce(ssrc, PacketClass::Rtp, counter);
        let (header, payload) = packet.split_at_mut(h);
        let tag = self
            .outgoing
            .encrypt_in_place_detached(Nonce::from_slice(&n), header, payload)
            .map_err(|_| SealError::Malformed(h))?;
        packet.reserve(RTP_OVERHEAD);
        packet.extend_from_slice(&((counter >> 16) as u32).to_be_bytes());
        packet.extend_from_slice(&self.own_salt.0);
        packet.extend_from_slice(&tag);
        Ok(())
    }

    /// Seal an RTCP compound written by this endpoint: append the `KMSE` APP packet with the
    /// index, our salt, the echoes of the peer sessions we have authenticated, and the tag.
    pub fn seal_rtcp(&mut self, packet: &mut Vec<u8>) -> Result<(), SealError> {
        let index = self.next_rtcp_index;
        if index > MAX_COUNTER {
            return Err(SealError::CounterExhausted(index));
        }
        let ssrc = be_u32(packet, 4).ok_or(SealError::Malformed(packet.len()))?;
        self.next_rtcp_index += 1;
        let confirmed = self
            .peers
            .iter()
            .find(|p| p.confirmed)
            .map_or(SessionSalt::NONE, |p| p.salt);
        let candidate = self
            .peers
            .iter()
            .filter(|p| !p.confirmed)
            .max_by_key(|p| p.last_authenticated)
            .map_or(SessionSalt::NONE, |p| p.salt);
        packet.reserve(RTCP_OVERHEAD);
        packet.extend_from_slice(&[0x80, PT_APP, 0, (RTCP_OVERHEAD / 4 - 1) as u8]);
        packet.extend_from_slice(&ssrc.to_be_bytes());
        packet.extend_from_slice(&RTCP_TRAILER_NAME);
        packet.extend_from_slice(&index.to_be_bytes());
        packet.extend_from_slice(&self.own_salt.0);
        packet.extend_from_slice(&confirmed.0);
        packet.extend_from_slice(&candidate.0);
        let n = nonce(ssrc, PacketClass::Rtcp, index);
        let tag = self
            .outgoing
            .encrypt_in_place_detached(Nonce::from_slice(&n), packet, &mut [])
            .map_err(|_| SealError::Malformed(packet.len()))?;
        packet.extend_from_slice(&tag);
        Ok(())
    }

    /// Check and open a datagram from the peer. Nothing of a datagram that returns an error
    /// should be looked at further.
    pub fn open(&mut self, now: Instant, datagram: &[u8]) -> Result<Opened, OpenError> {
        let result = self.open_inner(now, datagram);
        match &result {
            Ok(_) => self.last_success = Some(now),
            Err(OpenError::AuthFailed | OpenError::NotSealed(_)) => {
                self.stats.auth_failed += 1;
                self.last_failure = Some(now);
            }
            Err(OpenError::Replayed(_) | OpenError::Retired) => self.stats.replayed += 1,
        }
        result
    }

    fn open_inner(&mut self, now: Instant, datagram: &[u8]) -> Result<Opened, OpenError> {
        let not_sealed = OpenError::NotSealed(datagram.len());
        let len = datagram.len();
        // (salt, window, counter, nonce, where the plain part ends, RTCP echoes)
        let (salt, window, counter, n, plain_end, echoes) = match classify(datagram) {
            DatagramKind::Rtp => {
                let h = rtp_header_len(datagram).ok_or(not_sealed)?;
                if len < h + RTP_OVERHEAD {
                    return Err(not_sealed);
                }
                let t = len - RTP_OVERHEAD;
                let roc = be_u32(datagram, t).ok_or(not_sealed)?;
                let salt = salt_at(datagram, t + 4).ok_or(not_sealed)?;
                let seq = u16::from_be_bytes([datagram[2], datagram[3]]);
                let ssrc = be_u32(datagram, 8).ok_or(not_sealed)?;
                let counter = u64::from(roc) << 16 | u64::from(seq);
                (
                    salt,
                    (ssrc & 1) as usize,
                    counter,
                    nonce(ssrc, PacketClass::Rtp, counter),
                    t,
                    None,
                )
            }
            DatagramKind::Rtcp => {
                let t = len.checked_sub(RTCP_OVERHEAD).ok_or(not_sealed)?;
                let trailer = &datagram[t..];
                if t < 8
                    || trailer[..4] != [0x80, PT_APP, 0, (RTCP_OVERHEAD / 4 - 1) as u8]
                    || trailer[8..12] != RTCP_TRAILER_NAME
                {
                    return Err(not_sealed);
                }
                let ssrc = be_u32(trailer, 4).ok_or(not_sealed)?;
                let index = be_u64(trailer, 12).ok_or(not_sealed)?;
                if index > MAX_COUNTER {
                    return Err(OpenError::AuthFailed);
                }
                let salt = salt_at(trailer, 20).ok_or(not_sealed)?;
                let echoes = (
                    salt_at(trailer, 28).ok_or(not_sealed)?,
                    salt_at(trailer, 36).ok_or(not_sealed)?,
                );
                (
                    salt,
                    2,
                    index,
                    nonce(ssrc, PacketClass::Rtcp, index),
                    t,
                    Some(echoes),
                )
            }
            DatagramKind::Other => return Err(not_sealed),
        };
        if salt.is_none() {
            return Err(OpenError::AuthFailed);
        }
        if self.retired.contains(&salt) {
            return Err(OpenError::Retired);
        }
        let known = self.peers.iter().position(|p| p.salt == salt);
        if let Some(i) = known {
            if !self.peers[i].windows[window].check(counter) {
                return Err(OpenError::Replayed(counter));
            }
        }
        // Derive the key of an unknown session, but remember the session only once a packet
        // has authenticated under it (forgeries with made-up salts leave no state behind).
        let fresh = match known {
            Some(_) => None,
            None => Some(cipher(session_key(
                &self.psk,
                salt,
                self.incoming_direction,
            ))),
        };
        let plain = match datagram.get(..plain_end) {
            Some(p) => p,
            None => return Err(not_sealed),
        };
        let tag = Tag::from_slice(&datagram[len - TAG_LEN..]);
        let aead = match (known, &fresh) {
            (Some(i), _) => &self.peers[i].cipher,
            (None, Some(c)) => c,
            (None, None) => return Err(OpenError::AuthFailed),
        };
        let mut out = plain.to_vec();
        if echoes.is_some() {
            // RTCP: authenticated, not encrypted; the AAD is everything before the tag.
            aead.decrypt_in_place_detached(
                Nonce::from_slice(&n),
                &datagram[..len - TAG_LEN],
                &mut [],
                tag,
            )
            .map_err(|_| OpenError::AuthFailed)?;
        } else {
            let h = rtp_header_len(&out).ok_or(not_sealed)?;
            let (header, payload) = out.split_at_mut(h);
            aead.decrypt_in_place_detached(Nonce::from_slice(&n), header, payload, tag)
                .map_err(|_| OpenError::AuthFailed)?;
        }

        // Authentic from here on.
        let new_session = fresh.is_some();
        let i = match (known, fresh) {
            (Some(i), _) => i,
            (None, Some(cipher)) => self.insert_peer(now, salt, cipher),
            (None, None) => return Err(OpenError::AuthFailed),
        };
        let peer = &mut self.peers[i];
        peer.windows[window].mark(counter);
        peer.last_authenticated = now;
        let mut confirmed_now = false;
        if let Some((a, b)) = echoes {
            let ours = |s: SessionSalt| !s.is_none() && s == self.own_salt;
            if !peer.confirmed && (ours(a) || ours(b)) {
                peer.confirmed = true;
                confirmed_now = true;
            }
        }
        let trusted = peer.confirmed;
        if confirmed_now {
            // The newly confirmed session replaces any other: retire them for good.
            let old: Vec<SessionSalt> = self
                .peers
                .iter()
                .filter(|p| p.confirmed && p.salt != salt)
                .map(|p| p.salt)
                .collect();
            if !old.is_empty() {
                self.stats.session_switches += 1;
            }
            for s in old {
                self.retire(s);
            }
        }
        if !trusted {
            self.stats.unconfirmed += 1;
        }
        Ok(Opened {
            plain: out,
            trusted,
            confirmed_now,
            new_session,
        })
    }

    fn insert_peer(&mut self, now: Instant, salt: SessionSalt, cipher: ChaCha20Poly1305) -> usize {
        if self.peers.len() >= MAX_PEER_SESSIONS {
            // Evict the least recently heard unconfirmed session (a confirmed one only if all are).
            let victim = self
                .peers
                .iter()
                .min_by_key(|p| (p.confirmed, p.last_authenticated))
                .map(|p| p.salt);
            if let Some(s) = victim {
                self.retire(s);
            }
        }
        self.peers.push(PeerSession {
            salt,
            cipher,
            confirmed: false,
            last_authenticated: now,
            windows: Default::default(),
        });
        self.peers.len() - 1
    }

    fn retire(&mut self, salt: SessionSalt) {
        self.peers.retain(|p| p.salt != salt);
        self.retired.push_back(salt);
        while self.retired.len() > MAX_RETIRED {
            self.retired.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::{PayloadType, RtpHeader, Ssrc};

    fn psk(b: u8) -> PreSharedKey {
        PreSharedKey::from_bytes([b; 32])
    }

    fn rtp(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        RtpHeader {
            payload_type: PayloadType::DYNAMIC_VIDEO,
            marker: false,
            seq,
            timestamp: 5,
            ssrc: Ssrc(ssrc),
        }
        .to_packet(payload)
    }

    fn rr(ssrc: u32) -> Vec<u8> {
        let mut out = Vec::new();
        crate::rtcp::rr::write(Ssrc(ssrc), &[], &mut out).unwrap();
        out
    }

    /// A sender and a receiver endpoint that have confirmed each other.
    fn pair() -> (Endpoint, Endpoint, Instant) {
        let t0 = Instant::now();
        let mut tx = Endpoint::new(
            psk(1),
            Direction::SenderToReceiver,
            SessionSalt::new([1; 8]),
        );
        let mut rx = Endpoint::new(
            psk(1),
            Direction::ReceiverToSender,
            SessionSalt::new([2; 8]),
        );
        let mut p = rtp(10, 2, b"hello");
        tx.seal_rtp(&mut p, 0x1_000A).unwrap();
        assert!(!rx.open(t0, &p).unwrap().trusted, "unconfirmed at first");
        let mut fb = rr(9);
        rx.seal_rtcp(&mut fb).unwrap();
        assert!(
            tx.open(t0, &fb).unwrap().confirmed_now,
            "the receiver echoed the sender's salt"
        );
        let mut sr = rr(2);
        tx.seal_rtcp(&mut sr).unwrap();
        let o = rx.open(t0, &sr).unwrap();
        assert!(o.confirmed_now && o.trusted);
        assert_eq!(o.plain, rr(2));
        (tx, rx, t0)
    }

    #[test]
    fn sealed_rtp_keeps_its_header_hides_its_payload_and_opens_back() {
        let (mut tx, mut rx, t0) = pair();
        let plain = rtp(11, 2, b"secret picture");
        let mut p = plain.clone();
        tx.seal_rtp(&mut p, 0x1_000B).unwrap();
        assert_eq!(p.len(), plain.len() + RTP_OVERHEAD);
        assert_eq!(p[..RTP_HEADER_LEN], plain[..RTP_HEADER_LEN]);
        assert!(!p.windows(6).any(|w| w == b"secret"));
        let o = rx.open(t0, &p).unwrap();
        assert_eq!(o.plain, plain);
        assert!(o.trusted);
    }

    #[test]
    fn the_capture_age_extension_is_clear_and_authenticated() {
        use crate::rtp::{CaptureAge, RtpPacket, CAPTURE_AGE_EXT_LEN};
        let (mut tx, mut rx, t0) = pair();
        let age = CaptureAge::new(std::time::Duration::from_millis(30_012));
        let header = RtpHeader {
            payload_type: PayloadType::DYNAMIC_VIDEO,
            marker: true,
            seq: 12,
            timestamp: 3,
            ssrc: Ssrc(0x0BAD_F00D),
        };
        let plain = header.to_packet_with(Some(age), b"secret picture");
        let mut p = plain.clone();
        tx.seal_rtp(&mut p, 0x1_000C).unwrap();
        // In the clear for tshark: the header and its extension are as written.
        let clear = RTP_HEADER_LEN + CAPTURE_AGE_EXT_LEN;
        assert_eq!(p[..clear], plain[..clear]);
        // Changing the age (the last byte of the element) breaks the tag.
        let mut forged = p.clone();
        forged[clear - 1] ^= 1;
        assert!(rx.open(t0, &forged).is_err());
        let o = rx.open(t0, &p).unwrap();
        assert_eq!(RtpPacket::parse(&o.plain).unwrap().capture_age, Some(age));
    }

    #[test]
    fn replays_and_packets_too_far_behind_are_dropped() {
        let (mut tx, mut rx, t0) = pair();
        let mut sealed = Vec::new();
        for c in 0x1_0100u64..0x1_0100 + 2 * REPLAY_WINDOW {
            let mut p = rtp(c as u16, 2, b"x");
            tx.seal_rtp(&mut p, c).unwrap();
            sealed.push(p);
        }
        // Out of order inside the window is fine.
        assert!(rx.open(t0, &sealed[5]).is_ok());
        assert!(rx.open(t0, &sealed[3]).is_ok());
        assert_eq!(rx.open(t0, &sealed[5]), Err(OpenError::Replayed(0x1_0105)));
        assert!(rx.open(t0, &sealed[2000]).is_ok());
        assert_eq!(rx.open(t0, &sealed[4]), Err(OpenError::Replayed(0x1_0104)));
        assert_eq!(rx.stats().replayed, 2);
    }

    #[test]
    fn another_key_fails_authentication_and_raises_the_alarm() {
        let t0 = Instant::now();
        let mut tx = Endpoint::new(
            psk(1),
            Direction::SenderToReceiver,
            SessionSalt::new([1; 8]),
        );
        let mut rx = Endpoint::new(
            psk(2),
            Direction::ReceiverToSender,
            SessionSalt::new([2; 8]),
        );
        let mut p = rtp(1, 2, b"x");
        tx.seal_rtp(&mut p, 0x1_0001).unwrap();
        assert_eq!(rx.open(t0, &p), Err(OpenError::AuthFailed));
        assert_eq!(rx.alarm(t0), Some(SecurityAlarm::KeyMismatch));
        assert_eq!(rx.alarm(t0 + ALARM_WINDOW), None);
        assert_eq!(
            rx.open(t0, &rtp(1, 2, b"plain")),
            Err(OpenError::NotSealed(17))
        );
        assert_eq!(rx.stats().auth_failed, 2);
    }

    #[test]
    fn a_recorded_session_is_never_confirmed_by_a_later_receiver() {
        let t0 = Instant::now();
        let (mut tx, _rx, _) = pair();
        // Recorded from the first session: an SR that confirmed it to the old receiver.
        let mut sr = rr(2);
        tx.seal_rtcp(&mut sr).unwrap();
        let mut media = rtp(20, 2, b"old picture");
        tx.seal_rtp(&mut media, 0x1_0014).unwrap();
        let mut later = Endpoint::new(
            psk(1),
            Direction::ReceiverToSender,
            SessionSalt::new([3; 8]),
        );
        let o = later.open(t0, &sr).unwrap();
        assert!(!o.trusted && !o.confirmed_now);
        assert!(!later.open(t0, &media).unwrap().trusted);
        assert_eq!(later.stats().unconfirmed, 2);
    }

    #[test]
    fn a_new_confirmed_session_retires_the_old_one() {
        let (_tx, mut rx, t0) = pair();
        // A packet of the first session, not yet delivered.
        let old_media = {
            let mut tx_old = Endpoint::new(
                psk(1),
                Direction::SenderToReceiver,
                SessionSalt::new([1; 8]),
            );
            let mut p = rtp(50, 2, b"x");
            tx_old.seal_rtp(&mut p, 0x1_0032).unwrap();
            p
        };
        let mut tx2 = Endpoint::new(
            psk(1),
            Direction::SenderToReceiver,
            SessionSalt::new([7; 8]),
        );
        let mut p = rtp(1, 4, b"x");
        tx2.seal_rtp(&mut p, 0x1_0001).unwrap();
        assert!(rx.open(t0, &p).unwrap().new_session);
        let mut fb = rr(9);
        rx.seal_rtcp(&mut fb).unwrap();
        assert!(tx2.open(t0, &fb).unwrap().confirmed_now);
        let mut sr = rr(4);
        tx2.seal_rtcp(&mut sr).unwrap();
        assert!(rx.open(t0, &sr).unwrap().confirmed_now);
        assert_eq!(rx.stats().session_switches, 1);
        assert_eq!(rx.open(t0, &old_media), Err(OpenError::Retired));
    }

    #[test]
    fn nonces_differ_by_class_ssrc_and_counter() {
        assert_ne!(
            nonce(2, PacketClass::Rtp, 5),
            nonce(2, PacketClass::Rtcp, 5)
        );
        assert_ne!(nonce(2, PacketClass::Rtp, 5), nonce(3, PacketClass::Rtp, 5));
        assert_ne!(nonce(2, PacketClass::Rtp, 5), nonce(2, PacketClass::Rtp, 6));
        assert_eq!(
            session_key(
                &psk(1),
                SessionSalt::new([1; 8]),
                Direction::SenderToReceiver
            )
            .len(),
            32
        );
        assert_ne!(
            session_key(
                &psk(1),
                SessionSalt::new([1; 8]),
                Direction::SenderToReceiver
            ),
            session_key(
                &psk(1),
                SessionSalt::new([1; 8]),
                Direction::ReceiverToSender
            )
        );
    }

    #[test]
    fn the_replay_window_slides() {
        let mut w = ReplayWindow::default();
        for c in [100, 99, 1200, 1100] {
            assert!(w.check(c), "{c}");
            w.mark(c);
            assert!(!w.check(c));
        }
        assert!(!w.check(100), "too old now");
        assert!(w.check(1101));
        w.mark(5000);
        assert!(!w.check(1200));
        assert!(w.check(4999));
    }
}
