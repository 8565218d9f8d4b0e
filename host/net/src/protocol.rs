//! Wire formats of p2pc's own request-response protocols, and the one
//! codec both use.
//!
//! # `/p2pc/chunk/1`: content-addressed chunk exchange
//!
//! - Participants: a *getter* that wants a blob, and *providers* that hold
//!   it (found through Kademlia provider records).
//! - Goals: move a blob's chunks from several providers at once, many in
//!   flight, with every byte checked against its BLAKE3 name by the getter
//!   before it is kept.
//! - Non-goals: trust in providers (they are not trusted: everything they
//!   send is verified), confidentiality beyond the transport's, payment.
//! - Messages: a [`ChunkRequest`] with no chunk names asks for the blob's
//!   manifest (its length and chunk list, which must hash to the blob's
//!   name); with names it asks for those chunks, at most
//!   [`MAX_CHUNKS_PER_REQUEST`]. A [`ChunkResponse`] carries one or the
//!   other, or a status saying why not.
//!
//! # `/p2pc/task/1`: remote execution
//!
//! Requests and responses are opaque byte strings to this crate: signed
//! envelopes built and checked by `p2pc-node`. This crate only bounds their
//! size.
//!
//! # Framing and limits
//!
//! Every message is a 4-byte big-endian length and then that many bytes.
//! A length over the protocol's limit is refused before any of the body is
//! read, and the stream is closed: an oversized message costs its receiver
//! four bytes of reading.

use std::io;

use bytes::Bytes;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;
use prost::Message;

/// The chunk exchange protocol's name.
pub const CHUNK_PROTOCOL: StreamProtocol = StreamProtocol::new("/p2pc/chunk/1");
/// The remote execution protocol's name.
pub const TASK_PROTOCOL: StreamProtocol = StreamProtocol::new("/p2pc/task/1");
/// The ledger anti-entropy protocol's name.
pub const LEDGER_PROTOCOL: StreamProtocol = StreamProtocol::new("/p2pc/ledger/1");

/// Most chunks one [`ChunkRequest`] may ask for.
pub const MAX_CHUNKS_PER_REQUEST: usize = 4;
/// Largest chunk request: a blob name and [`MAX_CHUNKS_PER_REQUEST`] chunk
/// names, with room for framing.
pub const MAX_CHUNK_REQUEST_BYTES: usize = 4 << 10;
/// Largest chunk response: a manifest of up to 256 GiB of chunks (8 MiB of
/// names), or [`MAX_CHUNKS_PER_REQUEST`] chunks of 256 KiB.
pub const MAX_CHUNK_RESPONSE_BYTES: usize = 9 << 20;
/// Largest task request or response: a signed envelope
/// (`p2pc_crypto::MAX_ENVELOPE_BYTES`) plus inline data.
pub const MAX_TASK_MESSAGE_BYTES: usize = 5 << 20;
/// Largest ledger sync request (the heads of 100,000 accounts) or
/// response (a budget of ops).
pub const MAX_LEDGER_MESSAGE_BYTES: usize = 5 << 20;

/// What a [`ChunkResponse`] says about the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum ChunkStatus {
    /// The manifest or every chunk asked for follows.
    Ok = 0,
    /// This node does not hold the blob or one of the chunks.
    NotFound = 1,
    /// The request was malformed or asked for too much.
    BadRequest = 2,
    /// The node failed to read its own store.
    Unavailable = 3,
}

/// A request for a blob's manifest or some of its chunks.
#[derive(Clone, PartialEq, Message)]
pub struct ChunkRequest {
    /// The blob (32 bytes).
    #[prost(bytes = "vec", tag = "1")]
    pub blob: Vec<u8>,
    /// Chunk names (32 bytes each). Empty: send the manifest.
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub chunks: Vec<Vec<u8>>,
}

/// The answer to a [`ChunkRequest`].
#[derive(Clone, PartialEq, Message)]
pub struct ChunkResponse {
    /// Whether the request was served.
    #[prost(enumeration = "ChunkStatus", tag = "1")]
    pub status: i32,
    /// The blob's manifest, when it was asked for.
    #[prost(bytes = "bytes", tag = "2")]
    pub manifest: Bytes,
    /// The chunks asked for, in the order asked.
    #[prost(bytes = "bytes", repeated, tag = "3")]
    pub chunks: Vec<Bytes>,
}

