//! Principals and XIDs: the 160-bit identifiers every XIA address is made of.
//!
//! An XID is a principal type (32 bits on the wire) plus 20 bytes. Keyed principals (AD, HID,
//! SID) use the SHA-1 of a public key, so whoever claims one can prove it by signing; a CID is the
//! SHA-1 of the content it names, so receivers verify what they got.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::Ipv4Addr;
use std::str::FromStr;

use sha1::{Digest, Sha1};

/// Length of the identifier part of an XID, in bytes.
pub const XID_LEN: usize = 20;

/// The identifier part of an XID.
pub type XidId = [u8; XID_LEN];

/// A principal type: what kind of thing an XID names.
///
/// Unknown types are kept as they came (XIA lets new principals be deployed incrementally, and
/// routers fall back around the ones they do not know).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Principal {
    /// Administrative domain (0x10).
    Ad,
    /// Host (0x11).
    Hid,
    /// Content (0x12): SHA-1 of the chunk's bytes.
    Cid,
    /// Service (0x13).
    Sid,
    /// IPv4 island (0x14, "4ID"): an IPv4 address in a fake IPv4 header pattern.
    Ip,
    /// Flooding / broadcast (0x30).
    Fid,
    /// Named content (0x31).
    Ncid,
    /// Any other type code, kept verbatim.
    Unknown(u32),
}

impl Principal {
    /// Every principal this crate names.
    pub const KNOWN: [Principal; 7] = [
        Principal::Ad,
        Principal::Hid,
        Principal::Cid,
        Principal::Sid,
        Principal::Ip,
        Principal::Fid,
        Principal::Ncid,
    ];

    /// The 32-bit type code carried on the wire.
    pub const fn code(self) -> u32 {
        match self {
            Principal::Ad => 0x10,
            Principal::Hid => 0x11,
            Principal::Cid => 0x12,
            Principal::Sid => 0x13,
            Principal::Ip => 0x14,
            Principal::Fid => 0x30,
            Principal::Ncid => 0x31,
            Principal::Unknown(c) => c,
        }
    }

    /// The principal for a type code (unknown codes are kept).
    pub const fn from_code(code: u32) -> Principal {
        match code {
            0x10 => Principal::Ad,
            0x11 => Principal::Hid,
            0x12 => Principal::Cid,
            0x13 => Principal::Sid,
            0x14 => Principal::Ip,
            0x30 => Principal::Fid,
            0x31 => Principal::Ncid,
            c => Principal::Unknown(c),
        }
    }

    /// The text name used in DAG strings (`AD`, `HID`, ...), `None` for unknown types.
    pub const fn name(self) -> Option<&'static str> {
        match self {
            Principal::Ad => Some("AD"),
            Principal::Hid => Some("HID"),
            Principal::Cid => Some("CID"),
            Principal::Sid => Some("SID"),
            Principal::Ip => Some("IP"),
            Principal::Fid => Some("FID"),
            Principal::Ncid => Some("NCID"),
            Principal::Unknown(_) => None,
        }
    }
}

impl From<u32> for Principal {
    fn from(code: u32) -> Self {
        Principal::from_code(code)
    }
}

impl From<Principal> for u32 {
    fn from(p: Principal) -> Self {
        p.code()
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "0x{:x}", self.code()),
        }
    }
}

impl FromStr for Principal {
    type Err = XidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            if hex.is_empty() || hex.len() > 8 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(XidError::UnknownPrincipal(s.into()));
            }
            return u32::from_str_radix(hex, 16)
                .map(Principal::from_code)
                .map_err(|_| XidError::UnknownPrincipal(s.into()));
        }
        if s.eq_ignore_ascii_case("4ID") {
            return Ok(Principal::Ip);
        }
        Principal::KNOWN
            .into_iter()
            .find(|p| p.name().is_some_and(|n| n.eq_ignore_ascii_case(s)))
            .ok_or_else(|| XidError::UnknownPrincipal(s.into()))
    }
}

