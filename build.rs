//! Compiles `proto/needscope/v1/needscope.proto` with protox (a protobuf compiler in Rust, so
//! no `protoc` has to be installed) and generates the tonic server and client code with
//! tonic-prost-build. The encoded file descriptor set is written to
//! `$OUT_DIR/needscope_descriptor.bin` for the reflection service (`grpc.reflection.v1` and
//! `v1alpha`).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/needscope/v1/needscope.proto";
    println!("cargo:rerun-if-changed=proto");
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_file(proto)?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("needscope_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    let fds = compiler.file_descriptor_set();
    tonic_prost_build::configure()
        // google.rpc.Status is tonic-types' generated type
        .extern_path(".google.rpc", "::tonic_types::pb")
        .compile_fds(fds)?;
    Ok(())
}
