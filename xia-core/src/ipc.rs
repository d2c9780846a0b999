//! The local protocol between applications and `xiad`, over a Unix stream socket.
//!
//! Every connection starts in message mode: frames of `u32 length (LE) | u8 type | body`. A
//! stream connection (after [`Msg::Connected`]) switches to raw mode: from then on the socket
//! carries the stream's bytes both ways with no framing, so the application's reads and writes
//! are the socket's own (no extra copy, and the socket buffers give back-pressure both ways). A
//! clean end of stream is an end of file; a failed stream is reset, and [`Msg::StreamStatus`] on
//! a new connection tells why.
//!
//! Everything read off a socket is checked: bounded lengths, validated DAGs, typed errors.

use std::time::Duration;

use crate::dag::{Dag, MAX_NODES};
use crate::transport::chunk::ChunkError;
use crate::transport::stream::StreamError;
use crate::wire::xip::{read_node, write_node, NODE_LEN};
use crate::wire::{read_xid, write_xid, XID_WIRE_LEN};
use crate::xid::Xid;

/// Environment variable naming the daemon's socket.
pub const SOCKET_ENV: &str = "XIAD_SOCKET";
/// Where the daemon listens when nothing else is said.
pub const DEFAULT_SOCKET: &str = "/run/xia/xiad.sock";
/// Largest message body (a 16 MiB chunk plus headers).
pub const MAX_MESSAGE: usize = (16 << 20) + 4096;
/// Length prefix and type byte.
pub const FRAME_HEADER: usize = 5;

/// The daemon socket path: `$XIAD_SOCKET` or [`DEFAULT_SOCKET`].
pub fn default_socket() -> std::path::PathBuf {
    std::env::var_os(SOCKET_ENV).map_or_else(|| DEFAULT_SOCKET.into(), Into::into)
}

/// Why a request failed, as carried over the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ErrorCode {
    /// Malformed request.
    BadRequest = 1,
    /// No such socket or stream.
    BadHandle = 2,
    /// SID already bound.
    AddrInUse = 3,
    /// Datagram too large.
    TooLarge = 4,
    /// No route.
    Unreachable = 5,
    /// The destination's intent is not a SID.
    NotAService = 6,
    /// Connection refused.
    Refused = 7,
    /// Connection reset.
    Reset = 8,
    /// Timed out.
    TimedOut = 9,
    /// Chunk not found.
    NotFound = 10,
    /// Chunk content never matched its CID.
    Corrupt = 11,
    /// Closed.
    Closed = 12,
    /// No room left (the content store is full of published chunks).
    NoSpace = 13,
    /// The host is not registered with a router (no receipt to show).
    NotRegistered = 14,
    /// Anything else.
    Other = 255,
}

impl ErrorCode {
    fn from_u8(v: u8) -> Result<ErrorCode, IpcError> {
        use ErrorCode::*;
        [
            BadRequest,
            BadHandle,
            AddrInUse,
            TooLarge,
            Unreachable,
            NotAService,
            Refused,
            Reset,
            TimedOut,
            NotFound,
            Corrupt,
            Closed,
            NoSpace,
            NotRegistered,
            Other,
        ]
        .into_iter()
        .find(|c| *c as u8 == v)
        .ok_or(IpcError::BadValue(v))
    }

    /// The matching I/O error kind, for applications that speak `std::io`.
    pub fn io_kind(self) -> std::io::ErrorKind {
        use std::io::ErrorKind as K;
        match self {
            ErrorCode::BadRequest | ErrorCode::NotAService => K::InvalidInput,
            ErrorCode::BadHandle | ErrorCode::NotFound => K::NotFound,
            ErrorCode::AddrInUse => K::AddrInUse,
            ErrorCode::TooLarge => K::InvalidInput,
            ErrorCode::Unreachable => K::HostUnreachable,
            ErrorCode::Refused => K::ConnectionRefused,
            ErrorCode::Reset => K::ConnectionReset,
            ErrorCode::TimedOut => K::TimedOut,
            ErrorCode::Corrupt => K::InvalidData,
            ErrorCode::Closed => K::NotConnected,
            ErrorCode::NoSpace => K::StorageFull,
            ErrorCode::NotRegistered => K::NotConnected,
            ErrorCode::Other => K::Other,
        }
    }
}

impl From<StreamError> for ErrorCode {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::Refused => ErrorCode::Refused,
            StreamError::Reset => ErrorCode::Reset,
            StreamError::TimedOut => ErrorCode::TimedOut,
            StreamError::Unreachable => ErrorCode::Unreachable,
            StreamError::Closed => ErrorCode::Closed,
        }
    }
}

