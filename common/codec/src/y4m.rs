//! YUV4MPEG2 (Y4M) reading and writing for 8-bit 4:2:0 video, as ffmpeg writes it.
//!
//! Headers are parsed strictly: `W` and `H` are required and must make a [`FrameGeometry`];
//! `C` must be one of the 8-bit 4:2:0 variants (`420`, `420jpeg`, `420paldv`, `420mpeg2`, which
//! differ only in chroma siting) or absent (the format's default, 4:2:0); anything else (4:2:2,
//! 4:4:4, mono, high bit depth) is refused by name. `F`, `I`, `A` and `X` are kept and written back.
//! Wrap files in `BufReader`/`BufWriter`: headers are read a byte at a time.

use crate::frame::{I420Frame, I420View};
use crate::geometry::{FrameGeometry, GeometryError};
use std::io::{self, Read, Write};

const SIGNATURE: &str = "YUV4MPEG2";
const FRAME_MARKER: &str = "FRAME";
/// Longest header or frame line accepted, so a garbage file cannot make us read forever.
pub const MAX_LINE_LEN: usize = 4096;

/// Why a Y4M stream was refused.
#[derive(Debug, thiserror::Error)]
pub enum Y4mError {
    #[error("reading or writing Y4M failed: {0}")]
    Io(#[from] io::Error),
    #[error("not a Y4M stream: it does not start with \"YUV4MPEG2 \"")]
    NotY4m,
    #[error("Y4M header or frame line longer than {MAX_LINE_LEN} bytes")]
    LineTooLong,
    #[error("Y4M header line is not ASCII text")]
    NotText,
    #[error("Y4M header lacks the {0} parameter")]
    MissingParameter(&'static str),
    #[error("Y4M parameter {param} has an invalid value {value:?}")]
    BadParameter { param: char, value: String },
    #[error("Y4M colour space C{0} is not supported: only 8-bit 4:2:0 (C420, C420jpeg, C420paldv, C420mpeg2)")]
    UnsupportedColorspace(String),
    #[error("Y4M frame size refused: {0}")]
    Geometry(#[from] GeometryError),
    #[error("expected a FRAME line, found {0:?}")]
    BadFrameMarker(String),
    #[error("Y4M stream ends in the middle of a frame")]
    TruncatedFrame,
    #[error("frame to write is {got}, the stream is {expected}")]
    GeometryMismatch {
        expected: FrameGeometry,
        got: FrameGeometry,
    },
}

/// The 4:2:0 chroma sitings Y4M names; the samples are the same, only their placement differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Chroma420 {
    /// `C420jpeg` (and the default when `C` is absent): centred, as JPEG.
    #[default]
    Jpeg,
    /// `C420`: ffmpeg's name for left-sited MPEG-2 style.
    Plain,
    /// `C420paldv`.
    PalDv,
    /// `C420mpeg2`.
    Mpeg2,
}

impl Chroma420 {
    fn parse(value: &str) -> Result<Self, Y4mError> {
        match value {
            "420jpeg" => Ok(Chroma420::Jpeg),
            "420" => Ok(Chroma420::Plain),
            "420paldv" => Ok(Chroma420::PalDv),
            "420mpeg2" => Ok(Chroma420::Mpeg2),
            other => Err(Y4mError::UnsupportedColorspace(other.to_owned())),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Chroma420::Jpeg => "420jpeg",
            Chroma420::Plain => "420",
            Chroma420::PalDv => "420paldv",
            Chroma420::Mpeg2 => "420mpeg2",
        }
    }
}

/// A stream header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Y4mHeader {
    pub geometry: FrameGeometry,
    pub chroma: Chroma420,
    /// `F` as written (e.g. "30:1"), if present.
    pub frame_rate: Option<String>,
    /// `I` as written (e.g. "p"), if present.
    pub interlacing: Option<String>,
    /// `A` as written (e.g. "1:1"), if present.
    pub pixel_aspect: Option<String>,
    /// `X` comments, in order.
    pub comments: Vec<String>,
}

impl Y4mHeader {
    /// A progressive 4:2:0 header with the given size and frame rate (e.g. "30:1").
    pub fn new(geometry: FrameGeometry, frame_rate: &str) -> Self {
        Y4mHeader {
            geometry,
            chroma: Chroma420::Jpeg,
            frame_rate: Some(frame_rate.to_owned()),
            interlacing: Some("p".to_owned()),
            pixel_aspect: Some("1:1".to_owned()),
            comments: Vec::new(),
        }
    }

