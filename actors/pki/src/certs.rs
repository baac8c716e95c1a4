//! Certificate files under `<data-dir>/server/tls`: generate on first start, reuse afterwards.
//!
//! Layout and names follow K3s so its users find what they expect: one server CA (signs serving
//! certificates), one client CA (signs client certificates), one request-header CA (front proxy),
//! leaf certificates signed by them, and the service-account signing key. Private keys are written
//! with mode 0600 through a temporary file and a rename, so a crash never leaves half a key. A leaf
//! is reissued at start when it is within [`RENEW_BEFORE`] of expiry or its SANs no longer cover
//! what the server needs; CAs are never replaced automatically (that would break every client).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_RSA_SHA256, RsaKeySize, SanType,
};
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// Leaf certificates are renewed at start when they expire within this window (K3s: 120 days).
pub const RENEW_BEFORE: Duration = Duration::days(120);
/// Lifetime of a certificate authority.
pub const CA_LIFETIME: Duration = Duration::days(3650);
/// Lifetime of a leaf certificate.
pub const LEAF_LIFETIME: Duration = Duration::days(365);

/// Errors reading, generating or writing certificate material.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file or directory could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("cannot write", "cannot create directory", ...).
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key file exists but does not parse.
    #[error("{path} is not a valid {what}: {reason}")]
    Invalid {
        /// The file concerned.
        path: PathBuf,
        /// "certificate" or "private key".
        what: &'static str,
        /// The parser's explanation.
        reason: String,
    },
    /// Only one of a CA's certificate and key exists.
    #[error(
        "{present} exists but {missing} is missing: restore it, or remove both to generate a new CA"
    )]
    HalfCa {
        /// The file that is there.
        present: PathBuf,
        /// The file that is not.
        missing: PathBuf,
    },
    /// rcgen refused the parameters or failed to sign.
    #[error("cannot generate {what}: {source}")]
    Generate {
        /// Which certificate or key.
        what: String,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
}

/// What the serving certificate must cover.
#[derive(Clone, Debug, Default)]
pub struct ServingNames {
    /// DNS names (kubernetes, kubernetes.default, ..., and `--tls-san` host names).
    pub dns: Vec<String>,
    /// IP addresses (127.0.0.1, the node IP, the first service IP, `--tls-san` addresses).
    pub ips: Vec<IpAddr>,
}

impl ServingNames {
    /// The names every API server certificate carries, plus `extra` (node IP, `--tls-san`).
    pub fn for_apiserver(cluster_domain: &str, first_service_ip: IpAddr, extra: &[String]) -> Self {
        let mut names = ServingNames {
            dns: [
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
            ]
            .map(String::from)
            .to_vec(),
            ips: vec![IpAddr::from([127, 0, 0, 1]), first_service_ip],
        };
        names
            .dns
            .push(format!("kubernetes.default.svc.{cluster_domain}"));
        for e in extra {
            names.add(e);
        }
        names
    }

    /// Add a host name or an address, once.
    pub fn add(&mut self, name: &str) {
        match name.parse::<IpAddr>() {
            Ok(ip) if !self.ips.contains(&ip) => self.ips.push(ip),
            Ok(_) => {}
            Err(_) if !self.dns.iter().any(|d| d == name) => self.dns.push(name.to_owned()),
            Err(_) => {}
        }
    }
}