impl From<ChunkError> for ErrorCode {
    fn from(e: ChunkError) -> Self {
        match e {
            ChunkError::NotFound => ErrorCode::NotFound,
            ChunkError::TooLarge => ErrorCode::TooLarge,
            ChunkError::TimedOut => ErrorCode::TimedOut,
            ChunkError::Corrupt => ErrorCode::Corrupt,
            ChunkError::BadRange => ErrorCode::BadRequest,
        }
    }
}

/// What the host knows about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// The host's HID.
    pub hid: Xid,
    /// Its DAG (`RE AD HID` or `RE HID`).
    pub dag: Dag,
    /// Its AD, if known.
    pub ad: Option<Xid>,
    /// Its gateway router, if any.
    pub gateway: Option<Xid>,
    /// The name server the gateway announced.
    pub name_server: Option<Dag>,
    /// The link MTU.
    pub mtu: u32,
}

/// One message.
// Built once per request or datagram; boxing every DAG would allocate for each of them.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    // ---- requests
    /// Open a stream to a DAG.
    Connect { dst: Dag },
    /// Listen on a SID (`None`: a fresh one).
    Listen { sid: Option<Xid> },
    /// Take over an incoming stream announced by [`Msg::Incoming`], naming its token.
    Attach { id: u64 },
    /// Bind a datagram socket.
    DgramBind { sid: Option<Xid> },
    /// Send a datagram.
    SendTo { dst: Dag, data: Vec<u8> },
    /// Publish a chunk.
    ChunkPut { data: Vec<u8> },
    /// Fetch a chunk (`len` 0: unknown).
    ChunkFetch { tag: u64, cid: Xid, dag: Dag, len: u64 },
    /// Unpublish a chunk.
    ChunkRemove { cid: Xid },
    /// Start pinging.
    PingOpen,
    /// Send an echo request.
    PingSend { dst: Dag, seq: u16, data: Vec<u8> },
    /// Ask for the host's addresses.
    Info,
    /// Ask for the daemon's counters.
    Stats,
    /// Ask why stream `id` ended.
    StreamStatus { id: u64 },
    /// Send a route patch to the router at `router` (its DAG): traffic for this host's HID
    /// goes to where it is registered now, for `lifetime_ms`.
    PatchRoute { router: Dag, lifetime_ms: u32 },
    // ---- answers and notices
    /// A stream is up; the connection is in raw mode from the next byte on.
    Connected { id: u64, local: Dag, peer: Dag },
    /// Listening at this DAG.
    Listening { dag: Dag },
    /// A connection arrived on the listener; `id` is a random token to attach with.
    Incoming { id: u64, peer: Dag },
    /// A datagram socket is bound.
    Bound { dag: Dag, max: u32 },
    /// A datagram arrived.
    RecvFrom { src: Dag, data: Vec<u8> },
    /// A chunk was published.
    Put { cid: Xid, dag: Dag },
    /// A fetched chunk.
    ChunkData { tag: u64, data: Vec<u8> },
    /// A fetch failed.
    ChunkFailed { tag: u64, code: ErrorCode },
    /// Ready to ping.
    PingReady,
    /// An echo reply.
    EchoReply { seq: u16, from: Dag, data: Vec<u8> },
    /// An XCMP error about an echo request.
    EchoError { seq: u16, from: Dag, kind: u8, code: u8 },
    /// The host's addresses.
    Info2(Box<HostInfo>),
    /// Counters, one `name value` per line.
    StatsText(String),
    /// How a stream ended (`None`: cleanly, or not ended yet).
    Status { code: Option<ErrorCode> },
    /// Done (for requests without another answer).
    Ok,
    /// A request failed.
    Error { code: ErrorCode, message: String },
}

/// Why bytes from the socket are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpcError {
    /// Ended in the middle of a field.
    #[error("truncated message")]
    Truncated,
    /// A length beyond [`MAX_MESSAGE`].
    #[error("message of {0} bytes is too large")]
    TooLarge(usize),
    /// Unknown message type.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// A DAG that does not validate.
    #[error("bad DAG: {0}")]
    Dag(#[from] crate::dag::DagError),
    /// Bytes left over after the message.
    #[error("trailing bytes")]
    Trailing,
    /// Text that is not UTF-8.
    #[error("text is not UTF-8")]
    Utf8,
    /// A flag or code byte with a value it cannot have.
    #[error("invalid value {0}")]
    BadValue(u8),
}

struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
        self
    }
    fn xid(&mut self, x: &Xid) -> &mut Self {
        let at = self.0.len();
        self.0.resize(at + XID_WIRE_LEN, 0);
        write_xid(&mut self.0, at, x);
        self
    }
    fn opt_xid(&mut self, x: &Option<Xid>) -> &mut Self {
        match x {
            Some(x) => self.u8(1).xid(x),
            None => self.u8(0),
        }
    }
    fn dag(&mut self, d: &Dag) -> &mut Self {
        self.u8(d.len() as u8);
        for n in d.nodes() {
            let at = self.0.len();
            self.0.resize(at + NODE_LEN, 0);
            write_node(&mut self.0, at, n);
        }
        self
    }
    fn opt_dag(&mut self, d: &Option<Dag>) -> &mut Self {
        match d {
            Some(d) => self.u8(1).dag(d),
            None => self.u8(0),
        }
    }
}

struct R<'a>(&'a [u8]);

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], IpcError> {
        if self.0.len() < n {
            return Err(IpcError::Truncated);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, IpcError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, IpcError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().map_err(|_| IpcError::Truncated)?))
    }
    fn u32(&mut self) -> Result<u32, IpcError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| IpcError::Truncated)?))
    }
    fn u64(&mut self) -> Result<u64, IpcError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| IpcError::Truncated)?))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, IpcError> {
        let n = self.u32()? as usize;
        // The frame is already bounded; a length beyond what is left is a lie, not an allocation.
        Ok(self.take(n)?.to_vec())
    }
    fn xid(&mut self) -> Result<Xid, IpcError> {
        Ok(read_xid(self.take(XID_WIRE_LEN)?, 0))
    }
    fn flag(&mut self) -> Result<bool, IpcError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(IpcError::BadValue(v)),
        }
    }
    fn opt_xid(&mut self) -> Result<Option<Xid>, IpcError> {
        Ok(if self.flag()? { Some(self.xid()?) } else { None })
    }
    fn dag(&mut self) -> Result<Dag, IpcError> {
        let n = usize::from(self.u8()?);
        if n > MAX_NODES {
            return Err(crate::dag::DagError::TooManyNodes(n).into());
        }
        let b = self.take(n * NODE_LEN)?;
        Ok(Dag::from_node_fn(n, |i| read_node(b, i * NODE_LEN))?)
    }
    fn opt_dag(&mut self) -> Result<Option<Dag>, IpcError> {
        Ok(if self.flag()? { Some(self.dag()?) } else { None })
    }
}

