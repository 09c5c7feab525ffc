//! The API's streaming endpoints: `GET /networks/{name}/capture` (a pcap stream, ended by
//! `DELETE /networks/{name}/capture/{id}`, by its count, or by the client going away) and
//! `GET /events` (JSON lines).
//!
//! A stream's body is fed by a task through a small channel: when the client goes away, hyper
//! drops the body, the task's next send fails and the task ends (for a capture, dropping its
//! stop handle ends the capture in the data path). A capture stream ends with HTTP trailers
//! `vswitch-capture-frames` and `vswitch-capture-dropped` (sent when the request asks for them
//! with `TE: trailers`).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::{Bytes, Frame};
use tokio::sync::{broadcast, mpsc};

use crate::daemon::{CaptureRequest, CaptureStream, Shared};
use crate::datapath::capture::{MAX_SNAPLEN, file_header};
use crate::error::Error;
use crate::events::Event;

/// Trailer with the frames sent.
pub const FRAMES_TRAILER: &str = "vswitch-capture-frames";
/// Trailer with the frames the capture dropped (ring full).
pub const DROPPED_TRAILER: &str = "vswitch-capture-dropped";
/// Header with the capture's id.
pub const ID_HEADER: &str = "vswitch-capture-id";
/// How often a capture with nothing to send looks at its ring again.
const POLL: Duration = Duration::from_millis(5);

/// A response body fed through a channel.
struct ChannelBody(mpsc::Receiver<Frame<Bytes>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|f| f.map(Ok))
    }
}

/// Query of `GET /networks/{name}/capture`.
#[derive(serde::Deserialize)]
pub struct CaptureQuery {
    endpoint: Option<String>,
    count: Option<u64>,
    snaplen: Option<u32>,
}

/// `GET /networks/{name}/capture?endpoint=NAME&count=N&snaplen=N`: a pcap stream.
pub async fn capture(
    State(d): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<CaptureQuery>,
) -> Result<Response, Error> {
    let req = CaptureRequest {
        endpoint: q.endpoint,
        count: q.count,
        snaplen: q.snaplen.unwrap_or(MAX_SNAPLEN),
    };
    let stream = crate::daemon::capture(&d, &name, req).await?;
    let closing = d.lock().await.events().closing();
    let id = stream.id;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(pump_capture(stream, tx, name, closing));
    let mut resp = axum::body::Body::new(ChannelBody(rx)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.tcpdump.pcap"),
    );
    h.insert(
        header::TRAILER,
        HeaderValue::from_static("vswitch-capture-frames, vswitch-capture-dropped"),
    );
    h.insert(ID_HEADER, HeaderValue::from(id));
    Ok(resp)
}

/// `DELETE /networks/{name}/capture/{id}`: ends a capture (its stream ends normally).
pub async fn stop_capture(
    State(d): State<Shared>,
    Path((name, id)): Path<(String, u64)>,
) -> Result<StatusCode, Error> {
    crate::daemon::stop_capture(&d, &name, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Moves records from the capture's ring to the client until the count is reached, the
/// capture is stopped, or the client goes away.
async fn pump_capture(
    mut s: CaptureStream,
    tx: mpsc::Sender<Frame<Bytes>>,
    network: String,
    closing: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(closing);
    let limit = s.count.unwrap_or(u64::MAX);
    let mut sent = 0u64;
    let header = Bytes::copy_from_slice(&file_header(s.snaplen));
    let mut client_gone = tx.send(Frame::data(header)).await.is_err();
    // Polls left once the daemon shuts down: the capture is stopped, and what the ring holds
    // is still sent (unless the data path does not let go within a second).
    let mut closing_polls: Option<u32> = None;
    while !client_gone && sent < limit && closing_polls != Some(0) {
        let mut buf = Vec::new();
        let n = s.reader.read_records(&mut buf, limit - sent);
        if n > 0 {
            sent += n;
            client_gone = tx.send(Frame::data(Bytes::from(buf))).await.is_err();
            continue;
        }
        if s.reader.finished() {
            break;
        }
        if let Some(n) = closing_polls.as_mut() {
            *n -= 1;
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            () = tx.closed() => client_gone = true,
            () = &mut closing, if closing_polls.is_none() => {
                s.stop.stop();
                closing_polls = Some(200);
            }
        }
    }
    s.stop.stop();
    let dropped = s.reader.stats.dropped.load(Ordering::Relaxed);
    tracing::info!(
        network,
        id = s.id,
        frames = sent,
        dropped,
        client_gone,
        "capture ended"
    );
    let mut trailers = HeaderMap::new();
    trailers.insert(FRAMES_TRAILER, HeaderValue::from(sent));
    trailers.insert(DROPPED_TRAILER, HeaderValue::from(dropped));
    let _ = tx.send(Frame::trailers(trailers)).await;
}

/// Query of `GET /events`: RFC 3339 times.
#[derive(serde::Deserialize)]
pub struct EventsQuery {
    since: Option<String>,
    until: Option<String>,
}

fn parse_time(what: &str, s: Option<&str>) -> Result<Option<SystemTime>, Error> {
    s.map(|s| {
        humantime::parse_rfc3339_weak(s).map_err(|e| {
            Error::Invalid(format!(
                "{what} {s:?}: not an RFC 3339 time such as 2026-11-29T15:04:05Z ({e})"
            ))
        })
    })
    .transpose()
}

/// `GET /events?since=TIME&until=TIME`: JSON lines, kept ones first (with `since`), then
/// live ones until `until` or until the client goes away.
pub async fn events(
    State(d): State<Shared>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, Error> {
    let since = parse_time("since", q.since.as_deref())?;
    let until = parse_time("until", q.until.as_deref())?;
    let (past, live, closing) = {
        let daemon = d.lock().await;
        let (past, live) = daemon.events().subscribe(since)?;
        (past, live, daemon.events().closing())
    };
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(pump_events(past, live, until, tx, closing));
    let mut resp = axum::body::Body::new(ChannelBody(rx)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    Ok(resp)
}

fn line(e: &Event) -> Frame<Bytes> {
    let mut v = serde_json::to_vec(e).unwrap_or_default();
    v.push(b'\n');
    Frame::data(Bytes::from(v))
}

async fn pump_events(
    past: Vec<Event>,
    mut live: broadcast::Receiver<Event>,
    until: Option<SystemTime>,
    tx: mpsc::Sender<Frame<Bytes>>,
    closing: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(closing);
    let after_until = |e: &Event| until.is_some_and(|u| e.at.is_some_and(|at| at > u));
    for e in &past {
        if after_until(e) {
            return;
        }
        if tx.send(line(e)).await.is_err() {
            return;
        }
    }
    let wait = until.map(|u| u.duration_since(SystemTime::now()).unwrap_or_default());
    let deadline = tokio::time::sleep(wait.unwrap_or(Duration::MAX));
    tokio::pin!(deadline);
    loop {
        let next = tokio::select! {
            r = live.recv() => r,
            () = &mut deadline, if wait.is_some() => return,
            () = tx.closed() => return,
            () = &mut closing => return,
        };
        let frame = match next {
            Ok(e) if after_until(&e) => return,
            Ok(e) => line(&e),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                line(&Event::new("events", "lost", None).attr("count", n))
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if tx.send(frame).await.is_err() {
            return;
        }
    }
}
