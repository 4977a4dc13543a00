//! MSB-first bit packing with Exp-Golomb codes, the payload's only variable-length code.
//!
//! Exp-Golomb is a fixed universal code (no tables, no adaptation): `n` is written as the binary
//! form of `n + 1` preceded by one zero per bit after its first. Small values, which dominate
//! quantised DCT data, cost one to five bits.

/// Longest Exp-Golomb prefix the reader accepts: values below 2^20 - 1. Everything the encoder
/// writes is far below (levels are clamped to [`crate::tables::MAX_LEVEL`]); anything longer is
/// corrupt input, refused before it can make the reader loop or overflow.
pub const MAX_PREFIX_ZEROS: u32 = 19;

/// Bytes of scratch kept past the written ones: every `put` stores a whole 64-bit word there.
const WRITE_SLACK: usize = 8;

/// Smallest growth of the scratch area. It grows to at least twice its length at a time and is
/// never shrunk while writing (zero-filled within the vector's capacity, so steady-state writing
/// does not allocate, and the zero fill is paid about once per byte written, not per growth).
const GROW_STEP: usize = 256;

/// Appends bits to a byte vector it owns while writing. The vector keeps its capacity between
/// frames (it is handed back with [`BitWriter::into_inner`]), so writing does not allocate once
/// warmed up.
///
/// Each `put` stores the accumulator's pending bits as one big-endian 64-bit word at the write
/// position and advances by the whole bytes among them: no branch on whether a word is full
/// (a data-dependent branch the CPU mispredicts), and no `Vec` length update per byte.
#[derive(Debug, Default)]
pub struct BitWriter {
    /// `out[..pos]` is written; `out[pos..]` is scratch of at least [`WRITE_SLACK`] bytes once
    /// anything was put (its first byte holds the pending bits, zero-padded).
    out: Vec<u8>,
    pos: usize,
    /// The low `pending` bits are written to `out[pos]` but not yet counted; higher bits are stale.
    acc: u64,
    /// Bits past `pos`, always < 8 between calls.
    pending: u32,
}

/// Where a writer stood, to roll back a macroblock that did not fit.
#[derive(Debug, Clone, Copy)]
pub struct WriterMark {
    pos: usize,
    acc: u64,
    pending: u32,
}

impl BitWriter {
    /// A writer appending to `out`'s current content.
    pub fn new(out: Vec<u8>) -> Self {
        let pos = out.len();
        BitWriter {
            out,
            pos,
            acc: 0,
            pending: 0,
        }
    }

    /// Writes the low `n` bits of `value` (n <= 32).
    #[inline]
    pub fn put(&mut self, value: u32, n: u32) {
        let aligned;
        (self.acc, self.pending, aligned) = append(self.acc, self.pending, u64::from(value), n);
        match self.out.get_mut(self.pos..self.pos + WRITE_SLACK) {
            Some(word) => word.copy_from_slice(&aligned.to_be_bytes()),
            None => self.grow_and_store(aligned),
        }
        self.pos += (self.pending / 8) as usize;
        self.pending %= 8;
    }

    /// The rare path of `put`: extends the scratch area, then stores the word.
    #[cold]
    #[inline(never)]
    fn grow_and_store(&mut self, aligned: u64) {
        self.grow_to(self.pos + WRITE_SLACK);
        self.out[self.pos..self.pos + WRITE_SLACK].copy_from_slice(&aligned.to_be_bytes());
    }

    /// Makes `out` at least `needed` bytes long, growing it to at least twice its length.
    #[inline]
    fn grow_to(&mut self, needed: usize) {
        if self.out.len() < needed {
            let len = needed.max(2 * self.out.len()).max(GROW_STEP);
            self.out.resize(len, 0);
        }
    }

    /// Writes unsigned Exp-Golomb; returns the number of bits written. `v` must be below 2^16 - 1 (a 31-bit code).
    #[inline]
    pub fn put_ue(&mut self, v: u32) -> u32 {
        let n = ue_len(v);
        self.put(v + 1, n);
        n
    }

