//! A small blocking client of the API (hyper over a Unix stream), used by the CLI.
//!
//! Each call opens one connection on its own current-thread runtime: the CLI makes one or two
//! calls per run, and this keeps the commands free of async code.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::body::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

use super::types::ErrorBody;

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nobody listens on the socket (no file, or a stale one).
    #[error("the agent is not running (nothing listens on {0})")]
    NotRunning(PathBuf),
    #[error("{socket}: permission denied; the agent's socket is root only (run as root)")]
    PermissionDenied { socket: PathBuf },
    #[error("{socket}: {message}")]
    Transport { socket: PathBuf, message: String },
    /// The agent answered with an error.
    #[error("{0}")]
    Api(String),
    /// The agent answered something that is not the expected JSON.
    #[error("unexpected answer from the agent on {socket}: {message}")]
    BadAnswer { socket: PathBuf, message: String },
}

/// The client of one socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: &Path) -> Client {
        Client {
            socket: socket.to_path_buf(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn transport(&self, e: impl std::fmt::Display) -> ClientError {
        ClientError::Transport {
            socket: self.socket.clone(),
            message: e.to_string(),
        }
    }

    fn runtime(&self) -> Result<tokio::runtime::Runtime, ClientError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| self.transport(e))
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
    ) -> Result<hyper::Response<Incoming>, ClientError> {
        let stream = match tokio::net::UnixStream::connect(&self.socket).await {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(ClientError::NotRunning(self.socket.clone()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(ClientError::PermissionDenied {
                    socket: self.socket.clone(),
                });
            }
            Err(e) => return Err(self.transport(e)),
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.transport(e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "agent")
            .body(Empty::<Bytes>::new())
            .map_err(|e| self.transport(e))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| self.transport(e))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| self.transport(e))?
                .to_bytes();
            let msg = serde_json::from_slice::<ErrorBody>(&body)
                .map(|b| b.error)
                .unwrap_or_else(|_| format!("{status}: {}", String::from_utf8_lossy(&body)));
            return Err(ClientError::Api(msg));
        }
        Ok(resp)
    }

    /// `GET path` (or `POST` when `post`), answer read as JSON.
    pub fn call<T: DeserializeOwned>(&self, post: bool, path: &str) -> Result<T, ClientError> {
        let rt = self.runtime()?;
        rt.block_on(async {
            let resp = self.send(if post { "POST" } else { "GET" }, path).await?;
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| self.transport(e))?
                .to_bytes();
            serde_json::from_slice(&body).map_err(|e| ClientError::BadAnswer {
                socket: self.socket.clone(),
                message: e.to_string(),
            })
        })
    }

    /// `GET path` of a JSON-lines answer; `line` is called for each line until it returns false
    /// or the stream ends.
    pub fn lines(&self, path: &str, mut line: impl FnMut(&str) -> bool) -> Result<(), ClientError> {
        let rt = self.runtime()?;
        rt.block_on(async {
            let resp = self.send("GET", path).await?;
            let mut body = resp.into_body();
            let mut buf: Vec<u8> = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| self.transport(e))?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                buf.extend_from_slice(&data);
                while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let rest = buf.split_off(pos + 1);
                    let text = String::from_utf8_lossy(&buf[..pos]).into_owned();
                    buf = rest;
                    if !line(&text) {
                        return Ok(());
                    }
                }
            }
            Ok(())
        })
    }

    /// Whether an agent answers on the socket within `timeout`.
    pub fn is_running(&self, timeout: Duration) -> bool {
        let Ok(rt) = self.runtime() else {
            return false;
        };
        rt.block_on(async {
            tokio::time::timeout(timeout, tokio::net::UnixStream::connect(&self.socket))
                .await
                .is_ok_and(|r| r.is_ok())
        })
    }
}
