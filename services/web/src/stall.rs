//! Dropping a client that takes no data: its socket wrapped so that a write pending for longer
//! than the stall timeout fails.
//!
//! A client that never reads fills the kernel's socket buffers; after that every write is
//! pending. Without this, hyper would wait on that write forever and the connection, its
//! buffers and its slot among `web.max_clients` would never be freed. Reading needs no such
//! guard: hyper's header read timeout bounds the wait for a request, and a client that sends
//! nothing while it watches the stream is behaving.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// `inner` with writes that fail once pending for `timeout`.
#[derive(Debug)]
pub(crate) struct StallGuard<S> {
    inner: S,
    timeout: Duration,
    /// Armed while a write is pending: when it fires, the client is stalled. Allocated once and
    /// reset, not allocated per pending write.
    deadline: Option<Pin<Box<Sleep>>>,
    armed: bool,
    /// Set when the guard failed a write, so the connection's end is counted as a stall.
    stalled: Arc<AtomicBool>,
}

impl<S> StallGuard<S> {
    pub(crate) fn new(inner: S, timeout: Duration) -> Self {
        StallGuard {
            inner,
            timeout,
            deadline: None,
            armed: false,
            stalled: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A flag that turns true when the guard dropped the client as stalled.
    pub(crate) fn stalled_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stalled)
    }

    /// The write made progress (or failed for its own reason): the client is not stalled.
    fn disarm(&mut self) {
        self.armed = false;
    }

    /// The write is pending: start the clock if it is not running, and fail once it ran out.
    /// Polling the deadline registers this task's waker with the timer, so the connection is
    /// woken to fail even if the socket never becomes writable again.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let deadline = Instant::now() + self.timeout;
        let sleep = match &mut self.deadline {
            Some(sleep) => {
                if !self.armed {
                    sleep.as_mut().reset(deadline);
                }
                sleep
            }
            None => self
                .deadline
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.armed = true;
        if sleep.as_mut().poll(cx).is_ready() {
            self.armed = false;
            self.stalled.store(true, Ordering::Relaxed);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client took no data for {} ms (web.stall_timeout_ms)",
                    self.timeout.as_millis()
                ),
            )));
        }
        Poll::Pending
    }

    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(result) => {
                self.disarm();
                Poll::Ready(result)
            }
            Poll::Pending => self.pending(cx),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.guard(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.guard(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.guard(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.guard(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TIMEOUT: Duration = Duration::from_millis(150);

    #[tokio::test(flavor = "current_thread")]
    async fn a_client_that_takes_nothing_fails_the_write_after_the_timeout() {
        // A pipe that holds 64 bytes: the client end is never read.
        let (server, _client) = tokio::io::duplex(64);
        let mut guarded = StallGuard::new(server, TIMEOUT);
        let stalled = guarded.stalled_flag();
        let started = std::time::Instant::now();
        let mut written = 0usize;
        let error = loop {
            match guarded.write(&[0u8; 32]).await {
                Ok(n) => written += n,
                Err(e) => break e,
            }
        };
        let took = started.elapsed();
        assert_eq!(written, 64);
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(stalled.load(Ordering::Relaxed));
        assert!(
            took >= TIMEOUT && took < TIMEOUT * 4,
            "failed after {took:?}, timeout {TIMEOUT:?}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_reader_that_keeps_taking_data_is_not_stalled() {
        let (server, mut client) = tokio::io::duplex(64);
        let mut guarded = StallGuard::new(server, TIMEOUT);
        let stalled = guarded.stalled_flag();
        // The reader takes 32 bytes every 50 ms, a third of the timeout: each pending write
        // makes progress well within it, over far longer than the timeout in all.
        let reader = tokio::spawn(async move {
            let mut total = 0usize;
            let mut buf = [0u8; 32];
            while total < 512 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let n = client.read(&mut buf).await.unwrap();
                assert!(n > 0);
                total += n;
            }
            total
        });
        let data = vec![7u8; 512];
        guarded.write_all(&data).await.unwrap();
        guarded.flush().await.unwrap();
        assert!(reader.await.unwrap() >= 512);
        assert!(!stalled.load(Ordering::Relaxed));
    }
}
