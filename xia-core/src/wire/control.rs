//! Signed control messages between hosts and routers, carried as DGRAM payloads to well-known
//! SIDs (beacons to [`crate::xid::SID_XHCP`], routing to [`crate::xid::SID_XROUTE`]).
//!
//! Every message that changes state is signed by the key behind every XID it concerns, and
//! nothing is handed out before the signatures check: [`open`] returns a body only then. What
//! each message proves:
//! - a **beacon** (AD key, co-signed by the router's HID key): this AD, served by this router,
//!   said so at this time, and the router agrees (no one can name another's HID as their
//!   router and draw its traffic);
//! - a **host registration** (HID key): this host attaches to this router of this AD, now;
//! - a **registration receipt** (AD key): this AD has this host attached via this router;
//! - a **route patch** (HID key) carries a receipt from the host's *new* AD: the host says
//!   "send my traffic there", and the new AD confirms the host is really attached there. A host
//!   cannot point its traffic at a network that did not accept it (no reflection attacks);
//! - a **distance vector** (AD key, co-signed by the sending router's HID key): this AD reaches
//!   these ADs, through this router.
//!
//! Every message carries the sender's wall-clock time and a sequence number; receivers refuse
//! messages older than their freshness window and sequence numbers not above the last one seen,
//! so a captured message cannot be replayed later, nor after a receiver forgot its state.
//! Senders start their sequence numbers from their clock ([`seq_base`]), so a number may not
//! run ahead of its own timestamp ([`Stamp::seq_in_bounds`]): no one can push a receiver's
//! mark for a signer far into the future.
//!
//! ```text
//! +---------+------+-------------+------------------+----------------+----------------+
//! | version | type | body length | body             | public key (32)| signature (64) |
//! +---------+------+-------------+------------------+----------------+----------------+
//! ```
//! The signature covers a context string, then everything before it (header, body, key).
//! Beacons and distance vectors carry a second trailer, the router's public key and its
//! signature over another context string and everything before it (both trailers included).
//! XIDs in bodies take 24 bytes (type u32, 20-byte XID); DAGs are node lists as in XIP;
//! reserved bytes are zero.

use crate::dag::{Dag, MAX_NODES};
use crate::keys::{KeyError, Keypair, PublicKey, Signature, PUBLIC_KEY_LEN, SIGNATURE_LEN};
use crate::xid::{Principal, Xid};

use super::xip::{read_node, write_node, NODE_LEN};
use super::{
    be16, be32, be64, need, put16, put32, put64, read_xid, room, write_xid, Result, WireError, XID_WIRE_LEN,
};

/// Control protocol version (2: beacons and distance vectors co-signed by their router).
pub const VERSION: u8 = 2;
/// Header before the body.
pub const HEADER_LEN: usize = 4;
/// Public key and signature after the body.
pub const TRAILER_LEN: usize = PUBLIC_KEY_LEN + SIGNATURE_LEN;
/// Signatures are over this string followed by the message, so they cannot be replayed as
/// signatures of anything else the same key signs.
const CONTEXT: &[u8] = b"XIA control v2\0";
/// The router's co-signature is over this string followed by the message and the first trailer.
const COSIGN_CONTEXT: &[u8] = b"XIA control v2 router\0";

mod kind {
    pub const BEACON: u8 = 1;
    pub const HOST_REGISTER: u8 = 2;
    pub const HOST_REGISTERED: u8 = 3;
    pub const ROUTE_PATCH: u8 = 4;
    pub const AD_ROUTES: u8 = 5;
}

/// seq (8), timestamp (8), lifetime or interval (4), reserved (4).
const STAMP_LEN: usize = 24;
const BEACON_FIXED: usize = 2 * XID_WIRE_LEN + STAMP_LEN + 4;
const REGISTER_LEN: usize = 3 * XID_WIRE_LEN + STAMP_LEN;
const PATCH_FIXED: usize = STAMP_LEN;
const AD_ROUTES_FIXED: usize = 2 * XID_WIRE_LEN + STAMP_LEN + 4;
/// An AD and its distance: XID (24), hops (1), reserved (3).
const AD_ROUTE_LEN: usize = XID_WIRE_LEN + 4;
/// Routes one [`AdRoutes`] message carries at most.
pub const MAX_AD_ROUTES: usize = 256;
/// A distance meaning "unreachable" (a withdrawn route).
pub const AD_HOPS_INFINITY: u8 = 16;

/// The first sequence number of a sender whose wall clock reads `wall_ms`: later than every
/// number it used before a restart (receivers refuse numbers not above the last one seen), as
/// long as it sends fewer than 65536 messages per millisecond of its life.
pub fn seq_base(wall_ms: u64) -> u64 {
    wall_ms << 16
}

/// Sequence number, sender time and a duration, common to every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Increases with every message of this kind from this sender.
    pub seq: u64,
    /// Sender's wall clock, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Beacon: interval to the next one; others: how long the state they create lives.
    pub millis: u32,
}

