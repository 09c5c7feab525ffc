//! The API's accept loop: HTTP/1.1 on the daemon's unix socket, with bounded connections.
//!
//! Whoever can open the socket can open many connections and send nothing, or half a
//! request. So: at most [`MAX_CONNECTIONS`] are kept open; when one more arrives, the
//! connection that has been idle longest is closed to make room, and a new one is refused
//! only when every slot is busy handling a request. A connection counts as busy only once a
//! whole request (head and body) has arrived: sending half of one is being idle. A request head
//! must arrive within [`HEADER_TIMEOUT`] (this also ends idle keep-alive connections) and its
//! body within [`super::BODY_TIMEOUT`]. Slow or idle clients thus never hold more than
//! [`MAX_CONNECTIONS`] file descriptors and never keep a prompt client waiting.
//!
//! The same loop serves the metrics listener of `--metrics-addr` (TCP), through [`Listener`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

/// Most API connections open at once.
pub const MAX_CONNECTIONS: usize = 128;
/// Time a client has to send a request head (and the idle time allowed between requests).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a shutdown waits for requests being handled.
const DRAIN: Duration = Duration::from_secs(10);

/// One open connection, as the accept loop sees it.
pub(crate) struct Conn {
    /// Requests being handled now whose body has been received (see [`Working`]).
    in_flight: AtomicUsize,
    /// When a request last started or finished (or the connection was opened).
    last_active: Mutex<Instant>,
    /// Signalled to close the connection.
    evict: Notify,
}

impl Conn {
    fn touch(&self) {
        if let Ok(mut t) = self.last_active.lock() {
            *t = Instant::now();
        }
    }

    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        self.last_active.lock().ok().map(|t| *t)
    }
}

type Conns = Arc<Mutex<HashMap<u64, Arc<Conn>>>>;

/// A request in a request's extensions: it counts as work on its connection (which then is
/// never closed to make room) once its whole body has arrived ([`Working::body_received`]);
/// a client still sending its head or body is as idle as one sending nothing.
#[derive(Clone)]
pub struct Working(Arc<WorkingInner>);

struct WorkingInner {
    conn: Arc<Conn>,
    counted: AtomicBool,
}

impl Working {
    fn new(conn: Arc<Conn>) -> Self {
        conn.touch();
        Working(Arc::new(WorkingInner {
            conn,
            counted: AtomicBool::new(false),
        }))
    }

    /// The request's body is complete: the daemon is now working on it.
    pub fn body_received(&self) {
        if !self.0.counted.swap(true, Ordering::SeqCst) {
            self.0.conn.in_flight.fetch_add(1, Ordering::SeqCst);
            self.0.conn.touch();
        }
    }
}

impl Drop for WorkingInner {
    fn drop(&mut self) {
        if *self.counted.get_mut() {
            self.conn.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        self.conn.touch();
    }
}

/// A listening socket the accept loop serves: the API's unix socket or the metrics' TCP one.
pub trait Listener: Send + Sync {
    /// An accepted connection.
    type Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    /// Accepts one connection.
    fn accept_one(&self)
    -> impl std::future::Future<Output = std::io::Result<Self::Stream>> + Send;
}

impl Listener for UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn accept_one(&self) -> std::io::Result<Self::Stream> {
        self.accept().await.map(|(s, _)| s)
    }
}

impl Listener for TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept_one(&self) -> std::io::Result<Self::Stream> {
        self.accept().await.map(|(s, _)| s)
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets requests being handled
/// finish (up to 10 s).
///
/// # Errors
/// None at present: accept errors (such as running out of fds) are logged and retried.
pub async fn serve<L: Listener>(
    listener: L,
    app: Router,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let conns: Conns = Arc::new(Mutex::new(HashMap::new()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut next_id = 0u64;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept_one() => a,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: let connections close, then try again.
                tracing::warn!("API accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        next_id += 1;
        let id = next_id;
        let conn = Arc::new(Conn {
            in_flight: AtomicUsize::new(0),
            last_active: Mutex::new(Instant::now()),
            evict: Notify::new(),
        });
        if !admit(&conns, id, &conn) {
            tracing::warn!(
                "API connection refused: all {MAX_CONNECTIONS} connections are handling requests"
            );
            drop(stream);
            continue;
        }
        tokio::spawn(run_connection(
            stream,
            app.clone(),
            conn,
            id,
            conns.clone(),
            stop_rx.clone(),
        ));
    }
    let _ = stop_tx.send(true);
    let deadline = Instant::now() + DRAIN;
    while conns.lock().map(|c| !c.is_empty()).unwrap_or(false) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Registers a new connection, closing the longest-idle one when all slots are taken.
/// False when every slot is handling a request.
fn admit(conns: &Conns, id: u64, conn: &Arc<Conn>) -> bool {
    let Ok(mut map) = conns.lock() else {
        return false;
    };
    if map.len() >= MAX_CONNECTIONS {
        let victim = map
            .iter()
            .filter_map(|(id, c)| c.idle_since().map(|t| (t, *id)))
            .min()
            .map(|(_, id)| id);
        match victim.and_then(|v| map.remove(&v)) {
            Some(old) => old.evict.notify_one(),
            None => return false,
        }
    }
    map.insert(id, conn.clone());
    true
}

async fn run_connection<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(
    stream: S,
    app: Router,
    conn: Arc<Conn>,
    id: u64,
    conns: Conns,
    mut stop: watch::Receiver<bool>,
) {
    let tracked = conn.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let app = app.clone();
        let working = Working::new(tracked.clone());
        if hyper::body::Body::is_end_stream(req.body()) {
            working.body_received();
        }
        req.extensions_mut().insert(working.clone());
        async move {
            let resp = app.oneshot(req.map(axum::body::Body::new)).await;
            drop(working);
            resp
        }
    });
    let http = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(http);
    tokio::select! {
        _ = http.as_mut() => {}
        () = conn.evict.notified() => {}
        _ = stop.changed() => {
            http.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN, http).await;
        }
    }
    if let Ok(mut map) = conns.lock() {
        map.remove(&id);
    }
}
