//! The CHUNK header (next header 0x0C): receiver-driven content transfer by CID.
//!
//! The CID is not in this header: a request goes to a DAG whose intent is the CID, and a
//! response comes from a DAG whose intent is the CID, so routers can recognise (and cache)
//! content by looking at the XIP addresses alone.
//!
//! ```text
//!  0      1      2      3      4              8              12             16             20
//! +------+------+------+------+--------------+--------------+--------------+--------------+-----
//! | next | hlen | type | code | request id   | offset       | length       | check        | data
//! +------+------+------+------+--------------+--------------+--------------+--------------+-----
//! ```
//! `check` is the CRC32C of [`super::integrity`], filled in once the whole packet is written.
//! - request (1): send bytes `offset .. offset+length` of the chunk (`length` 0: to the end);
//! - response (2): `length` is the chunk's total length; the data is the bytes at `offset`. A
//!   chunk larger than a frame arrives as many responses. `code` holds flags: [`NO_STORE`] (bit
//!   0) says the publisher wants no copy kept on the way (routers forward it and never cache
//!   it: a VM's memory in migration, anything single-use or private); other bits are zero;
//! - negative reply (3): `code` says why (not found, too large, busy).
//!
//! `request id` is echoed in responses, so a receiver takes RTT samples and ignores stale answers.

use super::{be32, need, put32, room, Result, WireError};

/// Header length (with the check).
pub const HEADER_LEN: usize = 20;

/// Response flag (in `code`): nodes on the path must not keep a copy of the chunk.
pub const NO_STORE: u8 = 0x01;
/// The `type` of a response (for code that reads the header's bytes itself).
pub const TYPE_RESPONSE: u8 = kind::RESPONSE;

/// True when `header` (a CHUNK header, at least its first four bytes) is a response marked
/// [`NO_STORE`]: nodes forwarding it have nothing to watch in it.
pub fn is_no_store_response(header: &[u8]) -> bool {
    header.len() >= 4 && header[2] == kind::RESPONSE && header[3] & NO_STORE != 0
}

/// Why a node refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NackReason {
    /// The node does not hold the chunk (1).
    NotFound,
    /// The requested range is outside the chunk (2).
    BadRange,
    /// The node is overloaded; retry later (3).
    Busy,
    /// Any other code.
    Unknown(u8),
}

impl From<u8> for NackReason {
    fn from(v: u8) -> Self {
        match v {
            1 => NackReason::NotFound,
            2 => NackReason::BadRange,
            3 => NackReason::Busy,
            other => NackReason::Unknown(other),
        }
    }
}

impl From<NackReason> for u8 {
    fn from(v: NackReason) -> Self {
        match v {
            NackReason::NotFound => 1,
            NackReason::BadRange => 2,
            NackReason::Busy => 3,
            NackReason::Unknown(other) => other,
        }
    }
}

mod kind {
    pub const REQUEST: u8 = 1;
    pub const RESPONSE: u8 = 2;
    pub const NACK: u8 = 3;
}

/// A view of a CHUNK packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the fixed header and the header length field.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        need(b, HEADER_LEN)?;
        let h = self.header_len();
        if h < HEADER_LEN {
            return Err(WireError::HeaderLength(h));
        }
        need(b, h)
    }

    /// Header length in bytes.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[1]) * 4
    }

    /// Message type byte.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[2]
    }

    /// Code byte (negative replies: why; responses: flags).
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[3]
    }

    /// Request id.
    pub fn request_id(&self) -> u32 {
        be32(self.buffer.as_ref(), 4)
    }

    /// Offset in the chunk.
    pub fn offset(&self) -> u32 {
        be32(self.buffer.as_ref(), 8)
    }

    /// Length field (request: bytes asked; response: chunk length).
    pub fn length(&self) -> u32 {
        be32(self.buffer.as_ref(), 12)
    }

    /// Data after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