impl Stamp {
    fn read(b: &[u8], at: usize) -> Result<Stamp> {
        if be32(b, at + 20) != 0 {
            return Err(WireError::Field("reserved"));
        }
        Ok(Stamp { seq: be64(b, at), timestamp_ms: be64(b, at + 8), millis: be32(b, at + 16) })
    }

    fn write(&self, b: &mut [u8], at: usize) {
        put64(b, at, self.seq);
        put64(b, at + 8, self.timestamp_ms);
        put32(b, at + 16, self.millis);
        put32(b, at + 20, 0);
    }

    /// True when the message was sent within `window_ms` of `now_ms` (either way: clocks differ).
    pub fn is_fresh(&self, now_ms: u64, window_ms: u64) -> bool {
        now_ms.abs_diff(self.timestamp_ms) <= window_ms
    }

    /// True when the sequence number is no further ahead than a sender counting from
    /// [`seq_base`] could be at the message's own time (`slack_ms` more, for a clock stepped
    /// back): a signer's number cannot be pushed to where its later messages would look old.
    pub fn seq_in_bounds(&self, slack_ms: u64) -> bool {
        self.seq >> 16 <= self.timestamp_ms.saturating_add(slack_ms)
    }
}

/// A gateway router's periodic announcement of its AD (signed by the AD key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beacon {
    /// The AD the router serves (the signer).
    pub ad: Xid,
    /// The router's HID: the hosts' gateway.
    pub router_hid: Xid,
    /// Sequence, time, and the interval to the next beacon (`millis`).
    pub stamp: Stamp,
    /// Where the AD's name server is.
    pub name_server: Option<Dag>,
}

/// A host attaches to a router (signed by the host's HID key); lifetime 0 detaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRegister {
    /// The host (the signer).
    pub hid: Xid,
    /// The AD it registers in.
    pub ad: Xid,
    /// The router it registers with (its gateway, from the beacon).
    pub router: Xid,
    /// Sequence, time, lifetime (`millis`).
    pub stamp: Stamp,
}

/// A router's receipt for a registration (signed by the AD key): proof that the host is
/// attached to this AD through this router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRegistered {
    /// The host.
    pub hid: Xid,
    /// The AD (the signer).
    pub ad: Xid,
    /// The router the host is attached to.
    pub router: Xid,
    /// The registration's sequence number, the router's time, the lifetime granted.
    pub stamp: Stamp,
}

/// "Send traffic for my HID to my new location": the paper's traffic redirection, sent by a host
/// (or VM) that moved, to routers on the path to its old location. Signed by the host's HID
/// key, and carrying its new AD's receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePatch {
    /// Sequence (per HID), time, and lifetime of the patched routes (`millis`).
    pub stamp: Stamp,
    /// The new AD's receipt for the host's registration there.
    pub receipt: HostRegistered,
    /// The receipt as the AD signed it.
    pub sealed_receipt: Vec<u8>,
}

impl RoutePatch {
    /// The host that moved.
    pub fn hid(&self) -> Xid {
        self.receipt.hid
    }
    /// The AD it is in now.
    pub fn new_ad(&self) -> Xid {
        self.receipt.ad
    }
    /// Its new gateway router.
    pub fn via(&self) -> Xid {
        self.receipt.router
    }
}

/// A router's distance vector, sent to the routers of neighbouring ADs (signed by its AD key):
/// every AD it reaches and in how many AD-level hops (0: its own). The message is the whole
/// table: a route the sender no longer lists is withdrawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdRoutes {
    /// The sender's AD (the signer).
    pub ad: Xid,
    /// The sending router's HID.
    pub router_hid: Xid,
    /// Sequence, time, and the interval to the next message (`millis`).
    pub stamp: Stamp,
    /// (AD, hops), at most [`MAX_AD_ROUTES`]; [`AD_HOPS_INFINITY`] withdraws.
    pub routes: Vec<(Xid, u8)>,
    /// This message is page `page` (from 0) of `pages` making up the sender's whole table:
    /// a table too large for one frame of the link goes in several, with consecutive sequence
    /// numbers (page `k` carries the first page's plus `k`).
    pub page: u8,
    /// Pages of the table (1 or more).
    pub pages: u8,
}

/// The body of a control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlBody {
    /// AD beacon (boxed: it carries a whole DAG).
    Beacon(Box<Beacon>),
    /// Host registration.
    HostRegister(HostRegister),
    /// Registration receipt.
    HostRegistered(HostRegistered),
    /// HID route patch.
    RoutePatch(Box<RoutePatch>),
    /// A router's distance vector.
    AdRoutes(Box<AdRoutes>),
}

