//! The control API: HTTP/JSON over the daemon's unix socket (see [`types`] for the contract).
//!
//! Handlers lock the daemon's control-plane state for the duration of one operation; the
//! data path threads never take that lock, so traffic is not stalled by API calls.

pub mod types;

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::Mutex;

use crate::daemon::Daemon;
use crate::error::Error;
use types::{
    Connect, Created, Disconnect, EndpointInspect, NatStatsView, NetworkCreate, NetworkInspect,
    NetworkSummary, PortMapping, PortRequest, PortRow,
};

/// The daemon as shared by the handlers.
pub type Shared = Arc<Mutex<Daemon>>;

/// Builds the router for the endpoints listed in [`types`].
pub fn router(daemon: Shared) -> Router {
    Router::new()
        .route("/_ping", get(ping))
        .route("/networks", get(list))
        .route("/networks/create", post(create))
        .route("/networks/{name}", get(inspect).delete(remove))
        .route("/networks/{name}/connect", post(connect))
        .route("/networks/{name}/disconnect", post(disconnect))
        .route("/networks/{name}/ports", post(add_port))
        .route("/networks/{name}/ports/remove", post(remove_port))
        .route("/networks/{name}/stats", get(stats))
        .route("/ports", get(list_ports))
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

async fn list(State(d): State<Shared>) -> Json<Vec<NetworkSummary>> {
    Json(d.lock().await.list())
}

async fn create(
    State(d): State<Shared>,
    Json(req): Json<NetworkCreate>,
) -> Result<(StatusCode, Json<Created>), Error> {
    let id = d.lock().await.create_network(req)?;
    Ok((StatusCode::CREATED, Json(Created { id })))
}

async fn inspect(
    State(d): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<NetworkInspect>, Error> {
    Ok(Json(d.lock().await.inspect(&name).await?))
}

async fn remove(State(d): State<Shared>, Path(name): Path<String>) -> Result<StatusCode, Error> {
    d.lock().await.remove_network(&name)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn connect(
    State(d): State<Shared>,
    Path(name): Path<String>,
    Json(req): Json<Connect>,
) -> Result<Json<EndpointInspect>, Error> {
    Ok(Json(d.lock().await.connect(&name, req).await?))
}

async fn disconnect(
    State(d): State<Shared>,
    Path(name): Path<String>,
    Json(req): Json<Disconnect>,
) -> Result<StatusCode, Error> {
    d.lock().await.disconnect(&name, &req.container).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn add_port(
    State(d): State<Shared>,
    Path(name): Path<String>,
    Json(req): Json<PortRequest>,
) -> Result<(StatusCode, Json<PortMapping>), Error> {
    let m = d
        .lock()
        .await
        .add_port(&name, &req.container, &req.publish)
        .await?;
    Ok((StatusCode::CREATED, Json(m)))
}

async fn remove_port(
    State(d): State<Shared>,
    Path(name): Path<String>,
    Json(req): Json<PortRequest>,
) -> Result<StatusCode, Error> {
    d.lock()
        .await
        .remove_port(&name, &req.container, &req.publish)
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
