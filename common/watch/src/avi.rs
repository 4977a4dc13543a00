//! MJPEG in AVI, and the archive's hourly files and size cap.
//!
//! [`AviWriter`] writes a RIFF AVI 1.0 file with one MJPG video stream, the form ffplay, VLC
//! and every editor open: `hdrl` (`avih`, `strl` with `strh` and a BITMAPINFOHEADER `strf`),
//! `movi` with one `00dc` chunk per JPEG, and `idx1` when finished. The header's sizes and frame
//! counts are rewritten by [`AviWriter::refresh_header`] (the archive calls it each second), so
//! a file cut off by a crash, kill -9 or a full disk still plays up to about its last second:
//! players read an AVI without `idx1` chunk by chunk.
//!
//! The archive's policies are plain functions: [`hour_stem`] names an hour's file (UTC, from
//! Unix seconds; no calendar crate), [`ArchiveName`] reads such a name back, and
//! [`files_to_delete`] picks which old recordings go when the archive outgrows its cap.

use std::io::{self, Seek, SeekFrom, Write};

/// The largest file an [`AviWriter`] writes: AVI 1.0 sizes are 32-bit, and 1 GiB is where
/// ffmpeg's own muxer stops an AVI 1.0 RIFF (OpenDML readers are not needed to read it). The
/// archive starts a new part of the hour beyond it.
pub const MAX_AVI_BYTES: u64 = 1 << 30;

/// `avih` flag: the file has an `idx1` index (set by [`AviWriter::finish`] only, so a file cut
/// off before its index does not claim one).
const AVIF_HASINDEX: u32 = 0x10;
/// `idx1` flag: the chunk is a key frame (every JPEG is).
const AVIIF_KEYFRAME: u32 = 0x10;

/// Header bytes before the first frame, fixed for this writer's layout (see [`AviWriter::new`]).
const HEADER_LEN: u64 = 12 + 12 + 8 + 56 + 12 + 8 + 56 + 8 + 40 + 12;
/// Where the layout's patched fields are, from the start of the file.
const RIFF_SIZE_AT: u64 = 4;
const AVIH_AT: u64 = 12 + 12 + 8;
const MOVI_SIZE_AT: u64 = HEADER_LEN - 8;
/// The offset `idx1` entries count from: the `movi` fourcc.
const MOVI_FOURCC_AT: u64 = HEADER_LEN - 4;

/// Writes MJPEG frames into an AVI file (see the module documentation).
#[derive(Debug)]
pub struct AviWriter<W: Write + Seek> {
    out: W,
    width: u32,
    height: u32,
    fps: u32,
    /// `idx1` entries: offset from the `movi` fourcc and length of each frame's chunk.
    index: Vec<(u32, u32)>,
    /// Bytes written so far: where the next chunk goes.
    len: u64,
    largest: u32,
    /// [`MAX_AVI_BYTES`], lowered by the tests.
    max_bytes: u64,
}