/// Why a control message was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Malformed.
    #[error("malformed control message: {0}")]
    Wire(#[from] WireError),
    /// A signature or key does not check.
    #[error("control message not authentic: {0}")]
    Key(#[from] KeyError),
}

fn expect_principal(x: &Xid, p: Principal, field: &'static str) -> Result<()> {
    if x.principal() == p {
        Ok(())
    } else {
        Err(WireError::Field(field))
    }
}

fn read_register(b: &[u8]) -> Result<(Xid, Xid, Xid, Stamp)> {
    let (hid, ad, router) = (read_xid(b, 0), read_xid(b, XID_WIRE_LEN), read_xid(b, 2 * XID_WIRE_LEN));
    expect_principal(&hid, Principal::Hid, "registration HID")?;
    expect_principal(&ad, Principal::Ad, "registration AD")?;
    expect_principal(&router, Principal::Hid, "registration router")?;
    Ok((hid, ad, router, Stamp::read(b, 3 * XID_WIRE_LEN)?))
}

fn exact(b: &[u8], len: usize) -> Result<()> {
    if b.len() == len {
        Ok(())
    } else {
        Err(WireError::Length { declared: b.len(), present: len })
    }
}

impl ControlBody {
    /// The router whose HID key co-signs this message (beacons and distance vectors: the
    /// router they name).
    pub fn cosigner(&self) -> Option<Xid> {
        match self {
            ControlBody::Beacon(b) => Some(b.router_hid),
            ControlBody::AdRoutes(r) => Some(r.router_hid),
            _ => None,
        }
    }

    /// The XID whose key signs this message.
    pub fn signer(&self) -> Xid {
        match self {
            ControlBody::Beacon(b) => b.ad,
            ControlBody::HostRegister(r) => r.hid,
            ControlBody::HostRegistered(r) => r.ad,
            ControlBody::RoutePatch(p) => p.hid(),
            ControlBody::AdRoutes(r) => r.ad,
        }
    }

    /// Sequence number, time and duration.
    pub fn stamp(&self) -> Stamp {
        match self {
            ControlBody::Beacon(b) => b.stamp,
            ControlBody::HostRegister(r) => r.stamp,
            ControlBody::HostRegistered(r) => r.stamp,
            ControlBody::RoutePatch(p) => p.stamp,
            ControlBody::AdRoutes(r) => r.stamp,
        }
    }

    fn kind(&self) -> u8 {
        match self {
            ControlBody::Beacon(_) => kind::BEACON,
            ControlBody::HostRegister(_) => kind::HOST_REGISTER,
            ControlBody::HostRegistered(_) => kind::HOST_REGISTERED,
            ControlBody::RoutePatch(_) => kind::ROUTE_PATCH,
            ControlBody::AdRoutes(_) => kind::AD_ROUTES,
        }
    }

    /// Body length.
    pub fn body_len(&self) -> usize {
        match self {
            ControlBody::Beacon(b) => BEACON_FIXED + NODE_LEN * b.name_server.as_ref().map_or(0, Dag::len),
            ControlBody::HostRegister(_) | ControlBody::HostRegistered(_) => REGISTER_LEN,
            ControlBody::RoutePatch(p) => PATCH_FIXED + p.sealed_receipt.len(),
            ControlBody::AdRoutes(r) => AD_ROUTES_FIXED + AD_ROUTE_LEN * r.routes.len(),
        }
    }

    /// Length of the whole signed message.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.body_len() + trailers(self.kind()) * TRAILER_LEN
    }

    /// Parses a body; a route patch's receipt is opened (its signature checked) here.
    fn parse_body(t: u8, b: &[u8]) -> core::result::Result<ControlBody, ControlError> {
        match t {
            kind::BEACON => {
                need(b, BEACON_FIXED)?;
                let n = usize::from(b[BEACON_FIXED - 4]);
                if n > MAX_NODES {
                    return Err(WireError::Dag(crate::dag::DagError::TooManyNodes(n)).into());
                }
                if b[BEACON_FIXED - 3..BEACON_FIXED] != [0; 3] {
                    return Err(WireError::Field("reserved").into());
                }
                exact(b, BEACON_FIXED + NODE_LEN * n)?;
                let name_server = match n {
                    0 => None,
                    _ => Some(
                        Dag::from_node_fn(n, |i| read_node(b, BEACON_FIXED + NODE_LEN * i))
                            .map_err(WireError::Dag)?,
                    ),
                };
                let beacon = Beacon {
                    ad: read_xid(b, 0),
                    router_hid: read_xid(b, XID_WIRE_LEN),
                    stamp: Stamp::read(b, 2 * XID_WIRE_LEN)?,
                    name_server,
                };
                expect_principal(&beacon.ad, Principal::Ad, "beacon AD")?;
                expect_principal(&beacon.router_hid, Principal::Hid, "beacon router HID")?;
                Ok(ControlBody::Beacon(Box::new(beacon)))
            }
            kind::HOST_REGISTER | kind::HOST_REGISTERED => {
                exact(b, REGISTER_LEN)?;
                let (hid, ad, router, stamp) = read_register(b)?;
                Ok(if t == kind::HOST_REGISTER {
                    ControlBody::HostRegister(HostRegister { hid, ad, router, stamp })
                } else {
                    ControlBody::HostRegistered(HostRegistered { hid, ad, router, stamp })
                })
            }
            kind::ROUTE_PATCH => {
                need(b, PATCH_FIXED)?;
                let stamp = Stamp::read(b, 0)?;
                let sealed = &b[PATCH_FIXED..];
                let receipt = match open(sealed)? {
                    ControlBody::HostRegistered(r) => r,
                    _ => return Err(WireError::Field("route patch receipt").into()),
                };
                Ok(ControlBody::RoutePatch(Box::new(RoutePatch {
                    stamp,
                    receipt,
                    sealed_receipt: sealed.to_vec(),
                })))
            }
            kind::AD_ROUTES => {
                need(b, AD_ROUTES_FIXED)?;
                let n = usize::from(be16(b, AD_ROUTES_FIXED - 4));
                if n > MAX_AD_ROUTES {
                    return Err(WireError::Field("AD routes count").into());
                }
                let (page, pages) = (b[AD_ROUTES_FIXED - 2], b[AD_ROUTES_FIXED - 1]);
                if pages == 0 || page >= pages {
                    return Err(WireError::Field("AD routes page").into());
                }
                exact(b, AD_ROUTES_FIXED + AD_ROUTE_LEN * n)?;
                let mut routes = Vec::with_capacity(n);
                for i in 0..n {
                    let at = AD_ROUTES_FIXED + AD_ROUTE_LEN * i;
                    let ad = read_xid(b, at);
                    expect_principal(&ad, Principal::Ad, "routed AD")?;
                    if b[at + XID_WIRE_LEN + 1..at + AD_ROUTE_LEN] != [0; 3] {
                        return Err(WireError::Field("reserved").into());
                    }
                    routes.push((ad, b[at + XID_WIRE_LEN]));
                }
                let r = AdRoutes {
                    ad: read_xid(b, 0),
                    router_hid: read_xid(b, XID_WIRE_LEN),
                    stamp: Stamp::read(b, 2 * XID_WIRE_LEN)?,
                    routes,
                    page,
                    pages,
                };
                expect_principal(&r.ad, Principal::Ad, "AD routes sender AD")?;
                expect_principal(&r.router_hid, Principal::Hid, "AD routes router HID")?;
                Ok(ControlBody::AdRoutes(Box::new(r)))
            }
            other => Err(WireError::UnknownType(other).into()),
        }
    }

    fn emit_body(&self, b: &mut [u8]) {
        match self {
            ControlBody::Beacon(be) => {
                write_xid(b, 0, &be.ad);
                write_xid(b, XID_WIRE_LEN, &be.router_hid);
                be.stamp.write(b, 2 * XID_WIRE_LEN);
                let nodes = be.name_server.as_ref().map_or(&[][..], Dag::nodes);
                b[BEACON_FIXED - 4..BEACON_FIXED].copy_from_slice(&[nodes.len() as u8, 0, 0, 0]);
                for (i, n) in nodes.iter().enumerate() {
                    write_node(b, BEACON_FIXED + NODE_LEN * i, n);
                }
            }
            ControlBody::HostRegister(HostRegister { hid, ad, router, stamp })
            | ControlBody::HostRegistered(HostRegistered { hid, ad, router, stamp }) => {
                write_xid(b, 0, hid);
                write_xid(b, XID_WIRE_LEN, ad);
                write_xid(b, 2 * XID_WIRE_LEN, router);
                stamp.write(b, 3 * XID_WIRE_LEN);
            }
            ControlBody::RoutePatch(p) => {
                p.stamp.write(b, 0);
                b[PATCH_FIXED..].copy_from_slice(&p.sealed_receipt);
            }
            ControlBody::AdRoutes(r) => {
                write_xid(b, 0, &r.ad);
                write_xid(b, XID_WIRE_LEN, &r.router_hid);
                r.stamp.write(b, 2 * XID_WIRE_LEN);
                put16(b, AD_ROUTES_FIXED - 4, r.routes.len() as u16);
                b[AD_ROUTES_FIXED - 2..AD_ROUTES_FIXED].copy_from_slice(&[r.page, r.pages]);
                for (i, (ad, hops)) in r.routes.iter().enumerate() {
                    let at = AD_ROUTES_FIXED + AD_ROUTE_LEN * i;
                    write_xid(b, at, ad);
                    b[at + XID_WIRE_LEN..at + AD_ROUTE_LEN].copy_from_slice(&[*hops, 0, 0, 0]);
                }
            }
        }
    }

    /// Writes the message signed by `key` into `buf[..buffer_len()]`. The key must own
    /// [`ControlBody::signer`]; a message with a [`ControlBody::cosigner`] needs
    /// [`ControlBody::seal_cosigned_into`].
    pub fn seal_into(&self, key: &Keypair, buf: &mut [u8]) -> Result<usize> {
        self.seal_with(key, None, buf)
    }

    /// [`ControlBody::seal_into`], co-signed by `router` (the key of the router HID a beacon or
    /// distance vector names).
    pub fn seal_cosigned_into(&self, key: &Keypair, router: &Keypair, buf: &mut [u8]) -> Result<usize> {
        self.seal_with(key, Some(router), buf)
    }

    fn seal_with(&self, key: &Keypair, router: Option<&Keypair>, buf: &mut [u8]) -> Result<usize> {
        let signer = self.signer();
        if key.xid(signer.principal()) != signer {
            return Err(WireError::Field("signing key does not own the signer XID"));
        }
        match (self.cosigner(), router) {
            (None, None) => {}
            (Some(c), Some(r)) if r.xid(c.principal()) == c => {}
            (Some(_), None) => return Err(WireError::Field("the router named must co-sign")),
            _ => return Err(WireError::Field("co-signing key does not own the router XID")),
        }
        if let ControlBody::AdRoutes(r) = self {
            if r.routes.len() > MAX_AD_ROUTES {
                return Err(WireError::Field("AD routes count"));
            }
            if r.pages == 0 || r.page >= r.pages {
                return Err(WireError::Field("AD routes page"));
            }
        }
        let len = self.buffer_len();
        room(buf, len)?;
        let body_len = self.body_len();
        buf[0] = VERSION;
        buf[1] = self.kind();
        put16(buf, 2, u16::try_from(body_len).map_err(|_| WireError::Field("body length"))?);
        self.emit_body(&mut buf[HEADER_LEN..HEADER_LEN + body_len]);
        let key_at = HEADER_LEN + body_len;
        let end = key_at + TRAILER_LEN;
        buf[key_at..key_at + PUBLIC_KEY_LEN].copy_from_slice(&key.public().0);
        let sig = key.sign(&signed_message(&buf[..key_at + PUBLIC_KEY_LEN]));
        buf[key_at + PUBLIC_KEY_LEN..end].copy_from_slice(&sig.0);
        if let Some(r) = router {
            buf[end..end + PUBLIC_KEY_LEN].copy_from_slice(&r.public().0);
            let sig = r.sign(&cosigned_message(&buf[..end + PUBLIC_KEY_LEN]));
            buf[end + PUBLIC_KEY_LEN..len].copy_from_slice(&sig.0);
        }
        Ok(len)
    }

    /// The signed message in a new vector.
    pub fn seal(&self, key: &Keypair) -> Result<Vec<u8>> {
        let mut v = vec![0u8; self.buffer_len()];
        self.seal_into(key, &mut v)?;
        Ok(v)
    }

    /// The message signed by `key` and co-signed by `router`, in a new vector.
    pub fn seal_cosigned(&self, key: &Keypair, router: &Keypair) -> Result<Vec<u8>> {
        let mut v = vec![0u8; self.buffer_len()];
        self.seal_cosigned_into(key, router, &mut v)?;
        Ok(v)
    }
}

