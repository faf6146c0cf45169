//! The Ingest service's gRPC codec: protobuf through prost, as the generated code's, but with
//! small buffers. tonic allocates a codec's buffers per RPC up front (8 KiB each way by default)
//! and keeps them for the RPC's life; an `Ingest/Stream` lives as long as its sidecar, so at
//! 10 000 sidecars that was ~160 MiB for reports of a few hundred bytes and acks of a dozen
//! (BENCHMARKS.md note B). These buffers start small and grow to the largest message seen.
use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Initial (and growth step of the) buffer each way: a typical report fits after one growth,
/// an ack at once.
const BUFFER_BYTES: usize = 256;
/// Acks batched into one write when many are ready (a stream sends one per report).
const YIELD_BYTES: usize = 4 * 1024;

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_BYTES, YIELD_BYTES)
}

/// Encodes `E` and decodes `D` with small buffers.
#[derive(Debug)]
pub struct SmallBuffers<E, D>(PhantomData<fn(E) -> D>);

impl<E, D> Default for SmallBuffers<E, D> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<E, D> Codec for SmallBuffers<E, D>
where
    E: Message + Send + 'static,
    D: Message + Default + Send + 'static,
{
    type Encode = E;
    type Decode = D;
    type Encoder = MessageEncoder<E>;
    type Decoder = MessageDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        MessageEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        MessageDecoder(PhantomData)
    }
}

/// Writes one message.
#[derive(Debug)]
pub struct MessageEncoder<E>(PhantomData<fn(E)>);

impl<E: Message> Encoder for MessageEncoder<E> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        // tonic reserves room for the message before calling, so this cannot run out of space.
        item.encode(buf)
            .map_err(|e| Status::internal(format!("encoding a message: {e}")))
    }

    fn buffer_settings(&self) -> BufferSettings {
        settings()
    }
}

/// Reads one message.
#[derive(Debug)]
pub struct MessageDecoder<D>(PhantomData<fn() -> D>);

impl<D: Message + Default> Decoder for MessageDecoder<D> {
    type Item = D;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        // As tonic-prost: a message that does not parse is the peer's protocol error.
        D::decode(buf)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }

    fn buffer_settings(&self) -> BufferSettings {
        settings()
    }
}
