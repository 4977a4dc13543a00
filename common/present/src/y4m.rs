//! The `y4m:PATH` output: a YUV4MPEG2 stream of the composited pictures, each `FRAME` line
//! tagged with the number of the stream frame it shows (`FRAME Xkeymash-frame=123`).
//!
//! X-parameters are the format's extension point and players (ffmpeg, mpv) skip them; the tag
//! lets a test or an analysis script match every shown picture with the frame that was sent.

use std::io::{self, Write};

use keymash_codec::I420View;
use keymash_core::FrameNo;

/// The X-parameter carrying the frame number.
pub const FRAME_TAG: &str = "Xkeymash-frame=";
/// The X-parameter marking a picture that is a card, not a stream frame
/// (`FRAME Xkeymash-frame=123 Xkeymash-card=signal-lost`): the frame number is then the last
/// frame shown before it, so readers that only know [`FRAME_TAG`] still parse the line, and a
/// reader that matches pictures with sent frames skips cards with [`is_card`].
pub const CARD_TAG: &str = "Xkeymash-card=";

/// A Y4M stream being written.
#[derive(Debug)]
pub struct Y4mStream<W: Write> {
    out: W,
    width: usize,
    height: usize,
}

impl<W: Write> Y4mStream<W> {
    /// Writes the stream header: 4:2:0 (mpeg2 siting), progressive, square pixels.
    pub fn new(mut out: W, width: usize, height: usize, fps: u32) -> io::Result<Self> {
        writeln!(
            out,
            "YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420mpeg2 XYSCSS=420MPEG2"
        )?;
        Ok(Y4mStream { out, width, height })
    }

    /// Appends one picture, which must have the header's size.
    pub fn write_picture(&mut self, picture: I420View<'_>, frame: FrameNo) -> io::Result<()> {
        self.write_tagged(picture, frame, None)
    }

    /// Appends one card picture (see [`CARD_TAG`]), `card` naming it (`signal-lost`).
    pub fn write_card(
        &mut self,
        picture: I420View<'_>,
        frame: FrameNo,
        card: &str,
    ) -> io::Result<()> {
        self.write_tagged(picture, frame, Some(card))
    }

    fn write_tagged(
        &mut self,
        picture: I420View<'_>,
        frame: FrameNo,
        card: Option<&str>,
    ) -> io::Result<()> {
        let g = picture.geometry();
        if g.width() != self.width || g.height() != self.height {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "picture is {g}, the stream is {}x{}",
                    self.width, self.height
                ),
            ));
        }
        match card {
            Some(card) => writeln!(self.out, "FRAME {FRAME_TAG}{} {CARD_TAG}{card}", frame.0)?,
            None => writeln!(self.out, "FRAME {FRAME_TAG}{}", frame.0)?,
        }
        self.out.write_all(picture.y())?;
        self.out.write_all(picture.u())?;
        self.out.write_all(picture.v())?;
        self.out.flush()
    }
}

/// The card a `FRAME` line written by [`Y4mStream`] names (`signal-lost`), if it is a card.
pub fn is_card(frame_line: &str) -> Option<&str> {
    frame_line
        .split_whitespace()
        .find_map(|p| p.strip_prefix(CARD_TAG))
}

/// The frame number in a `FRAME` line written by [`Y4mStream`], if it has one.
pub fn frame_tag(frame_line: &str) -> Option<FrameNo> {
    frame_line
        .split_whitespace()
        .find_map(|p| p.strip_prefix(FRAME_TAG))
        .and_then(|n| n.parse().ok())
        .map(FrameNo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keymash_codec::{FrameGeometry, I420Frame};

    #[test]
    fn pictures_are_written_with_their_frame_number() {
        let picture = I420Frame::grey(FrameGeometry::new(16, 16).unwrap());
        let mut stream = Y4mStream::new(Vec::new(), 16, 16, 30).unwrap();
        stream.write_picture(picture.view(), FrameNo(42)).unwrap();
        let bytes = stream.out;
        let text = String::from_utf8_lossy(&bytes[..100]);
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("YUV4MPEG2 W16 H16 F30:1 Ip A1:1 C420mpeg2 XYSCSS=420MPEG2")
        );
        assert_eq!(lines.next().and_then(frame_tag), Some(FrameNo(42)));
        let header_len = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
        assert_eq!(
            bytes.len(),
            header_len + "FRAME Xkeymash-frame=42\n".len() + 16 * 16 * 3 / 2
        );
        let mut wrong = Y4mStream::new(Vec::new(), 32, 16, 30).unwrap();
        assert!(wrong.write_picture(picture.view(), FrameNo(1)).is_err());
        assert_eq!(frame_tag("FRAME"), None);
    }

    #[test]
    fn cards_keep_the_last_frame_number_and_are_told_apart() {
        let picture = I420Frame::grey(FrameGeometry::new(16, 16).unwrap());
        let mut stream = Y4mStream::new(Vec::new(), 16, 16, 30).unwrap();
        stream.write_picture(picture.view(), FrameNo(7)).unwrap();
        stream
            .write_card(picture.view(), FrameNo(7), "signal-lost")
            .unwrap();
        let text = String::from_utf8_lossy(&stream.out).into_owned();
        let frames: Vec<&str> = text
            .split('\n')
            // A FRAME line follows the previous picture's samples directly.
            .filter_map(|l| l.find("FRAME").map(|at| &l[at..]))
            .collect();
        assert_eq!(frames.len(), 2);
        assert_eq!(frame_tag(frames[0]), Some(FrameNo(7)));
        assert_eq!(is_card(frames[0]), None);
        assert_eq!(frame_tag(frames[1]), Some(FrameNo(7)));
        assert_eq!(is_card(frames[1]), Some("signal-lost"));
    }
}