/// Trailers (key and signature) a message of kind `t` carries: beacons and distance vectors are
/// co-signed by their router.
fn trailers(t: u8) -> usize {
    match t {
        kind::BEACON | kind::AD_ROUTES => 2,
        _ => 1,
    }
}

fn signed_message(bytes: &[u8]) -> Vec<u8> {
    with_context(CONTEXT, bytes)
}

fn cosigned_message(bytes: &[u8]) -> Vec<u8> {
    with_context(COSIGN_CONTEXT, bytes)
}

fn with_context(context: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(context.len() + bytes.len());
    m.extend_from_slice(context);
    m.extend_from_slice(bytes);
    m
}

/// A message cut into its parts.
struct Parts<'a> {
    kind: u8,
    body: &'a [u8],
    key: PublicKey,
    sig: Signature,
    /// Everything the signature covers (after the context string).
    signed: &'a [u8],
    /// The router's key and signature, and what it covers (beacons and distance vectors).
    cosigned: Option<(PublicKey, Signature, &'a [u8])>,
}

fn key_and_signature(b: &[u8]) -> (PublicKey, Signature) {
    let mut pk = [0u8; PUBLIC_KEY_LEN];
    pk.copy_from_slice(&b[..PUBLIC_KEY_LEN]);
    let mut sig = [0u8; SIGNATURE_LEN];
    sig.copy_from_slice(&b[PUBLIC_KEY_LEN..TRAILER_LEN]);
    (PublicKey(pk), Signature(sig))
}

