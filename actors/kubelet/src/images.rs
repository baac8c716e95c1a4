//! The `images` child: builds the pause (sandbox) image from the host's static busybox and imports
//! it, then imports every `*.tar` in `<agent_dir>/images` at start and whenever a file appears or
//! changes (polled every few seconds). No network is needed.
//!
//! Importing runs `ctr images import` (containerd's own client, from the same package) into the
//! CRI's `k8s.io` namespace.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kernel::{BoxError, ServiceCtx};
use tracing::{info, warn};

use crate::Shared;
use crate::cri::{Cri, v1};
use crate::tar::{Entry, docker_archive};

/// The sandbox image, named like K3s's.
pub(crate) const PAUSE_IMAGE: &str = "docker.io/rancher/mirrored-pause:3.6";
/// The static busybox the pause image is built from.
const BUSYBOX: &str = "/bin/busybox";
/// How often the images directory is scanned.
const POLL: Duration = Duration::from_secs(3);
/// How long a failed import waits before it is retried (unless the file changes).
const RETRY: Duration = Duration::from_secs(30);

/// Errors of the images child.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Building the pause image failed.
    #[error("building the pause image: {0}")]
    Build(#[from] crate::tar::TarError),
    /// `ctr images import` failed.
    #[error("importing {path}: {message}")]
    Import {
        /// The tarball.
        path: PathBuf,
        /// ctr's output.
        message: String,
    },
    /// The runtime did not answer.
    #[error("container runtime: {0}")]
    Cri(#[from] tonic::Status),
}

/// The `images` service.
pub(crate) async fn run(ctx: ServiceCtx, shared: Arc<Shared>) -> Result<(), BoxError> {
    let paths = &shared.paths;
    let cri = Cri::connect(&paths.containerd_socket);
    cri.wait_ready(Duration::from_secs(30)).await?;
    if !image_present(&cri, PAUSE_IMAGE).await? {
        let tarball = paths.containerd_root.join("k3s-rs-pause.tar");
        write_pause_image(&tarball)?;
        import(&paths.containerd_socket, &tarball).await?;
        info!(image = PAUSE_IMAGE, "imported the pause image");
    }
    std::fs::create_dir_all(&paths.images_dir).map_err(|source| ImageError::Io {
        path: paths.images_dir.clone(),
        source,
    })?;
    let mut seen: HashMap<PathBuf, Seen> = HashMap::new();
    scan(&paths.images_dir, &paths.containerd_socket, &mut seen).await;
    ctx.ready();
    loop {
        tokio::select! {
            () = ctx.cancelled() => return Ok(()),
            () = tokio::time::sleep(POLL) => scan(&paths.images_dir, &paths.containerd_socket, &mut seen).await,
        }
    }
}

/// What is known of one tarball: its size and mtime when last tried, and the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    stamp: (u64, SystemTime),
    retry_at: Option<tokio::time::Instant>,
}

/// Imports new or changed `*.tar` files of `dir`.
async fn scan(dir: &Path, socket: &Path, seen: &mut HashMap<PathBuf, Seen>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tar"))
        .collect();
    files.sort();
    for path in files {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let stamp = (
            meta.len(),
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        );
        if let Some(s) = seen.get(&path) {
            let retry_due = s
                .retry_at
                .is_some_and(|at| tokio::time::Instant::now() >= at);
            if s.stamp == stamp && !retry_due {
                continue;
            }
        }
        // A file still being written changes size between polls: wait for it to settle.
        if meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age < Duration::from_secs(1))
        {
            continue;
        }
        match import(socket, &path).await {
            Ok(()) => {
                info!(file = %path.display(), "imported image tarball");
                seen.insert(
                    path,
                    Seen {
                        stamp,
                        retry_at: None,
                    },
                );
            }
            Err(e) => {
                warn!(error = %e, "image import failed; retrying in 30 s");
                seen.insert(
                    path,
                    Seen {
                        stamp,
                        retry_at: Some(tokio::time::Instant::now() + RETRY),
                    },
                );
            }
        }
    }
}

/// Whether the runtime has `image`.
pub(crate) async fn image_present(cri: &Cri, image: &str) -> Result<bool, tonic::Status> {
    let mut images = cri.images.clone();
    let reply = images
        .image_status(v1::ImageStatusRequest {
            image: Some(v1::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await?;
    Ok(reply.into_inner().image.is_some())
}

/// Writes the pause image (busybox sleeping forever) as a docker archive.
fn write_pause_image(path: &Path) -> Result<(), ImageError> {
    let busybox = std::fs::read(BUSYBOX).map_err(|source| ImageError::Io {
        path: BUSYBOX.into(),
        source,
    })?;
    let entries = [
        Entry::Dir("bin".into(), 0o755),
        Entry::Dir("dev".into(), 0o755),
        Entry::Dir("etc".into(), 0o755),
        Entry::Dir("proc".into(), 0o755),
        Entry::Dir("sys".into(), 0o755),
        Entry::File("bin/busybox".into(), 0o755, busybox),
        Entry::Symlink("bin/sleep".into(), "busybox".into()),
        Entry::Symlink("bin/pause".into(), "busybox".into()),
    ];
    let archive = docker_archive(PAUSE_IMAGE, &entries, &["/bin/sleep", "2147483647"])?;
    std::fs::write(path, archive).map_err(|source| ImageError::Io {
        path: path.to_owned(),
        source,
    })
}

/// `ctr -n k8s.io images import FILE` against the runtime at `socket`.
pub(crate) async fn import(socket: &Path, file: &Path) -> Result<(), ImageError> {
    let out = tokio::process::Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["-n", "k8s.io", "images", "import"])
        .arg(file)
        .env("PATH", crate::containerd::search_path())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| ImageError::Io {
            path: "ctr".into(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ImageError::Import {
            path: file.to_owned(),
            message: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}
