//! The HTTP side: one tokio current-thread runtime accepts clients (at most
//! `web.max_clients`, the next answered 503 at once), serves each connection with hyper behind a
//! [`StallGuard`], and answers the routes. Nothing here touches a pipeline stage: status and
//! metrics are read from shared memory on the runtime's blocking pool, pictures come from the
//! JPEG thread through a `watch` channel.

use std::convert::Infallible;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use keymash_watch::page;
use keymash_watch::{metrics, status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, Notify};

use crate::body::WebBody;
use crate::demand::DemandGuard;
use crate::mjpeg::{self, Next, Pacer};
use crate::pictures::Published;
use crate::routes::{Miss, Route, ALLOWED};
use crate::shared::Shared;
use crate::stall::StallGuard;

/// The OpenMetrics content type Prometheus asks for.
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
/// How long a snapshot waits for a picture of the screen.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(2);
/// hyper's read buffer per connection (its minimum is 8 KiB): a request to this service is one
/// short line and a few headers, and a larger header is refused (431), so a client cannot make
/// the service hold more.
const MAX_BUF: usize = 16 * 1024;
/// Connections waiting to be accepted.
const BACKLOG: u32 = 128;
/// The runtime's heartbeat (see [`Shared::stuck_thread`]).
const BEAT: Duration = Duration::from_millis(250);
/// How long a refused client's connection stays open for it to read its 503 (see [`refuse`]).
const REFUSAL_LINGER: Duration = Duration::from_secs(2);
/// What a refused client may still send before its connection is closed anyway.
const REFUSAL_READ_LIMIT: usize = 64 * 1024;
/// After a failed accept (out of file descriptors), wait this long before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The kernel's send buffer of each client socket (set on the listener, which its accepted
/// sockets inherit). Linux otherwise grows it up to `net.ipv4.tcp_wmem`'s maximum (4 MiB by
/// default), and a client that reads nothing would soak up seconds of stream in kernel memory
/// before a write is ever pending, so the stall timeout would start only then. 128 KiB still
/// carries 100 MB/s at 1 ms round trip (a LAN) and 6 MB/s at 20 ms (Wi-Fi), far above a 640x480
/// stream at 15 pictures a second (about 1 MB/s).
const SEND_BUFFER: u32 = 128 * 1024;

/// A listening socket on `addr` (called inside the runtime). SO_REUSEADDR lets a restarted
/// service listen again while connections of the old one linger in TIME_WAIT; a port another
/// process listens on is still refused.
pub(crate) fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_send_buffer_size(SEND_BUFFER)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Accepts and serves clients until `stop` is notified.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: Arc<Notify>) {
    let busy = Bytes::from(busy_response(shared.settings.max_clients));
    let mut beat = tokio::time::interval(BEAT);
    let mut accept_failure: Option<String> = None;
    loop {
        tokio::select! {
            _ = stop.notified() => break,
            _ = beat.tick() => shared.beat_io(),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    accept_failure = None;
                    match Arc::clone(&shared.permits).try_acquire_owned() {
                        Ok(permit) => {
                            let shared = Arc::clone(&shared);
                            tokio::spawn(async move {
                                connection(stream, peer, &shared).await;
                                drop(permit);
                            });
                        }
                        Err(_) => refuse(stream, peer, &busy, &shared),
                    }
                }
                Err(e) => {
                    let why = e.to_string();
                    if accept_failure.as_deref() != Some(why.as_str()) {
                        log::warn!("cannot accept a client on {}: {why}", shared.settings.listen);
                        accept_failure = Some(why);
                    }
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
        }
    }
}

/// The whole answer to a client over `max_clients`: a complete response, so a browser shows
/// why, and `Connection: close`.
pub(crate) fn busy_response(max_clients: usize) -> Vec<u8> {
    let body = format!(
        "keymash-web is busy: {max_clients} clients are connected (web.max_clients); try again later\n"
    );
    let mut response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: {TEXT}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nRetry-After: 5\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body.as_bytes());
    response
}