/// Cuts a message into its parts.
fn split(b: &[u8]) -> Result<Parts<'_>> {
    need(b, HEADER_LEN)?;
    if b[0] != VERSION {
        return Err(WireError::Version(b[0]));
    }
    let body_len = usize::from(be16(b, 2));
    let total = HEADER_LEN + body_len + trailers(b[1]) * TRAILER_LEN;
    if b.len() != total {
        return Err(WireError::Length { declared: total, present: b.len() });
    }
    let key_at = HEADER_LEN + body_len;
    let end = key_at + TRAILER_LEN;
    let (key, sig) = key_and_signature(&b[key_at..end]);
    let cosigned = (trailers(b[1]) == 2).then(|| {
        let (k, s) = key_and_signature(&b[end..]);
        (k, s, &b[..end + PUBLIC_KEY_LEN])
    });
    Ok(Parts {
        kind: b[1],
        body: &b[HEADER_LEN..key_at],
        key,
        sig,
        signed: &b[..key_at + PUBLIC_KEY_LEN],
        cosigned,
    })
}

/// The kind of a control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlKind {
    /// [`ControlBody::Beacon`].
    Beacon,
    /// [`ControlBody::HostRegister`].
    HostRegister,
    /// [`ControlBody::HostRegistered`].
    HostRegistered,
    /// [`ControlBody::RoutePatch`].
    RoutePatch,
    /// [`ControlBody::AdRoutes`].
    AdRoutes,
}

