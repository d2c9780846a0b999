//! The name service's messages (DGRAM payloads to and from [`crate::xid::SID_NS`]) and the
//! grammar of names.
//!
//! A **name** is DNS-like: labels of letters, digits and `-` (not first or last), 1 to 63 bytes
//! each, joined by `.`, at most 253 bytes in all, compared without case (kept lowercase).
//!
//! A **record** binds a name to a DAG, signed by a key that owns the DAG's intent (the DAG's
//! intent is the HID or SID of that key): self-certifying, so a client can check an answer
//! without trusting the server, and a server needs no account to know who may change a name.
//! The first record of a name binds it to its key; later ones must be signed by the same key,
//! with a higher sequence number. A record lives `ttl_ms` from when the server takes it. A
//! deletion is a record without a DAG (a tombstone), signed likewise.
//!
//! ```text
//! message : version (1) | type (1) | request id (4) | body
//! name    : length (1) | bytes
//! record  : name | nodes (1) | DAG nodes (28 each, as in XIP) | key (32) | seq (8) | ttl ms (4)
//!           | signature (64) over "XIA name v1\0" and everything of the record before it
//! put     (1) : record                          -> ok | error
//! resolve (2) : name                            -> records (0 or 1)
//! reverse (3) : XID (24: a HID or SID)          -> records naming a DAG with that intent
//! list    (4) : after (a name, or length 0) | max (2)   -> records, in name order
//! stats   (5) : (nothing)                       -> counters
//! records (16): count (1) | records
//! ok      (17): (nothing)
//! error   (18): code (1) | length (1) | text
//! counters(19): count (1) | (length (1) | name | value (8)) each
//! ```

use std::fmt;
use std::str::FromStr;

use crate::dag::{Dag, MAX_NODES};
use crate::keys::{KeyError, Keypair, PublicKey, Signature, PUBLIC_KEY_LEN, SIGNATURE_LEN};
use crate::xid::{Principal, Xid};

use super::xip::{read_node, write_node, NODE_LEN};
use super::{read_xid, write_xid, Result, WireError, XID_WIRE_LEN};

/// Protocol version.
pub const VERSION: u8 = 1;
/// Longest name, in bytes.
pub const MAX_NAME: usize = 253;
/// Longest label, in bytes.
pub const MAX_LABEL: usize = 63;
/// Records one answer carries at most.
pub const MAX_RECORDS: usize = 64;
/// Signatures are over this string followed by the record.
const CONTEXT: &[u8] = b"XIA name v1\0";

mod kind {
    pub const PUT: u8 = 1;
    pub const RESOLVE: u8 = 2;
    pub const REVERSE: u8 = 3;
    pub const LIST: u8 = 4;
    pub const STATS: u8 = 5;
    pub const RECORDS: u8 = 16;
    pub const OK: u8 = 17;
    pub const ERROR: u8 = 18;
    pub const COUNTERS: u8 = 19;
}

/// A name that follows the grammar, lowercase.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

/// Why a name does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty, or an empty label (`a..b`, a leading or trailing dot).
    #[error("empty name or label")]
    Empty,
    /// Longer than [`MAX_NAME`].
    #[error("name of {0} bytes (at most {MAX_NAME})")]
    TooLong(usize),
    /// A label longer than [`MAX_LABEL`].
    #[error("label of {0} bytes (at most {MAX_LABEL})")]
    LabelTooLong(usize),
    /// A byte other than a letter, a digit, `-` or `.`; or `-` first or last in a label.
    #[error("{0:?} is not allowed there (letters, digits, and '-' inside a label)")]
    BadChar(char),
}

impl Name {
    /// The name, lowercase.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Name {
    type Err = NameError;