    /// Parses the header line without its signature and newline, e.g. `W640 H480 F30:1 C420jpeg`.
    pub fn parse_params(line: &str) -> Result<Self, Y4mError> {
        let (mut width, mut height, mut chroma) = (None, None, Chroma420::default());
        let (mut frame_rate, mut interlacing, mut pixel_aspect) = (None, None, None);
        let mut comments = Vec::new();
        for token in line.split(' ').filter(|t| !t.is_empty()) {
            let mut chars = token.chars();
            let Some(param) = chars.next() else { continue };
            let value = chars.as_str();
            let bad = || Y4mError::BadParameter {
                param,
                value: value.to_owned(),
            };
            match param {
                'W' => width = Some(value.parse::<usize>().map_err(|_| bad())?),
                'H' => height = Some(value.parse::<usize>().map_err(|_| bad())?),
                'C' => chroma = Chroma420::parse(value)?,
                'F' | 'A' => {
                    let ok = value
                        .split_once(':')
                        .is_some_and(|(n, d)| n.parse::<u32>().is_ok() && d.parse::<u32>().is_ok());
                    if !ok {
                        return Err(bad());
                    }
                    if param == 'F' {
                        frame_rate = Some(value.to_owned());
                    } else {
                        pixel_aspect = Some(value.to_owned());
                    }
                }
                'I' => interlacing = Some(value.to_owned()),
                'X' => comments.push(value.to_owned()),
                _ => return Err(bad()),
            }
        }
        let width = width.ok_or(Y4mError::MissingParameter("W (width)"))?;
        let height = height.ok_or(Y4mError::MissingParameter("H (height)"))?;
        let geometry = FrameGeometry::new(width, height)?;
        Ok(Y4mHeader {
            geometry,
            chroma,
            frame_rate,
            interlacing,
            pixel_aspect,
            comments,
        })
    }

    fn to_line(&self) -> String {
        let mut line = format!(
            "{SIGNATURE} W{} H{}",
            self.geometry.width(),
            self.geometry.height()
        );
        for (p, v) in [
            ('F', &self.frame_rate),
            ('I', &self.interlacing),
            ('A', &self.pixel_aspect),
        ] {
            if let Some(v) = v {
                line.push_str(&format!(" {p}{v}"));
            }
        }
        line.push_str(&format!(" C{}", self.chroma.name()));
        for x in &self.comments {
            line.push_str(&format!(" X{x}"));
        }
        line.push('\n');
        line
    }
}

/// Reads one line (without the newline); `None` at a clean end of stream before any byte.
fn read_line<R: Read>(r: &mut R) -> Result<Option<String>, Y4mError> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match r.read(&mut byte) {
            Ok(0) if line.is_empty() => return Ok(None),
            Ok(0) => return Err(Y4mError::TruncatedFrame),
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => {
                if line.len() >= MAX_LINE_LEN {
                    return Err(Y4mError::LineTooLong);
                }
                line.push(byte[0]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| Y4mError::NotText)
}

/// Reads frames from a Y4M stream.
#[derive(Debug)]
pub struct Y4mReader<R> {
    inner: R,
    header: Y4mHeader,
}

impl<R: Read> Y4mReader<R> {
    /// Reads and checks the stream header.
    pub fn new(mut inner: R) -> Result<Self, Y4mError> {
        let line = read_line(&mut inner)
            .map_err(|e| match e {
                Y4mError::NotText | Y4mError::LineTooLong | Y4mError::TruncatedFrame => {
                    Y4mError::NotY4m
                }
                other => other,
            })?
            .ok_or(Y4mError::NotY4m)?;
        let params = line
            .strip_prefix(SIGNATURE)
            .and_then(|rest| rest.strip_prefix(' '))
            .ok_or(Y4mError::NotY4m)?;
        let header = Y4mHeader::parse_params(params)?;
        Ok(Y4mReader { inner, header })
    }

    pub fn header(&self) -> &Y4mHeader {
        &self.header
    }

    /// Reads the next frame into `frame` (which must have the stream's geometry). Returns false
    /// at the end of the stream.
    pub fn read_frame(&mut self, frame: &mut I420Frame) -> Result<bool, Y4mError> {
        if frame.geometry() != self.header.geometry {
            return Err(Y4mError::GeometryMismatch {
                expected: self.header.geometry,
                got: frame.geometry(),
            });
        }
        let Some(line) = read_line(&mut self.inner)? else {
            return Ok(false);
        };
        if line != FRAME_MARKER && !line.starts_with("FRAME ") {
            let shown: String = line.chars().take(32).collect();
            return Err(Y4mError::BadFrameMarker(shown));
        }
        let (y, u, v) = frame.planes_mut();
        for plane in [y, u, v] {
            self.inner.read_exact(plane).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => Y4mError::TruncatedFrame,
                _ => Y4mError::Io(e),
            })?;
        }
        Ok(true)
    }
}

