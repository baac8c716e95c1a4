//! The cluster join token, in K3s's formats.
//!
//! A *secure* token is `K10<ca-hash>::<username>:<password>`, where `<ca-hash>` is the lowercase hex
//! SHA-256 of the server's CA bundle exactly as `/cacerts` serves it. An agent uses the hash to pin
//! the CA before it trusts the server. A *short* token is only the password (no CA pinning).

use sha2::{Digest, Sha256};
use std::fmt;

/// The prefix of every secure token (K3s token format version 1, "K10").
pub const SECURE_PREFIX: &str = "K10";

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// SHA-256 of the CA bundle, when the token pins one.
    pub ca_hash: Option<String>,
    /// The user part of the credentials (`server` or `node`), when given.
    pub username: Option<String>,
    /// The shared secret.
    pub password: String,
}

/// Why a token string could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// The token is empty or only whitespace.
    #[error("the token is empty")]
    Empty,
    /// A `K10` token whose CA hash is not 64 hex digits.
    #[error("the token's CA hash must be 64 hexadecimal digits (sha256), got {len} characters")]
    BadCaHash {
        /// Length of the hash that was found.
        len: usize,
    },
    /// A `K10...::` token with nothing after the separator.
    #[error("the token has no credentials after '::'")]
    NoCredentials,
    /// The secret contains characters that cannot travel in a header or a file line.
    #[error("the token contains whitespace or control characters")]
    BadCharacters,
}

/// The hash a secure token pins: lowercase hex SHA-256 of the CA bundle bytes.
pub fn ca_hash(ca_bundle: &[u8]) -> String {
    hex::encode(Sha256::digest(ca_bundle))
}

impl Token {
    /// A server token for `password`, pinned to `ca_bundle`.
    pub fn server(ca_bundle: &[u8], password: &str) -> Self {
        Token {
            ca_hash: Some(ca_hash(ca_bundle)),
            username: Some("server".to_owned()),
            password: password.to_owned(),
        }
    }

    /// Parse either form. `K10<hash>::<user>:<password>` or `K10<hash>::<password>` or a bare password.
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(TokenError::Empty);
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(TokenError::BadCharacters);
        }
        let Some(rest) = s.strip_prefix(SECURE_PREFIX).filter(|r| r.contains("::")) else {
            return Ok(Token {
                ca_hash: None,
                username: None,
                password: s.to_owned(),
            });
        };
        let (hash, creds) = rest.split_once("::").unwrap_or((rest, ""));
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::BadCaHash { len: hash.len() });
        }
        if creds.is_empty() {
            return Err(TokenError::NoCredentials);
        }
        let (username, password) = match creds.split_once(':') {
            Some((u, p)) if !p.is_empty() => (Some(u.to_owned()), p.to_owned()),
            _ => (None, creds.to_owned()),
        };
        Ok(Token {
            ca_hash: Some(hash.to_ascii_lowercase()),
            username,
            password,
        })
    }

    /// Whether `ca_bundle` is the CA this token pins (always true for a short token).
    pub fn matches_ca(&self, ca_bundle: &[u8]) -> bool {
        self.ca_hash
            .as_deref()
            .is_none_or(|h| h == ca_hash(ca_bundle))
    }
}

impl fmt::Display for Token {
    /// The token in its canonical text form (this prints the secret: for files and headers only).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.ca_hash, &self.username) {
            (Some(h), Some(u)) => write!(f, "{SECURE_PREFIX}{h}::{u}:{}", self.password),
            (Some(h), None) => write!(f, "{SECURE_PREFIX}{h}::{}", self.password),
            (None, _) => f.write_str(&self.password),
        }
    }
}

impl fmt::Debug for Token {
    /// Never prints the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("ca_hash", &self.ca_hash)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_token_round_trips() {
        let t = Token::server(b"ca bundle", "s3cret");
        let text = t.to_string();
        assert!(text.starts_with("K10"));
        assert!(text.ends_with("::server:s3cret"));
        assert_eq!(Token::parse(&text), Ok(t.clone()));
        assert!(t.matches_ca(b"ca bundle"));
        assert!(!t.matches_ca(b"another ca"));
    }

    #[test]
    fn short_token_pins_nothing() {
        let t = Token::parse("just-a-password").expect("short token");
        assert_eq!(t.ca_hash, None);
        assert!(t.matches_ca(b"anything"));
        assert_eq!(t.to_string(), "just-a-password");
    }

    #[test]
    fn bad_tokens_are_named() {
        assert_eq!(Token::parse("  "), Err(TokenError::Empty));
        assert_eq!(
            Token::parse("K10abc::server:x"),
            Err(TokenError::BadCaHash { len: 3 })
        );
        let h = "a".repeat(64);
        assert_eq!(
            Token::parse(&format!("K10{h}::")),
            Err(TokenError::NoCredentials)
        );
        assert_eq!(Token::parse("a b"), Err(TokenError::BadCharacters));
    }

    #[test]
    fn debug_hides_the_secret() {
        let t = Token::server(b"x", "topsecret");
        assert!(!format!("{t:?}").contains("topsecret"));
    }
}