/// The kind a message says it is, from its header alone (nothing checked): for policy that
/// can refuse a message before its signatures are verified.
pub fn peek_kind(bytes: &[u8]) -> Option<ControlKind> {
    if bytes.len() < HEADER_LEN || bytes[0] != VERSION {
        return None;
    }
    Some(match bytes[1] {
        kind::BEACON => ControlKind::Beacon,
        kind::HOST_REGISTER => ControlKind::HostRegister,
        kind::HOST_REGISTERED => ControlKind::HostRegistered,
        kind::ROUTE_PATCH => ControlKind::RoutePatch,
        kind::AD_ROUTES => ControlKind::AdRoutes,
        _ => return None,
    })
}

/// Reads a message and checks its signatures (and, for a route patch, its receipt's): the body
/// comes out only if the key owns the signer XID and the signature is that key's.
///
/// Freshness and sequence numbers are the receiver's policy: check [`ControlBody::stamp`]
/// against the clock ([`Stamp::is_fresh`]) and against the last sequence number seen.
pub fn open(bytes: &[u8]) -> core::result::Result<ControlBody, ControlError> {
    let p = split(bytes)?;
    let body = ControlBody::parse_body(p.kind, p.body)?;
    p.key.verify_for(&body.signer(), &signed_message(p.signed), &p.sig)?;
    match (body.cosigner(), p.cosigned) {
        (Some(router), Some((key, sig, signed))) => {
            key.verify_for(&router, &cosigned_message(signed), &sig)?
        }
        (None, None) => {}
        // split() gives a second trailer exactly to the kinds that name a router.
        _ => return Err(WireError::Field("co-signature").into()),
    }
    Ok(body)
}

