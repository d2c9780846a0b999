//! Signed control messages between hosts and routers, carried as DGRAM payloads to well-known
//! SIDs (beacons to [`crate::xid::SID_XHCP`], routing to [`crate::xid::SID_XROUTE`]).
//!
//! Every message that changes state is signed by the key behind the XID it concerns: a beacon by
//! the AD's key, a host registration and a route patch by the host's HID key. Receivers check
//! that the carried public key hashes to that XID and that the signature verifies, so nobody can
//! claim an AD or redirect a host it does not own; sequence numbers let them refuse replays.
//!
//! ```text
//! +---------+------+-------------+------------------+----------------+----------------+
//! | version | type | body length | body             | public key (32)| signature (64) |
//! +---------+------+-------------+------------------+----------------+----------------+
//! ```
//! The signature covers a context string, then everything before it (header, body, key).
//! XIDs in bodies take 24 bytes (type u32, 20-byte XID); DAGs are node lists as in XIP.

use crate::dag::{Dag, Node, MAX_EDGES, MAX_NODES};
use crate::keys::{KeyError, Keypair, PublicKey, Signature, PUBLIC_KEY_LEN, SIGNATURE_LEN};
use crate::xid::{Principal, Xid, XID_LEN};

use super::xip::NODE_LEN;
use super::{be16, be32, be64, need, put16, put32, put64, room, Result, WireError};

/// Control protocol version.
pub const VERSION: u8 = 1;
/// Header before the body.
pub const HEADER_LEN: usize = 4;
/// Public key and signature after the body.
pub const TRAILER_LEN: usize = PUBLIC_KEY_LEN + SIGNATURE_LEN;
/// Bytes of an XID in a body.
pub const XID_WIRE_LEN: usize = 4 + XID_LEN;
/// Signatures are over this string followed by the message, so they cannot be replayed as
/// signatures of anything else the same key signs.
const CONTEXT: &[u8] = b"XIA control v1\0";

mod kind {
    pub const BEACON: u8 = 1;
    pub const HOST_REGISTER: u8 = 2;
    pub const ROUTE_PATCH: u8 = 3;
}

const BEACON_FIXED: usize = 2 * XID_WIRE_LEN + 8 + 4 + 4;
const REGISTER_LEN: usize = 2 * XID_WIRE_LEN + 8 + 4 + 4;
const PATCH_LEN: usize = 3 * XID_WIRE_LEN + 8 + 4 + 4;

/// A gateway router's periodic announcement of its AD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beacon {
    /// The AD the router serves (the signer).
    pub ad: Xid,
    /// The router's HID: the hosts' gateway.
    pub router_hid: Xid,
    /// Increases with every beacon (refuses replays, detects losses).
    pub seq: u64,
    /// Interval between beacons, so hosts know when one is overdue.
    pub interval_ms: u32,
    /// Where the AD's name server is.
    pub name_server: Option<Dag>,
}

/// A host announces its HID to its gateway (lifetime 0 withdraws it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRegister {
    /// The host (the signer).
    pub hid: Xid,
    /// The AD the host registers in (a registration for another AD is refused).
    pub ad: Xid,
    /// Increases with every registration of this HID.
    pub seq: u64,
    /// How long the router keeps the entry without a refresh.
    pub lifetime_ms: u32,
}

/// "HID X is now reachable through AD Y, via router Z": the paper's traffic redirection, sent
/// by a host (or VM) that moved, to routers on the path to its old location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutePatch {
    /// The host that moved (the signer).
    pub hid: Xid,
    /// The AD it is in now.
    pub new_ad: Xid,
    /// The HID of its new gateway router.
    pub via: Xid,
    /// Increases with every patch for this HID; routers refuse anything not newer.
    pub seq: u64,
    /// How long the patched entry lives without a refresh.
    pub lifetime_ms: u32,
}

/// The body of a control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlBody {
    /// AD beacon (boxed: it carries a whole DAG).
    Beacon(Box<Beacon>),
    /// Host registration.
    HostRegister(HostRegister),
    /// HID route patch.
    RoutePatch(RoutePatch),
}

fn read_xid(b: &[u8], at: usize) -> Xid {
    let mut id = [0u8; XID_LEN];
    id.copy_from_slice(&b[at + 4..at + 4 + XID_LEN]);
    Xid::new(Principal::from_code(be32(b, at)), id)
}

fn write_xid(b: &mut [u8], at: usize, x: &Xid) {
    put32(b, at, x.principal().code());
    b[at + 4..at + 4 + XID_LEN].copy_from_slice(x.id());
}