impl Msg {
    /// The framed message (length, type, body).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = W(vec![0, 0, 0, 0]);
        match self {
            Msg::Connect { dst } => w.u8(1).dag(dst),
            Msg::Listen { sid } => w.u8(2).opt_xid(sid),
            Msg::Attach { id } => w.u8(3).u64(*id),
            Msg::DgramBind { sid } => w.u8(4).opt_xid(sid),
            Msg::SendTo { dst, data } => w.u8(5).dag(dst).bytes(data),
            Msg::ChunkPut { data } => w.u8(6).bytes(data),
            Msg::ChunkFetch { tag, cid, dag, len } => w.u8(7).u64(*tag).xid(cid).dag(dag).u64(*len),
            Msg::ChunkRemove { cid } => w.u8(8).xid(cid),
            Msg::PingOpen => w.u8(9),
            Msg::PingSend { dst, seq, data } => w.u8(10).dag(dst).u16(*seq).bytes(data),
            Msg::Info => w.u8(11),
            Msg::Stats => w.u8(12),
            Msg::StreamStatus { id } => w.u8(13).u64(*id),
            Msg::PatchRoute { router, lifetime_ms } => w.u8(14).dag(router).u32(*lifetime_ms),
            Msg::Connected { id, local, peer } => w.u8(100).u64(*id).dag(local).dag(peer),
            Msg::Listening { dag } => w.u8(101).dag(dag),
            Msg::Incoming { id, peer } => w.u8(102).u64(*id).dag(peer),
            Msg::Bound { dag, max } => w.u8(103).dag(dag).u32(*max),
            Msg::RecvFrom { src, data } => w.u8(104).dag(src).bytes(data),
            Msg::Put { cid, dag } => w.u8(105).xid(cid).dag(dag),
            Msg::ChunkData { tag, data } => w.u8(106).u64(*tag).bytes(data),
            Msg::ChunkFailed { tag, code } => w.u8(107).u64(*tag).u8(*code as u8),
            Msg::PingReady => w.u8(108),
            Msg::EchoReply { seq, from, data } => w.u8(109).u16(*seq).dag(from).bytes(data),
            Msg::EchoError { seq, from, kind, code } => w.u8(110).u16(*seq).dag(from).u8(*kind).u8(*code),
            Msg::Info2(i) => w
                .u8(111)
                .xid(&i.hid)
                .dag(&i.dag)
                .opt_xid(&i.ad)
                .opt_xid(&i.gateway)
                .opt_dag(&i.name_server)
                .u32(i.mtu),
            Msg::StatsText(t) => w.u8(112).bytes(t.as_bytes()),
            Msg::Status { code } => w.u8(113).u8(code.map_or(0, |c| c as u8)),
            Msg::Ok => w.u8(114),
            Msg::Error { code, message } => w.u8(115).u8(*code as u8).bytes(message.as_bytes()),
        };
        let len = (w.0.len() - 4) as u32;
        w.0[..4].copy_from_slice(&len.to_le_bytes());
        w.0
    }

    /// The frame header of `ChunkData { tag, data }` for `len` bytes of data: send it, then
    /// the data (chunks are up to megabytes; no need to copy them into one buffer).
    pub fn chunk_data_header(tag: u64, len: usize) -> [u8; 17] {
        let mut h = [0u8; 17];
        h[..4].copy_from_slice(&((1 + 8 + 4 + len) as u32).to_le_bytes());
        h[4] = 106;
        h[5..13].copy_from_slice(&tag.to_le_bytes());
        h[13..17].copy_from_slice(&(len as u32).to_le_bytes());
        h
    }

    /// Appends the frame of `ChunkData { tag, data }` to `out`.
    pub fn encode_chunk_data(tag: u64, data: &[u8], out: &mut Vec<u8>) {
        out.reserve(17 + data.len());
        out.extend_from_slice(&Msg::chunk_data_header(tag, data.len()));
        out.extend_from_slice(data);
    }

    /// The length of the frame at the start of `buf` (header included), once its header is
    /// there; an error for a length beyond [`MAX_MESSAGE`].
    pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, IpcError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let n = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if n == 0 || n > MAX_MESSAGE {
            return Err(IpcError::TooLarge(n));
        }
        Ok(Some(4 + n))
    }

    /// Decodes the body of one frame (type byte first, length prefix removed).
    pub fn decode(body: &[u8]) -> Result<Msg, IpcError> {
        let mut r = R(body);
        let t = r.u8()?;
        let m = match t {
            1 => Msg::Connect { dst: r.dag()? },
            2 => Msg::Listen { sid: r.opt_xid()? },
            3 => Msg::Attach { id: r.u64()? },
            4 => Msg::DgramBind { sid: r.opt_xid()? },
            5 => Msg::SendTo { dst: r.dag()?, data: r.bytes()? },
            6 => Msg::ChunkPut { data: r.bytes()? },
            7 => Msg::ChunkFetch { tag: r.u64()?, cid: r.xid()?, dag: r.dag()?, len: r.u64()? },
            8 => Msg::ChunkRemove { cid: r.xid()? },
            9 => Msg::PingOpen,
            10 => Msg::PingSend { dst: r.dag()?, seq: r.u16()?, data: r.bytes()? },
            11 => Msg::Info,
            12 => Msg::Stats,
            13 => Msg::StreamStatus { id: r.u64()? },
            14 => Msg::PatchRoute { router: r.dag()?, lifetime_ms: r.u32()? },
            100 => Msg::Connected { id: r.u64()?, local: r.dag()?, peer: r.dag()? },
            101 => Msg::Listening { dag: r.dag()? },
            102 => Msg::Incoming { id: r.u64()?, peer: r.dag()? },
            103 => Msg::Bound { dag: r.dag()?, max: r.u32()? },
            104 => Msg::RecvFrom { src: r.dag()?, data: r.bytes()? },
            105 => Msg::Put { cid: r.xid()?, dag: r.dag()? },
            106 => Msg::ChunkData { tag: r.u64()?, data: r.bytes()? },
            107 => Msg::ChunkFailed { tag: r.u64()?, code: ErrorCode::from_u8(r.u8()?)? },
            108 => Msg::PingReady,
            109 => Msg::EchoReply { seq: r.u16()?, from: r.dag()?, data: r.bytes()? },
            110 => Msg::EchoError { seq: r.u16()?, from: r.dag()?, kind: r.u8()?, code: r.u8()? },
            111 => Msg::Info2(Box::new(HostInfo {
                hid: r.xid()?,
                dag: r.dag()?,
                ad: r.opt_xid()?,
                gateway: r.opt_xid()?,
                name_server: r.opt_dag()?,
                mtu: r.u32()?,
            })),
            112 => Msg::StatsText(String::from_utf8(r.bytes()?).map_err(|_| IpcError::Utf8)?),
            113 => Msg::Status {
                code: match r.u8()? {
                    0 => None,
                    c => Some(ErrorCode::from_u8(c)?),
                },
            },
            114 => Msg::Ok,
            115 => Msg::Error {
                code: ErrorCode::from_u8(r.u8()?)?,
                message: String::from_utf8(r.bytes()?).map_err(|_| IpcError::Utf8)?,
            },
            other => return Err(IpcError::UnknownType(other)),
        };
        if !r.0.is_empty() {
            return Err(IpcError::Trailing);
        }
        Ok(m)
    }
}

