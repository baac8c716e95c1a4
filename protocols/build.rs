//! Compiles the vendored Kubernetes `.proto` files (see `proto/README.md`) into one encoded
//! `FileDescriptorSet` in `OUT_DIR`, which `src/protobuf` embeds with `include_bytes!`.
//!
//! `protox` is pure Rust, so the build needs no `protoc`. The set keeps the gogoproto extension
//! options (`encode_file_descriptor_set` preserves them), because the decoder reads
//! `(gogoproto.nullable)` to tell Go value fields from pointer fields.

use std::path::PathBuf;

/// The files the decoder needs; their imports are pulled in by the compiler.
const ROOTS: &[&str] = &[
    "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto",
    "k8s.io/apimachinery/pkg/runtime/generated.proto",
    "k8s.io/api/core/v1/generated.proto",
    "k8s.io/api/apps/v1/generated.proto",
    "k8s.io/api/batch/v1/generated.proto",
    "k8s.io/api/policy/v1/generated.proto",
    "k8s.io/api/rbac/v1/generated.proto",
    "k8s.io/api/networking/v1/generated.proto",
    "k8s.io/api/scheduling/v1/generated.proto",
    "k8s.io/api/authentication/v1/generated.proto",
    "k8s.io/api/authorization/v1/generated.proto",
    "k8s.io/api/coordination/v1/generated.proto",
    "k8s.io/api/discovery/v1/generated.proto",
    "k8s.io/api/autoscaling/v1/generated.proto",
    "k8s.io/api/autoscaling/v2/generated.proto",
    "k8s.io/api/certificates/v1/generated.proto",
    "k8s.io/api/storage/v1/generated.proto",
    "k8s.io/api/node/v1/generated.proto",
    "k8s.io/api/events/v1/generated.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    println!("cargo:rerun-if-changed={}", proto_dir.display());
    println!("cargo:rerun-if-changed=build.rs");

    let mut compiler = protox::Compiler::new([&proto_dir])?;
    compiler.include_imports(true).include_source_info(false);
    compiler.open_files(ROOTS)?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("kubernetes.fds");
    std::fs::write(out, compiler.encode_file_descriptor_set())?;
    Ok(())
}