/// A certificate authority: its certificate (PEM) and the issuer used to sign with its key.
#[derive(Debug)]
pub struct Ca {
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// The CA private key, PEM (needed to sign; never served).
    pub key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// Sign a new leaf: a fresh ECDSA P-256 key, `cn`/`orgs` as subject, for `usage`.
    pub fn issue(
        &self,
        cn: &str,
        orgs: &[String],
        usage: Usage,
        names: &ServingNames,
    ) -> Result<Leaf, PkiError> {
        let gen_err = |source| PkiError::Generate {
            what: format!("certificate for {cn}"),
            source,
        };
        let key = KeyPair::generate().map_err(gen_err)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        for o in orgs {
            params
                .distinguished_name
                .push(DnType::OrganizationName, o.as_str());
        }
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + LEAF_LIFETIME;
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = match usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        if usage == Usage::Server {
            for d in &names.dns {
                let san = d.clone().try_into().map_err(gen_err)?;
                params.subject_alt_names.push(SanType::DnsName(san));
            }
            params
                .subject_alt_names
                .extend(names.ips.iter().copied().map(SanType::IpAddress));
        }
        let cert = params.signed_by(&key, &self.issuer).map_err(gen_err)?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// What a leaf certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// TLS server (serving) certificate.
    Server,
    /// TLS client certificate.
    Client,
}

/// A leaf certificate and its key, PEM.
#[derive(Clone, Debug)]
pub struct Leaf {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM.
    pub key_pem: String,
}

/// Everything the server's first slice needs, loaded or generated.
#[derive(Debug)]
pub struct ClusterPki {
    /// Directory holding the files.
    pub dir: PathBuf,
    /// Signs serving certificates; its certificate is what `/cacerts` serves.
    pub server_ca: Ca,
    /// Signs client certificates; the listener trusts it for client authentication.
    pub client_ca: Ca,
    /// Signs front-proxy (request-header) client certificates.
    pub request_header_ca: Ca,
    /// The API server's serving certificate.
    pub serving: Leaf,
    /// The admin client certificate (CN=system:admin, O=system:masters).
    pub admin: Leaf,
    /// The service-account signing key (RSA 2048, PEM, PKCS#8).
    pub service_account_key_pem: String,
    /// Which files this start created or renewed (for the log).
    pub written: Vec<PathBuf>,
}

/// Load what exists under `dir`, generate what is missing, renew leaves that need it.
pub fn ensure(dir: &Path, names: &ServingNames) -> Result<ClusterPki, PkiError> {
    fs::create_dir_all(dir).map_err(|source| PkiError::Io {
        action: "cannot create directory",
        path: dir.to_owned(),
        source,
    })?;
    let mut written = Vec::new();
    let server_ca = ensure_ca(dir, "server-ca", "k3s-server-ca", &mut written)?;
    let client_ca = ensure_ca(dir, "client-ca", "k3s-client-ca", &mut written)?;
    let request_header_ca = ensure_ca(
        dir,
        "request-header-ca",
        "k3s-request-header-ca",
        &mut written,
    )?;
    let serving = ensure_leaf(
        dir,
        "serving-kube-apiserver",
        &server_ca,
        ("kube-apiserver", &[]),
        Usage::Server,
        names,
        &mut written,
    )?;
    let admin = ensure_leaf(
        dir,
        "client-admin",
        &client_ca,
        ("system:admin", &[protocols::user::MASTERS.to_owned()]),
        Usage::Client,
        names,
        &mut written,
    )?;
    let sa_path = dir.join("service.key");
    let service_account_key_pem = match read_optional(&sa_path)? {
        Some(pem) => {
            KeyPair::from_pem(&pem).map_err(|e| invalid(&sa_path, "private key", e))?;
            pem
        }
        None => {
            let key = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).map_err(
                |source| PkiError::Generate {
                    what: "service-account key".into(),
                    source,
                },
            )?;
            let pem = key.serialize_pem();
            write_secret(&sa_path, &pem)?;
            written.push(sa_path);
            pem
        }
    };
    Ok(ClusterPki {
        dir: dir.to_owned(),
        server_ca,
        client_ca,
        request_header_ca,
        serving,
        admin,
        service_account_key_pem,
        written,
    })
}

fn ensure_ca(dir: &Path, stem: &str, cn: &str, written: &mut Vec<PathBuf>) -> Result<Ca, PkiError> {
    let (crt, key) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    match (read_optional(&crt)?, read_optional(&key)?) {
        (Some(cert_pem), Some(key_pem)) => {
            let kp = KeyPair::from_pem(&key_pem).map_err(|e| invalid(&key, "private key", e))?;
            let issuer = Issuer::from_ca_cert_pem(&cert_pem, kp)
                .map_err(|e| invalid(&crt, "certificate", e))?;
            Ok(Ca {
                cert_pem,
                key_pem,
                issuer,
            })
        }
        (None, None) => {
            let gen_err = |source| PkiError::Generate {
                what: format!("CA {cn}"),
                source,
            };
            let kp = KeyPair::generate().map_err(gen_err)?;
            let mut params = CertificateParams::default();
            params.distinguished_name = DistinguishedName::new();
            // K3s names its CAs "<name>@<unix time>" so a regenerated CA is distinguishable.
            let now = OffsetDateTime::now_utc();
            params
                .distinguished_name
                .push(DnType::CommonName, format!("{cn}@{}", now.unix_timestamp()));
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            params.not_before = now - Duration::minutes(5);
            params.not_after = now + CA_LIFETIME;
            params.serial_number = Some(random_serial());
            let cert = params.self_signed(&kp).map_err(gen_err)?;
            let (cert_pem, key_pem) = (cert.pem(), kp.serialize_pem());
            write_secret(&key, &key_pem)?;
            write_file(&crt, &cert_pem, 0o644)?;
            written.extend([crt, key]);
            Ok(Ca {
                cert_pem,
                key_pem,
                issuer: Issuer::new(params, kp),
            })
        }
        (Some(_), None) => Err(PkiError::HalfCa {
            present: crt,
            missing: key,
        }),
        (None, Some(_)) => Err(PkiError::HalfCa {
            present: key,
            missing: crt,
        }),
    }
}