    fn from_str(s: &str) -> core::result::Result<Name, NameError> {
        if s.len() > MAX_NAME {
            return Err(NameError::TooLong(s.len()));
        }
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        for label in s.split('.') {
            if label.is_empty() {
                return Err(NameError::Empty);
            }
            if label.len() > MAX_LABEL {
                return Err(NameError::LabelTooLong(label.len()));
            }
            if let Some(c) = label.chars().find(|c| !c.is_ascii_alphanumeric() && *c != '-') {
                return Err(NameError::BadChar(c));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(NameError::BadChar('-'));
            }
        }
        Ok(Name(s.to_ascii_lowercase()))
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A name bound to a DAG (or deleted: no DAG), signed by the key owning the DAG's intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The name.
    pub name: Name,
    /// Where it leads; `None`: the name is deleted.
    pub dag: Option<Dag>,
    /// The owner's key: the name's from its first record on.
    pub key: PublicKey,
    /// Above the last record's of this name.
    pub seq: u64,
    /// How long the server keeps it, from when it takes it (ms).
    pub ttl_ms: u32,
    /// Over [`CONTEXT`] and the record's bytes before it.
    pub signature: Signature,
}

/// Why a record is not authentic.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The signature does not check.
    #[error("record not signed by its key: {0}")]
    Key(#[from] KeyError),
    /// The DAG's intent is not a HID or SID, or not the key's.
    #[error("the key does not own the DAG's intent {0}")]
    NotOwner(Xid),
}

impl Record {
    /// A record of `name` to `dag` (`None`: a deletion) signed by `key`.
    pub fn signed(key: &Keypair, name: Name, dag: Option<Dag>, seq: u64, ttl_ms: u32) -> Record {
        let mut r =
            Record { name, dag, key: key.public(), seq, ttl_ms, signature: Signature([0; SIGNATURE_LEN]) };
        let mut b = vec![0u8; r.buffer_len()];
        let at = r.emit_unsigned(&mut b);
        r.signature = key.sign(&signed(&b[..at]));
        r
    }

    /// Checks the signature, and that the key owns the DAG's intent (a HID or SID).
    pub fn verify(&self) -> core::result::Result<(), RecordError> {
        if let Some(d) = &self.dag {
            let intent = *d.intent();
            if !matches!(intent.principal(), Principal::Hid | Principal::Sid)
                || self.key.xid(intent.principal()) != intent
            {
                return Err(RecordError::NotOwner(intent));
            }
        }
        let mut b = vec![0u8; self.buffer_len()];
        let at = self.emit_unsigned(&mut b);
        self.key.verify(&signed(&b[..at]), &self.signature)?;
        Ok(())
    }

    /// The record as on the wire, in a new vector (for a store).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.buffer_len()];
        self.emit(&mut Writer { b: &mut v, at: 0 });
        v
    }

    /// Reads a record written by [`Record::to_bytes`] (all of `b`; nothing cryptographic).
    pub fn from_bytes(b: &[u8]) -> Result<Record> {
        let mut r = Reader { b, at: 0 };
        let rec = Record::parse(&mut r)?;
        if r.at != b.len() {
            return Err(WireError::Length { declared: r.at, present: b.len() });
        }
        Ok(rec)
    }

    /// Bytes on the wire.
    pub fn buffer_len(&self) -> usize {
        1 + self.name.0.len()
            + 1
            + NODE_LEN * self.dag.as_ref().map_or(0, Dag::len)
            + PUBLIC_KEY_LEN
            + 8
            + 4
            + SIGNATURE_LEN
    }

    /// Writes everything but the signature; returns where the signature goes.
    fn emit_unsigned(&self, b: &mut [u8]) -> usize {
        let mut w = Writer { b, at: 0 };
        w.name(&self.name);
        let nodes = self.dag.as_ref().map_or(&[][..], Dag::nodes);
        w.u8(nodes.len() as u8);
        for n in nodes {
            write_node(w.b, w.at, n);
            w.at += NODE_LEN;
        }
        w.bytes(&self.key.0);
        w.bytes(&self.seq.to_be_bytes());
        w.bytes(&self.ttl_ms.to_be_bytes());
        w.at
    }

    fn emit(&self, w: &mut Writer<'_>) {
        let at = self.emit_unsigned(&mut w.b[w.at..]);
        w.at += at;
        w.bytes(&self.signature.0);
    }

    fn parse(r: &mut Reader<'_>) -> Result<Record> {
        let name = r.name()?;
        let n = usize::from(r.u8()?);
        if n > MAX_NODES {
            return Err(WireError::Dag(crate::dag::DagError::TooManyNodes(n)));
        }
        let nodes = r.take(n * NODE_LEN)?;
        let dag = match n {
            0 => None,
            _ => Some(Dag::from_node_fn(n, |i| read_node(nodes, i * NODE_LEN))?),
        };
        let mut key = [0u8; PUBLIC_KEY_LEN];
        key.copy_from_slice(r.take(PUBLIC_KEY_LEN)?);
        let seq = u64::from_be_bytes(r.take(8)?.try_into().expect("8 bytes"));
        let ttl_ms = u32::from_be_bytes(r.take(4)?.try_into().expect("4 bytes"));
        let mut sig = [0u8; SIGNATURE_LEN];
        sig.copy_from_slice(r.take(SIGNATURE_LEN)?);
        Ok(Record { name, dag, key: PublicKey(key), seq, ttl_ms, signature: Signature(sig) })
    }
}