impl<W: Write + Seek> AviWriter<W> {
    /// Starts a file of `width` x `height` pictures at `fps` frames a second on `out`, writing
    /// the header at its start position, which must be 0 (a fresh file).
    pub fn new(mut out: W, width: u32, height: u32, fps: u32) -> io::Result<Self> {
        if out.stream_position()? != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an AVI file must start at the beginning of its output",
            ));
        }
        if width == 0 || height == 0 || fps == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot record {width}x{height} pictures at {fps} fps"),
            ));
        }
        let mut writer = AviWriter {
            out,
            width,
            height,
            fps,
            index: Vec::new(),
            len: HEADER_LEN,
            largest: 0,
            max_bytes: MAX_AVI_BYTES,
        };
        let header = writer.header(0);
        writer.out.write_all(&header)?;
        Ok(writer)
    }

    /// Frames written.
    pub fn frames(&self) -> u64 {
        self.index.len() as u64
    }

    /// Bytes written (the file's size once finished, less the index).
    pub fn bytes(&self) -> u64 {
        self.len
    }

    /// Whether a JPEG of `len` bytes still fits under [`MAX_AVI_BYTES`] with the index.
    pub fn has_room_for(&self, len: usize) -> bool {
        let chunk = 8 + (len as u64).next_multiple_of(2);
        let index = 8 + 16 * (self.frames() + 1);
        self.len + chunk + index <= self.max_bytes
    }

    /// Appends one JPEG as the next frame. Refused (the file unchanged) when it does not fit
    /// (see [`AviWriter::has_room_for`]).
    pub fn push_jpeg(&mut self, jpeg: &[u8]) -> io::Result<()> {
        if !self.has_room_for(jpeg.len()) {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!(
                    "a {} byte frame would take the AVI file past {} bytes",
                    jpeg.len(),
                    self.max_bytes
                ),
            ));
        }
        // Within MAX_AVI_BYTES, so both fit 32 bits.
        let len = jpeg.len() as u32;
        let offset = (self.len - MOVI_FOURCC_AT) as u32;
        self.out.write_all(b"00dc")?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(jpeg)?;
        if len % 2 == 1 {
            // RIFF chunks are word-aligned; the size field keeps the unpadded length.
            self.out.write_all(&[0])?;
        }
        self.len += 8 + u64::from(len).next_multiple_of(2);
        self.index.push((offset, len));
        self.largest = self.largest.max(len);
        Ok(())
    }

    /// Rewrites the header for the frames written so far (sizes, frame counts, buffer size) and
    /// flushes, so that a file cut off after this plays up to here. Two seeks and a flush.
    pub fn refresh_header(&mut self) -> io::Result<()> {
        self.patch_header(0, self.len)?;
        self.out.flush()
    }

    /// Writes the index and the final header, flushes and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        let mut idx1 = Vec::with_capacity(8 + 16 * self.index.len());
        idx1.extend_from_slice(b"idx1");
        idx1.extend_from_slice(&((16 * self.index.len()) as u32).to_le_bytes());
        for &(offset, len) in &self.index {
            idx1.extend_from_slice(b"00dc");
            for word in [AVIIF_KEYFRAME, offset, len] {
                idx1.extend_from_slice(&word.to_le_bytes());
            }
        }
        self.out.write_all(&idx1)?;
        let movi_end = self.len;
        self.len += idx1.len() as u64;
        self.patch_header(AVIF_HASINDEX, movi_end)?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// The output, to sync it to disk (the archive does once a minute) or inspect it.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Rewrites the patched fields for a `movi` list ending at `movi_end` and a file of
    /// `self.len` bytes, then returns to the end.
    fn patch_header(&mut self, flags: u32, movi_end: u64) -> io::Result<()> {
        let header = self.header(flags);
        let movi_size = (movi_end - MOVI_SIZE_AT - 4) as u32;
        self.out.seek(SeekFrom::Start(RIFF_SIZE_AT))?;
        self.out.write_all(&((self.len - 8) as u32).to_le_bytes())?;
        // avih through strf: every count and size the header holds.
        self.out.seek(SeekFrom::Start(AVIH_AT))?;
        self.out
            .write_all(&header[AVIH_AT as usize..MOVI_SIZE_AT as usize])?;
        self.out.write_all(&movi_size.to_le_bytes())?;
        self.out.seek(SeekFrom::Start(self.len))?;
        Ok(())
    }

    /// The header for the frames so far; `RIFF` and `movi` sizes as for no frames (patched
    /// separately).
    fn header(&self, flags: u32) -> Vec<u8> {
        let frames = self.index.len() as u32;
        let buffer = self.largest.next_multiple_of(2) + 8;
        let (w, h, fps) = (self.width, self.height, self.fps);
        let mut out = Vec::with_capacity(HEADER_LEN as usize);
        let put = |out: &mut Vec<u8>, words: &[u32]| {
            for w in words {
                out.extend_from_slice(&w.to_le_bytes());
            }
        };
        out.extend_from_slice(b"RIFF");
        put(&mut out, &[(HEADER_LEN - 8) as u32]);
        out.extend_from_slice(b"AVI LIST");
        put(&mut out, &[4 + 8 + 56 + 12 + 8 + 56 + 8 + 40]);
        out.extend_from_slice(b"hdrlavih");
        put(&mut out, &[56]);
        put(
            &mut out,
            &[
                1_000_000 / fps,            // dwMicroSecPerFrame
                buffer.saturating_mul(fps), // dwMaxBytesPerSec
                0,                          // dwPaddingGranularity
                flags,                      // dwFlags
                frames,                     // dwTotalFrames
                0,                          // dwInitialFrames
                1,                          // dwStreams
                buffer,                     // dwSuggestedBufferSize
                w,
                h,
                0,
                0,
                0,
                0, // dwReserved
            ],
        );
        out.extend_from_slice(b"LIST");
        put(&mut out, &[4 + 8 + 56 + 8 + 40]);
        out.extend_from_slice(b"strlstrh");
        put(&mut out, &[56]);
        out.extend_from_slice(b"vidsMJPG");
        put(
            &mut out,
            &[
                0,                                   // dwFlags
                0,                                   // wPriority, wLanguage
                0,                                   // dwInitialFrames
                1,                                   // dwScale
                fps,                                 // dwRate: fps / 1 frames a second
                0,                                   // dwStart
                frames,                              // dwLength
                buffer,                              // dwSuggestedBufferSize
                u32::MAX,                            // dwQuality: the default
                0,                                   // dwSampleSize: frames vary in size
                0,                                   // rcFrame left, top
                (w & 0xffff) | ((h & 0xffff) << 16), // rcFrame right, bottom
            ],
        );
        out.extend_from_slice(b"strf");
        put(&mut out, &[40, 40, w, h]);
        // biPlanes 1, biBitCount 24 (what decoders of MJPG expect).
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&24u16.to_le_bytes());
        out.extend_from_slice(b"MJPG");
        put(
            &mut out,
            &[w.saturating_mul(h).saturating_mul(3), 0, 0, 0, 0],
        );
        out.extend_from_slice(b"LIST");
        put(&mut out, &[4]);
        out.extend_from_slice(b"movi");
        debug_assert_eq!(out.len() as u64, HEADER_LEN);
        out
    }
}

