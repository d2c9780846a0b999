//! Wire formats: zero-copy views over packet bytes and parsed representations.
//!
//! Every format follows one pattern (after smoltcp): a view type over any `AsRef<[u8]>` buffer
//! with `new_checked` (after which no accessor panics), getters named after the fields and
//! setters on mutable buffers; a `Repr` holding the parsed meaning with `parse`, `buffer_len`
//! and `emit`. Parsers never panic and never allocate from a length read off the wire; every
//! failure is a [`WireError`].

pub mod checksum;
pub mod chunk;
pub mod control;
pub mod dgram;
pub mod ethernet;
pub mod integrity;
pub mod names;
pub mod stream;
pub mod xarp;
pub mod xcmp;
pub mod xip;

use crate::dag::DagError;
use crate::xid::{Principal, Xid, XID_LEN};

/// Bytes of an XID on the wire: type (u32) and identifier.
pub const XID_WIRE_LEN: usize = 4 + XID_LEN;

/// Reads an XID at `at` (bounds checked by the caller).
#[inline]
pub(crate) fn read_xid(b: &[u8], at: usize) -> Xid {
    let mut id = [0u8; XID_LEN];
    id.copy_from_slice(&b[at + 4..at + XID_WIRE_LEN]);
    Xid::new(Principal::from_code(be32(b, at)), id)
}

/// Writes an XID at `at`.
#[inline]
pub(crate) fn write_xid(b: &mut [u8], at: usize, x: &Xid) {
    put32(b, at, x.principal().code());
    b[at + 4..at + XID_WIRE_LEN].copy_from_slice(x.id());
}

/// Why bytes are not a valid packet of some format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than the header (or a length field) requires.
    #[error("truncated: {need} bytes needed, {have} present")]
    Truncated {
        /// Bytes required.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// A version field holds a version this implementation does not speak.
    #[error("unsupported version {0}")]
    Version(u8),
    /// A length field disagrees with the bytes present.
    #[error("length field says {declared} bytes, {present} present")]
    Length {
        /// What the field says.
        declared: usize,
        /// What is there.
        present: usize,
    },
    /// A header-length field is below the fixed header or otherwise impossible.
    #[error("header length {0} is invalid")]
    HeaderLength(usize),
    /// An address is not a valid DAG.
    #[error("bad DAG: {0}")]
    Dag(#[from] DagError),
    /// The `last node` field is neither the entry marker nor a node index.
    #[error("last node {0} is out of range")]
    LastNode(u8),
    /// A checksum does not match.
    #[error("checksum mismatch")]
    Checksum,
    /// An option is malformed (zero length, wrong length for its kind, or runs past the header).
    #[error("malformed option {kind}")]
    BadOption {
        /// The option's kind byte.
        kind: u8,
    },
    /// A message type this implementation does not know.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// A field holds a value that contradicts another field or the format.
    #[error("invalid value in field `{0}`")]
    Field(&'static str),
    /// The output buffer is too small for what is being emitted.
    #[error("buffer too small: {need} bytes needed, {have} available")]
    BufferTooSmall {
        /// Bytes required.
        need: usize,
        /// Bytes available.
        have: usize,
    },
}

/// Result of wire operations.
pub type Result<T> = core::result::Result<T, WireError>;

/// Fails with [`WireError::Truncated`] unless `buf` has at least `need` bytes.
#[inline]
pub(crate) fn need(buf: &[u8], need: usize) -> Result<()> {
    if buf.len() < need {
        Err(WireError::Truncated { need, have: buf.len() })
    } else {
        Ok(())
    }
}

/// Fails with [`WireError::BufferTooSmall`] unless `buf` has room for `need` bytes.
#[inline]
pub(crate) fn room(buf: &[u8], need: usize) -> Result<()> {
    if buf.len() < need {
        Err(WireError::BufferTooSmall { need, have: buf.len() })
    } else {
        Ok(())
    }
}

#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
pub(crate) fn be64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(w)
}

#[inline]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}
