//! What applications ask of `xiad` ([`Request`]) and what it answers or pushes ([`Response`]).
//!
//! Each message is encoded by `serde` (see [`super::codec`]); the bulk bytes some of them carry
//! (datagrams, chunks, echo data) travel after it as the frame's payload, never inside it, so
//! they are written from and read into the buffers that hold them.

use serde::{Deserialize, Serialize};

use super::ErrorCode;
use crate::dag::Dag;
use crate::xid::Xid;

/// A request from an application. One connection plays one role: the first request that gives
/// it one (connect, listen, attach, bind, chunks, ping, subscribe) decides it.
// Built once per request; boxing every DAG would allocate for each of them.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Opens a stream to a DAG whose intent is a SID. Answer: [`Response::Connected`], after
    /// which the connection carries the stream's bytes raw, both ways.
    Connect {
        /// Where to.
        dst: Dag,
    },
    /// Listens for streams on a SID (`None`: a fresh one). Answer: [`Response::Listening`],
    /// then a [`Response::Incoming`] per connection.
    Listen {
        /// The SID.
        sid: Option<Xid>,
    },
    /// Takes over an incoming stream on this (fresh) connection. Answer: `Connected`.
    Attach {
        /// The token of its [`Response::Incoming`].
        token: u64,
    },
    /// Binds a datagram socket to a SID (`None`: a fresh one); this connection receives its
    /// datagrams. Answer: [`Response::Bound`].
    DgramBind {
        /// The SID.
        sid: Option<Xid>,
    },
    /// Makes this connection the sending half of a bound datagram socket. Answer: `Ok`.
    DgramSender {
        /// The token of its [`Response::Bound`].
        token: u64,
    },
    /// Sends the payload as one datagram. Answer: `Ok` or `Error`.
    SendTo {
        /// Where to.
        dst: Dag,
    },
    /// Publishes the payload as a chunk. Answer: [`Response::Put`].
    ChunkPut,
    /// Makes what this connection publishes from now on last only as long as the connection:
    /// each publication is a reference, [`Request::ChunkRemove`] drops one, and whatever is left
    /// is removed when the connection closes (a publisher that crashes leaves nothing behind).
    /// Answer: `Ok`.
    ChunkLease,
    /// Fetches a chunk. Answer (in any order with other fetches): [`Response::ChunkData`] or
    /// [`Response::ChunkFailed`] with the same tag.
    ChunkFetch {
        /// The application's name for this fetch.
        tag: u64,
        /// The chunk.
        cid: Xid,
        /// Where to ask for it.
        dag: Dag,
        /// Its length, if known.
        len: Option<u64>,
    },
    /// Gives up a fetch. Answer: [`Response::Cancelled`], after which nothing more comes about
    /// its tag.
    ChunkCancel {
        /// The fetch.
        tag: u64,
    },
    /// Stops publishing a chunk (on a leased connection: drops one reference). Answer: `Ok`.
    ChunkRemove {
        /// The chunk.
        cid: Xid,
    },
    /// Makes this connection a pinger. Answer: `Ok`.
    PingOpen,
    /// Sends an XCMP echo request with the payload as its data. No answer unless it fails;
    /// replies come as [`Response::EchoReply`] or [`Response::EchoError`].
    PingSend {
        /// Where to.
        dst: Dag,
        /// Sequence number.
        seq: u16,
    },
    /// Asks for the host's addresses. Answer: [`Response::Info`].
    Info,
    /// Asks for the daemon's counters. Answer: [`Response::Stats`].
    Stats,
    /// Asks how stream `id` ended. Answer: [`Response::Status`].
    StreamStatus {
        /// The id of its `Connected` answer.
        id: u64,
    },
    /// Sends a route patch to the router at `router` (its DAG): traffic for this host's HID goes
    /// to where it is registered now, for `lifetime_ms`. Answer: `Ok`.
    PatchRoute {
        /// The old gateway's DAG (`RE AD HID`).
        router: Dag,
        /// How long the router keeps the patch.
        lifetime_ms: u32,
    },
    /// Makes this connection an event stream. Answer: [`Response::Subscribed`], then an
    /// [`Response::Event`] for everything that happens to the host's attachment and link.
    Subscribe,
    /// Marks what this connection publishes from now on as not to be kept by the nodes that
    /// forward it (responses flagged NO_STORE: no router caches them). Answer: `Ok`.
    ChunkNoStore,
    /// Signs a name record with the host's key: `name` to `dag` (whose intent must be the host's
    /// HID; `None`: a deletion). Answer: [`Response::SignedName`].
    SignName {
        /// The name (the name service's grammar).
        name: String,
        /// Where it leads.
        dag: Option<Dag>,
        /// Its sequence number.
        seq: u64,
        /// Its TTL (ms).
        ttl_ms: u32,
    },
}

impl Request {
    /// Whether the frame of this request carries a payload.
    pub fn carries_payload(&self) -> bool {
        self.max_payload() > 0
    }

    /// The largest payload this request may carry (a datagram or echo data fits one frame of the
    /// largest MTU; a chunk, the protocol's limit).
    pub fn max_payload(&self) -> usize {
        match self {
            Request::SendTo { .. } | Request::PingSend { .. } => MAX_DATAGRAM,
            Request::ChunkPut => super::codec::MAX_PAYLOAD,
            _ => 0,
        }
    }
}