fn expect_principal(x: &Xid, p: Principal, field: &'static str) -> Result<()> {
    if x.principal() == p {
        Ok(())
    } else {
        Err(WireError::Field(field))
    }
}

impl ControlBody {
    /// The XID whose key must sign this message.
    pub fn signer(&self) -> Xid {
        match self {
            ControlBody::Beacon(b) => b.ad,
            ControlBody::HostRegister(r) => r.hid,
            ControlBody::RoutePatch(p) => p.hid,
        }
    }

    fn kind(&self) -> u8 {
        match self {
            ControlBody::Beacon(_) => kind::BEACON,
            ControlBody::HostRegister(_) => kind::HOST_REGISTER,
            ControlBody::RoutePatch(_) => kind::ROUTE_PATCH,
        }
    }

    /// Body length.
    pub fn body_len(&self) -> usize {
        match self {
            ControlBody::Beacon(b) => BEACON_FIXED + NODE_LEN * b.name_server.as_ref().map_or(0, Dag::len),
            ControlBody::HostRegister(_) => REGISTER_LEN,
            ControlBody::RoutePatch(_) => PATCH_LEN,
        }
    }

    /// Length of the whole signed message.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.body_len() + TRAILER_LEN
    }

    fn parse_body(t: u8, b: &[u8]) -> Result<ControlBody> {
        let exact = |len: usize| {
            if b.len() == len {
                Ok(())
            } else {
                Err(WireError::Length { declared: b.len(), present: len })
            }
        };
        match t {
            kind::BEACON => {
                need(b, BEACON_FIXED)?;
                let n = usize::from(b[2 * XID_WIRE_LEN + 12]);
                if n > MAX_NODES {
                    return Err(WireError::Dag(crate::dag::DagError::TooManyNodes(n)));
                }
                exact(BEACON_FIXED + NODE_LEN * n)?;
                let name_server = if n == 0 {
                    None
                } else {
                    let nodes: [Node; MAX_NODES] = core::array::from_fn(|i| {
                        let at = BEACON_FIXED + NODE_LEN * i.min(n - 1);
                        let mut edges = [0u8; MAX_EDGES];
                        edges.copy_from_slice(&b[at + XID_WIRE_LEN..at + NODE_LEN]);
                        Node { xid: read_xid(b, at), edges }
                    });
                    Some(Dag::from_nodes(&nodes[..n])?)
                };
                let beacon = Beacon {
                    ad: read_xid(b, 0),
                    router_hid: read_xid(b, XID_WIRE_LEN),
                    seq: be64(b, 2 * XID_WIRE_LEN),
                    interval_ms: be32(b, 2 * XID_WIRE_LEN + 8),
                    name_server,
                };
                expect_principal(&beacon.ad, Principal::Ad, "beacon AD")?;
                expect_principal(&beacon.router_hid, Principal::Hid, "beacon router HID")?;
                Ok(ControlBody::Beacon(Box::new(beacon)))
            }
            kind::HOST_REGISTER => {
                exact(REGISTER_LEN)?;
                let r = HostRegister {
                    hid: read_xid(b, 0),
                    ad: read_xid(b, XID_WIRE_LEN),
                    seq: be64(b, 2 * XID_WIRE_LEN),
                    lifetime_ms: be32(b, 2 * XID_WIRE_LEN + 8),
                };
                expect_principal(&r.hid, Principal::Hid, "registration HID")?;
                expect_principal(&r.ad, Principal::Ad, "registration AD")?;
                Ok(ControlBody::HostRegister(r))
            }
            kind::ROUTE_PATCH => {
                exact(PATCH_LEN)?;
                let p = RoutePatch {
                    hid: read_xid(b, 0),
                    new_ad: read_xid(b, XID_WIRE_LEN),
                    via: read_xid(b, 2 * XID_WIRE_LEN),
                    seq: be64(b, 3 * XID_WIRE_LEN),
                    lifetime_ms: be32(b, 3 * XID_WIRE_LEN + 8),
                };
                expect_principal(&p.hid, Principal::Hid, "patch HID")?;
                expect_principal(&p.new_ad, Principal::Ad, "patch AD")?;
                expect_principal(&p.via, Principal::Hid, "patch gateway")?;
                Ok(ControlBody::RoutePatch(p))
            }
            other => Err(WireError::UnknownType(other)),
        }
    }

    fn emit_body(&self, b: &mut [u8]) {
        match self {
            ControlBody::Beacon(be) => {
                write_xid(b, 0, &be.ad);
                write_xid(b, XID_WIRE_LEN, &be.router_hid);
                put64(b, 2 * XID_WIRE_LEN, be.seq);
                put32(b, 2 * XID_WIRE_LEN + 8, be.interval_ms);
                let nodes = be.name_server.as_ref().map_or(&[][..], Dag::nodes);
                b[2 * XID_WIRE_LEN + 12..BEACON_FIXED].copy_from_slice(&[nodes.len() as u8, 0, 0, 0]);
                for (i, n) in nodes.iter().enumerate() {
                    let at = BEACON_FIXED + NODE_LEN * i;
                    write_xid(b, at, &n.xid);
                    b[at + XID_WIRE_LEN..at + NODE_LEN].copy_from_slice(&n.edges);
                }
            }
            ControlBody::HostRegister(r) => {
                write_xid(b, 0, &r.hid);
                write_xid(b, XID_WIRE_LEN, &r.ad);
                put64(b, 2 * XID_WIRE_LEN, r.seq);
                put32(b, 2 * XID_WIRE_LEN + 8, r.lifetime_ms);
                put32(b, 2 * XID_WIRE_LEN + 12, 0);
            }
            ControlBody::RoutePatch(p) => {
                write_xid(b, 0, &p.hid);
                write_xid(b, XID_WIRE_LEN, &p.new_ad);
                write_xid(b, 2 * XID_WIRE_LEN, &p.via);
                put64(b, 3 * XID_WIRE_LEN, p.seq);
                put32(b, 3 * XID_WIRE_LEN + 8, p.lifetime_ms);
                put32(b, 3 * XID_WIRE_LEN + 12, 0);
            }
        }
    }

    /// Writes the message signed by `key` into `buf[..buffer_len()]`. The key must own
    /// [`ControlBody::signer`].
    pub fn emit_signed(&self, key: &Keypair, buf: &mut [u8]) -> Result<usize> {
        let signer = self.signer();
        if key.xid(signer.principal()) != signer {
            return Err(WireError::Field("signing key does not own the signer XID"));
        }
        let len = self.buffer_len();
        room(buf, len)?;
        let body_len = self.body_len();
        buf[0] = VERSION;
        buf[1] = self.kind();
        put16(buf, 2, u16::try_from(body_len).map_err(|_| WireError::Field("body length"))?);
        self.emit_body(&mut buf[HEADER_LEN..HEADER_LEN + body_len]);
        let key_at = HEADER_LEN + body_len;
        buf[key_at..key_at + PUBLIC_KEY_LEN].copy_from_slice(&key.public().0);
        let sig = key.sign(&signed_message(&buf[..key_at + PUBLIC_KEY_LEN]));
        buf[key_at + PUBLIC_KEY_LEN..len].copy_from_slice(&sig.0);
        Ok(len)
    }

    /// The signed message in a new vector.
    pub fn to_signed_bytes(&self, key: &Keypair) -> Result<Vec<u8>> {
        let mut v = vec![0u8; self.buffer_len()];
        self.emit_signed(key, &mut v)?;
        Ok(v)
    }
}