/// Answers a client over the limit at once, without holding a client's place.
///
/// The connection is not closed at once: a client that has not finished sending its request
/// (or sends it after the answer went out) would write into a closed socket, the kernel would
/// reset the connection, and the client would lose the answer (a broken pipe, or a reset
/// instead of the 503). So the answer goes out, the sending side is shut (the client reads the
/// answer and its end), and what the client still sends is read and thrown away until it
/// closes, for at most [`REFUSAL_LINGER`] and [`REFUSAL_READ_LIMIT`] bytes, as web servers
/// do on a "lingering close". At most `LINGERING_REFUSALS` do so at once; past them a refused
/// client is answered and closed at once.
fn refuse(stream: TcpStream, peer: SocketAddr, busy: &Bytes, shared: &Shared) {
    shared.counters.refused.fetch_add(1, Ordering::Relaxed);
    log::debug!("{peer}: refused, {} clients connected", shared.clients());
    match Arc::clone(&shared.lingering_refusals).try_acquire_owned() {
        Ok(permit) => {
            let busy = busy.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(REFUSAL_LINGER, answer_and_drain(stream, &busy)).await;
                drop(permit);
            });
        }
        Err(_) => {
            let mut scratch = [0u8; 2048];
            let _ = stream.try_read(&mut scratch);
            let _ = stream.try_write(busy);
            if let Ok(stream) = stream.into_std() {
                let _ = stream.shutdown(Shutdown::Write);
            }
        }
    }
}

/// Writes `answer`, shuts the sending side, and reads until the client closes.
async fn answer_and_drain(mut stream: TcpStream, answer: &[u8]) -> io::Result<()> {
    stream.write_all(answer).await?;
    stream.shutdown().await?;
    let mut scratch = [0u8; 2048];
    let mut taken = 0;
    while taken < REFUSAL_READ_LIMIT {
        match stream.read(&mut scratch).await? {
            0 => break,
            n => taken += n,
        }
    }
    Ok(())
}