fn ensure_leaf(
    dir: &Path,
    stem: &str,
    ca: &Ca,
    (cn, orgs): (&str, &[String]),
    usage: Usage,
    names: &ServingNames,
    written: &mut Vec<PathBuf>,
) -> Result<Leaf, PkiError> {
    let (crt, key) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    if let (Some(cert_pem), Some(key_pem)) = (read_optional(&crt)?, read_optional(&key)?) {
        KeyPair::from_pem(&key_pem).map_err(|e| invalid(&key, "private key", e))?;
        let reason = leaf_needs_renewal(&crt, &cert_pem, &ca.cert_pem, usage, names)?;
        match reason {
            None => return Ok(Leaf { cert_pem, key_pem }),
            Some(why) => tracing::info!(cert = %crt.display(), why, "renewing certificate"),
        }
    }
    let leaf = ca.issue(cn, orgs, usage, names)?;
    write_secret(&key, &leaf.key_pem)?;
    write_file(&crt, &leaf.cert_pem, 0o644)?;
    written.extend([crt, key]);
    Ok(leaf)
}

/// Why an existing leaf must be reissued, if it must.
fn leaf_needs_renewal(
    path: &Path,
    cert_pem: &str,
    ca_pem: &str,
    usage: Usage,
    names: &ServingNames,
) -> Result<Option<&'static str>, PkiError> {
    let info = CertInfo::from_pem(cert_pem).map_err(|reason| PkiError::Invalid {
        path: path.to_owned(),
        what: "certificate",
        reason,
    })?;
    let ca = CertInfo::from_pem(ca_pem).map_err(|reason| PkiError::Invalid {
        path: path.to_owned(),
        what: "CA certificate",
        reason,
    })?;
    if info.not_after - OffsetDateTime::now_utc() < RENEW_BEFORE {
        return Ok(Some("expires within 120 days"));
    }
    if info.issuer != ca.subject {
        return Ok(Some("not signed by the current CA"));
    }
    if usage == Usage::Server
        && (names.dns.iter().any(|d| !info.dns.contains(d))
            || names.ips.iter().any(|i| !info.ips.contains(i)))
    {
        return Ok(Some("SANs changed"));
    }
    Ok(None)
}

/// The parts of a certificate the renewal logic looks at.
#[derive(Debug)]
pub struct CertInfo {
    /// Subject, as text.
    pub subject: String,
    /// Issuer, as text.
    pub issuer: String,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// IP SANs.
    pub ips: Vec<IpAddr>,
}

impl CertInfo {
    /// Parse the first certificate of a PEM text.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let (_, pem) =
            x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
        let cert = pem.parse_x509().map_err(|e| e.to_string())?;
        let mut dns = Vec::new();
        let mut ips = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                    x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                        4 => ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())),
                        16 => ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())),
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
        Ok(CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            not_after: cert.validity().not_after.to_datetime(),
            dns,
            ips,
        })
    }
}

fn random_serial() -> rcgen::SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    rcgen::SerialNumber::from_slice(&bytes)
}

