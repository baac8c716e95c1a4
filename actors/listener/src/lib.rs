//! The server's one TLS front door (K3s's "supervisor" port, 6443 by default).
//!
//! Owns the listening socket, the TLS handshake (rustls with aws-lc-rs) and client authentication:
//! a client certificate signed by the cluster's client CA makes its CN the user and each O a group
//! ([`protocols::user::UserInfo`], put in the request extensions). It serves, as K3s does,
//! `/ping` and `/cacerts` without authentication, the health endpoints, `/metrics` for
//! authenticated users and `/debug/actors` (the kernel's live tree and its controls) for
//! `system:masters`; every other path goes to the router it is given (the API server).

mod routes;
pub mod supervisor;
mod tls;

pub use routes::{ListenerState, router, status};
pub use tls::{TlsError, server_config};

use kernel::ServiceCtx;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors that stop the listener.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// The address could not be bound (in use, or not an address of this machine).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Serve until the kernel asks this service to stop.
///
/// `app` is the complete router ([`router`] with the API as fallback). Connections in progress
/// when the stop comes are closed gracefully (in-flight requests finish, new ones are refused).
pub async fn serve(
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    ctx: ServiceCtx,
) -> Result<(), ListenerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ListenerError::Bind { addr, source })?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tracing::info!(%addr, "listening");
    ctx.ready();
    let stop = ctx.token();
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, app, stop) = (acceptor.clone(), app.clone(), stop.clone());
        connections.spawn(async move {
            let _ = tcp.set_nodelay(true);
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let user = tls::peer_identity(tls.get_ref().1.peer_certificates());
            tls::serve_connection(tls, app, user, stop).await;
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}
