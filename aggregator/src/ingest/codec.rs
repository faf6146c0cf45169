//! The Ingest service's gRPC codec: protobuf through prost, as the generated code's, but with
//! small buffers. tonic allocates a codec's buffers per RPC up front (8 KiB each way by default)
//! and keeps them for the RPC's life; an `Ingest/Stream` lives as long as its sidecar, so at
//! 10 000 sidecars that was ~160 MiB for reports of a few hundred bytes and acks of a dozen
//! (BENCHMARKS.md note B). These buffers start (nearly) empty and grow to what the messages
//! need: the decode buffer, which tonic grows by doubling past its start size, to about the
//! largest report seen (~1 KiB a stream, down from 2 KiB with a 256-byte start; heaptrack).
use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// The decode buffer's start: one byte, so the first report sizes it exactly (a vector grows to
/// at least what is asked, and doubles only past that). No compression is accepted, so the
/// size is never used as a decompression growth step.
const DECODE_START_BYTES: usize = 1;
/// The encode buffer's start (and growth step): a few acks of a dozen bytes each (a stream
/// encodes one at a time: the next waits for the next report).
const ENCODE_BYTES: usize = 64;
/// Acks batched into one write when many are ready (a stream sends one per report).
const YIELD_BYTES: usize = 4 * 1024;

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
        BufferSettings::new(ENCODE_BYTES, YIELD_BYTES)
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
        BufferSettings::new(DECODE_START_BYTES, YIELD_BYTES)
    }
}
