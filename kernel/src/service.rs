//! Services: long-running children with their own concurrency (a listener, a watch loop).
//!
//! A service is a function returning a future. It calls [`ServiceCtx::ready`] once it is started,
//! which lets its supervisor start the next sibling, and returns `Ok(())` promptly once
//! [`ServiceCtx::cancelled`] resolves. Returning before `ready()` is a start failure; returning
//! later is an exit (normal for `Ok`, a failure for `Err`).

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::Kernel;

/// What a service instance knows about itself; cheap to clone into its own tasks.
#[derive(Clone)]
pub struct ServiceCtx {
    path: Arc<str>,
    kernel: Kernel,
    token: CancellationToken,
    ready: Arc<Mutex<Option<oneshot::Sender<()>>>>,
}

impl fmt::Debug for ServiceCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceCtx")
            .field("path", &self.path)
            .finish()
    }
}

impl ServiceCtx {
    pub(crate) fn new(
        path: Arc<str>,
        kernel: Kernel,
        token: CancellationToken,
        ready: oneshot::Sender<()>,
    ) -> Self {
        Self {
            path,
            kernel,
            token,
            ready: Arc::new(Mutex::new(Some(ready))),
        }
    }

    /// The service's path, e.g. `server/apiserver`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The kernel, for lookups, the bus and control.
    pub fn kernel(&self) -> Kernel {
        self.kernel.clone()
    }

    /// Resolves when the service is asked to stop; it should then return `Ok(())` promptly.
    pub fn cancelled(&self) -> impl Future<Output = ()> + Send + 'static {
        self.token.clone().cancelled_owned()
    }

    /// The stop token, for the service's own tasks.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Marks the service started; later calls do nothing.
    pub fn ready(&self) {
        if let Some(ready) = self.ready.lock().take() {
            let _ = ready.send(());
        }
    }
}
