//! stub
use std::sync::Arc; use kernel::ServiceCtx; use crate::Shared;
pub(crate) async fn run(ctx: ServiceCtx, _s: Arc<Shared>) -> Result<(), kernel::BoxError> { ctx.ready(); ctx.cancelled().await; Ok(()) }
pub(crate) async fn run_endpoints(ctx: ServiceCtx, s: Arc<Shared>) -> Result<(), kernel::BoxError> { run(ctx, s).await }
pub(crate) async fn run_endpointslices(ctx: ServiceCtx, s: Arc<Shared>) -> Result<(), kernel::BoxError> { run(ctx, s).await }