    /// Writes a signed value as Exp-Golomb of its zigzag mapping (0, 1, -1, 2, -2 ...).
    #[inline]
    pub fn put_se(&mut self, v: i32) -> u32 {
        self.put_ue(se_mapping(v))
    }

    /// Reserves room and hands out a [`Burst`] writing into it: a run of puts of known maximum
    /// size with the writer's state in registers (no growth check, no call that could see the
    /// state). Its bits count only once [`Burst::finish`] is called. `SPAN` is the room plus the
    /// slack every put stores into: write it as `burst_span(bytes)` (see [`burst_span`]).
    ///
    /// A guard rather than a closure: hot callers are compiled inside the vector unit's kernel
    /// (see [`crate::simd::Kernel::dispatch`]) only when everything they call is inlined there,
    /// and a closure body is compiled as a function of its own, without BMI2, LZCNT and POPCNT.
    #[inline(always)]
    pub fn burst<const SPAN: usize>(&mut self) -> Burst<'_, SPAN> {
        let needed = self.pos + SPAN;
        self.grow_to(needed);
        let BitWriter {
            out,
            pos,
            acc,
            pending,
        } = self;
        let Ok(buf) = <&mut [u8; SPAN]>::try_from(&mut out[*pos..needed]) else {
            unreachable!("a range of SPAN bytes is SPAN bytes long");
        };
        Burst {
            start: *pos,
            buf,
            at: 0,
            acc: *acc,
            pending: *pending,
            home: (pos, acc, pending),
        }
    }

    /// Bits written so far, including pending ones.
    pub fn bit_len(&self) -> usize {
        self.pos * 8 + self.pending as usize
    }

    pub fn mark(&self) -> WriterMark {
        WriterMark {
            pos: self.pos,
            acc: self.acc,
            pending: self.pending,
        }
    }

    /// Back to `mark`. Bytes past it are scratch; the pending bits are stored again by the
    /// next `put` (or by [`Self::align_to_byte`]).
    pub fn rollback(&mut self, mark: WriterMark) {
        self.pos = mark.pos;
        self.acc = mark.acc;
        self.pending = mark.pending;
    }

    /// Completes the last byte with zero bits; returns the padding bit count.
    pub fn align_to_byte(&mut self) -> u32 {
        let padding = (8 - self.pending % 8) % 8;
        if padding > 0 {
            self.put(0, padding);
        }
        padding
    }

    /// Appends whole bytes (a header). Only valid right after [`Self::align_to_byte`] or at the
    /// start, when no bits are pending.
    pub fn put_bytes(&mut self, bytes: &[u8]) {
        debug_assert_eq!(self.pending, 0);
        let end = self.pos + bytes.len();
        self.grow_to(end + WRITE_SLACK);
        self.out[self.pos..end].copy_from_slice(bytes);
        self.pos = end;
    }

    /// Overwrites bytes already written, from byte `at` on (a count known only later). Panics
    /// if they reach past the whole bytes written: that would be a caller's bug.
    pub fn patch_bytes(&mut self, at: usize, bytes: &[u8]) {
        let end = at + bytes.len();
        assert!(
            end <= self.pos,
            "patching bytes {at}..{end} past the {} written",
            self.pos
        );
        self.out[at..end].copy_from_slice(bytes);
    }

    /// Whole bytes written so far (the pending bits not counted).
    pub fn byte_len(&self) -> usize {
        self.pos
    }

    /// Hands the written bytes back (call [`Self::align_to_byte`] first or pending bits are lost).
    pub fn into_inner(mut self) -> Vec<u8> {
        self.out.truncate(self.pos);
        self.out
    }
}

/// Bits of the Exp-Golomb code of `v` (v < 2^31 - 1).
#[inline(always)]
pub const fn ue_len(v: u32) -> u32 {
    2 * (32 - (v + 1).leading_zeros()) - 1
}

/// Signed-to-unsigned mapping of se(v): 0, 1, -1, 2, -2 ... become 0, 1, 2, 3, 4 ...
#[inline(always)]
pub const fn se_mapping(v: i32) -> u32 {
    if v > 0 {
        (v as u32) * 2 - 1
    } else {
        v.unsigned_abs() * 2
    }
}