/// Why a text XID or principal could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XidError {
    /// The text has no `TYPE:` prefix.
    #[error("XID `{0}` has no `TYPE:` prefix")]
    MissingType(String),
    /// The principal name is not known and is not a `0x..` code.
    #[error("unknown principal type `{0}`")]
    UnknownPrincipal(String),
    /// The identifier is not 40 hexadecimal digits (or a dotted quad for IP).
    #[error("XID identifier `{0}` is not 40 hex digits")]
    BadIdentifier(String),
}

/// An XID: a principal type and a 20-byte identifier.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Xid {
    principal: Principal,
    id: XidId,
}

/// Marker bytes the prototype puts in a 4ID so that it looks like an IPv4 header
/// (version/IHL 0x45, ..., TTL/protocol 0xFA 0xFA); the address sits in the last four bytes.
const IP4ID_PATTERN: [(usize, u8); 4] = [(0, 0x45), (5, 0x01), (8, 0xFA), (9, 0xFA)];

impl Xid {
    /// An XID from its parts.
    pub const fn new(principal: Principal, id: XidId) -> Xid {
        Xid { principal, id }
    }

    /// The principal type.
    pub const fn principal(&self) -> Principal {
        self.principal
    }

    /// The 20-byte identifier.
    pub const fn id(&self) -> &XidId {
        &self.id
    }

    /// The CID naming `content`: its SHA-1.
    pub fn cid_of(content: &[u8]) -> Xid {
        Xid::new(Principal::Cid, sha1_of(content))
    }

    /// The XID of a keyed principal (AD, HID, SID) owning `public_key`: its SHA-1.
    pub fn from_public_key(principal: Principal, public_key: &[u8]) -> Xid {
        Xid::new(principal, sha1_of(public_key))
    }

    /// The 4ID for an IPv4 address, in the prototype's fake-IPv4-header layout.
    pub fn from_ipv4(addr: Ipv4Addr) -> Xid {
        let mut id = [0u8; XID_LEN];
        for (i, b) in IP4ID_PATTERN {
            id[i] = b;
        }
        id[16..].copy_from_slice(&addr.octets());
        Xid::new(Principal::Ip, id)
    }

    /// The IPv4 address of a 4ID in the prototype's layout, `None` otherwise.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        if self.principal != Principal::Ip {
            return None;
        }
        let pattern_ok = self.id[..16].iter().enumerate().all(|(i, &b)| {
            let want = IP4ID_PATTERN.iter().find(|(j, _)| *j == i).map_or(0, |(_, v)| *v);
            b == want
        });
        pattern_ok.then(|| Ipv4Addr::new(self.id[16], self.id[17], self.id[18], self.id[19]))
    }
}

/// Decodes `text`, exactly `2 * out.len()` hex digits, into `out`. (`from_str_radix` alone
/// would let a `+` sign through.)
pub(crate) fn decode_hex(text: &str, out: &mut [u8]) -> bool {
    if text.len() != 2 * out.len() || !text.bytes().all(|c| c.is_ascii_hexdigit()) {
        return false;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    };
    for (o, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *o = digit(pair[0]) << 4 | digit(pair[1]);
    }
    true
}

/// SHA-1 of `data` (the `sha1` crate uses SHA-NI when the CPU has it).
pub fn sha1_of(data: &[u8]) -> XidId {
    Sha1::digest(data).into()
}

/// Broadcast HID (all ones), destination of XHCP beacons.
pub const HID_BROADCAST: Xid = Xid::new(Principal::Hid, [0xff; XID_LEN]);
/// The prototype's well-known SID of XHCP (host configuration by beacons).
pub const SID_XHCP: Xid = Xid::new(Principal::Sid, well_known(0x11));
/// The prototype's well-known SID of the routing daemon.
pub const SID_XROUTE: Xid = Xid::new(Principal::Sid, well_known(0x12));
/// The prototype's well-known SID of the name server.
pub const SID_NS: Xid = Xid::new(Principal::Sid, well_known(0x13));
/// This project's well-known SID of `xmigrate recv` (a host's migration service), in the
/// prototype's pattern.
pub const SID_MIGRATE: Xid = Xid::new(Principal::Sid, well_known(0x20));

