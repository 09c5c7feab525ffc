//! The HTTP client `vswitchctl` uses: one request per connection over the daemon's unix
//! socket (hyper 1, HTTP/1.1).

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::types::ErrorBody;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers on the socket.
    #[error("daemon not running (cannot connect to {socket}: {reason}); start it with `vswitchd`")]
    NotRunning {
        /// The socket tried.
        socket: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The daemon refused the request.
    #[error("{message}")]
    Refused {
        /// HTTP status.
        status: StatusCode,
        /// The daemon's one-line message.
        message: String,
    },
    /// The exchange itself failed.
    #[error("talking to the daemon: {0}")]
    Protocol(String),
}

/// A client bound to one daemon socket.
#[derive(Clone, Debug)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    /// A client for the daemon listening on `socket`.
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
        }
    }

    /// Sends one request; returns the body of a 2xx answer.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, ClientError> {
        let resp = self.open(method, path, body).await?;
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?
            .to_bytes();
        Ok(bytes)
    }

    /// Sends one request and returns a 2xx answer whose body is still to be read (a stream:
    /// `capture`, `events`); trailers are asked for.
    ///
    /// # Errors
    /// [`ClientError`], with the daemon's message for a non-2xx answer.
    pub async fn open(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let proto = |e: &dyn std::fmt::Display| ClientError::Protocol(e.to_string());
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| ClientError::NotRunning {
                socket: self.socket.clone(),
                reason: e.to_string(),
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| proto(&e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "vswitchd")
            .header("content-type", "application/json")
            .header("te", "trailers")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| proto(&e))?;
        let resp = sender.send_request(req).await.map_err(|e| proto(&e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| proto(&e))?
            .to_bytes();
        let message = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => b.message,
            // axum's own rejections (bad JSON) are plain text.
            Err(_) => String::from_utf8_lossy(&bytes).trim().to_string(),
        };
        Err(ClientError::Refused { status, message })
    }

    /// GET returning JSON.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let bytes = self.call(Method::GET, path, None).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// POST a JSON body; returns the raw answer.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn post<B: Serialize>(&self, path: &str, body: &B) -> Result<Bytes, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.call(Method::POST, path, Some(body)).await
    }

    /// DELETE.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.call(Method::DELETE, path, None).await.map(|_| ())
    }
}