/// Adds `n` bits (n <= [`LONGEST_PUT`]) to an accumulator holding `pending` < 8 unstored bits.
/// Returns the new accumulator and count, and the pending bits left-aligned in a word, ready to
/// store.
#[inline(always)]
fn append(acc: u64, pending: u32, value: u64, n: u32) -> (u64, u32, u64) {
    debug_assert!(n <= LONGEST_PUT && pending < 8);
    debug_assert!(value >> n == 0);
    let acc = (acc << n) | value;
    let pending = pending + n;
    // pending <= 7 + 56, so both shifts stay below 64; the pair is `acc << (64 - pending)`.
    (acc, pending, (acc << 1) << (63 - pending))
}

/// Puts into room a [`BitWriter`] reserved (see [`BitWriter::burst`]); dropped without
/// [`Burst::finish`], it writes nothing (the bytes past the writer's position are scratch).
#[derive(Debug)]
#[must_use = "a burst's bits count only once it is finished"]
pub struct Burst<'a, const SPAN: usize> {
    /// The writer's position when the burst began.
    start: usize,
    /// The reserved room plus the slack every put stores a whole word into. A fixed-size array,
    /// so that the store needs no bounds check (see [`Burst::put`]).
    buf: &'a mut [u8; SPAN],
    /// Whole bytes written into `buf`.
    at: usize,
    acc: u64,
    pending: u32,
    /// The writer's position, accumulator and pending count, updated by `finish`.
    home: (&'a mut usize, &'a mut u64, &'a mut u32),
}

/// The `SPAN` of a [`Burst`] with room for `bytes` whole bytes: a power of two above them (see
/// [`Burst::put`]) and the slack.
pub const fn burst_span(bytes: usize) -> usize {
    (bytes + 1).next_power_of_two() + WRITE_SLACK
}

/// Most bits one [`Burst::put`] takes: with up to 7 bits pending, the accumulator holds 63.
pub const LONGEST_PUT: u32 = 56;

impl<const SPAN: usize> Burst<'_, SPAN> {
    /// A power of two above the whole bytes the burst has room for.
    const ROOM: usize = {
        assert!((SPAN - WRITE_SLACK).is_power_of_two());
        SPAN - WRITE_SLACK
    };

    /// Writes the low `n` bits of `value` (n <= [`LONGEST_PUT`]): one run/level pair, or a DC
    /// difference with the coefficient count after it, is one put. Past the reserved room
    /// (never, for a caller that reserved its maximum) bits land in the wrong place and
    /// [`Burst::finish`] panics.
    #[inline(always)]
    pub fn put(&mut self, value: u64, n: u32) {
        let aligned;
        (self.acc, self.pending, aligned) = append(self.acc, self.pending, value, n);
        // ROOM is a power of two above the reserved room: the mask changes nothing for a caller
        // within it, and lets the compiler drop the bounds check.
        let at = self.at & (Self::ROOM - 1);
        self.buf[at..at + WRITE_SLACK].copy_from_slice(&aligned.to_be_bytes());
        self.at += (self.pending / 8) as usize;
        self.pending %= 8;
    }

    /// Bits put so far in this burst, counting from the writer's position when it began.
    #[inline(always)]
    pub fn bits_from_start(&self) -> usize {
        self.at * 8 + self.pending as usize
    }

    /// Hands the bits to the writer. Panics if they overran the reserved room (a caller's bug).
    #[inline(always)]
    pub fn finish(self) {
        assert!(
            self.at < Self::ROOM,
            "a burst wrote {} bytes into fewer than {} bytes of room",
            self.at,
            Self::ROOM
        );
        let (pos, acc, pending) = self.home;
        (*pos, *acc, *pending) = (self.start + self.at, self.acc, self.pending);
    }
}

/// The bit stream ended before a code did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BitError {
    #[error("bit stream truncated")]
    Truncated,
    #[error("Exp-Golomb code longer than {MAX_PREFIX_ZEROS} prefix bits")]
    CodeTooLong,
}

