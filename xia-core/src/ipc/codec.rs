//! How messages are put on the socket.
//!
//! ```text
//! hello, first thing each way on every connection (8 bytes):
//!   "XIAD" | version u16 LE | reserved u16 (0)
//! then frames:
//!   length u32 LE | head length u32 LE | head | payload
//! ```
//! `length` counts everything after itself. The head is a [`super::Request`] or
//! [`super::Response`] encoded by bincode (variable-length integers, at most [`MAX_HEAD`]
//! bytes, nothing left over); the payload is the bulk bytes of the messages that carry some
//! (at most [`MAX_PAYLOAD`]), raw. Both sides send their hello without waiting for the other's,
//! so it costs no round trip; a side that reads another version says so and closes.

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// First bytes of every connection, both ways.
pub const MAGIC: [u8; 4] = *b"XIAD";
/// This protocol's version. Bumped on any change to the messages or the framing.
pub const VERSION: u16 = 2;
/// Length of the hello.
pub const HELLO_LEN: usize = 8;
/// Length of a frame's two length fields.
pub const PREFIX_LEN: usize = 8;
/// Largest encoded message head.
pub const MAX_HEAD: usize = 64 << 10;
/// Largest payload (a chunk of the largest size a host publishes or fetches by default).
pub const MAX_PAYLOAD: usize = crate::transport::chunk::DEFAULT_MAX_CHUNK;

/// Why bytes from the socket are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpcError {
    /// The connection does not start with [`MAGIC`]: not this protocol.
    #[error("not the xiad protocol (bad hello)")]
    BadMagic,
    /// The other side speaks another version.
    #[error("xiad protocol version {theirs}, this side speaks {VERSION}")]
    Version {
        /// Its version.
        theirs: u16,
    },
    /// A frame whose lengths are out of bounds or inconsistent.
    #[error("bad frame: head of {head} bytes in a frame of {len}")]
    BadFrame {
        /// The frame's length field.
        len: u64,
        /// Its head length field.
        head: u64,
    },
    /// A head that does not decode as a message.
    #[error("undecodable message: {0}")]
    Decode(String),
    /// A payload on a message that carries none, or larger than the message may carry.
    #[error("payload of {0} bytes on a message that carries less")]
    UnexpectedPayload(usize),
}

fn options() -> impl Options {
    bincode::DefaultOptions::new().with_limit(MAX_HEAD as u64).reject_trailing_bytes()
}

/// This side's hello.
pub fn hello() -> [u8; HELLO_LEN] {
    let mut h = [0u8; HELLO_LEN];
    h[..4].copy_from_slice(&MAGIC);
    h[4..6].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// Checks the other side's hello.
pub fn check_hello(h: &[u8; HELLO_LEN]) -> Result<(), IpcError> {
    if h[..4] != MAGIC {
        return Err(IpcError::BadMagic);
    }
    match u16::from_le_bytes([h[4], h[5]]) {
        VERSION => Ok(()),
        theirs => Err(IpcError::Version { theirs }),
    }
}

/// The lengths at the start of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    /// Bytes of the encoded message.
    pub head: usize,
    /// Bytes of payload after it.
    pub payload: usize,
}

impl Prefix {
    /// The whole frame's length, prefix included.
    pub fn frame_len(&self) -> usize {
        PREFIX_LEN + self.head + self.payload
    }

    /// Reads the prefix at the start of `buf`: `None` until 8 bytes are there, an error for
    /// lengths out of bounds (checked before anything is allocated for them).
    pub fn parse(buf: &[u8]) -> Result<Option<Prefix>, IpcError> {
        let Some(p) = buf.get(..PREFIX_LEN) else { return Ok(None) };
        let len = u64::from(u32::from_le_bytes([p[0], p[1], p[2], p[3]]));
        let head = u64::from(u32::from_le_bytes([p[4], p[5], p[6], p[7]]));
        let bad = IpcError::BadFrame { len, head };
        let payload = len.checked_sub(4 + head).ok_or(bad.clone())?;
        if head == 0 || head > MAX_HEAD as u64 || payload > MAX_PAYLOAD as u64 {
            return Err(bad);
        }
        Ok(Some(Prefix { head: head as usize, payload: payload as usize }))
    }
}

