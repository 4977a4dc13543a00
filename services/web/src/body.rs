//! The one response body type: a whole buffer, or the parts of an MJPEG stream handed over one
//! at a time by the viewer's task.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// A response body.
#[derive(Debug)]
pub(crate) enum WebBody {
    /// Known in full (its length becomes `Content-Length`).
    Full(Full<Bytes>),
    /// Stream parts. The channel holds one part: hyper takes the next only once the previous
    /// one is written to the socket, so a viewer that reads slowly holds at most two parts
    /// (each shared with every other viewer, never copied per viewer).
    Parts(mpsc::Receiver<Bytes>),
}

impl WebBody {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        WebBody::Full(Full::new(bytes.into()))
    }

    pub(crate) fn empty() -> Self {
        WebBody::Full(Full::new(Bytes::new()))
    }
}

impl Body for WebBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            WebBody::Full(full) => Pin::new(full).poll_frame(cx),
            WebBody::Parts(parts) => parts
                .poll_recv(cx)
                .map(|part| part.map(|bytes| Ok(Frame::data(bytes)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            WebBody::Full(full) => full.is_end_stream(),
            WebBody::Parts(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            WebBody::Full(full) => full.size_hint(),
            WebBody::Parts(_) => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_body_has_its_exact_length_and_parts_arrive_in_order() {
        let full = WebBody::full("hello");
        assert_eq!(full.size_hint().exact(), Some(5));
        assert_eq!(
            full.collect().await.unwrap().to_bytes(),
            Bytes::from("hello")
        );

        let (tx, rx) = mpsc::channel(1);
        let parts = WebBody::Parts(rx);
        assert_eq!(parts.size_hint().exact(), None);
        let sender = tokio::spawn(async move {
            for part in ["one", "two", "three"] {
                tx.send(Bytes::from(part)).await.unwrap();
            }
        });
        let all = parts.collect().await.unwrap().to_bytes();
        sender.await.unwrap();
        assert_eq!(all, Bytes::from("onetwothree"));
    }
}
