//! Packet captures (`GET /networks/{name}/capture`): the daemon's side. It resolves the
//! endpoint to its port, hands the data path a [`Tap`](crate::datapath::capture::Tap) and
//! returns the reader and a stop handle for the API to stream; see [`crate::datapath::capture`]
//! for the ring.

use crate::datapath::CaptureStop;
use crate::datapath::capture::{self, CaptureReader, MAX_SNAPLEN};
use crate::error::Error;

use super::Shared;

/// What to capture.
#[derive(Clone, Debug)]
pub struct CaptureRequest {
    /// One endpoint (name or id) or, `None`, the whole network.
    pub endpoint: Option<String>,
    /// Stop after this many frames.
    pub count: Option<u64>,
    /// Bytes kept of each frame (1 to [`MAX_SNAPLEN`]).
    pub snaplen: u32,
}

/// A running capture, for the API to stream.
pub struct CaptureStream {
    /// Its id (`DELETE /networks/{name}/capture/{id}` stops it).
    pub id: u64,
    /// Its records.
    pub reader: CaptureReader,
    /// Stops it when dropped.
    pub stop: CaptureStop,
    /// As requested.
    pub snaplen: u32,
    /// As requested.
    pub count: Option<u64>,
}

/// Starts a capture on `network`.
///
/// # Errors
/// Bad count or snaplen, unknown network or endpoint, a lost endpoint, too many captures.
pub async fn capture(
    d: &Shared,
    network: &str,
    req: CaptureRequest,
) -> Result<CaptureStream, Error> {
    if req.count == Some(0) {
        return Err(Error::Invalid(
            "capture count 0: give at least 1 frame".to_string(),
        ));
    }
    if !(1..=MAX_SNAPLEN).contains(&req.snaplen) {
        return Err(Error::Invalid(format!(
            "snapshot length {}: use 1 to {MAX_SNAPLEN} bytes",
            req.snaplen
        )));
    }
    let mut daemon = d.lock().await;
    daemon.live_network(network)?;
    let port = match &req.endpoint {
        None => None,
        Some(name) => {
            let ep = daemon.endpoint(network, name)?;
            let port = daemon
                .live
                .get(network)
                .and_then(|l| l.ports.get(&ep.id))
                .copied();
            Some(port.ok_or_else(|| {
                Error::Conflict(format!(
                    "container {name} on network {network} is lost; reconnect it first"
                ))
            })?)
        }
    };
    let id = daemon.next_capture;
    daemon.next_capture += 1;
    let (tap, reader) = capture::capture(id, port, req.snaplen);
    let live = daemon.live_network(network)?;
    live.datapath.start_capture(tap).await?;
    tracing::info!(network, endpoint = req.endpoint, id, "capture started");
    Ok(CaptureStream {
        id,
        reader,
        stop: live.datapath.capture_stop(id),
        snaplen: req.snaplen,
        count: req.count,
    })
}

/// Stops capture `id` of `network`; its stream ends once the frames already taken are sent.
///
/// # Errors
/// Unknown network.
pub async fn stop_capture(d: &Shared, network: &str, id: u64) -> Result<(), Error> {
    let daemon = d.lock().await;
    daemon
        .live_network(network)?
        .datapath
        .capture_stop(id)
        .stop();
    Ok(())
}
