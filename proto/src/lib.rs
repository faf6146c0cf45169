//! dwell's wire contract: the `dwell.v1` gRPC services and messages generated from
//! `proto/dwell/v1/*.proto`, the encoded descriptor set for gRPC reflection, and the mergeable
//! [`summary::AgeSummary`] that sidecars send and the aggregator keeps.

pub mod summary;

/// Generated `dwell.v1` types and services.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("dwell.v1");
}

/// The encoded `FileDescriptorSet` of `dwell.v1`, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/dwell_descriptor.bin"));