fn invalid(path: &Path, what: &'static str, e: impl std::fmt::Display) -> PkiError {
    PkiError::Invalid {
        path: path.to_owned(),
        what,
        reason: e.to_string(),
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            action: "cannot read",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Write a private key: mode 0600 from the first byte.
pub fn write_secret(path: &Path, contents: &str) -> Result<(), PkiError> {
    write_file(path, contents, 0o600)
}

/// Write `contents` to `path` atomically (temporary file, fsync, rename) with `mode`.
pub fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let io = |action, source| PkiError::Io {
        action,
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io("cannot write", e))?;
    // The mode given to open() is filtered by the umask; set it exactly.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| io("cannot chmod", e))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| io("cannot write", e))?;
    f.sync_all().map_err(|e| io("cannot sync", e))?;
    fs::rename(&tmp, path).map_err(|e| io("cannot rename into", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> ServingNames {
        ServingNames::for_apiserver(
            "cluster.local",
            "10.43.0.1".parse().expect("ip"),
            &["example.com".into()],
        )
    }

    #[test]
    fn first_start_generates_and_second_reuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = ensure(dir.path(), &names()).expect("generate");
        assert!(first.written.len() >= 11, "{:?}", first.written);
        for entry in fs::read_dir(dir.path()).expect("read dir") {
            let entry = entry.expect("entry");
            if entry.path().extension().is_some_and(|e| e == "key") {
                let mode = entry.metadata().expect("meta").permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", entry.path().display());
            }
        }
        let second = ensure(dir.path(), &names()).expect("reuse");
        assert!(second.written.is_empty(), "{:?}", second.written);
        assert_eq!(first.server_ca.cert_pem, second.server_ca.cert_pem);
        assert_eq!(first.serving.cert_pem, second.serving.cert_pem);
    }

    #[test]
    fn serving_certificate_covers_the_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = ensure(dir.path(), &names()).expect("generate");
        let info = CertInfo::from_pem(&pki.serving.cert_pem).expect("parse");
        for d in [
            "kubernetes.default.svc.cluster.local",
            "localhost",
            "example.com",
        ] {
            assert!(
                info.dns.iter().any(|x| x == d),
                "{d} missing from {:?}",
                info.dns
            );
        }
        assert!(info.ips.contains(&"10.43.0.1".parse().expect("ip")));
        let admin = CertInfo::from_pem(&pki.admin.cert_pem).expect("parse");
        assert!(
            admin.subject.contains("CN=system:admin"),
            "{}",
            admin.subject
        );
        assert!(
            admin.subject.contains("O=system:masters"),
            "{}",
            admin.subject
        );
    }

    #[test]
    fn a_new_tls_san_reissues_only_the_serving_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = ensure(dir.path(), &names()).expect("generate");
        let mut more = names();
        more.add("10.9.8.7");
        let second = ensure(dir.path(), &more).expect("renew");
        assert_ne!(first.serving.cert_pem, second.serving.cert_pem);
        assert_eq!(first.admin.cert_pem, second.admin.cert_pem);
        assert_eq!(second.written.len(), 2);
    }

    #[test]
    fn a_leaf_near_expiry_is_renewed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = ensure(dir.path(), &names()).expect("generate");
        // Re-sign the admin certificate so it expires in 30 days.
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "system:admin");
        params.not_after = OffsetDateTime::now_utc() + Duration::days(30);
        let cert = params.signed_by(&key, &pki.client_ca.issuer).expect("sign");
        write_file(&dir.path().join("client-admin.crt"), &cert.pem(), 0o644).expect("write");
        write_secret(&dir.path().join("client-admin.key"), &key.serialize_pem()).expect("write");
        let again = ensure(dir.path(), &names()).expect("renew");
        let info = CertInfo::from_pem(&again.admin.cert_pem).expect("parse");
        assert!(info.not_after - OffsetDateTime::now_utc() > Duration::days(300));
    }

    #[test]
    fn corrupt_or_half_material_is_a_clear_error_and_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        ensure(dir.path(), &names()).expect("generate");
        let key = dir.path().join("server-ca.key");
        fs::write(&key, "not a key").expect("corrupt");
        let err = ensure(dir.path(), &names())
            .expect_err("must fail")
            .to_string();
        assert!(
            err.contains("server-ca.key") && err.contains("not a valid private key"),
            "{err}"
        );
        assert_eq!(fs::read_to_string(&key).expect("read"), "not a key");
        fs::remove_file(&key).expect("remove");
        let err = ensure(dir.path(), &names())
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("server-ca.key is missing"), "{err}");
    }
}