/// `1110000000000000000000000000000000001113`-style well-known identifiers.
const fn well_known(last: u8) -> XidId {
    let mut id = [0u8; XID_LEN];
    id[0] = 0x11;
    id[1] = 0x10;
    id[18] = 0x11;
    id[19] = last;
    id
}

// In derived encodings (the local IPC protocol) an XID is its type code and its 20 bytes.
impl serde::Serialize for Xid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.principal.code(), self.id).serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Xid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Xid, D::Error> {
        let (code, id) = <(u32, XidId)>::deserialize(d)?;
        Ok(Xid::new(Principal::from_code(code), id))
    }
}

impl fmt::Display for Xid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.principal)?;
        if let Some(ip) = self.ipv4() {
            return write!(f, "{ip}");
        }
        for b in &self.id {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Xid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Xid {
    type Err = XidError;

    /// Reads `TYPE:<40 hex>` (type names are case-insensitive, `0x..` codes accepted) and, for
    /// IP, `IP:a.b.c.d`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ty, id) = s.split_once(':').ok_or_else(|| XidError::MissingType(s.into()))?;
        let principal: Principal = ty.parse()?;
        if principal == Principal::Ip {
            if let Ok(addr) = id.parse::<Ipv4Addr>() {
                return Ok(Xid::from_ipv4(addr));
            }
        }
        let mut out = [0u8; XID_LEN];
        if !decode_hex(id, &mut out) {
            return Err(XidError::BadIdentifier(id.into()));
        }
        Ok(Xid::new(principal, out))
    }
}

/// A map keyed by integers this process hands out itself (handles, request ids), never by
/// values an attacker chooses: the hash is a plain multiply, fast and good for sequential keys.
pub type IdMap<V> = std::collections::HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

/// The hasher of [`IdMap`].
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(MIX);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(MIX);
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_u16(&mut self, v: u16) {
        self.write_u64(u64::from(v));
    }
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}

/// A hash map keyed by XID identifiers, for the per-principal tables of routers and hosts.
pub type XidMap<V> = std::collections::HashMap<XidId, V, XidHashBuilder>;

/// Builds [`XidHasher`]s keyed with per-process random values.
///
/// XIDs are hashes already, so a full SipHash round is wasted work on the forwarding path; a
/// multiply-mix of the whole identifier, seeded per process, keeps lookups at a few nanoseconds.
/// This is not a keyed PRF: it relies on table keys being hashes (SHA-1 of keys or content)
/// that nobody can aim at a bucket, which holds for the tables of this stack.
#[derive(Debug, Clone, Copy)]
pub struct XidHashBuilder {
    k0: u64,
    k1: u64,
}

impl Default for XidHashBuilder {
    fn default() -> Self {
        static KEYS: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
        let (k0, k1) = *KEYS.get_or_init(|| {
            let mut b = [0u8; 16];
            // Without OS randomness fall back to std's randomly keyed state.
            if getrandom::getrandom(&mut b).is_err() {
                let s = std::collections::hash_map::RandomState::new();
                b[..8].copy_from_slice(&s.hash_one(0u8).to_le_bytes());
                b[8..].copy_from_slice(&s.hash_one(1u8).to_le_bytes());
            }
            let (a, c) = b.split_at(8);
            (
                u64::from_le_bytes(a.try_into().unwrap_or_default()),
                u64::from_le_bytes(c.try_into().unwrap_or_default()),
            )
        });
        XidHashBuilder { k0, k1 }
    }
}

impl BuildHasher for XidHashBuilder {
    type Hasher = XidHasher;
    fn build_hasher(&self) -> XidHasher {
        XidHasher { state: self.k0, k1: self.k1 }
    }
}

/// Hasher for [`XidMap`]; see [`XidHashBuilder`].
#[derive(Debug, Clone)]
pub struct XidHasher {
    state: u64,
    k1: u64,
}

const MIX: u64 = 0x9E37_79B9_7F4A_7C15;

impl XidHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        let x = (self.state ^ word).wrapping_mul(MIX) ^ self.k1;
        self.state = x.rotate_left(31).wrapping_mul(MIX);
    }
}