/// Writes frames as a Y4M stream.
#[derive(Debug)]
pub struct Y4mWriter<W: Write> {
    inner: W,
    geometry: FrameGeometry,
}

impl<W: Write> Y4mWriter<W> {
    /// Writes the stream header.
    pub fn new(mut inner: W, header: &Y4mHeader) -> Result<Self, Y4mError> {
        inner.write_all(header.to_line().as_bytes())?;
        Ok(Y4mWriter {
            inner,
            geometry: header.geometry,
        })
    }

    pub fn write_frame(&mut self, frame: I420View<'_>) -> Result<(), Y4mError> {
        if frame.geometry() != self.geometry {
            return Err(Y4mError::GeometryMismatch {
                expected: self.geometry,
                got: frame.geometry(),
            });
        }
        self.inner.write_all(b"FRAME\n")?;
        self.inner.write_all(frame.y())?;
        self.inner.write_all(frame.u())?;
        self.inner.write_all(frame.v())?;
        Ok(())
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> Result<W, Y4mError> {
        self.inner.flush()?;
        Ok(self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_ffmpeg_writes_are_accepted() {
        let cases = [
            (
                "W640 H480 F25:1 Ip A1:1 C420jpeg XYSCSS=420JPEG",
                Chroma420::Jpeg,
            ),
            (
                "W1280 H720 F30000:1001 Ip A0:0 C420mpeg2 XCOLORRANGE=LIMITED",
                Chroma420::Mpeg2,
            ),
            ("W32 H16 C420paldv", Chroma420::PalDv),
            ("W32 H16 C420", Chroma420::Plain),
            ("W32 H16", Chroma420::Jpeg),
        ];
        for (line, chroma) in cases {
            let h = Y4mHeader::parse_params(line).unwrap();
            assert_eq!(h.chroma, chroma, "{line}");
        }
    }

    #[test]
    fn headers_outside_8_bit_420_or_malformed_are_refused_with_their_cause() {
        let cases: &[(&str, &str)] = &[
            ("W640 H480 C422", "UnsupportedColorspace"),
            ("W640 H480 C444", "UnsupportedColorspace"),
            ("W640 H480 Cmono", "UnsupportedColorspace"),
            ("W640 H480 C420p10", "UnsupportedColorspace"),
            ("H480 C420", "MissingParameter"),
            ("W640 C420", "MissingParameter"),
            ("W64x H480", "BadParameter"),
            ("W640 H480 Fabc", "BadParameter"),
            ("W640 H480 Z1", "BadParameter"),
            ("W641 H480", "Geometry"),
            ("W1920 H1080", "Geometry"),
        ];
        for &(line, cause) in cases {
            let err = Y4mHeader::parse_params(line).unwrap_err();
            assert!(format!("{err:?}").starts_with(cause), "{line}: {err:?}");
        }
    }

    #[test]
    fn frames_round_trip_through_writer_and_reader() {
        let g = FrameGeometry::new(32, 16).unwrap();
        let mut header = Y4mHeader::new(g, "30:1");
        header.comments.push("COLORRANGE=FULL".into());
        let mut frame = I420Frame::grey(g);
        frame.planes_mut().0[5] = 7;
        let mut w = Y4mWriter::new(Vec::new(), &header).unwrap();
        w.write_frame(frame.view()).unwrap();
        w.write_frame(I420Frame::grey(g).view()).unwrap();
        let bytes = w.finish().unwrap();
        let mut r = Y4mReader::new(&bytes[..]).unwrap();
        assert_eq!(r.header(), &header);
        let mut got = I420Frame::grey(g);
        assert!(r.read_frame(&mut got).unwrap());
        assert_eq!(got, frame);
        assert!(r.read_frame(&mut got).unwrap());
        assert!(!r.read_frame(&mut got).unwrap());
        let mut cut = Y4mReader::new(&bytes[..bytes.len() - 1]).unwrap();
        assert!(cut.read_frame(&mut got).unwrap());
        assert!(matches!(
            cut.read_frame(&mut got),
            Err(Y4mError::TruncatedFrame)
        ));
    }

    #[test]
    fn non_y4m_input_is_refused() {
        for input in [&b""[..], b"RIFF....", b"YUV4MPEG2W640", &[0xff; 5000]] {
            assert!(
                matches!(Y4mReader::new(input), Err(Y4mError::NotY4m)),
                "{input:?}"
            );
        }
    }
}