fn signed(bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + bytes.len());
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(bytes);
    m
}

/// Why the server refused a request (the code of an error answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsErrorCode {
    /// No such name (1).
    NotFound,
    /// The record's signature does not check, or its key does not own the DAG's intent (2).
    Forged,
    /// The name is bound to another key (3).
    NotOwner,
    /// The sequence number is not above the name's last one: a replay, or out of order (4).
    Stale,
    /// The request does not parse (5).
    Malformed,
    /// The server cannot take it now (full, or its store failed) (6).
    Unavailable,
    /// Any other code.
    Unknown(u8),
}

impl From<u8> for NsErrorCode {
    fn from(v: u8) -> Self {
        match v {
            1 => NsErrorCode::NotFound,
            2 => NsErrorCode::Forged,
            3 => NsErrorCode::NotOwner,
            4 => NsErrorCode::Stale,
            5 => NsErrorCode::Malformed,
            6 => NsErrorCode::Unavailable,
            other => NsErrorCode::Unknown(other),
        }
    }
}

impl From<NsErrorCode> for u8 {
    fn from(v: NsErrorCode) -> Self {
        match v {
            NsErrorCode::NotFound => 1,
            NsErrorCode::Forged => 2,
            NsErrorCode::NotOwner => 3,
            NsErrorCode::Stale => 4,
            NsErrorCode::Malformed => 5,
            NsErrorCode::Unavailable => 6,
            NsErrorCode::Unknown(v) => v,
        }
    }
}

/// What a name service message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NsBody {
    /// Takes a record (a registration, an update or a deletion).
    Put(Box<Record>),
    /// The record of a name.
    Resolve(Name),
    /// The records whose DAG's intent is this HID or SID.
    Reverse(Xid),
    /// Up to `max` records, in name order, from after `after`.
    List {
        /// Names after this one (`None`: from the first).
        after: Option<Name>,
        /// Records at most.
        max: u16,
    },
    /// The server's counters.
    Stats,
    /// An answer: the server's counters, by name (at most 255, names of at most 255 bytes).
    Counters(Vec<(String, u64)>),
    /// An answer: records (at most [`MAX_RECORDS`]).
    Records(Vec<Record>),
    /// An answer: done.
    Ok,
    /// An answer: refused, and why.
    Error {
        /// The cause.
        code: NsErrorCode,
        /// For people (at most 255 bytes).
        text: String,
    },
}

/// A name service message: its request id (answers carry the request's) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsMessage {
    /// Chosen by the client, echoed by the server.
    pub id: u32,
    /// What it says.
    pub body: NsBody,
}

impl NsMessage {
    /// Bytes on the wire.
    pub fn buffer_len(&self) -> usize {
        6 + match &self.body {
            NsBody::Put(r) => r.buffer_len(),
            NsBody::Resolve(n) => 1 + n.0.len(),
            NsBody::Reverse(_) => XID_WIRE_LEN,
            NsBody::List { after, .. } => 1 + after.as_ref().map_or(0, |n| n.0.len()) + 2,
            NsBody::Records(rs) => 1 + rs.iter().map(Record::buffer_len).sum::<usize>(),
            NsBody::Stats | NsBody::Ok => 0,
            NsBody::Counters(cs) => 1 + cs.iter().map(|(n, _)| 1 + n.len() + 8).sum::<usize>(),
            NsBody::Error { text, .. } => 2 + text_len(text),
        }
    }