impl Hasher for XidHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_usize(&mut self, _len: usize) {
        // Array keys are all 20 bytes; the length prefix adds nothing.
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.state ^ (self.state >> 29)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_codes_round_trip() {
        for p in Principal::KNOWN {
            assert_eq!(Principal::from_code(p.code()), p);
            assert_eq!(p.to_string().parse::<Principal>().unwrap(), p);
        }
        assert_eq!(Principal::from_code(0x99), Principal::Unknown(0x99));
        assert_eq!("0x99".parse::<Principal>().unwrap(), Principal::Unknown(0x99));
        assert_eq!("hid".parse::<Principal>().unwrap(), Principal::Hid);
        assert_eq!("4ID".parse::<Principal>().unwrap(), Principal::Ip);
        assert!("XYZ".parse::<Principal>().is_err());
    }

    #[test]
    fn xid_text_round_trip() {
        let s = "HID:0123456789abcdef0123456789abcdef01234567";
        let x: Xid = s.parse().unwrap();
        assert_eq!(x.principal(), Principal::Hid);
        assert_eq!(x.id()[0], 0x01);
        assert_eq!(x.id()[19], 0x67);
        assert_eq!(x.to_string(), s);
        let u: Xid = "0x20:0000000000000000000000000000000000000001".parse().unwrap();
        assert_eq!(u.principal(), Principal::Unknown(0x20));
        assert_eq!(u.to_string(), "0x20:0000000000000000000000000000000000000001");
    }

    #[test]
    fn xid_text_errors() {
        assert!(matches!("HID".parse::<Xid>(), Err(XidError::MissingType(_))));
        assert!(matches!("HID:12".parse::<Xid>(), Err(XidError::BadIdentifier(_))));
        assert!(matches!(
            "HID:zz23456789abcdef0123456789abcdef01234567".parse::<Xid>(),
            Err(XidError::BadIdentifier(_))
        ));
        // Multi-byte characters must not split a hex pair, and no sign may sneak in.
        assert!("HID:é123456789abcdef0123456789abcdef0123456".parse::<Xid>().is_err());
        assert!(format!("HID:{}", "+f".repeat(20)).parse::<Xid>().is_err());
        assert!("0x+10:0000000000000000000000000000000000000001".parse::<Xid>().is_err());
        assert!(matches!("FOO:00".parse::<Xid>(), Err(XidError::UnknownPrincipal(_))));
    }

    #[test]
    fn well_known_values_match_the_prototype() {
        assert_eq!(SID_NS.to_string(), "SID:1110000000000000000000000000000000001113");
        assert_eq!(SID_XHCP.to_string(), "SID:1110000000000000000000000000000000001111");
        assert_eq!(SID_XROUTE.to_string(), "SID:1110000000000000000000000000000000001112");
        assert_eq!(HID_BROADCAST.to_string(), format!("HID:{}", "f".repeat(40)));
    }

    #[test]
    fn ip4id_layout() {
        let x: Xid = "IP:10.0.0.7".parse().unwrap();
        let mut want = [0u8; 20];
        want[0] = 0x45;
        want[5] = 0x01;
        want[8] = 0xFA;
        want[9] = 0xFA;
        want[16..].copy_from_slice(&[10, 0, 0, 7]);
        assert_eq!(x.id(), &want);
        assert_eq!(x.to_string(), "IP:10.0.0.7");
        // An IP XID in hex form that is not in the pattern stays hex.
        let h: Xid = "IP:0000000000000000000000000000000000000001".parse().unwrap();
        assert_eq!(h.ipv4(), None);
        assert_eq!(h.to_string(), "IP:0000000000000000000000000000000000000001");
    }

    #[test]
    fn cid_is_sha1() {
        // SHA-1("abc") from FIPS 180-1.
        let c = Xid::cid_of(b"abc");
        assert_eq!(c.to_string(), "CID:a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn xid_map_works() {
        let mut m: XidMap<u32> = XidMap::default();
        for i in 0..1000u32 {
            m.insert(sha1_of(&i.to_be_bytes()), i);
        }
        for i in 0..1000u32 {
            assert_eq!(m.get(&sha1_of(&i.to_be_bytes())), Some(&i));
        }
        assert_eq!(m.get(&[0u8; 20]), None);
    }
}
