//! The MJPEG stream's wire format (`multipart/x-mixed-replace`, as browsers, VLC and ffplay
//! read it) and when a viewer gets its next part.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

/// The boundary between parts: cannot occur in the part headers, and a JPEG's bytes are
/// delimited by `Content-Length`, so a reader never has to search the picture for it.
pub(crate) const BOUNDARY: &str = "keymashframe";

/// The stream's content type.
pub(crate) const CONTENT_TYPE: &str = "multipart/x-mixed-replace; boundary=keymashframe";

/// One part of the stream holding `jpeg`: the boundary, the part's headers, the picture and the
/// line break that ends it. Built once per picture and shared by every viewer.
pub(crate) fn part(jpeg: &[u8]) -> Bytes {
    let head = format!(
        "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
        jpeg.len()
    );
    let mut part = BytesMut::with_capacity(head.len() + jpeg.len() + 2);
    part.put_slice(head.as_bytes());
    part.put_slice(jpeg);
    part.put_slice(b"\r\n");
    part.freeze()
}

/// How long a viewer goes without a part at most, even when the picture does not change: a
/// player (and the person looking) can tell a frozen exhibit from a dead connection.
pub(crate) const KEEPALIVE: Duration = Duration::from_secs(1);

/// When a viewer gets its next part: a new picture, at most `1 / stream_fps` after the last
/// part, and the same picture again after [`KEEPALIVE`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pacer {
    pub(crate) min_interval: Duration,
    pub(crate) keepalive: Duration,
}

/// What a viewer does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Send the newest picture now.
    Send,
    /// Wait until then, or until a new picture comes.
    Wait(Instant),
}

impl Pacer {
    pub(crate) fn new(stream_fps: u32) -> Self {
        Pacer {
            min_interval: Duration::from_secs(1) / stream_fps.max(1),
            keepalive: KEEPALIVE,
        }
    }

    /// `last`: the number of the picture last sent and when; `newest`: the newest picture's
    /// number, if there is one.
    pub(crate) fn next(
        &self,
        last: Option<(u64, Instant)>,
        newest: Option<u64>,
        now: Instant,
    ) -> Next {
        let Some(newest) = newest else {
            return Next::Wait(now + self.keepalive);
        };
        let Some((sent, at)) = last else {
            return Next::Send;
        };
        let earliest = at + self.min_interval;
        if now < earliest {
            return Next::Wait(earliest);
        }
        if newest != sent || now >= at + self.keepalive {
            Next::Send
        } else {
            Next::Wait(at + self.keepalive)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_is_delimited_by_its_length() {
        let jpeg = [0xff, 0xd8, 0x01, 0x02, 0xff, 0xd9];
        let part = part(&jpeg);
        let text = String::from_utf8_lossy(&part);
        assert!(text.starts_with("--keymashframe\r\nContent-Type: image/jpeg\r\n"));
        let head_end = part.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(text[..head_end].contains("Content-Length: 6\r\n"));
        assert_eq!(&part[head_end..head_end + 6], &jpeg);
        assert_eq!(&part[head_end + 6..], b"\r\n");
        assert!(CONTENT_TYPE.ends_with(&format!("boundary={BOUNDARY}")));
    }

    #[test]
    fn a_viewer_gets_new_pictures_at_most_at_the_stream_rate_and_one_a_second_anyway() {
        let pacer = Pacer::new(10);
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // Nothing published yet: wait (a new picture ends the wait early).
        assert_eq!(pacer.next(None, None, t0), Next::Wait(ms(1000)));
        // The first picture goes at once.
        assert_eq!(pacer.next(None, Some(1), t0), Next::Send);
        // A new picture 40 ms after the last part waits for the 100 ms interval.
        assert_eq!(
            pacer.next(Some((1, t0)), Some(2), ms(40)),
            Next::Wait(ms(100))
        );
        assert_eq!(pacer.next(Some((1, t0)), Some(2), ms(100)), Next::Send);
        // The same picture: again only after the keepalive.
        assert_eq!(
            pacer.next(Some((1, t0)), Some(1), ms(500)),
            Next::Wait(ms(1000))
        );
        assert_eq!(pacer.next(Some((1, t0)), Some(1), ms(1000)), Next::Send);
        // A rate above the second still keeps at least the interval.
        assert_eq!(Pacer::new(60).min_interval, Duration::from_secs(1) / 60);
    }
}
