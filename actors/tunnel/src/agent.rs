//! Agent side: keep a tunnel to the server open, and connect each stream the server opens to the
//! kubelet's unix socket.
//!
//! The connection is retried forever with a delay of 1 s doubling to 30 s; a connection that
//! came up resets the delay. The agent is a kernel service ([`AgentTunnel::child`]), ready once
//! the loop runs (not once connected: a server that is briefly away must not fail the agent).

use crate::mux::{self, Io, Opener, Session};
use crate::{CONNECT_PATH, KUBELET_TARGET};
use kernel::{ChildSpec, Restart};
use rustls::pki_types::ServerName;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

/// First reconnect delay.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why one connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentTunnelError {
    /// The server URL is not `https://HOST[:PORT]`.
    #[error("server URL '{0}' is not https://HOST[:PORT]")]
    BadUrl(String),
    /// TCP or TLS failed.
    #[error("cannot reach {url}: {reason}")]
    Connect {
        /// The server.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The WebSocket handshake failed (e.g. the server refused the certificate).
    #[error("tunnel handshake with {url} failed: {reason}")]
    Handshake {
        /// The server.
        url: String,
        /// What failed.
        reason: String,
    },
}

/// What the agent's tunnel needs.
#[derive(Clone)]
pub struct AgentTunnel {
    /// `https://host:port` of the server.
    pub server: String,
    /// TLS: the server's CA as root, the kubelet client certificate as identity.
    pub tls: Arc<rustls::ClientConfig>,
    /// The kubelet's API socket.
    pub kubelet_socket: PathBuf,
}

impl std::fmt::Debug for AgentTunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTunnel")
            .field("server", &self.server)
            .field("kubelet_socket", &self.kubelet_socket)
            .finish_non_exhaustive()
    }
}

/// `(host, port)` of an `https://host[:port][/...]` URL.
pub fn host_port(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, tail) = v6.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if tail.is_empty() => 443,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => Some((h.to_owned(), p.parse().ok()?)),
        Some(_) => None,
        None if !authority.is_empty() => Some((authority.to_owned(), 443)),
        None => None,
    }
}

impl AgentTunnel {
    /// A kernel service named `tunnel` running [`AgentTunnel::run`].
    pub fn child(self) -> ChildSpec {
        ChildSpec::service("tunnel", "agent-tunnel", Restart::Permanent, move |ctx| {
            let this = self.clone();
            Box::pin(async move {
                ctx.ready();
                this.run(ctx.token()).await;
                Ok(())
            })
        })
    }

    /// Connect, serve, reconnect, until `stop`.
    pub async fn run(&self, stop: CancellationToken) {
        let mut delay = BACKOFF_MIN;
        loop {
            let attempt = tokio::select! {
                () = stop.cancelled() => return,
                r = self.connect_once(&stop) => r,
            };
            if stop.is_cancelled() {
                return;
            }
            match attempt {
                Ok(()) => {
                    delay = BACKOFF_MIN;
                    tracing::warn!(server = %self.server, "tunnel to the server closed; reconnecting");
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "tunnel to the server is down");
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection: returns `Ok` once a session that came up has ended.
    async fn connect_once(&self, stop: &CancellationToken) -> Result<(), AgentTunnelError> {
        let (host, port) =
            host_port(&self.server).ok_or_else(|| AgentTunnelError::BadUrl(self.server.clone()))?;
        let connect_err = |reason: String| AgentTunnelError::Connect {
            url: self.server.clone(),
            reason,
        };
        let tcp = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        .map_err(|_| connect_err("timed out".into()))?
        .map_err(|e| connect_err(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(host.clone()).map_err(|e| connect_err(e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let handshake_err = |reason: String| AgentTunnelError::Handshake {
            url: self.server.clone(),
            reason,
        };
        let request = format!("wss://{authority}{CONNECT_PATH}")
            .into_client_request()
            .map_err(|e| handshake_err(e.to_string()))?;
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::client_async(request, tls),
        )
        .await
        .map_err(|_| handshake_err("timed out".into()))?
        .map_err(|e| handshake_err(e.to_string()))?;
        tracing::info!(server = %self.server, "tunnel to the server connected");
        let socket = self.kubelet_socket.clone();
        let opener: Opener = Arc::new(move |target: String| {
            let socket = socket.clone();
            Box::pin(async move {
                if target != KUBELET_TARGET {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::PermissionDenied,
                        format!("tunnel target '{target}' is not allowed (only {KUBELET_TARGET})"),
                    ));
                }
                let s = tokio::net::UnixStream::connect(&socket).await?;
                Ok(Box::new(s) as Box<dyn Io>)
            })
        });
        let (session, out) = Session::new();
        let stopper = session.clone();
        let stop = stop.clone();
        let watch = tokio::spawn(async move {
            stop.cancelled().await;
            stopper.close();
        });
        let result = mux::run(ws, session, out, Some(opener)).await;
        watch.abort();
        if let Err(e) = result {
            tracing::warn!(error = %e, "tunnel session ended");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_and_port() {
        assert_eq!(
            host_port("https://10.0.0.1:6443"),
            Some(("10.0.0.1".into(), 6443))
        );
        assert_eq!(
            host_port("https://example.com/"),
            Some(("example.com".into(), 443))
        );
        assert_eq!(host_port("https://[::1]:6443"), Some(("::1".into(), 6443)));
        assert_eq!(host_port("http://x:1"), None);
        assert_eq!(host_port("https://:1"), None);
    }
}