/// Longest run-code prefix on the reader's fast path: ue(62), the longest run inside a block.
pub const FAST_RUN_PREFIX: u32 = 5;
/// Longest level-code prefix on the fast path: ue(2046), the largest valid magnitude minus one.
pub const FAST_LEVEL_PREFIX: u32 = 10;
/// Bits a fast-path run and level can take at most.
const FAST_PAIR_BITS: u32 = (2 * FAST_RUN_PREFIX + 1) + (2 * FAST_LEVEL_PREFIX + 2);

/// Reads bits MSB-first from a byte slice, never past its end.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte of `data` to load into the window.
    next: usize,
    /// Upcoming bits, left-aligned, then a single 1 (the sentinel), then zeros: the valid bits
    /// are those above the lowest set bit, so their count (at most 63) needs no variable of its
    /// own, and consuming bits is one shift. The sentinel also bounds every leading-zero count
    /// by the valid bits, which is all a code's outcome depends on: a code that fits is read
    /// from them, and one that does not is refused by how many there are.
    window: u64,
}

/// [`BitReader::window`] with no valid bits.
const EMPTY_WINDOW: u64 = 1 << 63;

/// `window & below(n) == 0` when fewer than `n` bits are valid (`n` in 1..=63): the sentinel
/// sits above the lowest `64 - n` bits.
const fn below(n: u32) -> u64 {
    (1 << (64 - n)) - 1
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        let mut r = BitReader {
            data,
            next: 0,
            window: EMPTY_WINDOW,
        };
        r.refill();
        r
    }

    pub fn bits_left(&self) -> usize {
        (self.data.len() - self.next) * 8 + self.avail() as usize
    }

    /// Valid bits in the window.
    #[inline(always)]
    fn avail(&self) -> u32 {
        63 - self.window.trailing_zeros()
    }

    /// Whether fewer than `n` (1..=63) bits are valid.
    #[inline(always)]
    fn short_of(&self, n: u32) -> bool {
        self.window & below(n) == 0
    }

    /// Tops the window up to at least 56 valid bits (at most 63), or all that is left.
    #[inline]
    fn refill(&mut self) {
        // The sentinel's index is the number of free bits, 63 - valid.
        let free = self.window.trailing_zeros();
        let valid_bits = self.window & (self.window - 1);
        // `next` never passes the end (so the slicing never panics).
        if let Some(&bytes) = self.data[self.next..].first_chunk::<8>() {
            // Whole bytes fit in `free`; the word's bits past them are dropped below the new
            // sentinel (at most 7), which goes where they started.
            let filled = valid_bits | (u64::from_be_bytes(bytes) >> (63 - free));
            let left_free = free % 8;
            self.next += (free / 8) as usize;
            self.window = ((filled >> left_free) | 1) << left_free;
        } else {
            let mut avail = 63 - free;
            let mut bits = valid_bits;
            while avail < 56 {
                let Some(&b) = self.data.get(self.next) else {
                    break;
                };
                bits |= u64::from(b) << (56 - avail);
                self.next += 1;
                avail += 8;
            }
            self.window = bits | (EMPTY_WINDOW >> avail);
        }
    }

    #[inline]
    fn consume(&mut self, n: u32) {
        // n <= valid bits <= 63 here, so the shift never reaches 64 and the sentinel stays.
        self.window <<= n;
    }

    /// Reads `n` bits (n <= 32).
    #[inline]
    pub fn get(&mut self, n: u32) -> Result<u32, BitError> {
        if n == 0 {
            return Ok(0);
        }
        if self.avail() < n {
            self.refill();
            if self.avail() < n {
                return Err(BitError::Truncated);
            }
        }
        let v = (self.window >> (64 - n)) as u32;
        self.consume(n);
        Ok(v)
    }

    #[inline]
    pub fn get_ue(&mut self) -> Result<u32, BitError> {
        if self.short_of(2 * MAX_PREFIX_ZEROS + 1) {
            self.refill();
        }
        let zeros = self.window.leading_zeros();
        let avail = self.avail();
        if zeros > MAX_PREFIX_ZEROS {
            return if zeros >= avail {
                Err(BitError::Truncated)
            } else {
                Err(BitError::CodeTooLong)
            };
        }
        let n = 2 * zeros + 1;
        if n > avail {
            return Err(BitError::Truncated);
        }
        let x = (self.window >> (64 - n)) as u32;
        self.consume(n);
        Ok(x - 1)
    }

    /// [`Self::get_ue`] of a code with at most `max_zeros` (below 20) prefix zeros, with less
    /// checking: the code's bits read as a number (the value plus one), or `None` with nothing
    /// consumed, for longer codes and near the end of the stream. The window is refilled exactly
    /// when `get_ue` would, so the caller's fallback to it reads the same bits the same way
    /// (its own refill then finds nothing to add).
    #[inline(always)]
    pub fn get_ue_code_short(&mut self, max_zeros: u32) -> Option<u32> {
        debug_assert!(max_zeros <= MAX_PREFIX_ZEROS);
        if self.short_of(2 * MAX_PREFIX_ZEROS + 1) {
            self.refill();
            if self.short_of(2 * max_zeros + 1) {
                return None;
            }
        }
        let zeros = self.window.leading_zeros();
        if zeros > max_zeros {
            return None;
        }
        let code = (self.window >> (63 - 2 * zeros)) as u32;
        self.window = (self.window << 1) << (2 * zeros);
        Some(code)
    }

    /// Reads an unsigned Exp-Golomb value and the one bit after it (a level and its sign).
    #[inline]
    pub fn get_ue_and_bit(&mut self) -> Result<(u32, bool), BitError> {
        if self.short_of(2 * MAX_PREFIX_ZEROS + 2) {
            self.refill();
        }
        let zeros = self.window.leading_zeros();
        let avail = self.avail();
        if zeros > MAX_PREFIX_ZEROS {
            return if zeros >= avail {
                Err(BitError::Truncated)
            } else {
                Err(BitError::CodeTooLong)
            };
        }
        let n = 2 * zeros + 2;
        if n > avail {
            return Err(BitError::Truncated);
        }
        let x = (self.window >> (64 - n)) as u32;
        self.consume(n);
        Ok(((x >> 1) - 1, x & 1 == 1))
    }

    /// The common case of an AC coefficient, decoded with one refill and no error paths: a run
    /// code of at most [`FAST_RUN_PREFIX`] prefix zeros (runs up to 62) followed by a level code
    /// of at most [`FAST_LEVEL_PREFIX`] (magnitudes up to 2047, so always in range). Returns the
    /// codes as numbers, `(run + 1, level code)`, the level code being the bits of
    /// ue(|level| - 1) and the sign, which read as a number are `|level| << 1 | negative`, below
    /// 4096; or `None` with nothing consumed when the codes are longer or the stream is near its
    /// end: the caller then takes the checked path.
    #[inline(always)]
    pub fn get_run_and_level_codes_fast(&mut self) -> Option<(u32, u32)> {
        if self.short_of(FAST_PAIR_BITS) {
            self.refill();
            if self.short_of(FAST_PAIR_BITS) {
                return None;
            }
        }
        // The window's next state is on the path from one coefficient to the next, so it is
        // shifted in two steps whose fixed parts (1 and 2 bits) are taken beforehand, off that
        // path: from a leading-zero count it is one add and one shift to the next window.
        let run_zeros = self.window.leading_zeros();
        if run_zeros > FAST_RUN_PREFIX {
            return None;
        }
        let after_run = (self.window << 1) << (2 * run_zeros);
        let level_zeros = after_run.leading_zeros();
        if level_zeros > FAST_LEVEL_PREFIX {
            return None;
        }
        let rest = (after_run << 2) << (2 * level_zeros);
        let step = (self.window >> (63 - 2 * run_zeros)) as u32;
        let level_code = (after_run >> (62 - 2 * level_zeros)) as u32;
        self.window = rest;
        Some((step, level_code))
    }

    #[inline]
    pub fn get_se(&mut self) -> Result<i32, BitError> {
        let m = self.get_ue()?;
        let half = (m >> 1) as i32;
        Ok(if m & 1 == 1 { half + 1 } else { -half })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb_codes_have_textbook_lengths_and_round_trip() {
        let cases: &[(u32, u32)] = &[(0, 1), (1, 3), (2, 3), (3, 5), (6, 5), (7, 7), (4094, 23)];
        let mut w = BitWriter::new(Vec::new());
        for &(v, len) in cases {
            assert_eq!(w.put_ue(v), len, "ue({v})");
        }
        for v in [-4095, -2, -1, 0, 1, 2, 4095] {
            w.put_se(v);
        }
        w.put(0b101, 3);
        w.align_to_byte();
        let buf = w.into_inner();
        let mut r = BitReader::new(&buf);
        for &(v, _) in cases {
            assert_eq!(r.get_ue().unwrap(), v);
        }
        for v in [-4095, -2, -1, 0, 1, 2, 4095] {
            assert_eq!(r.get_se().unwrap(), v);
        }
        assert_eq!(r.get(3).unwrap(), 0b101);
        assert!(r.bits_left() < 8);
        let mut w = BitWriter::new(Vec::new());
        w.put_ue(5);
        w.put(1, 1);
        w.put_ue(0);
        w.put(0, 1);
        w.align_to_byte();
        let buf = w.into_inner();
        let mut r = BitReader::new(&buf);
        assert_eq!(r.get_ue_and_bit(), Ok((5, true)));
        assert_eq!(r.get_ue_and_bit(), Ok((0, false)));
    }

    #[test]
    fn the_fast_coefficient_path_reads_what_the_checked_calls_read_or_declines() {
        let mut state = 0xdead_beef_u32;
        let mut fast_taken = 0;
        for case in 0..400u32 {
            // Valid pairs with short and long codes, then (in odd cases) random tail bytes.
            let mut w = BitWriter::new(Vec::new());
            for _ in 0..(case % 23) {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                w.put_ue((state >> 8) % if case % 3 == 0 { 100 } else { 63 });
                w.put_ue((state >> 16) % if case % 4 == 0 { 5000 } else { 40 });
                w.put(state >> 31, 1);
            }
            w.align_to_byte();
            let mut bytes = w.into_inner();
            if case % 2 == 1 {
                bytes.extend((0..case % 9).map(|i| (state >> (i % 24)) as u8));
            }
            let (mut fast, mut checked) = (BitReader::new(&bytes), BitReader::new(&bytes));
            loop {
                let expected = checked
                    .get_ue()
                    .and_then(|run| checked.get_ue_and_bit().map(|(m, s)| (run, m, s)));
                match fast.get_run_and_level_codes_fast() {
                    Some((step, level_code)) => {
                        let got = (step - 1, (level_code >> 1) - 1, level_code & 1 == 1);
                        fast_taken += 1;
                        assert_eq!(Ok(got), expected, "case {case}");
                        assert_eq!(fast.bits_left(), checked.bits_left(), "case {case}");
                    }
                    None => {
                        let slow = fast
                            .get_ue()
                            .and_then(|run| fast.get_ue_and_bit().map(|(m, s)| (run, m, s)));
                        assert_eq!(slow, expected, "case {case}");
                    }
                }
                if expected.is_err() {
                    break;
                }
            }
        }
        assert!(
            fast_taken > 1000,
            "the fast path was taken only {fast_taken} times"
        );
    }

    #[test]
    fn the_short_code_path_reads_what_get_ue_reads_or_declines_and_leaves_it_the_same() {
        let mut state = 0x0bad_cafe_u32;
        let mut short_taken = 0;
        for case in 0..600u32 {
            // Valid codes of every length, then (in odd cases) random tail bytes, and runs of
            // zero bytes (codes too long or truncated, at every alignment).
            let mut w = BitWriter::new(Vec::new());
            for _ in 0..(case % 29) {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                w.put_ue((state >> 8) % [8, 70, 9000, 60_000][(case % 4) as usize]);
            }
            w.put((state >> 29) & ((1 << (case % 7)) - 1), case % 7);
            w.align_to_byte();
            let mut bytes = w.into_inner();
            if case % 2 == 1 {
                bytes.extend((0..case % 11).map(|i| (state >> (i % 24)) as u8));
            }
            if case % 5 == 0 {
                let at = (state as usize >> 4) % (bytes.len() + 1);
                bytes.splice(at..at, std::iter::repeat_n(0, 3 + case as usize % 9));
            }
            let max_zeros = [6, 12][(case % 2) as usize];
            let (mut short, mut checked) = (BitReader::new(&bytes), BitReader::new(&bytes));
            loop {
                let expected = checked.get_ue();
                let got = match short.get_ue_code_short(max_zeros) {
                    Some(code) => {
                        short_taken += 1;
                        Ok(code - 1)
                    }
                    None => short.get_ue(),
                };
                assert_eq!(got, expected, "case {case}");
                assert_eq!(short.bits_left(), checked.bits_left(), "case {case}");
                if expected.is_err() {
                    break;
                }
            }
        }
        assert!(
            short_taken > 2000,
            "the short path was taken {short_taken} times"
        );
    }

    #[test]
    fn reader_refuses_truncated_and_overlong_codes() {
        assert_eq!(BitReader::new(&[]).get_ue(), Err(BitError::Truncated));
        assert_eq!(
            BitReader::new(&[0, 0, 0]).get_ue(),
            Err(BitError::Truncated)
        );
        assert_eq!(
            BitReader::new(&[0, 0, 0, 0, 0, 0xff]).get_ue(),
            Err(BitError::CodeTooLong)
        );
        assert_eq!(BitReader::new(&[0x01]).get_ue(), Err(BitError::Truncated));
        assert_eq!(BitReader::new(&[0xff]).get(9), Err(BitError::Truncated));
    }

    #[test]
    fn rollback_restores_the_writer_exactly() {
        let mut w = BitWriter::new(Vec::new());
        w.put(0x5, 3);
        let mark = w.mark();
        for _ in 0..20 {
            w.put_ue(1000);
        }
        w.rollback(mark);
        w.put(0x1f, 5);
        assert_eq!(w.align_to_byte(), 0);
        assert_eq!(w.into_inner(), vec![0b1011_1111]);
    }

    #[test]
    fn writes_match_a_bit_by_bit_reference_across_growth_rollback_and_appended_bytes() {
        let mut state = 0x1234_5678_u32;
        let mut w = BitWriter::new(vec![0xaa]);
        let mut reference: Vec<bool> = vec![true, false, true, false, true, false, true, false];
        for step in 0..5000u32 {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            match step % 97 {
                0 => {
                    let mark = w.mark();
                    w.put(state >> 8, 24);
                    w.put_ue(state >> 20);
                    w.rollback(mark);
                }
                1 => {
                    let padding = w.align_to_byte();
                    reference.extend(std::iter::repeat_n(false, padding as usize));
                    let byte = (state >> 24) as u8;
                    w.put_bytes(&[byte]);
                    reference.extend((0..8).rev().map(|b| byte >> b & 1 == 1));
                }
                _ => {
                    let n = state % 33;
                    let value = if n == 32 {
                        state
                    } else {
                        (state >> 3) & ((1u32 << n) - 1)
                    };
                    w.put(value, n);
                    reference.extend((0..n).rev().map(|b| value >> b & 1 == 1));
                }
            }
            assert_eq!(w.bit_len(), reference.len(), "step {step}");
        }
        w.align_to_byte();
        let bytes = w.into_inner();
        let expected: Vec<u8> = reference
            .chunks(8)
            .map(|bits| {
                bits.iter()
                    .enumerate()
                    .fold(0u8, |b, (i, &bit)| b | (u8::from(bit) << (7 - i)))
            })
            .collect();
        assert_eq!(bytes, expected);
    }
}