/// The parsed meaning of a CHUNK packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkRepr<'a> {
    /// Asks for a byte range of the chunk named by the destination intent.
    Request {
        /// Echoed in the answers.
        request_id: u32,
        /// First byte wanted.
        offset: u32,
        /// Bytes wanted; 0 means "to the end".
        length: u32,
    },
    /// A piece of the chunk named by the source intent. `total_len` comes from the network:
    /// receivers bound what they allocate by what they asked for, never by this field.
    Response {
        /// The request this answers.
        request_id: u32,
        /// Where `data` sits in the chunk.
        offset: u32,
        /// Total length of the chunk.
        total_len: u32,
        /// The publisher asks nodes on the path not to keep a copy ([`NO_STORE`]).
        no_store: bool,
        /// The bytes.
        data: &'a [u8],
    },
    /// The node will not serve the request.
    Nack {
        /// The request this answers.
        request_id: u32,
        /// Why.
        reason: NackReason,
    },
}

impl<'a> ChunkRepr<'a> {
    /// Reads a packet and checks that a response's piece lies inside its chunk.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Packet<&'a T>) -> Result<ChunkRepr<'a>> {
        p.check_len()?;
        let b: &'a [u8] = p.buffer.as_ref();
        if p.header_len() != HEADER_LEN {
            return Err(WireError::HeaderLength(p.header_len()));
        }
        if b[0] != 0 {
            return Err(WireError::Field("CHUNK next header"));
        }
        let data = &b[HEADER_LEN..];
        let flags = match p.msg_type() {
            kind::RESPONSE => NO_STORE,
            _ => 0,
        };
        if p.msg_type() != kind::NACK && p.code() & !flags != 0 {
            return Err(WireError::Field("CHUNK code"));
        }
        match p.msg_type() {
            kind::REQUEST => {
                if !data.is_empty() {
                    return Err(WireError::Field("data in a chunk request"));
                }
                Ok(ChunkRepr::Request { request_id: p.request_id(), offset: p.offset(), length: p.length() })
            }
            kind::RESPONSE => {
                let end = u64::from(p.offset()) + data.len() as u64;
                if end > u64::from(p.length()) {
                    return Err(WireError::Field("chunk response beyond the chunk's length"));
                }
                Ok(ChunkRepr::Response {
                    request_id: p.request_id(),
                    offset: p.offset(),
                    total_len: p.length(),
                    no_store: p.code() & NO_STORE != 0,
                    data,
                })
            }
            kind::NACK if p.offset() != 0 || p.length() != 0 || !data.is_empty() => {
                Err(WireError::Field("CHUNK negative reply fields"))
            }
            kind::NACK => Ok(ChunkRepr::Nack { request_id: p.request_id(), reason: p.code().into() }),
            t => Err(WireError::UnknownType(t)),
        }
    }

    /// Header plus data.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + match self {
                ChunkRepr::Response { data, .. } => data.len(),
                _ => 0,
            }
    }

    /// Writes the packet into `buf[..buffer_len()]`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        room(buf, self.buffer_len())?;
        let (t, code, id, off, len) = match *self {
            ChunkRepr::Request { request_id, offset, length } => {
                (kind::REQUEST, 0, request_id, offset, length)
            }
            ChunkRepr::Response { request_id, offset, total_len, no_store, data } => {
                if u64::from(offset) + data.len() as u64 > u64::from(total_len) {
                    return Err(WireError::Field("chunk response beyond the chunk's length"));
                }
                buf[HEADER_LEN..HEADER_LEN + data.len()].copy_from_slice(data);
                let flags = if no_store { NO_STORE } else { 0 };
                (kind::RESPONSE, flags, request_id, offset, total_len)
            }
            ChunkRepr::Nack { request_id, reason } => (kind::NACK, reason.into(), request_id, 0, 0),
        };
        buf[..4].copy_from_slice(&[0, (HEADER_LEN / 4) as u8, t, code]);
        put32(buf, 4, id);
        put32(buf, 8, off);
        put32(buf, 12, len);
        // The check is zero until the packet is sealed.
        put32(buf, 16, 0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static RESPONSE: [u8; 23] = [
        0, 5, 2, 0, // next, hlen 5 words, response
        0, 0, 0, 7, // request id
        0, 0, 0x10, 0, // offset 4096
        0, 0x10, 0, 0, // chunk length 1 MiB
        0, 0, 0, 0, // check (not sealed)
        1, 2, 3,
    ];

    #[test]
    fn test_deconstruct() {
        let p = Packet::new_checked(&RESPONSE[..]).unwrap();
        assert_eq!(p.msg_type(), 2);
        assert_eq!(p.request_id(), 7);
        assert_eq!(p.offset(), 4096);
        assert_eq!(p.length(), 1 << 20);
        assert_eq!(p.payload(), &[1, 2, 3]);
    }

    #[test]
    fn test_parse_and_emit() {
        let r = ChunkRepr::parse(&Packet::new_checked(&RESPONSE[..]).unwrap()).unwrap();
        assert_eq!(
            r,
            ChunkRepr::Response {
                request_id: 7,
                offset: 4096,
                total_len: 1 << 20,
                no_store: false,
                data: &[1, 2, 3]
            }
        );
        let mut buf = [0u8; 23];
        r.emit(&mut buf).unwrap();
        assert_eq!(buf, RESPONSE);
        for r in [
            ChunkRepr::Response { request_id: 7, offset: 0, total_len: 3, no_store: true, data: &[1, 2, 3] },
            ChunkRepr::Request { request_id: 1, offset: 0, length: 0 },
            ChunkRepr::Nack { request_id: 2, reason: NackReason::NotFound },
            ChunkRepr::Nack { request_id: 2, reason: NackReason::Unknown(99) },
        ] {
            let mut buf = vec![0u8; r.buffer_len()];
            r.emit(&mut buf).unwrap();
            assert_eq!(ChunkRepr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap(), r);
        }
    }

    #[test]
    fn lying_headers_are_typed_errors() {
        // Piece running past the chunk's length.
        let mut v = RESPONSE;
        v[12..16].copy_from_slice(&4097u32.to_be_bytes());
        assert!(matches!(ChunkRepr::parse(&Packet::new_unchecked(&v[..])), Err(WireError::Field(_))));
        // Offset near u32::MAX must not overflow.
        let mut v = RESPONSE;
        v[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        v[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(ChunkRepr::parse(&Packet::new_unchecked(&v[..])), Err(WireError::Field(_))));
        let mut v = RESPONSE;
        v[2] = 9;
        assert_eq!(ChunkRepr::parse(&Packet::new_unchecked(&v[..])).unwrap_err(), WireError::UnknownType(9));
        let mut v = RESPONSE;
        v[1] = 2;
        assert_eq!(Packet::new_checked(&v[..]).unwrap_err(), WireError::HeaderLength(8));
        let mut v = RESPONSE;
        v[3] = NO_STORE;
        assert!(matches!(
            ChunkRepr::parse(&Packet::new_unchecked(&v[..])),
            Ok(ChunkRepr::Response { no_store: true, .. })
        ));
        for code in [2, 0x80] {
            let mut v = RESPONSE;
            v[3] = code;
            assert_eq!(
                ChunkRepr::parse(&Packet::new_unchecked(&v[..])).unwrap_err(),
                WireError::Field("CHUNK code")
            );
        }
        let mut v = RESPONSE;
        v[2] = 1; // a request
        v[3] = NO_STORE;
        v[12..16].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(
            ChunkRepr::parse(&Packet::new_unchecked(&v[..20])).unwrap_err(),
            WireError::Field("CHUNK code")
        );
        assert!(matches!(Packet::new_checked(&RESPONSE[..19]), Err(WireError::Truncated { .. })));
        let bad =
            ChunkRepr::Response { request_id: 0, offset: 2, total_len: 3, no_store: false, data: &[1, 2] };
        assert!(bad.emit(&mut [0u8; 22]).is_err());
    }
}
