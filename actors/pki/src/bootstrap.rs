//! Cluster identity shared through the datastore ("bootstrap data", as K3s calls it).
//!
//! Servers that share an external datastore must be one cluster: the first server seals its
//! certificate authorities and service-account key with the join token and stores them; a later
//! server with the same token unseals them and uses them instead of generating its own. The key
//! is derived from the token's password with PBKDF2-HMAC-SHA256 and the bundle is sealed with
//! AES-256-GCM (authenticated: a wrong token fails to open, it never yields garbage). The storage
//! key is derived from the token too, so a server with another token finds nothing of its own.

use crate::certs::{PkiError, write_file, write_secret};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::Path;

/// PBKDF2 iterations (K3s uses 4096 with SHA-1; SHA-256 here).
const ITERATIONS: u32 = 100_000;
/// The files that make up a cluster's identity (under `<data-dir>/server/tls`).
pub const FILES: &[&str] = &[
    "server-ca.crt",
    "server-ca.key",
    "client-ca.crt",
    "client-ca.key",
    "request-header-ca.crt",
    "request-header-ca.key",
    "service.key",
];

/// A short, non-secret id of a token's password, for the storage key.
fn hash_id(password: &str) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("k3s-bootstrap:{password}").as_bytes(),
    );
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Errors sealing or opening bootstrap data.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The sealed bundle does not open with this token.
    #[error(
        "the cluster data in the datastore cannot be decrypted with this token (was the cluster created with another --token?)"
    )]
    WrongToken,
    /// The sealed bundle is not in the expected format.
    #[error("the cluster data in the datastore is corrupt: {0}")]
    Corrupt(String),
    /// Reading or writing the files failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// The datastore key holding the bundle sealed with `password`.
pub fn storage_key(password: &str) -> String {
    format!("/bootstrap/{}", hash_id(password))
}

fn key_for(password: &str, salt: &[u8]) -> LessSafeKey {
    let mut key = [0u8; 32];
    let iterations = NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN);
    aws_lc_rs::pbkdf2::derive(
        aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        password.as_bytes(),
        &mut key,
    );
    // 32 bytes is exactly AES-256's key length, so this cannot fail.
    LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &key).unwrap_or_else(|_| unreachable!("32-byte AES-256 key")),
    )
}

/// Read the identity files from `tls_dir` and seal them with `password`.
pub fn seal(tls_dir: &Path, password: &str) -> Result<Vec<u8>, BootstrapError> {
    let mut files = BTreeMap::new();
    for name in FILES {
        let path = tls_dir.join(name);
        let text = std::fs::read_to_string(&path).map_err(|source| PkiError::Io {
            action: "cannot read",
            path: path.clone(),
            source,
        })?;
        files.insert((*name).to_owned(), text);
    }
    let plain = serde_json::to_vec(&files).map_err(|e| BootstrapError::Corrupt(e.to_string()))?;
    let salt: [u8; 16] = rand::random();
    let nonce: [u8; 12] = rand::random();
    let mut buf = plain;
    key_for(password, &salt)
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
        .map_err(|_| BootstrapError::Corrupt("encryption failed".into()))?;
    let text = format!(
        "v1:{}:{}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(nonce),
        STANDARD.encode(&buf)
    );
    Ok(text.into_bytes())
}

/// Open a sealed bundle with `password` and write its files into `tls_dir` (replacing local
/// ones, since the cluster's identity wins). Returns the names written.
pub fn restore(
    tls_dir: &Path,
    password: &str,
    sealed: &[u8],
) -> Result<Vec<String>, BootstrapError> {
    let files = open(password, sealed)?;
    std::fs::create_dir_all(tls_dir).map_err(|source| PkiError::Io {
        action: "cannot create directory",
        path: tls_dir.to_owned(),
        source,
    })?;
    let mut written = Vec::new();
    for (name, text) in files {
        if !FILES.contains(&name.as_str()) {
            return Err(BootstrapError::Corrupt(format!("unexpected file {name}")));
        }
        let path = tls_dir.join(&name);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
            continue;
        }
        if name.ends_with(".key") {
            write_secret(&path, &text)?;
        } else {
            write_file(&path, &text, 0o644)?;
        }
        written.push(name);
    }
    Ok(written)
}

/// Decrypt a sealed bundle.
pub fn open(password: &str, sealed: &[u8]) -> Result<BTreeMap<String, String>, BootstrapError> {
    let text =
        std::str::from_utf8(sealed).map_err(|_| BootstrapError::Corrupt("not text".into()))?;
    let parts: Vec<&str> = text.split(':').collect();
    let [version, salt, nonce, body] = parts.as_slice() else {
        return Err(BootstrapError::Corrupt("unexpected layout".into()));
    };
    if *version != "v1" {
        return Err(BootstrapError::Corrupt(format!(
            "unknown version {version}"
        )));
    }
    let decode = |s: &str| {
        STANDARD
            .decode(s)
            .map_err(|e| BootstrapError::Corrupt(e.to_string()))
    };
    let (salt, nonce, mut body) = (decode(salt)?, decode(nonce)?, decode(body)?);
    let nonce: [u8; 12] = nonce
        .try_into()
        .map_err(|_| BootstrapError::Corrupt("bad nonce".into()))?;
    let plain = key_for(password, &salt)
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut body)
        .map_err(|_| BootstrapError::WrongToken)?;
    serde_json::from_slice(plain).map_err(|e| BootstrapError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_restore_round_trip_and_wrong_tokens_fail() {
        let a = tempfile::tempdir().expect("tempdir");
        let names = crate::ServingNames::for_apiserver(
            "cluster.local",
            "10.43.0.1".parse().expect("ip"),
            &[],
        );
        crate::ensure(a.path(), &names).expect("generate");
        let sealed = seal(a.path(), "secret-token").expect("seal");
        assert!(matches!(
            open("other", &sealed),
            Err(BootstrapError::WrongToken)
        ));
        let b = tempfile::tempdir().expect("tempdir");
        let written = restore(b.path(), "secret-token", &sealed).expect("restore");
        assert_eq!(written.len(), FILES.len());
        for f in FILES {
            assert_eq!(
                std::fs::read(a.path().join(f)).expect("a"),
                std::fs::read(b.path().join(f)).expect("b"),
                "{f}"
            );
        }
        let pki_b = crate::ensure(b.path(), &names).expect("reuse");
        let pki_a = crate::ensure(a.path(), &names).expect("reuse");
        assert_eq!(pki_a.server_ca.cert_pem, pki_b.server_ca.cert_pem);
        assert_ne!(storage_key("secret-token"), storage_key("other"));
    }
}
