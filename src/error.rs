//! The daemon's error type: every refusal carries the value at fault and maps to an HTTP
//! status; the client prints the message on one line and exits non-zero.

use std::path::PathBuf;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::api::types::ErrorBody;

/// Why a control-plane request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input that the user must change.
    #[error("{0}")]
    Invalid(String),
    /// A network, endpoint or namespace that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A conflict with existing state (name taken, address in use, endpoints attached).
    #[error("{0}")]
    Conflict(String),
    /// Address management refused.
    #[error(transparent)]
    Ipam(#[from] ipam::IpamError),
    /// The netns helper refused or failed.
    #[error(transparent)]
    Helper(#[from] netns_helper::HelperError),
    /// Persisting state failed; the change was rolled back.
    #[error("cannot save state to {path}: {reason}")]
    State {
        /// The state file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The data path thread of a network is gone.
    #[error("data path of network {0} stopped")]
    Datapath(String),
    /// A service the request needs (the cluster store) cannot be reached; try again later.
    #[error("{0}")]
    Unavailable(String),
}

impl Error {
    /// The HTTP status this error is reported with.
    pub fn status(&self) -> StatusCode {
        use ipam::IpamError as I;
        use netns_helper::HelperError as H;
        match self {
            Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Ipam(e) => match e {
                I::Overlap { .. } | I::AddressInUse { .. } | I::Exhausted { .. } => {
                    StatusCode::CONFLICT
                }
                I::PoolsExhausted => StatusCode::CONFLICT,
                I::Io { .. } | I::Corrupt { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            },
            Error::Helper(e) => match e {
                H::NoSuchNetns(_) | H::NetnsReplaced(_) | H::InterfaceGone(_) => {
                    StatusCode::NOT_FOUND
                }
                H::NotANetns(_) => StatusCode::BAD_REQUEST,
                H::InterfaceExists { .. } => StatusCode::CONFLICT,
                H::Enter { .. } => StatusCode::FORBIDDEN,
                H::TimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Error::State { .. } | Error::Datapath(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl Error {
    /// The message as clients receive it: [`one_line`].
    pub fn message(&self) -> String {
        one_line(&self.to_string())
    }
}

/// Text made safe to print as one line: control characters (newlines included, which serde
/// copies from unknown field names and the like) are escaped as `\n`, `\u{1b}`, ...
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            message: self.message(),
        };
        (self.status(), axum::Json(body)).into_response()
    }
}
