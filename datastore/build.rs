//! Generates the etcd v3 gRPC client (`src/etcd`) from the vendored protos in `proto/` (see
//! `proto/README.md`).
//!
//! `protox` compiles the `.proto` files in pure Rust, so the build never needs `protoc`; the
//! resulting descriptor set goes to `tonic-prost-build`, which writes one Rust module per proto
//! package (`etcdserverpb.rs`, `mvccpb.rs`, `authpb.rs`) into `OUT_DIR`. Only clients are
//! generated: this crate never serves the etcd API.

use std::path::PathBuf;

const ROOTS: &[&str] = &["etcd/api/etcdserverpb/rpc.proto"];

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
