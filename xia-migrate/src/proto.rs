//! The control protocol between `xmigrate send` and `xmigrate recv` (see `PROTOCOL.md` in
//! this crate): messages on one STREAM connection, each `length u32 LE | bincode`; the
//! migration's bytes travel as chunks, fetched by the receiver over CHUNK.

use bincode::Options;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use xia_core::api::XiaError;
use xia_core::xid::Xid;
use xia_core::Dag;

/// This protocol's version.
pub const VERSION: u16 = 1;
/// Largest encoded message.
pub const MAX_MESSAGE: usize = 64 << 10;

/// One control message.
// Dozens a second; boxing the DAG would gain nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// Sender -> receiver, first: who speaks, and the largest chunk it will offer.
    Hello {
        /// [`VERSION`].
        version: u16,
        /// A random number naming this migration in both sides' logs.
        session: u64,
        /// Largest chunk offered.
        chunk_max: u32,
    },
    /// Receiver -> sender, the answer to `Hello`.
    Welcome {
        /// [`VERSION`].
        version: u16,
        /// The `Hello`'s session.
        session: u64,
    },
    /// Sender -> receiver: the next piece of QEMU's stream, in order, published as a chunk.
    Offer {
        /// Its place in the stream (0, 1, 2, ...).
        seq: u64,
        /// Its CID.
        cid: Xid,
        /// Its length.
        len: u32,
        /// Where to fetch it.
        dag: Dag,
    },
    /// Receiver -> sender: every chunk up to `seq` was handed to the destination QEMU; the
    /// sender may unpublish them.
    Ack {
        /// The last chunk written.
        seq: u64,
    },
    /// Sender -> receiver: QEMU's stream ended after `chunks` chunks, `bytes` bytes.
    Done {
        /// Chunks offered in all.
        chunks: u64,
        /// Bytes in all.
        bytes: u64,
    },
    /// Receiver -> sender: everything was written to the destination QEMU.
    Finished {
        /// Bytes written.
        bytes: u64,
    },
    /// Either way: giving up, and why.
    Abort {
        /// For the other side's log line.
        reason: String,
    },
}

/// Why the control connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The connection failed (reset, timed out, the daemon gone...).
    #[error("control connection: {0}")]
    Xia(#[from] XiaError),
    /// The other side sent something that is not a message of this protocol.
    #[error("control connection: {0}")]
    Malformed(String),
    /// The other side closed the connection.
    #[error("control connection closed by the other side")]
    Closed,
}

fn options() -> impl Options {
    bincode::DefaultOptions::new().with_limit(MAX_MESSAGE as u64).reject_trailing_bytes()
}

/// Encodes a message with its length.
pub fn encode(m: &Msg) -> Vec<u8> {
    let body = options().serialize(m).expect("a control message within MAX_MESSAGE");
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Writes one message.
pub async fn send<W: AsyncWrite + Unpin>(w: &mut W, m: &Msg) -> Result<(), ProtoError> {
    w.write_all(&encode(m)).await.map_err(|e| ProtoError::Xia(XiaError::from_io(e)))
}

/// Reads messages off a stream. Cancel-safe.
#[derive(Debug)]
pub struct Reader<R> {
    r: R,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// Reads from `r`.
    pub fn new(r: R) -> Reader<R> {
        Reader { r, buf: Vec::new() }
    }

    /// The next message; [`ProtoError::Closed`] at the other side's orderly close.
    pub async fn next(&mut self) -> Result<Msg, ProtoError> {
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_le_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize;
                if len == 0 || len > MAX_MESSAGE {
                    return Err(ProtoError::Malformed(format!("message of {len} bytes")));
                }
                if self.buf.len() >= 4 + len {
                    let m = options()
                        .deserialize(&self.buf[4..4 + len])
                        .map_err(|e| ProtoError::Malformed(e.to_string()))?;
                    self.buf.drain(..4 + len);
                    return Ok(m);
                }
            }
            self.buf.reserve(4096);
            let n =
                self.r.read_buf(&mut self.buf).await.map_err(|e| ProtoError::Xia(XiaError::from_io(e)))?;
            if n == 0 {
                return Err(ProtoError::Closed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xia_core::xid::Principal;

    #[tokio::test]
    async fn messages_round_trip_through_a_byte_stream_cut_anywhere() {
        let dag = Dag::linear(&[Xid::new(Principal::Cid, [3; 20])]).unwrap();
        let msgs = vec![
            Msg::Hello { version: VERSION, session: 7, chunk_max: 1 << 20 },
            Msg::Welcome { version: VERSION, session: 7 },
            Msg::Offer { seq: 0, cid: Xid::new(Principal::Cid, [3; 20]), len: 5, dag },
            Msg::Ack { seq: 0 },
            Msg::Done { chunks: 1, bytes: 5 },
            Msg::Finished { bytes: 5 },
            Msg::Abort { reason: "no".into() },
        ];
        let bytes: Vec<u8> = msgs.iter().flat_map(encode).collect();
        for cut in [1, 3, 7, 64] {
            let (mut a, b) = tokio::io::duplex(cut);
            let sent = bytes.clone();
            let w = tokio::spawn(async move {
                a.write_all(&sent).await.unwrap();
            });
            let mut r = Reader::new(b);
            for m in &msgs {
                assert_eq!(&r.next().await.unwrap(), m);
            }
            w.await.unwrap();
            assert!(matches!(r.next().await, Err(ProtoError::Closed)));
        }
    }

    #[tokio::test]
    async fn hostile_lengths_are_refused_before_anything_is_allocated() {
        for bad in [0u32, u32::MAX, (MAX_MESSAGE + 1) as u32] {
            let (mut a, b) = tokio::io::duplex(64);
            a.write_all(&bad.to_le_bytes()).await.unwrap();
            assert!(matches!(Reader::new(b).next().await, Err(ProtoError::Malformed(_))));
        }
    }
}