/// The file stem of the recording that holds Unix second `unix_s`: `keymash-YYYYMMDD-HH`, the
/// UTC hour (the exhibit's clock may change with the season; file names should not).
pub fn hour_stem(unix_s: u64) -> String {
    let hour = unix_s / 3600;
    let (year, month, day) = civil_from_days(hour / 24);
    format!("keymash-{year:04}{month:02}{day:02}-{:02}", hour % 24)
}

/// The Unix second the hour after the one holding `unix_s` starts: when the archive rotates.
pub fn next_hour_start(unix_s: u64) -> u64 {
    (unix_s / 3600 + 1) * 3600
}

/// The (year, month, day) of day `days` since 1970-01-01, in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// A recording's name read back: the hour it began in and its part (1 for the hour's first
/// file; a restarted archive or a full file starts the next part, `<hour stem>-<part>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArchiveName {
    /// `YYYYMMDDHH` as a number: orders like the time.
    pub hour: u64,
    pub part: u32,
}

impl ArchiveName {
    /// The stem of part `part` of the hour holding `unix_s`.
    pub fn stem(unix_s: u64, part: u32) -> String {
        let hour = hour_stem(unix_s);
        if part <= 1 {
            hour
        } else {
            format!("{hour}-{part}")
        }
    }

    /// Reads a stem written by [`ArchiveName::stem`]; anything else (a file someone put there)
    /// is `None`, and the archive leaves it alone.
    pub fn parse(stem: &str) -> Option<ArchiveName> {
        let rest = stem.strip_prefix("keymash-")?;
        let (date, rest) = rest.split_at_checked(8)?;
        let rest = rest.strip_prefix('-')?;
        let (hour, part) = match rest.split_once('-') {
            Some((hour, part)) => (hour, part.parse::<u32>().ok().filter(|&p| p >= 2)?),
            None => (rest, 1),
        };
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(date, 8) || !digits(hour, 2) {
            return None;
        }
        let hour: u64 = format!("{date}{hour}").parse().ok()?;
        Some(ArchiveName { hour, part })
    }
}