impl ChunkResponse {
    /// A response carrying only a status.
    pub fn with_status(status: ChunkStatus) -> Self {
        Self {
            status: status as i32,
            manifest: Bytes::new(),
            chunks: Vec::new(),
        }
    }
}

/// The codec of both protocols: length-prefixed frames, bounded per
/// direction. Chunk messages are decoded with prost; task messages are
/// passed through as bytes.
#[derive(Clone, Copy, Debug)]
pub struct Codec<Req, Resp> {
    max_request: usize,
    max_response: usize,
    /// Largest request this side sends; normally `max_request`.
    max_send: usize,
    _types: std::marker::PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> Codec<Req, Resp> {
    /// A codec refusing requests over `max_request` and responses over
    /// `max_response` bytes.
    pub fn new(max_request: usize, max_response: usize) -> Self {
        Self {
            max_request,
            max_response,
            max_send: max_request,
            _types: std::marker::PhantomData,
        }
    }

    /// Sends requests of any size; for tests that play a misbehaving peer.
    pub(crate) fn unbounded_sends(mut self) -> Self {
        self.max_send = usize::MAX;
        self
    }
}

/// A message the codec can frame.
pub trait Frame: Sized + Send {
    /// Its encoded bytes.
    fn encode_frame(self) -> Vec<u8>;
    /// Decodes a received frame.
    fn decode_frame(bytes: Vec<u8>) -> io::Result<Self>;
}

impl Frame for Vec<u8> {
    fn encode_frame(self) -> Vec<u8> {
        self
    }
    fn decode_frame(bytes: Vec<u8>) -> io::Result<Self> {
        Ok(bytes)
    }
}

impl Frame for ChunkRequest {
    fn encode_frame(self) -> Vec<u8> {
        self.encode_to_vec()
    }
    fn decode_frame(bytes: Vec<u8>) -> io::Result<Self> {
        Self::decode(bytes.as_slice()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl Frame for ChunkResponse {
    fn encode_frame(self) -> Vec<u8> {
        self.encode_to_vec()
    }
    fn decode_frame(bytes: Vec<u8>) -> io::Result<Self> {
        // Decoding from `Bytes` lets the chunks share the frame's buffer.
        Self::decode(Bytes::from(bytes)).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of {len} bytes is over the {max}-byte limit"),
        ));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: Vec<u8>,
    max: usize,
) -> io::Result<()> {
    if bytes.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "message of {} bytes is over the {max}-byte limit",
                bytes.len()
            ),
        ));
    }
    io.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    io.write_all(&bytes).await?;
    io.close().await
}

impl<Req: Frame + 'static, Resp: Frame + 'static> request_response::Codec for Codec<Req, Resp> {
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        Req::decode_frame(read_frame(io, self.max_request).await?)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        Resp::decode_frame(read_frame(io, self.max_response).await?)
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Req) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, req.encode_frame(), self.max_send).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, res.encode_frame(), self.max_response).await
    }
}

/// The chunk protocol's codec.
pub type ChunkCodec = Codec<ChunkRequest, ChunkResponse>;
/// The task and ledger protocols' codec: opaque bytes, framed.
pub type TaskCodec = Codec<Vec<u8>, Vec<u8>>;

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use request_response::Codec as _;

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused_unread() {
        let mut codec = TaskCodec::new(16, 16);
        let mut wire = Vec::new();
        block_on(codec.write_request(&TASK_PROTOCOL, &mut wire, b"hello".to_vec())).expect("write");
        let mut reader = futures::io::Cursor::new(wire);
        let back = block_on(codec.read_request(&TASK_PROTOCOL, &mut reader)).expect("read");
        assert_eq!(back, b"hello");

        let err = block_on(codec.write_request(&TASK_PROTOCOL, &mut Vec::new(), vec![0; 17]))
            .expect_err("too big to send");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);

        // A peer claiming 4 GiB is refused after the length prefix.
        let mut reader = futures::io::Cursor::new(vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        let err = block_on(codec.read_request(&TASK_PROTOCOL, &mut reader)).expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(reader.position(), 4);
    }
}
