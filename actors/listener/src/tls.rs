//! TLS configuration, client-certificate identity, and serving one connection over HTTP/1.1 or 2.

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use protocols::user::UserInfo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use rustls::server::WebPkiClientVerifier;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The TLS material could not be turned into a server configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM block does not parse.
    #[error("invalid {what} PEM: {reason}")]
    Pem {
        /// Which input.
        what: &'static str,
        /// The parser's error.
        reason: String,
    },
    /// rustls refused the certificate/key or the CA.
    #[error("TLS configuration rejected: {0}")]
    Rustls(String),
}

/// A rustls server config: the serving chain and key, client certificates checked against
/// `client_ca_pem` but optional (requests without one are anonymous), ALPN h2 and http/1.1.
pub fn server_config(
    chain_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let pem = |what| {
        move |e: rustls::pki_types::pem::Error| TlsError::Pem {
            what,
            reason: e.to_string(),
        }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(pem("serving certificate"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(pem("serving key"))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        roots
            .add(ca.map_err(pem("client CA"))?)
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The identity a verified client certificate carries: CN is the user, each O a group.
/// No certificate (or one without a CN) is anonymous; rustls has already rejected bad ones.
pub fn peer_identity(certs: Option<&[CertificateDer<'_>]>) -> UserInfo {
    let Some(leaf) = certs.and_then(|c| c.first()) else {
        return UserInfo::anonymous();
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf) else {
        return UserInfo::anonymous();
    };
    let subject = cert.subject();
    let Some(cn) = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
    else {
        return UserInfo::anonymous();
    };
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_owned);
    UserInfo::authenticated(cn, groups)
}

/// How long connections may finish their requests once the server is stopping.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Serve HTTP on one TLS connection until the client leaves or `stop` fires (then gracefully).
pub(crate) async fn serve_connection<S>(
    io: S,
    app: axum::Router,
    user: UserInfo,
    stop: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = app.map_request(move |mut req: http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(user.clone());
        req
    });
    let svc = hyper_util::service::TowerToHyperService::new(svc);
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            // Requests in flight get a moment to finish; watches never do, so the connection is
            // dropped after that (clients re-watch from their last resourceVersion).
            if tokio::time::timeout(DRAIN_TIMEOUT, conn).await.is_err() {
                tracing::debug!("closed a connection still busy (a watch or stream) at shutdown");
            }
        }
    }
}