/// One recording in the archive directory: its stem and the bytes of its files (`.avi` and
/// `.jsonl` together).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    pub stem: String,
    pub bytes: u64,
}

/// The stems of the recordings to delete, oldest first, so that the archive's recordings total
/// at most `cap_bytes`. `current` (the file being written) is never chosen, however large;
/// names the archive did not write are neither counted nor chosen.
pub fn files_to_delete(recordings: &[Recording], cap_bytes: u64, current: &str) -> Vec<String> {
    let mut ours: Vec<(ArchiveName, &Recording)> = recordings
        .iter()
        .filter_map(|r| ArchiveName::parse(&r.stem).map(|name| (name, r)))
        .collect();
    ours.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.stem.cmp(&b.1.stem)));
    let mut total: u64 = ours.iter().map(|(_, r)| r.bytes).sum();
    let mut doomed = Vec::new();
    for (_, recording) in ours {
        if total <= cap_bytes {
            break;
        }
        if recording.stem == current {
            continue;
        }
        total -= recording.bytes;
        doomed.push(recording.stem.clone());
    }
    doomed
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    /// What a RIFF reader finds in an AVI file: checks every size against the bytes.
    #[derive(Debug)]
    struct Parsed {
        avih_frames: u32,
        strh_length: u32,
        flags: u32,
        width: u32,
        height: u32,
        rate: u32,
        frames: Vec<Vec<u8>>,
        index: Option<Vec<(u32, u32)>>,
    }

    fn parse(file: &[u8]) -> Parsed {
        assert_eq!(&file[0..4], b"RIFF");
        assert_eq!(u32_at(file, 4) as usize, file.len() - 8, "RIFF size");
        assert_eq!(&file[8..12], b"AVI ");
        let mut at = 12;
        let (mut hdrl, mut movi, mut idx1) = (None, None, None);
        while at < file.len() {
            let id = &file[at..at + 4];
            let size = u32_at(file, at + 4) as usize;
            let body = &file[at + 8..at + 8 + size];
            match id {
                b"LIST" if &body[..4] == b"hdrl" => hdrl = Some(body),
                b"LIST" if &body[..4] == b"movi" => movi = Some((at + 8, body)),
                b"idx1" => idx1 = Some(body),
                other => panic!("unexpected chunk {other:?}"),
            }
            at += 8 + size.next_multiple_of(2);
        }
        assert_eq!(at, file.len(), "chunks fill the file exactly");
        let hdrl = hdrl.unwrap();
        assert_eq!(&hdrl[4..8], b"avih");
        assert_eq!(u32_at(hdrl, 8), 56);
        let avih = &hdrl[12..68];
        let strl = &hdrl[68..];
        assert_eq!(&strl[0..4], b"LIST");
        assert_eq!(u32_at(strl, 4) as usize, strl.len() - 8, "strl size");
        assert_eq!(&strl[8..16], b"strlstrh");
        let strh = &strl[20..76];
        assert_eq!(&strh[0..8], b"vidsMJPG");
        assert_eq!(&strl[76..80], b"strf");
        let strf = &strl[84..124];
        assert_eq!(u32_at(strf, 0), 40);
        assert_eq!(&strf[16..20], b"MJPG");
        let (movi_at, movi) = movi.unwrap();
        let mut frames = Vec::new();
        let mut chunk = 4;
        while chunk < movi.len() {
            assert_eq!(&movi[chunk..chunk + 4], b"00dc");
            let size = u32_at(movi, chunk + 4) as usize;
            frames.push(movi[chunk + 8..chunk + 8 + size].to_vec());
            chunk += 8 + size.next_multiple_of(2);
        }
        assert_eq!(chunk, movi.len(), "movi chunks fill the list");
        let index = idx1.map(|idx1| {
            idx1.chunks(16)
                .map(|e| {
                    assert_eq!(&e[0..4], b"00dc");
                    assert_eq!(u32_at(e, 4), AVIIF_KEYFRAME);
                    let (offset, len) = (u32_at(e, 8), u32_at(e, 12));
                    // Offsets count from the movi fourcc and point at the chunk's id.
                    let abs = movi_at + offset as usize;
                    assert_eq!(&file[abs..abs + 4], b"00dc");
                    assert_eq!(u32_at(file, abs + 4), len);
                    (offset, len)
                })
                .collect()
        });
        Parsed {
            avih_frames: u32_at(avih, 16),
            strh_length: u32_at(strh, 32),
            flags: u32_at(avih, 12),
            width: u32_at(strf, 4),
            height: u32_at(strf, 8),
            rate: u32_at(strh, 24),
            frames,
            index,
        }
    }

    fn jpeg_like(n: usize, len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + n) as u8).collect()
    }

    #[test]
    fn a_finished_file_holds_every_frame_with_consistent_sizes_and_an_index() {
        let mut avi = AviWriter::new(Cursor::new(Vec::new()), 320, 240, 5).unwrap();
        // Odd and even lengths: odd ones are padded.
        let frames: Vec<Vec<u8>> = (0..7).map(|n| jpeg_like(n, 1000 + n * 37)).collect();
        for f in &frames {
            avi.push_jpeg(f).unwrap();
        }
        assert_eq!(avi.frames(), 7);
        let written = avi.bytes();
        let file = avi.finish().unwrap().into_inner();
        assert_eq!(file.len() as u64, written + 8 + 7 * 16);
        let parsed = parse(&file);
        assert_eq!(parsed.frames, frames);
        assert_eq!((parsed.avih_frames, parsed.strh_length), (7, 7));
        assert_eq!((parsed.width, parsed.height, parsed.rate), (320, 240, 5));
        assert_eq!(parsed.flags, AVIF_HASINDEX);
        assert_eq!(parsed.index.unwrap().len(), 7);
    }

    #[test]
    fn a_file_cut_after_a_header_refresh_reads_as_the_frames_before_it() {
        let mut avi = AviWriter::new(Cursor::new(Vec::new()), 640, 480, 5).unwrap();
        for n in 0..4 {
            avi.push_jpeg(&jpeg_like(n, 501)).unwrap();
        }
        avi.refresh_header().unwrap();
        // Cut here (kill -9): the file is exactly as long as its header says.
        let cut = avi.get_mut().get_ref().clone();
        let parsed = parse(&cut);
        assert_eq!(parsed.frames.len(), 4);
        assert_eq!((parsed.avih_frames, parsed.strh_length), (4, 4));
        assert_eq!(parsed.flags, 0, "no index claimed");
        assert!(parsed.index.is_none());
        // Writing goes on at the end after the refresh, and the finished file is whole.
        for n in 4..9 {
            avi.push_jpeg(&jpeg_like(n, 800)).unwrap();
        }
        avi.refresh_header().unwrap();
        avi.push_jpeg(&jpeg_like(9, 3)).unwrap();
        let file = avi.finish().unwrap().into_inner();
        let parsed = parse(&file);
        assert_eq!(parsed.frames.len(), 10);
        assert_eq!(parsed.avih_frames, 10);
        assert_eq!(parsed.frames[9], jpeg_like(9, 3));
    }

    #[test]
    fn an_empty_file_is_still_a_valid_avi() {
        let avi = AviWriter::new(Cursor::new(Vec::new()), 32, 16, 1).unwrap();
        let parsed = parse(&avi.finish().unwrap().into_inner());
        assert!(parsed.frames.is_empty());
        assert_eq!(parsed.index, Some(vec![]));
    }

    #[test]
    fn frames_past_the_avi_1_0_size_limit_are_refused() {
        let mut avi = AviWriter::new(Cursor::new(Vec::new()), 32, 16, 1).unwrap();
        assert!(avi.has_room_for(1000));
        assert!(!avi.has_room_for(MAX_AVI_BYTES as usize));
        // The same at a limit a test can reach: one 1000-byte frame fits, a second does not.
        avi.max_bytes = HEADER_LEN + 2 * (8 + 1000) + 8 + 16;
        avi.push_jpeg(&[0; 1000]).unwrap();
        assert!(!avi.has_room_for(1000));
        let err = avi.push_jpeg(&[0; 1000]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(avi.frames(), 1);
        let finished = avi.finish().unwrap().into_inner();
        assert!(finished.len() as u64 <= HEADER_LEN + 2 * (8 + 1000) + 8 + 16);
        assert_eq!(parse(&finished).frames.len(), 1);
        assert!(AviWriter::new(Cursor::new(Vec::new()), 0, 16, 1).is_err());
        assert!(AviWriter::new(Cursor::new(Vec::new()), 32, 16, 0).is_err());
    }

    #[test]
    fn hour_stems_are_the_utc_date_and_hour() {
        let cases = [
            (0, "keymash-19700101-00"),
            (3599, "keymash-19700101-00"),
            (3600, "keymash-19700101-01"),
            (951_782_400, "keymash-20000229-00"), // a leap day of a century leap year
            (1_709_251_199, "keymash-20240229-23"),
            (1_709_251_200, "keymash-20240301-00"),
            (1_735_689_599, "keymash-20241231-23"),
            (1_796_137_200, "keymash-20261201-15"),
            (4_102_444_800, "keymash-21000101-00"),
        ];
        for (unix_s, stem) in cases {
            assert_eq!(hour_stem(unix_s), stem, "{unix_s}");
        }
        assert_eq!(next_hour_start(1_796_137_200), 1_796_140_800);
        assert_eq!(next_hour_start(1_796_140_799), 1_796_140_800);
    }

    #[test]
    fn archive_names_read_back_and_foreign_names_do_not() {
        let t = 1_796_137_200;
        assert_eq!(ArchiveName::stem(t, 1), "keymash-20261201-15");
        assert_eq!(ArchiveName::stem(t, 3), "keymash-20261201-15-3");
        assert_eq!(
            ArchiveName::parse("keymash-20261201-15"),
            Some(ArchiveName {
                hour: 2026120115,
                part: 1
            })
        );
        assert_eq!(
            ArchiveName::parse(&ArchiveName::stem(t, 12)).map(|n| n.part),
            Some(12)
        );
        for foreign in [
            "keymash-2026120-15",
            "keymash-20261201-1",
            "keymash-20261201-15-1",
            "keymash-20261201-15-x",
            "holiday-20261201-15",
            "keymash-20261201-15-",
            "keymash-2026120a-15",
        ] {
            assert_eq!(ArchiveName::parse(foreign), None, "{foreign}");
        }
        // Part 10 sorts after part 2, and the next hour after both.
        let mut names = [
            "keymash-20261201-16",
            "keymash-20261201-15-10",
            "keymash-20261201-15-2",
        ]
        .map(|s| ArchiveName::parse(s).unwrap());
        names.sort();
        assert_eq!(
            names.map(|n| (n.hour % 100, n.part)),
            [(15, 2), (15, 10), (16, 1)]
        );
    }

    #[test]
    fn the_oldest_recordings_go_first_and_never_the_current_one() {
        let r = |stem: &str, bytes| Recording {
            stem: stem.to_owned(),
            bytes,
        };
        let recordings = [
            r("keymash-20261201-15", 100),
            r("keymash-20261130-23", 100),
            r("keymash-20261201-15-10", 100),
            r("keymash-20261201-15-2", 100),
            r("my-holiday-video", 10_000),
        ];
        // 400 of ours: under the cap, nothing goes; foreign files do not count.
        assert!(files_to_delete(&recordings, 400, "keymash-20261201-15-10").is_empty());
        assert_eq!(
            files_to_delete(&recordings, 250, "keymash-20261201-15-10"),
            ["keymash-20261130-23", "keymash-20261201-15"]
        );
        // The current file is skipped even when it is the oldest.
        assert_eq!(
            files_to_delete(&recordings, 150, "keymash-20261130-23"),
            [
                "keymash-20261201-15",
                "keymash-20261201-15-2",
                "keymash-20261201-15-10"
            ]
        );
        // A current file larger than the cap on its own: everything else goes, it stays.
        let big = [r("keymash-20261201-14", 10), r("keymash-20261201-15", 500)];
        assert_eq!(
            files_to_delete(&big, 100, "keymash-20261201-15"),
            ["keymash-20261201-14"]
        );
    }
}
