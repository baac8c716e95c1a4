//! A minimal HTTPS client for the CLI's own calls (`k3s actors`): one request per connection,
//! the server verified against the kubeconfig's CA, the client certificate presented.

use crate::kubeconfig::Credentials;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use std::sync::Arc;

/// Errors talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig's server URL is not `https://host:port`.
    #[error("server URL '{0}' is not https://HOST[:PORT]")]
    BadUrl(String),
    /// Certificates or keys in the kubeconfig do not parse.
    #[error("kubeconfig credentials are not usable: {0}")]
    Credentials(String),
    /// The connection or TLS handshake failed.
    #[error("cannot reach {url}: {reason}")]
    Connect {
        /// The server.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The request failed after connecting.
    #[error("request to {url} failed: {reason}")]
    Request {
        /// The server.
        url: String,
        /// What failed.
        reason: String,
    },
}

/// Send `method path` and return the status code and body.
pub async fn request(
    creds: &Credentials,
    method: http::Method,
    path: &str,
) -> Result<(u16, Vec<u8>), ClientError> {
    let rest = creds
        .server
        .strip_prefix("https://")
        .ok_or_else(|| ClientError::BadUrl(creds.server.clone()))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) =
        split_host_port(authority).ok_or_else(|| ClientError::BadUrl(creds.server.clone()))?;
    let tls = client_config(creds)?;
    let connect_err = |reason: String| ClientError::Connect {
        url: creds.server.clone(),
        reason,
    };
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| connect_err(e.to_string()))?;
    let name = ServerName::try_from(host.clone()).map_err(|e| connect_err(e.to_string()))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| connect_err(e.to_string()))?;
    let req_err = |reason: String| ClientError::Request {
        url: creds.server.clone(),
        reason,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| req_err(e.to_string()))?;
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, authority);
    if let Some(t) = &creds.token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| req_err(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| req_err(e.to_string()))?;
    let code = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| req_err(e.to_string()))?
        .to_bytes()
        .to_vec();
    Ok((code, body))
}

fn split_host_port(authority: &str) -> Option<(String, u16)> {
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, rest) = v6.split_once(']')?;
        let port = rest
            .strip_prefix(':')
            .map_or(Some(443), |p| p.parse().ok())?;
        return Some((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_owned(), p.parse().ok()?)),
        None => Some((authority.to_owned(), 443)),
    }
}

fn client_config(creds: &Credentials) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let bad = |e: &dyn std::fmt::Display| ClientError::Credentials(e.to_string());
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &creds.ca_pem {
        for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(c.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(&e))?
    .with_root_certificates(roots);
    let cfg = match &creds.client_cert_pem {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(&e))?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| bad(&e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad(&e))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_split() {
        assert_eq!(
            split_host_port("127.0.0.1:6443"),
            Some(("127.0.0.1".into(), 6443))
        );
        assert_eq!(split_host_port("[::1]:6443"), Some(("::1".into(), 6443)));
        assert_eq!(
            split_host_port("example.com"),
            Some(("example.com".into(), 443))
        );
        assert_eq!(split_host_port("h:notaport"), None);
    }
}