/// The prefix and head of a frame for `m` followed by `payload_len` bytes of payload (which the
/// caller sends after it, from wherever they are; at most [`MAX_PAYLOAD`], which callers check).
pub fn encode_head<M: Serialize>(m: &M, payload_len: usize) -> Vec<u8> {
    assert!(payload_len <= MAX_PAYLOAD, "payload of {payload_len} bytes beyond the protocol's limit");
    let mut out = vec![0u8; PREFIX_LEN];
    // Serializing the project's own messages into a Vec fails only beyond the size limit, which
    // no message comes near (the largest holds a few DAGs and a short text).
    options().serialize_into(&mut out, m).expect("a message within MAX_HEAD");
    let head = out.len() - PREFIX_LEN;
    let len = 4 + head + payload_len;
    out[..4].copy_from_slice(&(len as u32).to_le_bytes());
    out[4..8].copy_from_slice(&(head as u32).to_le_bytes());
    out
}

/// A whole frame: `m` and `payload`.
pub fn encode<M: Serialize>(m: &M, payload: &[u8]) -> Vec<u8> {
    let mut f = encode_head(m, payload.len());
    f.extend_from_slice(payload);
    f
}

/// Decodes a message head.
pub fn decode<M: DeserializeOwned>(head: &[u8]) -> Result<M, IpcError> {
    options().deserialize(head).map_err(|e| IpcError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::{ErrorCode, Event, HostInfo, Request, Response, StreamEnd};
    use crate::xid::{Principal, Xid};
    use crate::Dag;

    fn dag() -> Dag {
        Dag::service(
            Xid::new(Principal::Ad, [1; 20]),
            Xid::new(Principal::Hid, [2; 20]),
            Xid::new(Principal::Sid, [3; 20]),
        )
        .unwrap()
    }

    fn round_trip<M: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(m: M, payload: &[u8]) {
        let f = encode(&m, payload);
        let p = Prefix::parse(&f).unwrap().unwrap();
        assert_eq!(p.frame_len(), f.len());
        assert_eq!(&f[PREFIX_LEN + p.head..], payload);
        let back: M = decode(&f[PREFIX_LEN..PREFIX_LEN + p.head]).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn every_message_round_trips() {
        let x = Xid::new(Principal::Cid, [9; 20]);
        let info = HostInfo {
            hid: Xid::new(Principal::Hid, [2; 20]),
            dag: dag(),
            ad: None,
            gateway: Some(Xid::new(Principal::Hid, [5; 20])),
            registered: true,
            name_server: Some(dag()),
            mtu: 9000,
            link_up: true,
        };
        for r in [
            Request::Connect { dst: dag() },
            Request::Listen { sid: None },
            Request::Listen { sid: Some(Xid::new(Principal::Sid, [4; 20])) },
            Request::Attach { token: 7 },
            Request::DgramBind { sid: None },
            Request::DgramSender { token: u64::MAX },
            Request::SendTo { dst: dag() },
            Request::ChunkPut,
            Request::ChunkLease,
            Request::ChunkNoStore,
            Request::SignName { name: "vm1.xia".into(), dag: Some(dag()), seq: 9, ttl_ms: 1000 },
            Request::SignName { name: "vm1.xia".into(), dag: None, seq: 10, ttl_ms: 0 },
            Request::ChunkFetch { tag: 1, cid: x, dag: dag(), len: None },
            Request::ChunkFetch { tag: 1, cid: x, dag: dag(), len: Some(1 << 20) },
            Request::ChunkCancel { tag: 1 },
            Request::ChunkRemove { cid: x },
            Request::PingOpen,
            Request::PingSend { dst: dag(), seq: 3 },
            Request::Info,
            Request::Stats,
            Request::StreamStatus { id: 3 },
            Request::PatchRoute { router: dag(), lifetime_ms: 60_000 },
            Request::Subscribe,
        ] {
            let payload: &[u8] = if r.carries_payload() { b"bytes" } else { b"" };
            round_trip(r, payload);
        }
        let ad = Xid::new(Principal::Ad, [1; 20]);
        let hid = Xid::new(Principal::Hid, [2; 20]);
        for r in [
            Response::Connected { id: 1, local: dag(), peer: dag() },
            Response::Listening { dag: dag() },
            Response::Incoming { token: 2, peer: dag() },
            Response::Bound { dag: dag(), max: 8900, token: 3 },
            Response::RecvFrom { src: dag() },
            Response::Put { cid: x, dag: dag() },
            Response::ChunkData { tag: 4 },
            Response::ChunkFailed { tag: 4, code: ErrorCode::Corrupt },
            Response::EchoReply { seq: 1, from: dag() },
            Response::EchoError { seq: 1, from: dag(), kind: 3, code: 1 },
            Response::Info(info.clone()),
            Response::Stats(vec![("rx_frames".into(), 1)]),
            Response::Status { end: StreamEnd::Open },
            Response::Status { end: StreamEnd::Clean },
            Response::Status { end: StreamEnd::Failed(ErrorCode::TimedOut) },
            Response::Status { end: StreamEnd::Unknown },
            Response::Cancelled { tag: 5 },
            Response::Subscribed(info),
            Response::Event(Event::Attached { ad, router: hid }),
            Response::Event(Event::Registered { ad, router: hid }),
            Response::Event(Event::DagChanged { dag: dag() }),
            Response::Event(Event::GatewayLost { ad, router: hid }),
            Response::Event(Event::LinkDown),
            Response::Event(Event::LinkUp),
            Response::Ok,
            Response::Error { code: ErrorCode::Unreachable, message: "no route".into() },
        ] {
            let payload: &[u8] = if r.carries_payload() { &[7; 300] } else { b"" };
            round_trip(r, payload);
        }
        for c in ErrorCode::ALL {
            round_trip(Response::Error { code: c, message: String::new() }, b"");
        }
    }

    #[test]
    fn hello_checks_magic_and_version() {
        assert_eq!(check_hello(&hello()), Ok(()));
        let mut h = hello();
        h[4] = h[4].wrapping_add(1);
        assert_eq!(check_hello(&h), Err(IpcError::Version { theirs: VERSION + 1 }));
        assert_eq!(check_hello(b"GET / HT"), Err(IpcError::BadMagic));
    }

    #[test]
    fn hostile_prefixes_are_refused_before_any_allocation() {
        assert_eq!(Prefix::parse(&[1, 2, 3]), Ok(None));
        // A 4 GiB frame, a head longer than the frame, an empty head, a huge head.
        for (len, head) in [(u32::MAX, 4u32), (10, 20), (4, 0), (4 + 70_000, 70_000)] {
            let mut b = len.to_le_bytes().to_vec();
            b.extend_from_slice(&head.to_le_bytes());
            assert!(Prefix::parse(&b).is_err(), "{len} {head}");
        }
    }

    #[test]
    fn hostile_heads_are_typed_errors() {
        // An unknown variant, a DAG of 200 nodes, a DAG whose edges point backwards, trailing
        // bytes, a byte string claiming 4 GiB.
        assert!(decode::<Request>(&[200]).is_err());
        let mut many = vec![0u8]; // Connect
        many.push(200); // 200 nodes (varint)
        many.extend(std::iter::repeat_n(0u8, 200 * 25));
        assert!(matches!(decode::<Request>(&many), Err(IpcError::Decode(_))));
        let mut f = encode(&Request::Info, b"");
        f.push(0);
        assert!(decode::<Request>(&f[PREFIX_LEN..]).is_err());
        let text = [19u8, 1, 0xfc, 0xff, 0xff, 0xff, 0xff];
        assert!(decode::<Response>(&text).is_err());
    }
}
