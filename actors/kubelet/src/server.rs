//! Server (being built).
use crate::Shared;
use kernel::{BoxError, ServiceCtx};
use std::sync::Arc;
pub(crate) async fn run(ctx: ServiceCtx, _shared: Arc<Shared>) -> Result<(), BoxError> {
    ctx.ready();
    ctx.cancelled().await;
    Ok(())
}