/// How long clients wait for the daemon's answer to a request before giving up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xid::Principal;

    fn dag() -> Dag {
        Dag::service(
            Xid::new(Principal::Ad, [1; 20]),
            Xid::new(Principal::Hid, [2; 20]),
            Xid::new(Principal::Sid, [3; 20]),
        )
        .unwrap()
    }

    #[test]
    fn every_message_round_trips() {
        let x = Xid::new(Principal::Cid, [9; 20]);
        let msgs = vec![
            Msg::Connect { dst: dag() },
            Msg::Listen { sid: None },
            Msg::Listen { sid: Some(Xid::new(Principal::Sid, [4; 20])) },
            Msg::Attach { id: 7 },
            Msg::DgramBind { sid: None },
            Msg::SendTo { dst: dag(), data: vec![1, 2, 3] },
            Msg::ChunkPut { data: vec![0; 1000] },
            Msg::ChunkFetch { tag: 1, cid: x, dag: dag(), len: 0 },
            Msg::ChunkRemove { cid: x },
            Msg::PingOpen,
            Msg::PingSend { dst: dag(), seq: 3, data: vec![5; 56] },
            Msg::Info,
            Msg::Stats,
            Msg::StreamStatus { id: 3 },
            Msg::PatchRoute { router: dag(), lifetime_ms: 60_000 },
            Msg::Connected { id: 1, local: dag(), peer: dag() },
            Msg::Listening { dag: dag() },
            Msg::Incoming { id: 2, peer: dag() },
            Msg::Bound { dag: dag(), max: 8900 },
            Msg::RecvFrom { src: dag(), data: vec![] },
            Msg::Put { cid: x, dag: dag() },
            Msg::ChunkData { tag: 4, data: vec![8; 10] },
            Msg::ChunkFailed { tag: 4, code: ErrorCode::Corrupt },
            Msg::PingReady,
            Msg::EchoReply { seq: 1, from: dag(), data: vec![1] },
            Msg::EchoError { seq: 1, from: dag(), kind: 3, code: 1 },
            Msg::Info2(Box::new(HostInfo {
                hid: Xid::new(Principal::Hid, [2; 20]),
                dag: dag(),
                ad: None,
                gateway: Some(Xid::new(Principal::Hid, [5; 20])),
                name_server: Some(dag()),
                mtu: 9000,
            })),
            Msg::StatsText("rx_frames 1\n".into()),
            Msg::Status { code: None },
            Msg::Status { code: Some(ErrorCode::TimedOut) },
            Msg::Ok,
            Msg::Error { code: ErrorCode::Unreachable, message: "no route".into() },
        ];
        for m in msgs {
            let f = m.encode();
            assert_eq!(Msg::frame_len(&f).unwrap(), Some(f.len()));
            assert_eq!(Msg::decode(&f[4..]).unwrap(), m);
        }
    }

    #[test]
    fn chunk_data_framing_matches_encode() {
        let mut out = Vec::new();
        Msg::encode_chunk_data(9, b"abc", &mut out);
        assert_eq!(out, Msg::ChunkData { tag: 9, data: b"abc".to_vec() }.encode());
    }

    #[test]
    fn hostile_frames_are_typed_errors() {
        assert_eq!(Msg::frame_len(&[0xff, 0xff, 0xff, 0x7f, 1]), Err(IpcError::TooLarge(0x7fff_ffff)));
        assert_eq!(Msg::frame_len(&[0, 0, 0, 0]), Err(IpcError::TooLarge(0)));
        assert_eq!(Msg::decode(&[200]), Err(IpcError::UnknownType(200)));
        // A byte string claiming 4 GiB inside a small frame.
        assert_eq!(Msg::decode(&[6, 0xff, 0xff, 0xff, 0xff]), Err(IpcError::Truncated));
        assert!(matches!(Msg::decode(&[1, 30]), Err(IpcError::Dag(_))));
        let mut f = Msg::Ok.encode();
        f.push(0);
        assert_eq!(Msg::decode(&f[4..]), Err(IpcError::Trailing));
    }
}
