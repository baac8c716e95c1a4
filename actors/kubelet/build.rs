//! Generates the CRI v1 gRPC clients (`runtime.v1.RuntimeService`, `runtime.v1.ImageService`) from
//! the vendored proto in `proto/` (see `proto/README.md`).
//!
//! `protox` compiles the `.proto` file in pure Rust, so the build never needs `protoc`; the
//! descriptor set goes to `tonic-prost-build`, which writes `runtime.v1.rs` into `OUT_DIR`. Only
//! clients are generated: this crate never serves the CRI.

use std::path::PathBuf;

const ROOTS: &[&str] = &["runtime/v1/api.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed={}", proto_dir.display());
    println!("cargo:rerun-if-changed=build.rs");

    let fds = protox::compile(ROOTS, [&proto_dir])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .build_transport(true)
        .compile_fds(fds)?;
    Ok(())
}
