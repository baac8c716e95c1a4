//! A minimal ustar writer and docker-archive image builder: enough to build the pause image from the
//! host's static busybox without a registry.
//!
//! A docker archive is a tar of `manifest.json`, the image config (`<sha256>.json`) and one tar per
//! layer; containerd's `ctr images import` reads it.

use sha2::{Digest, Sha256};

/// Errors building an archive.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// A path does not fit in a ustar header.
    #[error("path {0:?} is too long for a ustar header")]
    PathTooLong(String),
}

/// One entry of a layer.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// A directory with a mode.
    Dir(String, u32),
    /// A regular file with a mode and contents.
    File(String, u32, Vec<u8>),
    /// A symbolic link to a target.
    Symlink(String, String),
}

/// Appends tar entries to a buffer.
#[derive(Debug, Default)]
pub(crate) struct TarWriter {
    buf: Vec<u8>,
}

impl TarWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one entry.
    pub fn append(&mut self, entry: &Entry) -> Result<(), TarError> {
        match entry {
            Entry::Dir(path, mode) => self.header(
                &format!("{}/", path.trim_end_matches('/')),
                *mode,
                0,
                b'5',
                "",
            ),
            Entry::File(path, mode, data) => {
                self.header(path, *mode, data.len() as u64, b'0', "")?;
                self.buf.extend_from_slice(data);
                let pad = (512 - data.len() % 512) % 512;
                self.buf.extend(std::iter::repeat_n(0u8, pad));
                Ok(())
            }
            Entry::Symlink(path, target) => self.header(path, 0o777, 0, b'2', target),
        }
    }

    fn header(
        &mut self,
        path: &str,
        mode: u32,
        size: u64,
        kind: u8,
        link: &str,
    ) -> Result<(), TarError> {
        let mut h = [0u8; 512];
        let (prefix, name) = split_path(path)?;
        if link.len() > 100 {
            return Err(TarError::PathTooLong(link.to_owned()));
        }
        h[..name.len()].copy_from_slice(name.as_bytes());
        octal(&mut h[100..108], u64::from(mode));
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], 1_767_225_600); // 2026-01-01: reproducible archives
        h[148..156].copy_from_slice(b"        ");
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[265..269].copy_from_slice(b"root");
        h[297..301].copy_from_slice(b"root");
        h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
        let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
        let chk = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(chk.as_bytes());
        self.buf.extend_from_slice(&h);
        Ok(())
    }

    /// The archive with its two zero end blocks.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend(std::iter::repeat_n(0u8, 1024));
        self.buf
    }
}

/// Splits a path into ustar's prefix (≤155 bytes) and name (≤100 bytes).
fn split_path(path: &str) -> Result<(&str, &str), TarError> {
    if path.len() <= 100 {
        return Ok(("", path));
    }
    let too_long = || TarError::PathTooLong(path.to_owned());
    let cut = path[..path.len().min(156)]
        .rfind('/')
        .ok_or_else(too_long)?;
    let (prefix, name) = (&path[..cut], &path[cut + 1..]);
    if name.len() > 100 || name.is_empty() {
        return Err(too_long());
    }
    Ok((prefix, name))
}

/// Writes `value` as NUL-terminated octal filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let s = format!("{value:0width$o}");
    field[..width].copy_from_slice(&s.as_bytes()[s.len() - width..]);
    field[width] = 0;
}

/// The Go architecture name of this machine (`amd64`, `arm64`...).
pub(crate) fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "s390x" => "s390x",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// A docker-archive image named `name` with one layer of `entries`, run as `entrypoint`.
pub(crate) fn docker_archive(
    name: &str,
    entries: &[Entry],
    entrypoint: &[&str],
) -> Result<Vec<u8>, TarError> {
    let mut layer = TarWriter::new();
    for e in entries {
        layer.append(e)?;
    }
    let layer = layer.finish();
    let diff = hex::encode(Sha256::digest(&layer));
    let config = serde_json::json!({
        "architecture": go_arch(),
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/bin"], "Entrypoint": entrypoint, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff}")]},
    })
    .to_string()
    .into_bytes();
    let config_digest = hex::encode(Sha256::digest(&config));
    let manifest = serde_json::json!([{
        "Config": format!("{config_digest}.json"),
        "RepoTags": [name],
        "Layers": [format!("{diff}/layer.tar")],
    }])
    .to_string()
    .into_bytes();
    let mut out = TarWriter::new();
    out.append(&Entry::File(format!("{config_digest}.json"), 0o644, config))?;
    out.append(&Entry::Dir(diff.clone(), 0o755))?;
    out.append(&Entry::File(format!("{diff}/layer.tar"), 0o644, layer))?;
    out.append(&Entry::File("manifest.json".into(), 0o644, manifest))?;
    Ok(out.finish())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn headers_have_valid_checksums_and_padding() {
        let mut t = TarWriter::new();
        t.append(&Entry::File("bin/x".into(), 0o755, b"hello".to_vec()))
            .unwrap();
        t.append(&Entry::Symlink("bin/y".into(), "x".into()))
            .unwrap();
        let buf = t.finish();
        assert_eq!(buf.len(), 512 + 512 + 512 + 1024);
        let h = &buf[..512];
        assert_eq!(&h[..5], b"bin/x");
        let stored = u64::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        let mut copy = h.to_vec();
        copy[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, copy.iter().map(|b| u64::from(*b)).sum::<u64>());
        assert_eq!(&buf[512..517], b"hello");
        assert_eq!(buf[1024 + 156], b'2');
    }

    #[test]
    fn long_paths_use_the_prefix() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(50));
        let (p, n) = split_path(&long).unwrap();
        assert_eq!((p.len(), n.len()), (120, 50));
        assert!(split_path(&"x".repeat(300)).is_err());
    }

    #[test]
    fn archive_has_a_manifest_naming_the_image() {
        let a = docker_archive(
            "docker.io/x/y:1",
            &[Entry::Dir("bin".into(), 0o755)],
            &["/bin/sh"],
        )
        .unwrap();
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains("\"RepoTags\":[\"docker.io/x/y:1\"]"));
    }
}