/// Reads a message without checking anything cryptographic: for captures and diagnostics only,
/// never to act upon.
pub fn inspect(bytes: &[u8]) -> Result<(ControlBody, PublicKey)> {
    let p = split(bytes)?;
    match ControlBody::parse_body(p.kind, p.body) {
        Ok(b) => Ok((b, p.key)),
        Err(ControlError::Wire(e)) => Err(e),
        // A route patch whose receipt does not verify still has a shape.
        Err(ControlError::Key(_)) => Err(WireError::Field("route patch receipt not authentic")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ad_key() -> Keypair {
        Keypair::from_seed([1; 32])
    }
    fn ad2_key() -> Keypair {
        Keypair::from_seed([4; 32])
    }
    fn host_key() -> Keypair {
        Keypair::from_seed([2; 32])
    }
    fn router2() -> Xid {
        Keypair::from_seed([5; 32]).xid(Principal::Hid)
    }
    /// The router named in [`beacon`] and [`ad_routes`].
    fn router_key() -> Keypair {
        Keypair::from_seed([3; 32])
    }
    /// Sealed by `key`, and co-signed by the router named where the message names one.
    fn seal(body: &ControlBody, key: &Keypair) -> Vec<u8> {
        match body.cosigner() {
            Some(_) => body.seal_cosigned(key, &router_key()).unwrap(),
            None => body.seal(key).unwrap(),
        }
    }
    fn stamp(seq: u64) -> Stamp {
        Stamp { seq, timestamp_ms: 1_800_000_000_000, millis: 30_000 }
    }

    fn beacon() -> ControlBody {
        let ns =
            Dag::service(ad_key().xid(Principal::Ad), host_key().xid(Principal::Hid), crate::xid::SID_NS)
                .unwrap();
        ControlBody::Beacon(Box::new(Beacon {
            ad: ad_key().xid(Principal::Ad),
            router_hid: Keypair::from_seed([3; 32]).xid(Principal::Hid),
            stamp: Stamp { millis: 100, ..stamp(42) },
            name_server: Some(ns),
        }))
    }

    fn receipt() -> HostRegistered {
        HostRegistered {
            hid: host_key().xid(Principal::Hid),
            ad: ad2_key().xid(Principal::Ad),
            router: router2(),
            stamp: stamp(3),
        }
    }

    fn patch() -> ControlBody {
        let sealed = ControlBody::HostRegistered(receipt()).seal(&ad2_key()).unwrap();
        ControlBody::RoutePatch(Box::new(RoutePatch {
            stamp: stamp(7),
            receipt: receipt(),
            sealed_receipt: sealed,
        }))
    }

    #[test]
    fn sealed_messages_open() {
        let reg = ControlBody::HostRegister(HostRegister {
            hid: host_key().xid(Principal::Hid),
            ad: ad_key().xid(Principal::Ad),
            router: router2(),
            stamp: stamp(1),
        });
        for (body, key) in [
            (beacon(), ad_key()),
            (reg, host_key()),
            (ControlBody::HostRegistered(receipt()), ad2_key()),
            (patch(), host_key()),
            (ad_routes(3), ad_key()),
            (ad_routes(0), ad_key()),
        ] {
            let bytes = seal(&body, &key);
            assert_eq!(bytes.len(), body.buffer_len());
            assert_eq!(open(&bytes).unwrap(), body);
            assert_eq!(inspect(&bytes).unwrap().0, body);
        }
    }

    fn ad_routes(n: usize) -> ControlBody {
        ControlBody::AdRoutes(Box::new(AdRoutes {
            ad: ad_key().xid(Principal::Ad),
            router_hid: Keypair::from_seed([3; 32]).xid(Principal::Hid),
            stamp: Stamp { millis: 500, ..stamp(9) },
            routes: (0..n).map(|i| (Xid::new(Principal::Ad, [i as u8; 20]), i as u8)).collect(),
            page: 1,
            pages: 3,
        }))
    }

    #[test]
    fn ad_routes_are_bounded_and_checked() {
        assert!(ad_routes(MAX_AD_ROUTES).seal_cosigned(&ad_key(), &router_key()).is_ok());
        assert!(ad_routes(MAX_AD_ROUTES + 1).seal_cosigned(&ad_key(), &router_key()).is_err());
        let good = seal(&ad_routes(2), &ad_key());
        // A count larger than the entries present, an entry that is not an AD, reserved bytes
        // set...
        let count_at = HEADER_LEN + AD_ROUTES_FIXED - 4;
        // ...a page beyond the pages, no pages.
        for (at, v) in [
            (count_at + 1, 3u8),
            (count_at + 2, 3),
            (count_at + 3, 0),
            (HEADER_LEN + AD_ROUTES_FIXED + 3, 0x11),
            (HEADER_LEN + AD_ROUTES_FIXED + 25, 1),
        ] {
            let mut b = good.clone();
            b[at] = v;
            assert!(matches!(open(&b), Err(ControlError::Wire(_))), "byte {at}");
        }
    }

    #[test]
    fn route_patch_names_the_new_location_from_the_receipt() {
        let ControlBody::RoutePatch(p) = open(&patch().seal(&host_key()).unwrap()).unwrap() else { panic!() };
        assert_eq!(p.hid(), host_key().xid(Principal::Hid));
        assert_eq!(p.new_ad(), ad2_key().xid(Principal::Ad));
        assert_eq!(p.via(), router2());
    }

    #[test]
    fn a_patch_without_the_new_ads_receipt_is_refused() {
        // The host signs the receipt itself instead of its new AD: the receipt's signer (the
        // AD) is not the key, so nothing opens.
        let forged = ControlBody::HostRegistered(receipt());
        assert!(forged.seal(&host_key()).is_err(), "a host cannot seal for an AD");
        let mut sealed = forged.seal(&ad2_key()).unwrap();
        let other = Keypair::from_seed([9; 32]);
        let key_at = sealed.len() - TRAILER_LEN;
        sealed[key_at..key_at + 32].copy_from_slice(&other.public().0);
        let sig = other.sign(&signed_message(&sealed[..key_at + 32]));
        sealed[key_at + 32..].copy_from_slice(&sig.0);
        let p = ControlBody::RoutePatch(Box::new(RoutePatch {
            stamp: stamp(1),
            receipt: receipt(),
            sealed_receipt: sealed,
        }));
        let bytes = p.seal(&host_key()).unwrap();
        assert!(matches!(open(&bytes), Err(ControlError::Key(KeyError::XidMismatch(_)))));
    }

    #[test]
    fn forged_and_tampered_messages_are_refused() {
        assert!(patch().seal(&ad_key()).is_err(), "only the HID's key seals its patch");
        let mut bytes = patch().seal(&host_key()).unwrap();
        let other = Keypair::from_seed([9; 32]);
        let key_at = bytes.len() - TRAILER_LEN;
        bytes[key_at..key_at + 32].copy_from_slice(&other.public().0);
        let sig = other.sign(&signed_message(&bytes[..key_at + 32]));
        bytes[key_at + 32..].copy_from_slice(&sig.0);
        assert!(matches!(open(&bytes), Err(ControlError::Key(KeyError::XidMismatch(_)))));
        // One flipped bit in the stamp.
        let mut bytes = patch().seal(&host_key()).unwrap();
        bytes[HEADER_LEN + 3] ^= 1;
        assert!(matches!(open(&bytes), Err(ControlError::Key(KeyError::BadSignature))));
    }

    #[test]
    fn freshness() {
        let s = stamp(1);
        assert!(s.is_fresh(s.timestamp_ms + 10_000, 30_000));
        assert!(s.is_fresh(s.timestamp_ms - 10_000, 30_000));
        assert!(!s.is_fresh(s.timestamp_ms + 31_000, 30_000));
    }

    #[test]
    fn sequence_numbers_may_not_run_ahead_of_their_time() {
        let t = 1_800_000_000_000;
        let at = |seq| Stamp { seq, timestamp_ms: t, millis: 0 };
        assert!(at(seq_base(t)).seq_in_bounds(0));
        assert!(at(seq_base(t) + 65_535).seq_in_bounds(0));
        assert!(!at(seq_base(t + 1)).seq_in_bounds(0));
        assert!(at(seq_base(t + 30_000)).seq_in_bounds(30_000), "a clock stepped back");
        assert!(!at(seq_base(t + 30_001)).seq_in_bounds(30_000));
        assert!(!at(i64::MAX as u64).seq_in_bounds(30_000));
        assert!(at(u64::MAX).seq_in_bounds(u64::MAX), "no overflow");
    }

    #[test]
    fn a_beacon_or_distance_vector_needs_the_named_routers_signature() {
        let other = Keypair::from_seed([9; 32]);
        for body in [beacon(), ad_routes(2)] {
            assert!(body.seal(&ad_key()).is_err(), "not co-signed");
            assert!(body.seal_cosigned(&ad_key(), &other).is_err(), "co-signed by another");
            // Signed by the AD, co-signed by a key that is not the named router's: refused.
            let mut bytes = seal(&body, &ad_key());
            let co_at = bytes.len() - TRAILER_LEN;
            bytes[co_at..co_at + 32].copy_from_slice(&other.public().0);
            let sig = other.sign(&cosigned_message(&bytes[..co_at + 32]));
            bytes[co_at + 32..].copy_from_slice(&sig.0);
            assert!(matches!(open(&bytes), Err(ControlError::Key(KeyError::XidMismatch(_)))));
            // Without its co-signature: the length says so.
            let bytes = seal(&body, &ad_key());
            assert!(matches!(open(&bytes[..co_at]), Err(ControlError::Wire(WireError::Length { .. }))));
            // The co-signature covers the AD's: a flipped bit there breaks both.
            let mut bytes = seal(&body, &ad_key());
            bytes[co_at - 1] ^= 1;
            assert!(matches!(open(&bytes), Err(ControlError::Key(KeyError::BadSignature))));
            let mut bytes = seal(&body, &ad_key());
            bytes[co_at + 40] ^= 1;
            assert!(matches!(open(&bytes), Err(ControlError::Key(KeyError::BadSignature))));
        }
    }

    #[test]
    fn malformed_messages_are_typed_errors() {
        let good = seal(&beacon(), &ad_key());
        let wire = |r: core::result::Result<ControlBody, ControlError>| match r {
            Err(ControlError::Wire(e)) => e,
            other => panic!("{other:?}"),
        };
        assert!(matches!(wire(open(&good[..3])), WireError::Truncated { .. }));
        assert_eq!(
            wire(open(&good[..good.len() - 1])),
            WireError::Length { declared: good.len(), present: good.len() - 1 }
        );
        let mut v = good.clone();
        v[0] = 9;
        assert_eq!(wire(open(&v)), WireError::Version(9));
        let mut v = good.clone();
        v[1] = 77;
        // A kind of its own carries one trailer.
        v.truncate(v.len() - TRAILER_LEN);
        assert_eq!(wire(open(&v)), WireError::UnknownType(77));
        let count_at = HEADER_LEN + BEACON_FIXED - 4;
        let mut v = good.clone();
        v[count_at] = 2;
        assert!(matches!(wire(open(&v)), WireError::Length { .. }));
        let mut v = good.clone();
        v[count_at] = 200;
        assert!(matches!(wire(open(&v)), WireError::Dag(_)));
        let mut v = good.clone();
        v[count_at + 1] = 1;
        assert_eq!(wire(open(&v)), WireError::Field("reserved"));
        let mut v = good;
        v[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&0x11u32.to_be_bytes());
        assert_eq!(wire(open(&v)), WireError::Field("beacon AD"));
    }
}
