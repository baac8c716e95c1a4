//! Service-account tokens: JSON Web Tokens signed with the cluster's service-account key.
//!
//! Owns the JWT encoding (compact JWS, `RS256` for an RSA key, `ES256` for a P-256 key, both
//! through aws-lc-rs), the claims upstream puts in a token (`iss`, `sub`, `aud`, `exp`, `iat`,
//! `nbf`, `jti` and the private `kubernetes.io` claim), their verification, and the public key as
//! a JSON Web Key Set for issuer discovery. Pure logic: whether the service account (or the
//! object a token is bound to) still exists is checked by [`crate::authn`].
//!
//! Invariant: a token this module accepts was signed by this key, names this issuer, has at
//! least one of the server's audiences and is inside its validity window.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;

/// `expirationSeconds` when a TokenRequest gives none (upstream's default).
pub const DEFAULT_EXPIRATION: i64 = 3600;
/// The shortest validity a TokenRequest may ask for (10 minutes, as upstream validates).
pub const MIN_EXPIRATION: i64 = 600;
/// The longest validity a TokenRequest may ask for (2^32 seconds, as upstream validates).
pub const MAX_EXPIRATION: i64 = 1 << 32;
/// Slack for `nbf` and `iat` (clocks of other issuers' hosts may run a little ahead).
const CLOCK_SKEW: i64 = 60;

/// The service-account key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The PEM text holds no private key.
    #[error("the service-account key is not a PEM private key: {0}")]
    Pem(String),
    /// The key is neither RSA (2048 to 8192 bits) nor ECDSA P-256 in PKCS#8.
    #[error(
        "the service-account key is neither an RSA nor an ECDSA P-256 PKCS#8 private key (RSA: {rsa}; EC: {ec})"
    )]
    Unsupported {
        /// Why aws-lc-rs rejected it as RSA.
        rsa: String,
        /// Why aws-lc-rs rejected it as EC.
        ec: String,
    },
    /// Signing failed (aws-lc-rs reported an error).
    #[error("cannot sign a service-account token with the service-account key")]
    Sign,
    /// The public key cannot be encoded (for the key id).
    #[error("cannot encode the service-account public key")]
    PublicKey,
}

/// Why a bearer token is not a valid service-account token of this server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not three base64url segments, or a header or payload that is not the expected JSON.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// Signed with another algorithm than this server's key uses.
    #[error("token signed with {0}, this server's key signs with another algorithm")]
    Algorithm(String),
    /// The signature does not verify with this server's public key.
    #[error("invalid signature")]
    Signature,
    /// Issued by someone else.
    #[error("token issued by {0:?}, not by this server")]
    Issuer(String),
    /// Past `exp`.
    #[error("token has expired")]
    Expired,
    /// Before `nbf` or `iat`.
    #[error("token is not valid yet")]
    NotYetValid,
    /// None of the token's audiences is one of the server's.
    #[error("token audiences {0:?} are not accepted by this server")]
    Audience(Vec<String>),
    /// Not a service-account subject (`system:serviceaccount:<ns>:<name>`), or it disagrees with
    /// the `kubernetes.io` claim.
    #[error("token subject {0:?} is not a service account")]
    Subject(String),
}

/// A `{name, uid}` reference inside the `kubernetes.io` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The object's name.
    pub name: String,
    /// The object's uid.
    pub uid: String,
}

/// The private `kubernetes.io` claim: whose token this is and what it is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaim {
    /// The service account's namespace.
    pub namespace: String,
    /// The service account.
    pub serviceaccount: ObjectRef,
    /// The pod the token is bound to (it dies with the pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    /// The secret the token is bound to (it dies with the secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    /// The node the token is bound to (it dies with the node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
}

/// The claims of a service-account token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: `system:serviceaccount:<namespace>:<name>`.
    pub sub: String,
    /// Audiences (a JSON string or array on the wire).
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Unique token id.
    #[serde(default)]
    pub jti: String,
    /// What Kubernetes adds.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaim,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

impl Claims {
    /// Claims for the service account `namespace/name` (uid `uid`), valid from `now` for
    /// `lifetime` seconds, with a fresh `jti`.
    pub fn new(
        issuer: &str,
        audiences: Vec<String>,
        namespace: &str,
        sa: ObjectRef,
        now: i64,
        lifetime: i64,
    ) -> Self {
        Claims {
            iss: issuer.to_owned(),
            sub: subject(namespace, &sa.name),
            aud: audiences,
            exp: now + lifetime,
            iat: now,
            nbf: now,
            jti: crate::meta::new_uid(),
            kubernetes: KubernetesClaim {
                namespace: namespace.to_owned(),
                serviceaccount: sa,
                pod: None,
                secret: None,
                node: None,
            },
        }
    }
}