    /// The message in a new vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        if let NsBody::Records(rs) = &self.body {
            if rs.len() > MAX_RECORDS {
                return Err(WireError::Field("name service records count"));
            }
        }
        if let NsBody::Counters(cs) = &self.body {
            if cs.len() > 255 || cs.iter().any(|(n, _)| n.len() > 255) {
                return Err(WireError::Field("name service counters"));
            }
        }
        let mut v = vec![0u8; self.buffer_len()];
        let mut w = Writer { b: &mut v, at: 0 };
        w.u8(VERSION);
        w.u8(match &self.body {
            NsBody::Put(_) => kind::PUT,
            NsBody::Resolve(_) => kind::RESOLVE,
            NsBody::Reverse(_) => kind::REVERSE,
            NsBody::List { .. } => kind::LIST,
            NsBody::Stats => kind::STATS,
            NsBody::Counters(_) => kind::COUNTERS,
            NsBody::Records(_) => kind::RECORDS,
            NsBody::Ok => kind::OK,
            NsBody::Error { .. } => kind::ERROR,
        });
        w.bytes(&self.id.to_be_bytes());
        match &self.body {
            NsBody::Put(r) => r.emit(&mut w),
            NsBody::Resolve(n) => w.name(n),
            NsBody::Reverse(x) => {
                let mut b = [0u8; XID_WIRE_LEN];
                write_xid(&mut b, 0, x);
                w.bytes(&b);
            }
            NsBody::List { after, max } => {
                match after {
                    Some(n) => w.name(n),
                    None => w.u8(0),
                }
                w.bytes(&max.to_be_bytes());
            }
            NsBody::Records(rs) => {
                w.u8(rs.len() as u8);
                for r in rs {
                    r.emit(&mut w);
                }
            }
            NsBody::Stats | NsBody::Ok => {}
            NsBody::Counters(cs) => {
                w.u8(cs.len() as u8);
                for (n, v) in cs {
                    w.u8(n.len() as u8);
                    w.bytes(n.as_bytes());
                    w.bytes(&v.to_be_bytes());
                }
            }
            NsBody::Error { code, text } => {
                let end = text_len(text);
                w.u8((*code).into());
                w.u8(end as u8);
                w.bytes(&text.as_bytes()[..end]);
            }
        }
        Ok(v)
    }

    /// Reads a message (nothing cryptographic: [`Record::verify`] is the reader's to call).
    pub fn parse(b: &[u8]) -> Result<NsMessage> {
        let mut r = Reader { b, at: 0 };
        let version = r.u8()?;
        if version != VERSION {
            return Err(WireError::Version(version));
        }
        let t = r.u8()?;
        let id = u32::from_be_bytes(r.take(4)?.try_into().expect("4 bytes"));
        let body = match t {
            kind::PUT => NsBody::Put(Box::new(Record::parse(&mut r)?)),
            kind::RESOLVE => NsBody::Resolve(r.name()?),
            kind::REVERSE => {
                let x = read_xid(r.take(XID_WIRE_LEN)?, 0);
                if !matches!(x.principal(), Principal::Hid | Principal::Sid) {
                    return Err(WireError::Field("reverse lookup of an XID that is not a HID or SID"));
                }
                NsBody::Reverse(x)
            }
            kind::LIST => {
                let after = match r.peek()? {
                    0 => {
                        r.u8()?;
                        None
                    }
                    _ => Some(r.name()?),
                };
                NsBody::List { after, max: u16::from_be_bytes(r.take(2)?.try_into().expect("2 bytes")) }
            }
            kind::RECORDS => {
                let n = usize::from(r.u8()?);
                if n > MAX_RECORDS {
                    return Err(WireError::Field("name service records count"));
                }
                let mut rs = Vec::with_capacity(n);
                for _ in 0..n {
                    rs.push(Record::parse(&mut r)?);
                }
                NsBody::Records(rs)
            }
            kind::OK => NsBody::Ok,
            kind::STATS => NsBody::Stats,
            kind::COUNTERS => {
                let n = usize::from(r.u8()?);
                let mut cs = Vec::with_capacity(n);
                for _ in 0..n {
                    let len = usize::from(r.u8()?);
                    let name = std::str::from_utf8(r.take(len)?)
                        .map_err(|_| WireError::Field("name service counter name"))?
                        .to_string();
                    cs.push((name, u64::from_be_bytes(r.take(8)?.try_into().expect("8 bytes"))));
                }
                NsBody::Counters(cs)
            }
            kind::ERROR => {
                let code = NsErrorCode::from(r.u8()?);
                let n = usize::from(r.u8()?);
                let text = std::str::from_utf8(r.take(n)?)
                    .map_err(|_| WireError::Field("name service error text"))?
                    .to_string();
                NsBody::Error { code, text }
            }
            other => return Err(WireError::UnknownType(other)),
        };
        if r.at != b.len() {
            return Err(WireError::Length { declared: r.at, present: b.len() });
        }
        Ok(NsMessage { id, body })
    }
}