/// Serves one client until it closes, fails, or stalls.
async fn connection(stream: TcpStream, peer: SocketAddr, shared: &Arc<Shared>) {
    // Small responses go out at once instead of waiting for the client's acknowledgement.
    let _ = stream.set_nodelay(true);
    let stall = shared.settings.stall_timeout;
    let guarded = StallGuard::new(stream, stall);
    let stalled = guarded.stalled_flag();
    let for_requests = Arc::clone(shared);
    let service = service_fn(move |request| {
        let shared = Arc::clone(&for_requests);
        async move { Ok::<_, Infallible>(respond(request, &shared).await) }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        // Also bounds how long an idle kept-alive connection holds its place.
        .header_read_timeout(stall)
        .max_buf_size(MAX_BUF)
        .serve_connection(TokioIo::new(guarded), service)
        .await;
    let timed_out = served.as_ref().is_err_and(hyper::Error::is_timeout);
    if stalled.load(Ordering::Relaxed) || timed_out {
        shared.counters.stalled.fetch_add(1, Ordering::Relaxed);
        log::debug!(
            "{peer}: dropped, no data taken or no request within {} ms",
            stall.as_millis()
        );
    } else if let Err(e) = served {
        log::debug!("{peer}: {e}");
    }
}

/// The response to `request`, with `Cache-Control: no-store` (every answer is live).
async fn respond(request: Request<Incoming>, shared: &Arc<Shared>) -> Response<WebBody> {
    let head = request.method() == Method::HEAD;
    let mut response = match Route::of(request.method(), request.uri().path()) {
        Err(Miss::NotFound) => text(
            StatusCode::NOT_FOUND,
            format!(
                "{} not found: keymash-web serves /, /metrics, /status.json, /history.json, \
                 /snapshot.jpg and /stream.mjpg\n",
                request.uri().path()
            ),
        ),
        Err(Miss::MethodNotAllowed) => {
            let mut response = text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("keymash-web is read-only: {ALLOWED} only\n"),
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(ALLOWED));
            response
        }
        Ok(Route::Page) => {
            // The page arrives with the status and history of now and draws them before its
            // load event: no empty first second, and a screenshot at load shows it all.
            let shared = Arc::clone(shared);
            blocking("text/html; charset=utf-8", move || {
                let report = status::gather(&shared.settings.prefix)?;
                let (width, height) = shared.settings.picture;
                Ok(page::render(
                    &serde_json::to_string(&report)?,
                    &shared.history().to_json(),
                    width,
                    height,
                ))
            })
            .await
        }
        Ok(Route::Status) => {
            let prefix = shared.settings.prefix.clone();
            blocking(JSON, move || {
                let report = status::gather(&prefix)?;
                Ok(serde_json::to_string(&report)?)
            })
            .await
        }
        Ok(Route::Metrics) => {
            let prefix = shared.settings.prefix.clone();
            let figures = shared.figures();
            blocking(OPENMETRICS, move || {
                let report = status::gather(&prefix)?;
                Ok(metrics::render(&report, Some(&figures)))
            })
            .await
        }
        Ok(Route::History) => {
            let shared = Arc::clone(shared);
            blocking(JSON, move || Ok(shared.history().to_json())).await
        }
        Ok(Route::Snapshot) => snapshot(shared).await,
        Ok(Route::Stream) => stream(shared, head),
    };
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn full(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<WebBody> {
    let mut response = Response::new(WebBody::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn text(status: StatusCode, body: String) -> Response<WebBody> {
    full(status, TEXT, body)
}

/// 503 with the reason, and when to try again.
fn unavailable(why: &str) -> Response<WebBody> {
    let mut response = text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"));
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

/// Runs `make` (which reads shared memory or serialises the history) on the runtime's blocking
/// pool, so the runtime keeps serving the other clients meanwhile.
async fn blocking(
    content_type: &'static str,
    make: impl FnOnce() -> anyhow::Result<String> + Send + 'static,
) -> Response<WebBody> {
    match tokio::task::spawn_blocking(make).await {
        Ok(Ok(body)) => full(StatusCode::OK, content_type, body),
        Ok(Err(e)) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// Why there is no picture of this PC's screen, if there is none.
fn no_screen(shared: &Shared) -> Option<String> {
    shared.absent().map(|why| {
        format!(
            "no picture of the screen on this PC: {why} (the receiver's display publishes it; \
             the sender has none)"
        )
    })
}

/// The picture on the screen now: one checked by the JPEG thread after this request arrived.
async fn snapshot(shared: &Arc<Shared>) -> Response<WebBody> {
    if let Some(why) = no_screen(shared) {
        return unavailable(&why);
    }
    let requested = Instant::now();
    let mut pictures = shared.pictures.subscribe();
    let _wanted = shared.demand.snapshot();
    let fresh = |p: &Published| p.as_ref().is_some_and(|p| p.checked_at >= requested);
    let waited = tokio::time::timeout(SNAPSHOT_WAIT, pictures.wait_for(fresh)).await;
    let picture = match waited {
        Ok(Ok(published)) => published.clone(),
        _ => None,
    };
    match picture {
        Some(picture) => {
            let mut response = full(StatusCode::OK, "image/jpeg", picture.jpeg.clone());
            if let Ok(frame) = HeaderValue::from_str(&picture.frame.0.to_string()) {
                response.headers_mut().insert("x-keymash-frame", frame);
            }
            if picture.card {
                response
                    .headers_mut()
                    .insert("x-keymash-card", HeaderValue::from_static("signal-lost"));
            }
            response
        }
        None => {
            let why = no_screen(shared)
                .or_else(|| shared.encode_error())
                .unwrap_or_else(|| {
                    format!(
                        "no picture of the screen within {} s: the display has published none",
                        SNAPSHOT_WAIT.as_secs()
                    )
                });
            unavailable(&why)
        }
    }
}

/// The MJPEG stream: a task per viewer hands the newest part to the response body.
fn stream(shared: &Arc<Shared>, head: bool) -> Response<WebBody> {
    if let Some(why) = no_screen(shared) {
        return unavailable(&why);
    }
    let body = if head {
        WebBody::empty()
    } else {
        let (parts, body) = mpsc::channel(1);
        let viewer = Viewer {
            pictures: shared.pictures.subscribe(),
            parts,
            pacer: Pacer::new(shared.settings.stream_fps),
            _counted: shared.demand.viewer(),
        };
        tokio::spawn(viewer.run());
        WebBody::Parts(body)
    };
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(mjpeg::CONTENT_TYPE));
    response
}

/// One viewer of the stream: sends the newest picture when [`Pacer`] says so, until the
/// connection ends (its body, and so the channel's receiver, is dropped).
#[derive(Debug)]
struct Viewer {
    pictures: watch::Receiver<Published>,
    parts: mpsc::Sender<Bytes>,
    pacer: Pacer,
    _counted: DemandGuard,
}

impl Viewer {
    async fn run(mut self) {
        let mut last: Option<(u64, Instant)> = None;
        loop {
            let newest = self.pictures.borrow_and_update().clone();
            match self
                .pacer
                .next(last, newest.as_ref().map(|p| p.number), Instant::now())
            {
                Next::Send => {
                    let Some(picture) = newest else {
                        continue;
                    };
                    // Waits while the client reads the previous part: a stalled client blocks
                    // only this task, until the stall guard ends its connection.
                    if self.parts.send(picture.part.clone()).await.is_err() {
                        return;
                    }
                    last = Some((picture.number, Instant::now()));
                }
                Next::Wait(until) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until.into()) => {}
                        changed = self.pictures.changed() => if changed.is_err() {
                            return;
                        },
                        _ = self.parts.closed() => return,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_busy_answer_is_a_whole_http_response_with_its_length() {
        let response = busy_response(16);
        let text = String::from_utf8(response).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nConnection: close"), "{head}");
        assert!(
            head.contains(&format!("\r\nContent-Length: {}", body.len())),
            "{head}"
        );
        assert!(body.contains("16 clients") && body.contains("web.max_clients"));
    }
}