/// Largest datagram or echo payload a request may carry: what one frame of the largest MTU
/// (65535) holds at most.
pub const MAX_DATAGRAM: usize = 65535;

/// What the daemon tells an application: answers to its requests, and what it pushes (incoming
/// streams, datagrams, fetched chunks, echo replies, events).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// A stream is up; the connection is raw from the next byte on.
    Connected {
        /// The daemon's id for it (ask [`Request::StreamStatus`] how it ended); ids are not
        /// reused by a restarted daemon.
        id: u64,
        /// This end's DAG.
        local: Dag,
        /// The other end's DAG.
        peer: Dag,
    },
    /// Listening at this DAG.
    Listening {
        /// Where clients connect.
        dag: Dag,
    },
    /// A connection arrived on the listener.
    Incoming {
        /// A random token to [`Request::Attach`] with.
        token: u64,
        /// Who connected.
        peer: Dag,
    },
    /// A datagram socket is bound.
    Bound {
        /// Its DAG.
        dag: Dag,
        /// Largest datagram to a destination with a DAG as long as this one.
        max: u32,
        /// A random token for [`Request::DgramSender`].
        token: u64,
    },
    /// A datagram arrived; the payload is its data.
    RecvFrom {
        /// Its sender.
        src: Dag,
    },
    /// A chunk was published.
    Put {
        /// Its CID.
        cid: Xid,
        /// Where others fetch it.
        dag: Dag,
    },
    /// A fetched chunk, verified against its CID; the payload is its bytes.
    ChunkData {
        /// The fetch's tag.
        tag: u64,
    },
    /// A fetch failed.
    ChunkFailed {
        /// The fetch's tag.
        tag: u64,
        /// Why.
        code: ErrorCode,
    },
    /// An echo reply; the payload is the data it returned.
    EchoReply {
        /// Sequence number.
        seq: u16,
        /// Who answered.
        from: Dag,
    },
    /// An XCMP error about an echo request.
    EchoError {
        /// Sequence number of the request concerned.
        seq: u16,
        /// Who reported it.
        from: Dag,
        /// XCMP type ([`crate::wire::xcmp::Message`]).
        kind: u8,
        /// XCMP code.
        code: u8,
    },
    /// The host's addresses.
    Info(HostInfo),
    /// The daemon's counters, by name.
    Stats(Vec<(String, u64)>),
    /// How a stream ended, as far as this daemon knows.
    Status {
        /// Its end.
        end: StreamEnd,
    },
    /// A fetch was given up: nothing more comes about its tag.
    Cancelled {
        /// The fetch's tag.
        tag: u64,
    },
    /// Events follow; this is how the host stands now.
    Subscribed(HostInfo),
    /// Something happened to the host.
    Event(Event),
    /// Done (requests without another answer).
    Ok,
    /// A request failed.
    Error {
        /// Why.
        code: ErrorCode,
        /// In words, for people.
        message: String,
    },
    /// A name record signed by the host's key, as on the wire.
    SignedName(Vec<u8>),
}

impl Response {
    /// Whether the frame of this response carries a payload.
    pub fn carries_payload(&self) -> bool {
        matches!(self, Response::RecvFrom { .. } | Response::ChunkData { .. } | Response::EchoReply { .. })
    }
}

/// How a stream ended, for an application whose stream socket the daemon ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamEnd {
    /// Not over: the peer closed its direction in order (its data all delivered), or nothing
    /// happened yet.
    Open,
    /// Closed in order both ways.
    Clean,
    /// Failed, and why.
    Failed(ErrorCode),
    /// This daemon knows no stream of that id (it was restarted, or the id is not its own):
    /// whatever happened to it is unknown, so it counts as failed.
    Unknown,
}

/// What the host knows about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// The host's HID.
    pub hid: Xid,
    /// Its DAG (`RE AD HID`, or `RE HID` without an AD).
    pub dag: Dag,
    /// Its AD, if known.
    pub ad: Option<Xid>,
    /// Its gateway router, if any.
    pub gateway: Option<Xid>,
    /// Whether a gateway has confirmed its registration (route patches need that).
    pub registered: bool,
    /// The name server the gateway announced.
    pub name_server: Option<Dag>,
    /// The link MTU.
    pub mtu: u32,
    /// Whether the link is up.
    pub link_up: bool,
}

/// What happens to a host that applications may need to act on (re-register a name, tell peers
/// a new address, wait for the network).
// A few a minute at most; boxing the DAG would gain nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A gateway router's beacons attached the host to an AD (the first time, or a new AD or
    /// router).
    Attached {
        /// The AD.
        ad: Xid,
        /// The gateway's HID.
        router: Xid,
    },
    /// The gateway confirmed the host's registration.
    Registered {
        /// The AD.
        ad: Xid,
        /// The gateway's HID.
        router: Xid,
    },
    /// The host's DAG changed (a new AD): services on it are now reached at new DAGs.
    DagChanged {
        /// The new DAG.
        dag: Dag,
    },
    /// The gateway's beacons stopped: the host has no router until they come back.
    GatewayLost {
        /// The AD it was in.
        ad: Xid,
        /// The gateway that fell silent.
        router: Xid,
    },
    /// The link went down.
    LinkDown,
    /// The link came up.
    LinkUp,
}
