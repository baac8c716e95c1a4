//! The CRI v1 client: generated gRPC stubs (`build.rs`) and a connection to the runtime's unix
//! socket.
//!
//! The channel connects lazily and reconnects by itself, so a containerd restart only fails the
//! calls made while it is down.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// The generated CRI v1 messages and clients (`runtime.v1`).
#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub(crate) mod v1 {
    tonic::include_proto!("runtime.v1");
}

pub(crate) use v1::image_service_client::ImageServiceClient;
pub(crate) use v1::runtime_service_client::RuntimeServiceClient;

/// Label keys the kubelet puts on sandboxes and containers (upstream's names).
pub(crate) const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub(crate) const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub(crate) const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub(crate) const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// Runtime and image clients over one channel; cheap to clone.
#[derive(Clone)]
pub(crate) struct Cri {
    pub runtime: RuntimeServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
}

impl std::fmt::Debug for Cri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cri").finish_non_exhaustive()
    }
}

impl Cri {
    /// A client for the runtime listening on `socket`; connects on first use. Must be called
    /// within a tokio runtime.
    pub fn connect(socket: &Path) -> Self {
        let channel = channel(socket.to_owned());
        Self {
            runtime: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(64 * 1024 * 1024),
            images: ImageServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024),
        }
    }

    /// The runtime's version (`containerd`, `v1.6.20...`), which also says it is answering.
    pub async fn version(&self) -> Result<v1::VersionResponse, tonic::Status> {
        let mut runtime = self.runtime.clone();
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            runtime.version(v1::VersionRequest {
                version: "v1".into(),
            }),
        )
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("CRI Version timed out"))??;
        Ok(reply.into_inner())
    }

    /// Waits until the runtime answers, or `deadline` passes; returns the last error then.
    pub async fn wait_ready(
        &self,
        deadline: Duration,
    ) -> Result<v1::VersionResponse, tonic::Status> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            match self.version().await {
                Ok(v) => return Ok(v),
                Err(e) if tokio::time::Instant::now() >= until => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

fn channel(socket: PathBuf) -> Channel {
    // The URI is required by the API but never used: the connector ignores it.
    Endpoint::from_static("http://localhost")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(&socket).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
}