fn signed_message(bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + bytes.len());
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(bytes);
    m
}

/// A parsed control message; [`Control::verify`] must pass before acting on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control<'a> {
    /// What it says.
    pub body: ControlBody,
    /// The key that signed it.
    pub public_key: PublicKey,
    /// The signature.
    pub signature: Signature,
    signed: &'a [u8],
}

impl<'a> Control<'a> {
    /// Reads a message (without checking the signature).
    pub fn parse(b: &'a [u8]) -> Result<Control<'a>> {
        need(b, HEADER_LEN)?;
        if b[0] != VERSION {
            return Err(WireError::Version(b[0]));
        }
        let body_len = usize::from(be16(b, 2));
        let total = HEADER_LEN + body_len + TRAILER_LEN;
        if b.len() != total {
            return Err(WireError::Length { declared: total, present: b.len() });
        }
        let body = ControlBody::parse_body(b[1], &b[HEADER_LEN..HEADER_LEN + body_len])?;
        let key_at = HEADER_LEN + body_len;
        let mut pk = [0u8; PUBLIC_KEY_LEN];
        pk.copy_from_slice(&b[key_at..key_at + PUBLIC_KEY_LEN]);
        let mut sig = [0u8; SIGNATURE_LEN];
        sig.copy_from_slice(&b[key_at + PUBLIC_KEY_LEN..]);
        Ok(Control {
            body,
            public_key: PublicKey(pk),
            signature: Signature(sig),
            signed: &b[..key_at + PUBLIC_KEY_LEN],
        })
    }

    /// Checks that the carried key owns the signer XID and that the signature is its own.
    pub fn verify(&self) -> core::result::Result<(), KeyError> {
        self.public_key.verify_for(&self.body.signer(), &signed_message(self.signed), &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ad_key() -> Keypair {
        Keypair::from_seed([1; 32])
    }
    fn host_key() -> Keypair {
        Keypair::from_seed([2; 32])
    }

    fn beacon() -> ControlBody {
        let ns =
            Dag::service(ad_key().xid(Principal::Ad), host_key().xid(Principal::Hid), crate::xid::SID_NS);
        ControlBody::Beacon(Box::new(Beacon {
            ad: ad_key().xid(Principal::Ad),
            router_hid: Keypair::from_seed([3; 32]).xid(Principal::Hid),
            seq: 42,
            interval_ms: 100,
            name_server: Some(ns),
        }))
    }

    fn patch() -> ControlBody {
        ControlBody::RoutePatch(RoutePatch {
            hid: host_key().xid(Principal::Hid),
            new_ad: Keypair::from_seed([4; 32]).xid(Principal::Ad),
            via: Keypair::from_seed([5; 32]).xid(Principal::Hid),
            seq: 7,
            lifetime_ms: 30_000,
        })
    }

    #[test]
    fn signed_round_trips() {
        let reg = ControlBody::HostRegister(HostRegister {
            hid: host_key().xid(Principal::Hid),
            ad: ad_key().xid(Principal::Ad),
            seq: 1,
            lifetime_ms: 10_000,
        });
        for (body, key) in [(beacon(), ad_key()), (reg, host_key()), (patch(), host_key())] {
            let bytes = body.to_signed_bytes(&key).unwrap();
            assert_eq!(bytes.len(), body.buffer_len());
            let c = Control::parse(&bytes).unwrap();
            assert_eq!(c.body, body);
            c.verify().unwrap();
        }
    }

    #[test]
    fn layout_of_a_route_patch() {
        let bytes = patch().to_signed_bytes(&host_key()).unwrap();
        assert_eq!(&bytes[..4], &[1, 3, 0, 88]);
        assert_eq!(&bytes[4..8], &0x11u32.to_be_bytes());
        assert_eq!(&bytes[4 + 24..4 + 28], &0x10u32.to_be_bytes());
        assert_eq!(&bytes[4 + 72..4 + 80], &7u64.to_be_bytes());
        assert_eq!(bytes.len(), 4 + 88 + 96);
    }

    #[test]
    fn forged_and_tampered_messages_fail_verification() {
        // A patch for someone else's HID, signed with our own key: refused at emit...
        assert!(patch().to_signed_bytes(&ad_key()).is_err());
        // ...and, if forged by hand, at verification.
        let mut bytes = patch().to_signed_bytes(&host_key()).unwrap();
        let other = Keypair::from_seed([9; 32]);
        let key_at = bytes.len() - TRAILER_LEN;
        bytes[key_at..key_at + 32].copy_from_slice(&other.public().0);
        let sig = other.sign(&signed_message(&bytes[..key_at + 32]));
        bytes[key_at + 32..].copy_from_slice(&sig.0);
        assert!(matches!(Control::parse(&bytes).unwrap().verify(), Err(KeyError::XidMismatch(_))));
        // One flipped bit in the body.
        let mut bytes = patch().to_signed_bytes(&host_key()).unwrap();
        bytes[4 + 80] ^= 1;
        assert!(matches!(Control::parse(&bytes).unwrap().verify(), Err(KeyError::BadSignature)));
    }

    #[test]
    fn malformed_messages_are_typed_errors() {
        let good = beacon().to_signed_bytes(&ad_key()).unwrap();
        assert!(matches!(Control::parse(&good[..3]), Err(WireError::Truncated { .. })));
        assert!(matches!(Control::parse(&good[..good.len() - 1]), Err(WireError::Length { .. })));
        let mut v = good.clone();
        v[0] = 9;
        assert_eq!(Control::parse(&v).unwrap_err(), WireError::Version(9));
        let mut v = good.clone();
        v[1] = 77;
        assert_eq!(Control::parse(&v).unwrap_err(), WireError::UnknownType(77));
        // Name-server node count lying.
        let mut v = good.clone();
        v[4 + 2 * XID_WIRE_LEN + 12] = 2;
        assert!(matches!(Control::parse(&v), Err(WireError::Length { .. })));
        let mut v = good.clone();
        v[4 + 2 * XID_WIRE_LEN + 12] = 200;
        assert!(matches!(Control::parse(&v), Err(WireError::Dag(_))));
        // Wrong principal type for the AD.
        let mut v = good;
        v[4..8].copy_from_slice(&0x11u32.to_be_bytes());
        assert_eq!(Control::parse(&v).unwrap_err(), WireError::Field("beacon AD"));
    }
}
