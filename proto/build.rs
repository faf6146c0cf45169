//! Compiles `dwell/v1/*.proto` with protox (pure Rust, no system `protoc`) and writes the
//! descriptor set that the aggregator's gRPC reflection service serves.
use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["dwell/v1/ingest.proto", "dwell/v1/inspect.proto"];
    let fds = protox::compile(files, ["."])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    // compile_fds does not write a descriptor file itself; reflection needs one.
    std::fs::write(out.join("dwell_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().compile_fds(fds)?;
    println!("cargo:rerun-if-changed=dwell");
    Ok(())
}
