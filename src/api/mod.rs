//! The control API: HTTP/JSON over the daemon's unix socket (see [`types`] for the contract).
//!
//! Handlers lock the daemon's control-plane state for the duration of one operation, except
//! while the netns helper runs (attach, detach); the data path threads never take that
//! lock, so traffic is not stalled by API calls. Bodies are limited to 1 MiB (413) and 10 s
//! (408); [`serve`] bounds connections. `GET /metrics` is the Prometheus text of
//! [`crate::metrics`].

pub mod checks;
pub mod serve;
pub mod stream;
pub mod types;

use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::error::Error;
use types::{
    Connect, Created, Disconnect, EndpointInspect, FlowTable, MacRow, NatStatsView, NetworkCreate,
    NetworkInspect, NetworkSummary, PortMapping, PortRequest, PortRow,
};

pub use crate::daemon::Shared;

/// How long a client may take to send a request body.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Builds the router for the endpoints listed in [`types`].
pub fn router(daemon: Shared) -> Router {
    Router::new()
        .route("/_ping", get(ping))
        .route("/networks", get(list))
        .route("/networks/create", post(create))
        .route("/networks/{name}", get(inspect).delete(remove))
        .route("/networks/{name}/connect", post(connect))
        .route("/networks/{name}/disconnect", post(disconnect))
        .route("/networks/{name}/ports", post(publish))
        .route("/networks/{name}/ports/remove", post(unpublish))
        .route("/networks/{name}/stats", get(stats))
        .route("/networks/{name}/macs", get(macs))
        .route("/networks/{name}/flows", get(flows))
        .route("/networks/{name}/capture", get(stream::capture))
        .route(
            "/networks/{name}/capture/{id}",
            axum::routing::delete(stream::stop_capture),
        )
        .route("/events", get(stream::events))
        .route("/ports", get(list_ports))
        .route("/metrics", get(crate::metrics::handler))
        .with_state(daemon)
}

/// `OK`, or `DEGRADED` and one line per network when any data path panicked or stopped.
async fn ping(State(d): State<Shared>) -> String {
    let health = d.lock().await.datapath_health();
    if health.values().all(|h| h.healthy) {
        return "OK".to_string();
    }
    let mut body = "DEGRADED\n".to_string();
    for (name, h) in &health {
        let line = match (&h.last_panic, h.running) {
            (_, false) => "data path stopped".to_string(),
            (Some(last), true) => format!("{} panics, last: {last}", h.panics),
            (None, true) => "ok".to_string(),
        };
        body.push_str(&format!("{name}: {line}\n"));
    }
    body
}

/// A JSON request body, read within [`BODY_TIMEOUT`] and [`checks::MAX_BODY`] bytes and
/// decoded by [`checks::decode`]: 408, 413 or 400 with a one-line [`types::ErrorBody`].
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Response;

    async fn from_request(req: Request, _: &S) -> Result<Self, Response> {
        let working = req.extensions().get::<serve::Working>().cloned();
        let reply = |status: StatusCode, message: String| {
            let message = crate::error::one_line(&message);
            (status, Json(types::ErrorBody { message })).into_response()
        };
        let read = axum::body::to_bytes(req.into_body(), checks::MAX_BODY);
        let bytes = match tokio::time::timeout(BODY_TIMEOUT, read).await {
            Err(_) => {
                return Err(reply(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "request body not received within {} s",
                        BODY_TIMEOUT.as_secs()
                    ),
                ));
            }
            Ok(Err(e)) if is_too_large(&e) => {
                return Err(reply(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body is larger than {} bytes", checks::MAX_BODY),
                ));
            }
            Ok(Err(e)) => {
                return Err(reply(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read request body: {e}"),
                ));
            }
            Ok(Ok(b)) => b,
        };
        if let Some(w) = working {
            w.body_received();
        }
        checks::decode(&bytes)
            .map(Body)
            .map_err(IntoResponse::into_response)
    }
}

fn is_too_large(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Runs a daemon operation as its own task, so a client that hangs up mid-request cannot
/// cancel it between its steps (an attach half done would be left behind).
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, Error>> + Send + 'static,
) -> Result<T, Error> {
    tokio::spawn(work)
        .await
        .map_err(|e| Error::Datapath(format!("request task: {e}")))?
}

async fn list(State(d): State<Shared>) -> Json<Vec<NetworkSummary>> {
    Json(d.lock().await.list())
}

async fn create(
    State(d): State<Shared>,
    Body(req): Body<NetworkCreate>,
) -> Result<(StatusCode, Json<Created>), Error> {
    let id = match req.driver.as_deref() {
        Some("overlay") => crate::daemon::overlay::create(&d, req).await?,
        None | Some("bridge") => d.lock().await.create_network(req)?,
        Some(other) => {
            return Err(Error::Invalid(format!(
                "unknown driver {other:?}: expected bridge or overlay"
            )));
        }
    };
    Ok((StatusCode::CREATED, Json(Created { id })))
}

async fn inspect(
    State(d): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<NetworkInspect>, Error> {
    Ok(Json(d.lock().await.inspect(&name).await?))
}

async fn remove(State(d): State<Shared>, Path(name): Path<String>) -> Result<StatusCode, Error> {
    let overlay = d.lock().await.is_overlay(&name)?;
    if overlay {
        crate::daemon::overlay::remove(&d, &name).await?;
    } else {
        d.lock().await.remove_network(&name)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn connect(
    State(d): State<Shared>,
    Path(name): Path<String>,
    Body(req): Body<Connect>,
) -> Result<Json<EndpointInspect>, Error> {
    let view = detached(async move { crate::daemon::connect(&d, &name, req).await }).await?;
    Ok(Json(view))
}

async fn disconnect(
    State(d): State<Shared>,
    Path(name): Path<String>,
    Body(req): Body<Disconnect>,
) -> Result<StatusCode, Error> {
    checks::check_disconnect(&req)?;
    detached(async move { crate::daemon::disconnect(&d, &name, &req.container).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn publish(
    State(d): State<Shared>,
    Path(name): Path<String>,
    Body(req): Body<PortRequest>,
) -> Result<(StatusCode, Json<PortMapping>), Error> {
    checks::check_port(&req)?;
    let m = detached(async move {
        d.lock()
            .await
            .publish(&name, &req.container, &req.publish)
            .await
    })
    .await?;
    Ok((StatusCode::CREATED, Json(m)))
}

async fn unpublish(
    State(d): State<Shared>,
    Path(name): Path<String>,
    Body(req): Body<PortRequest>,
) -> Result<StatusCode, Error> {
    checks::check_port(&req)?;
    detached(async move {
        d.lock()
            .await
            .unpublish(&name, &req.container, &req.publish)
            .await
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of `GET /ports`.
#[derive(serde::Deserialize)]
struct PortsQuery {
    network: Option<String>,
}

async fn list_ports(
    State(d): State<Shared>,
    Query(q): Query<PortsQuery>,
) -> Result<Json<Vec<PortRow>>, Error> {
    Ok(Json(d.lock().await.list_ports(q.network.as_deref())?))
}

async fn stats(
    State(d): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<NatStatsView>, Error> {
    Ok(Json(d.lock().await.stats(&name).await?))
}

async fn macs(
    State(d): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<Vec<MacRow>>, Error> {
    Ok(Json(crate::daemon::macs(&d, &name).await?))
}

async fn flows(
    State(d): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<FlowTable>, Error> {
    Ok(Json(crate::daemon::flows(&d, &name).await?))
}