/// The user name of a service account.
pub fn subject(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

enum SigningKey {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// Issues and verifies the service-account tokens of one cluster.
pub struct Issuer {
    issuer: String,
    audiences: Vec<String>,
    key: SigningKey,
    verifier: UnparsedPublicKey<Vec<u8>>,
    kid: String,
    jwk: Value,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("alg", &self.alg())
            .field("kid", &self.kid)
            .finish()
    }
}

/// The DER bytes of the first PEM block of `pem`.
fn pem_der(pem: &str) -> Result<Vec<u8>, KeyError> {
    let mut inside = false;
    let mut b64 = String::new();
    for line in pem.lines().map(str::trim) {
        if line.starts_with("-----BEGIN ") {
            inside = true;
        } else if line.starts_with("-----END ") {
            break;
        } else if inside {
            b64.push_str(line);
        }
    }
    if b64.is_empty() {
        return Err(KeyError::Pem("no BEGIN/END block".into()));
    }
    STANDARD
        .decode(b64)
        .map_err(|e| KeyError::Pem(format!("bad base64: {e}")))
}

impl Issuer {
    /// An issuer for `cluster_domain` (issuer `https://kubernetes.default.svc.<domain>`, audiences
    /// that plus `k3s`, as K3s configures kube-apiserver) signing with the PKCS#8 PEM `key_pem`.
    pub fn new(key_pem: &str, cluster_domain: &str) -> Result<Self, KeyError> {
        let issuer = format!("https://kubernetes.default.svc.{cluster_domain}");
        let audiences = vec![issuer.clone(), "k3s".to_owned()];
        Self::with(key_pem, issuer, audiences)
    }

    /// An issuer with an explicit issuer URL and accepted audiences.
    pub fn with(key_pem: &str, issuer: String, audiences: Vec<String>) -> Result<Self, KeyError> {
        let der = pem_der(key_pem)?;
        let (key, verifier, spki, jwk_fields) = match RsaKeyPair::from_pkcs8(&der) {
            Ok(rsa) => {
                let public = rsa.public_key();
                let verifier = UnparsedPublicKey::new(
                    &signature::RSA_PKCS1_2048_8192_SHA256,
                    public.as_ref().to_vec(),
                );
                let spki = public.as_der().map_err(|_| KeyError::PublicKey)?;
                let fields = json!({
                    "kty": "RSA", "alg": "RS256",
                    "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
                    "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
                });
                (
                    SigningKey::Rsa(rsa),
                    verifier,
                    spki.as_ref().to_vec(),
                    fields,
                )
            }
            Err(rsa_err) => {
                let ec =
                    EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                        .map_err(|ec_err| KeyError::Unsupported {
                            rsa: rsa_err.to_string(),
                            ec: ec_err.to_string(),
                        })?;
                let point = ec.public_key().as_ref().to_vec();
                let spki = ec.public_key().as_der().map_err(|_| KeyError::PublicKey)?;
                // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
                if point.len() != 65 {
                    return Err(KeyError::PublicKey);
                }
                let fields = json!({
                    "kty": "EC", "alg": "ES256", "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                    "y": URL_SAFE_NO_PAD.encode(&point[33..]),
                });
                let verifier = UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point);
                (SigningKey::Ec(ec), verifier, spki.as_ref().to_vec(), fields)
            }
        };
        // Upstream's key id: base64url(SHA-256(DER SubjectPublicKeyInfo)).
        let kid = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&spki));
        let mut jwk = jwk_fields;
        jwk["use"] = json!("sig");
        jwk["kid"] = json!(kid);
        Ok(Issuer {
            issuer,
            audiences,
            key,
            verifier,
            kid,
            jwk,
        })
    }

    /// The issuer URL (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audiences this server accepts, and gives tokens that name none.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The JWS algorithm of the key.
    pub fn alg(&self) -> &'static str {
        match self.key {
            SigningKey::Rsa(_) => "RS256",
            SigningKey::Ec(_) => "ES256",
        }
    }

    /// The key id in every token's header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JSON Web Key Set (`/openid/v1/jwks`).
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.jwk]})
    }

    /// Sign `claims` into a compact JWS.
    pub fn sign(&self, claims: &Claims) -> Result<String, KeyError> {
        let header = json!({"alg": self.alg(), "kid": self.kid});
        let payload = serde_json::to_vec(claims).map_err(|_| KeyError::Sign)?;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let rng = SystemRandom::new();
        let sig = match &self.key {
            SigningKey::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    signing_input.as_bytes(),
                    &mut sig,
                )
                .map_err(|_| KeyError::Sign)?;
                sig
            }
            SigningKey::Ec(k) => k
                .sign(&rng, signing_input.as_bytes())
                .map_err(|_| KeyError::Sign)?
                .as_ref()
                .to_vec(),
        };
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// Verify `token` at time `now` (seconds since the epoch) for this server's audiences.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, VerifyError> {
        self.verify_for(token, now, &self.audiences)
    }

    /// Verify `token` at time `now` (seconds since the epoch): signature, issuer, validity
    /// window, one of `audiences`, and subject. Returns its claims.
    pub fn verify_for(
        &self,
        token: &str,
        now: i64,
        audiences: &[String],
    ) -> Result<Claims, VerifyError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VerifyError::Malformed("not three dot-separated segments"));
        };
        let header: Value = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(VerifyError::Malformed("header is not base64url JSON"))?;
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
        if alg != self.alg() {
            return Err(VerifyError::Algorithm(alg.to_owned()));
        }
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| VerifyError::Malformed("signature is not base64url"))?;
        let signed = &token[..h.len() + 1 + p.len()];
        self.verifier
            .verify(signed.as_bytes(), &sig)
            .map_err(|_| VerifyError::Signature)?;
        let payload = URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| VerifyError::Malformed("payload is not base64url"))?;
        let claims: Claims = serde_json::from_slice(&payload)
            .map_err(|_| VerifyError::Malformed("payload lacks service-account claims"))?;
        if claims.iss != self.issuer {
            return Err(VerifyError::Issuer(claims.iss));
        }
        if now >= claims.exp {
            return Err(VerifyError::Expired);
        }
        if now + CLOCK_SKEW < claims.nbf || now + CLOCK_SKEW < claims.iat {
            return Err(VerifyError::NotYetValid);
        }
        if !claims.aud.iter().any(|a| audiences.contains(a)) {
            return Err(VerifyError::Audience(claims.aud));
        }
        let k = &claims.kubernetes;
        if claims.sub != subject(&k.namespace, &k.serviceaccount.name) {
            return Err(VerifyError::Subject(claims.sub));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rsa_pem() -> String {
        let key =
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("generate");
        pem("PRIVATE KEY", key.as_der().expect("der").as_ref())
    }

    fn ec_pem() -> String {
        let doc = EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .expect("generate");
        pem("PRIVATE KEY", doc.as_ref())
    }

    fn pem(label: &str, der: &[u8]) -> String {
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            STANDARD.encode(der)
        )
    }

    fn sa() -> ObjectRef {
        ObjectRef {
            name: "default".into(),
            uid: "u-1".into(),
        }
    }

    fn claims(i: &Issuer, now: i64) -> Claims {
        Claims::new(i.issuer(), i.audiences().to_vec(), "ns1", sa(), now, 3600)
    }

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn rsa_tokens_round_trip_with_upstream_shape() {
        let i = Issuer::new(&rsa_pem(), "cluster.local").expect("issuer");
        assert_eq!(i.alg(), "RS256");
        let t = i.sign(&claims(&i, NOW)).expect("sign");
        let c = i.verify(&t, NOW + 10).expect("verify");
        assert_eq!(c.sub, "system:serviceaccount:ns1:default");
        assert_eq!(c.iss, "https://kubernetes.default.svc.cluster.local");
        assert_eq!(
            c.aud,
            ["https://kubernetes.default.svc.cluster.local", "k3s"]
        );
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(t.split('.').next().expect("h"))
                .expect("b64"),
        )
        .expect("json");
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], i.kid());
        let payload: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(t.split('.').nth(1).expect("p"))
                .expect("b64"),
        )
        .expect("json");
        assert_eq!(payload["kubernetes.io"]["serviceaccount"]["uid"], "u-1");
        assert_eq!(payload["exp"], NOW + 3600);
        assert!(payload["kubernetes.io"].get("pod").is_none());
        let jwks = i.jwks();
        assert_eq!(jwks["keys"][0]["kid"], i.kid());
        assert_eq!(jwks["keys"][0]["e"], "AQAB");
    }

    #[test]
    fn ec_keys_sign_es256() {
        let i = Issuer::new(&ec_pem(), "cluster.local").expect("issuer");
        assert_eq!(i.alg(), "ES256");
        let t = i.sign(&claims(&i, NOW)).expect("sign");
        assert!(i.verify(&t, NOW).is_ok());
        assert_eq!(i.jwks()["keys"][0]["crv"], "P-256");
    }

    #[test]
    fn the_key_id_is_stable_for_a_key() {
        let pem = rsa_pem();
        let a = Issuer::new(&pem, "cluster.local").expect("a");
        let b = Issuer::new(&pem, "other.domain").expect("b");
        assert_eq!(a.kid(), b.kid());
        let c = Issuer::new(&rsa_pem(), "cluster.local").expect("c");
        assert_ne!(a.kid(), c.kid());
    }

    #[test]
    fn expired_and_future_tokens_are_refused() {
        let i = Issuer::new(&rsa_pem(), "cluster.local").expect("issuer");
        let t = i.sign(&claims(&i, NOW)).expect("sign");
        assert_eq!(i.verify(&t, NOW + 3600), Err(VerifyError::Expired));
        assert_eq!(
            i.verify(&t, NOW - 3 * CLOCK_SKEW),
            Err(VerifyError::NotYetValid)
        );
    }

    #[test]
    fn another_keys_signature_is_refused() {
        let i = Issuer::new(&rsa_pem(), "cluster.local").expect("issuer");
        let other = Issuer::new(&rsa_pem(), "cluster.local").expect("other");
        let t = other.sign(&claims(&other, NOW)).expect("sign");
        assert_eq!(i.verify(&t, NOW), Err(VerifyError::Signature));
        let ec = Issuer::new(&ec_pem(), "cluster.local").expect("ec");
        let t = ec.sign(&claims(&ec, NOW)).expect("sign");
        assert_eq!(
            i.verify(&t, NOW),
            Err(VerifyError::Algorithm("ES256".into()))
        );
    }

    #[test]
    fn tampered_claims_are_refused() {
        let i = Issuer::new(&rsa_pem(), "cluster.local").expect("issuer");
        let t = i.sign(&claims(&i, NOW)).expect("sign");
        let parts: Vec<&str> = t.split('.').collect();
        let mut c = claims(&i, NOW);
        c.sub = "system:serviceaccount:kube-system:admin".into();
        c.kubernetes.namespace = "kube-system".into();
        c.kubernetes.serviceaccount.name = "admin".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).expect("json")),
            parts[2]
        );
        assert_eq!(i.verify(&forged, NOW), Err(VerifyError::Signature));
        // An unsigned token ("alg": "none") is refused before anything else.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            parts[1]
        );
        assert_eq!(
            i.verify(&none, NOW),
            Err(VerifyError::Algorithm("none".into()))
        );
        assert!(matches!(
            i.verify("garbage", NOW),
            Err(VerifyError::Malformed(_))
        ));
        assert!(matches!(
            i.verify("a.b.c", NOW),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn audiences_must_intersect() {
        let i = Issuer::new(&rsa_pem(), "cluster.local").expect("issuer");
        let mut c = claims(&i, NOW);
        c.aud = vec!["vault".into()];
        let t = i.sign(&c).expect("sign");
        assert_eq!(
            i.verify(&t, NOW),
            Err(VerifyError::Audience(vec!["vault".into()]))
        );
        c.aud = vec!["vault".into(), "k3s".into()];
        assert!(i.verify(&i.sign(&c).expect("sign"), NOW).is_ok());
    }

    #[test]
    fn another_issuer_or_subject_is_refused() {
        let pem = rsa_pem();
        let i = Issuer::new(&pem, "cluster.local").expect("issuer");
        let other =
            Issuer::with(&pem, "https://elsewhere".into(), i.audiences().to_vec()).expect("other");
        let t = other.sign(&claims(&other, NOW)).expect("sign");
        assert_eq!(
            i.verify(&t, NOW),
            Err(VerifyError::Issuer("https://elsewhere".into()))
        );
        let mut c = claims(&i, NOW);
        c.sub = "system:admin".into();
        assert_eq!(
            i.verify(&i.sign(&c).expect("sign"), NOW),
            Err(VerifyError::Subject("system:admin".into()))
        );
    }

    #[test]
    fn a_single_string_audience_is_accepted() {
        let i = Issuer::new(&rsa_pem(), "cluster.local").expect("issuer");
        let mut v = serde_json::to_value(claims(&i, NOW)).expect("json");
        v["aud"] = json!("k3s");
        let c: Claims = serde_json::from_value(v).expect("claims");
        assert_eq!(c.aud, ["k3s"]);
    }

    #[test]
    fn unusable_keys_are_clear_errors() {
        assert!(matches!(
            Issuer::new("not pem", "cluster.local"),
            Err(KeyError::Pem(_))
        ));
        let bad = pem("PRIVATE KEY", b"nonsense");
        assert!(matches!(
            Issuer::new(&bad, "cluster.local"),
            Err(KeyError::Unsupported { .. })
        ));
    }
}