/// The bytes of an error text that go on the wire: at most 255, cut on a character boundary.
fn text_len(text: &str) -> usize {
    let mut end = text.len().min(255);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// Reads fields one after the other, every read bounds-checked.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or(WireError::Truncated { need: self.at.saturating_add(n), have: self.b.len() })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn peek(&self) -> Result<u8> {
        self.b.get(self.at).copied().ok_or(WireError::Truncated { need: self.at + 1, have: self.b.len() })
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn name(&mut self) -> Result<Name> {
        let n = usize::from(self.u8()?);
        let s = std::str::from_utf8(self.take(n)?).map_err(|_| WireError::Field("name"))?;
        let name: Name = s.parse().map_err(|_| WireError::Field("name"))?;
        // Names travel lowercase: one name, one spelling (and one signature).
        if name.0 != s {
            return Err(WireError::Field("name not lowercase"));
        }
        Ok(name)
    }
}

/// Writes fields one after the other into a buffer sized by `buffer_len`.
struct Writer<'a> {
    b: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, v: &[u8]) {
        self.b[self.at..self.at + v.len()].copy_from_slice(v);
        self.at += v.len();
    }
    fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }
    fn name(&mut self, n: &Name) {
        self.u8(n.0.len() as u8);
        self.bytes(n.0.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Keypair {
        Keypair::from_seed([7; 32])
    }
    fn dag_of(k: &Keypair) -> Dag {
        Dag::host(Xid::new(Principal::Ad, [1; 20]), k.xid(Principal::Hid)).unwrap()
    }
    fn name(s: &str) -> Name {
        s.parse().unwrap()
    }

    #[test]
    fn names_follow_the_grammar() {
        assert_eq!(name("VM1.Example-2.xia").as_str(), "vm1.example-2.xia");
        assert_eq!(name("a").as_str(), "a");
        for (bad, err) in [
            ("", NameError::Empty),
            ("a..b", NameError::Empty),
            (".a", NameError::Empty),
            ("a.", NameError::Empty),
            ("-a", NameError::BadChar('-')),
            ("a-", NameError::BadChar('-')),
            ("a_b", NameError::BadChar('_')),
            ("é", NameError::BadChar('é')),
        ] {
            assert_eq!(bad.parse::<Name>(), Err(err), "{bad:?}");
        }
        assert_eq!(format!("{}.x", "a".repeat(64)).parse::<Name>(), Err(NameError::LabelTooLong(64)));
        let long = vec!["a".repeat(63); 4].join(".");
        assert_eq!(long.len(), 255);
        assert_eq!(long.parse::<Name>(), Err(NameError::TooLong(255)));
        assert!(long[..253].trim_end_matches('.').parse::<Name>().is_ok());
    }

    #[test]
    fn records_are_self_certifying() {
        let k = key();
        let r = Record::signed(&k, name("vm1"), Some(dag_of(&k)), 5, 60_000);
        r.verify().unwrap();
        // A service's own key for its SID.
        let svc =
            Dag::service(Xid::new(Principal::Ad, [1; 20]), k.xid(Principal::Hid), k.xid(Principal::Sid))
                .unwrap();
        Record::signed(&k, name("cal.vm1"), Some(svc), 1, 1).verify().unwrap();
        // Another's DAG, signed by this key: refused.
        let other = Keypair::from_seed([8; 32]);
        let r2 = Record::signed(&k, name("vm1"), Some(dag_of(&other)), 6, 60_000);
        assert!(matches!(r2.verify(), Err(RecordError::NotOwner(_))));
        // A DAG whose intent is an AD: owned by no host key.
        let ad = Dag::linear(&[Xid::new(Principal::Ad, [1; 20])]).unwrap();
        assert!(matches!(
            Record::signed(&k, name("x"), Some(ad), 1, 1).verify(),
            Err(RecordError::NotOwner(_))
        ));
        // Any field changed: the signature no longer checks.
        for changed in [
            Record { seq: 6, ..r.clone() },
            Record { ttl_ms: 1, ..r.clone() },
            Record { name: name("vm2"), ..r.clone() },
            Record { dag: None, ..r.clone() },
        ] {
            assert!(matches!(changed.verify(), Err(RecordError::Key(_))), "{changed:?}");
        }
        // A deletion is signed too.
        Record::signed(&k, name("vm1"), None, 7, 0).verify().unwrap();
        assert_eq!(Record::from_bytes(&r.to_bytes()).unwrap(), r);
        let mut longer = r.to_bytes();
        longer.push(0);
        assert!(Record::from_bytes(&longer).is_err());
    }

    #[test]
    fn messages_round_trip() {
        let k = key();
        let r = Record::signed(&k, name("vm1.xia"), Some(dag_of(&k)), 5, 60_000);
        let tomb = Record::signed(&k, name("vm1.xia"), None, 6, 0);
        for body in [
            NsBody::Put(Box::new(r.clone())),
            NsBody::Put(Box::new(tomb.clone())),
            NsBody::Resolve(name("vm1.xia")),
            NsBody::Reverse(k.xid(Principal::Hid)),
            NsBody::List { after: None, max: 10 },
            NsBody::List { after: Some(name("a")), max: 10 },
            NsBody::Records(vec![]),
            NsBody::Records(vec![r.clone(), tomb]),
            NsBody::Ok,
            NsBody::Stats,
            NsBody::Counters(vec![]),
            NsBody::Counters(vec![("taken".into(), 3), ("refused_stale".into(), u64::MAX)]),
            NsBody::Error { code: NsErrorCode::NotOwner, text: "vm1.xia is bound to another key".into() },
            NsBody::Error { code: NsErrorCode::Unknown(99), text: String::new() },
        ] {
            let m = NsMessage { id: 0xdead_beef, body };
            let b = m.to_bytes().unwrap();
            assert_eq!(b.len(), m.buffer_len());
            assert_eq!(NsMessage::parse(&b).unwrap(), m);
        }
        // Error texts are cut at 255 bytes, on a character boundary.
        let m = NsMessage { id: 1, body: NsBody::Error { code: NsErrorCode::Stale, text: "é".repeat(200) } };
        let NsBody::Error { text, .. } = NsMessage::parse(&m.to_bytes().unwrap()).unwrap().body else {
            panic!()
        };
        assert_eq!(text.len(), 254);
    }

    #[test]
    fn malformed_messages_are_typed_errors() {
        let k = key();
        let good = NsMessage {
            id: 1,
            body: NsBody::Put(Box::new(Record::signed(&k, name("vm1"), Some(dag_of(&k)), 1, 1))),
        }
        .to_bytes()
        .unwrap();
        for cut in 0..good.len() {
            assert!(NsMessage::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = good.clone();
        extra.push(0);
        assert!(matches!(NsMessage::parse(&extra), Err(WireError::Length { .. })));
        let mut v = good.clone();
        v[0] = 2;
        assert_eq!(NsMessage::parse(&v), Err(WireError::Version(2)));
        let mut v = good.clone();
        v[1] = 99;
        assert_eq!(NsMessage::parse(&v), Err(WireError::UnknownType(99)));
        // An uppercase name on the wire, a name with a bad byte, too many nodes.
        let mut v = good.clone();
        v[7] = b'V';
        assert_eq!(NsMessage::parse(&v), Err(WireError::Field("name not lowercase")));
        let mut v = good.clone();
        v[7] = b'_';
        assert_eq!(NsMessage::parse(&v), Err(WireError::Field("name")));
        let mut v = good;
        v[6 + 1 + 3] = 200;
        assert!(matches!(NsMessage::parse(&v), Err(WireError::Dag(_))));
        // Too many records; a reverse lookup of an AD.
        let many = NsMessage {
            id: 1,
            body: NsBody::Records(vec![Record::signed(&k, name("a"), None, 1, 1); MAX_RECORDS + 1]),
        };
        assert!(many.to_bytes().is_err());
        let mut rev = NsMessage { id: 1, body: NsBody::Reverse(k.xid(Principal::Hid)) }.to_bytes().unwrap();
        rev[6..10].copy_from_slice(&Principal::Ad.code().to_be_bytes());
        assert!(matches!(NsMessage::parse(&rev), Err(WireError::Field(_))));
    }
}
