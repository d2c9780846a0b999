//! XCMP, XIA's ICMP.
//!
//! ```text
//! +------+------+-------------+
//! | type | code |  checksum   |   internet checksum over the whole XCMP message
//! +------+------+-------------+
//! | echo: identifier, sequence | errors: 4 zero bytes
//! +---------------------------+
//! | echo: data (timestamp, pattern) | errors: original XIP header + first 8 payload bytes
//! ```

use super::checksum;
use super::{be16, need, put16, room, Result, WireError};

/// Fixed part: type, code, checksum and the 4-byte rest-of-header.
pub const HEADER_LEN: usize = 8;
/// Bytes of the original payload quoted in error messages (after the original XIP header).
pub const QUOTED_PAYLOAD: usize = 8;

/// XCMP message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Message {
    /// Echo reply (0).
    EchoReply,
    /// Destination unreachable (3).
    DstUnreachable,
    /// Redirect (5).
    Redirect,
    /// Echo request (8).
    EchoRequest,
    /// Time exceeded (11).
    TimeExceeded,
    /// Any other type.
    Unknown(u8),
}

impl From<u8> for Message {
    fn from(v: u8) -> Self {
        match v {
            0 => Message::EchoReply,
            3 => Message::DstUnreachable,
            5 => Message::Redirect,
            8 => Message::EchoRequest,
            11 => Message::TimeExceeded,
            other => Message::Unknown(other),
        }
    }
}

impl From<Message> for u8 {
    fn from(v: Message) -> Self {
        match v {
            Message::EchoReply => 0,
            Message::DstUnreachable => 3,
            Message::Redirect => 5,
            Message::EchoRequest => 8,
            Message::TimeExceeded => 11,
            Message::Unknown(other) => other,
        }
    }
}

/// Codes of destination-unreachable messages (the prototype's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unreachable {
    /// No route to the AD (0).
    Net,
    /// No route to the host (1).
    Host,
    /// Protocol not served (2).
    Protocol,
    /// The intent (SID, CID...) cannot be reached (3).
    Intent,
    /// The DAG could not be processed (16).
    Unspecified,
    /// Any other code.
    Unknown(u8),
}

impl From<u8> for Unreachable {
    fn from(v: u8) -> Self {
        match v {
            0 => Unreachable::Net,
            1 => Unreachable::Host,
            2 => Unreachable::Protocol,
            3 => Unreachable::Intent,
            16 => Unreachable::Unspecified,
            other => Unreachable::Unknown(other),
        }
    }
}

impl From<Unreachable> for u8 {
    fn from(v: Unreachable) -> Self {
        match v {
            Unreachable::Net => 0,
            Unreachable::Host => 1,
            Unreachable::Protocol => 2,
            Unreachable::Intent => 3,
            Unreachable::Unspecified => 16,
            Unreachable::Unknown(other) => other,
        }
    }
}

/// A view of an XCMP message.
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

    /// Checks that the fixed header fits.
    pub fn check_len(&self) -> Result<()> {
        need(self.buffer.as_ref(), HEADER_LEN)
    }

    /// Message type.
    pub fn msg_type(&self) -> Message {
        self.buffer.as_ref()[0].into()
    }

    /// Message code.
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    /// True when the checksum is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.buffer.as_ref())
    }

    /// Echo identifier.
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }

    /// Echo sequence number.
    pub fn echo_seq(&self) -> u16 {
        be16(self.buffer.as_ref(), 6)
    }

    /// Bytes after the 8-byte fixed part.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Computes and stores the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        let b = self.buffer.as_mut();
        put16(b, 2, 0);
        let c = checksum::checksum(b);
        put16(b, 2, c);
    }
}

/// The parsed meaning of an XCMP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XcmpRepr<'a> {
    /// Echo request (what `xping` sends).
    EchoRequest {
        /// Identifier (per xping process).
        ident: u16,
        /// Sequence number.
        seq: u16,
        /// Timestamp and pattern.
        data: &'a [u8],
    },
    /// Echo reply: the request's fields sent back.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq: u16,
        /// The request's data.
        data: &'a [u8],
    },
    /// Destination unreachable.
    DstUnreachable {
        /// Why.
        reason: Unreachable,
        /// The original XIP header and the first payload bytes.
        original: &'a [u8],
    },
    /// Hop limit exhausted in transit (code 0) or reassembly (code 1).
    TimeExceeded {
        /// Code.
        code: u8,
        /// The original XIP header and the first payload bytes.
        original: &'a [u8],
    },
    /// A better first hop exists.
    Redirect {
        /// Code.
        code: u8,
        /// The original XIP header and the first payload bytes.
        original: &'a [u8],
    },
    /// A type this implementation does not interpret, kept whole.
    Other {
        /// Type.
        msg_type: u8,
        /// Code.
        code: u8,
        /// The 4 rest-of-header bytes and the data.
        body: &'a [u8],
    },
}

impl<'a> XcmpRepr<'a> {
    /// Reads a message and checks its checksum.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Packet<&'a T>) -> Result<XcmpRepr<'a>> {
        p.check_len()?;
        if !p.verify_checksum() {
            return Err(WireError::Checksum);
        }
        let b: &'a [u8] = p.buffer.as_ref();
        let data = &b[HEADER_LEN..];
        // Fields this implementation always writes as zero must read as zero, so that what
        // parses re-emits to the same bytes.
        match p.msg_type() {
            Message::EchoRequest | Message::EchoReply if p.msg_code() != 0 => {
                return Err(WireError::Field("XCMP echo code"));
            }
            Message::DstUnreachable | Message::TimeExceeded | Message::Redirect if b[4..8] != [0; 4] => {
                return Err(WireError::Field("XCMP unused bytes"));
            }
            _ => {}
        }
        Ok(match p.msg_type() {
            Message::EchoRequest => XcmpRepr::EchoRequest { ident: p.echo_ident(), seq: p.echo_seq(), data },
            Message::EchoReply => XcmpRepr::EchoReply { ident: p.echo_ident(), seq: p.echo_seq(), data },
            Message::DstUnreachable => {
                XcmpRepr::DstUnreachable { reason: p.msg_code().into(), original: data }
            }
            Message::TimeExceeded => XcmpRepr::TimeExceeded { code: p.msg_code(), original: data },
            Message::Redirect => XcmpRepr::Redirect { code: p.msg_code(), original: data },
            Message::Unknown(t) => XcmpRepr::Other { msg_type: t, code: p.msg_code(), body: &b[4..] },
        })
    }

    /// An error message quoting `packet` (an XIP packet): its header and first payload bytes.
    pub fn quote(packet: &'a [u8]) -> &'a [u8] {
        let p = super::xip::Packet::new_unchecked(packet);
        let end = if packet.len() >= super::xip::FIXED_HEADER_LEN {
            p.header_len().saturating_add(QUOTED_PAYLOAD)
        } else {
            packet.len()
        };
        &packet[..end.min(packet.len())]
    }

    /// Message length.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + match self {
                XcmpRepr::EchoRequest { data, .. } | XcmpRepr::EchoReply { data, .. } => data.len(),
                XcmpRepr::DstUnreachable { original, .. }
                | XcmpRepr::TimeExceeded { original, .. }
                | XcmpRepr::Redirect { original, .. } => original.len(),
                XcmpRepr::Other { body, .. } => body.len().saturating_sub(4),
            }
    }

    /// Writes the message, checksum included, into `buf[..buffer_len()]`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let len = self.buffer_len();
        if let XcmpRepr::Other { body, .. } = self {
            if body.len() < 4 {
                return Err(WireError::Field("XCMP body shorter than 4 bytes"));
            }
        }
        room(buf, len)?;
        let buf = &mut buf[..len];
        let (t, code): (Message, u8) = match *self {
            XcmpRepr::EchoRequest { .. } => (Message::EchoRequest, 0),
            XcmpRepr::EchoReply { .. } => (Message::EchoReply, 0),
            XcmpRepr::DstUnreachable { reason, .. } => (Message::DstUnreachable, reason.into()),
            XcmpRepr::TimeExceeded { code, .. } => (Message::TimeExceeded, code),
            XcmpRepr::Redirect { code, .. } => (Message::Redirect, code),
            XcmpRepr::Other { msg_type, code, .. } => (Message::Unknown(msg_type), code),
        };
        buf[0] = t.into();
        buf[1] = code;
        match *self {
            XcmpRepr::EchoRequest { ident, seq, data } | XcmpRepr::EchoReply { ident, seq, data } => {
                put16(buf, 4, ident);
                put16(buf, 6, seq);
                buf[HEADER_LEN..].copy_from_slice(data);
            }
            XcmpRepr::DstUnreachable { original, .. }
            | XcmpRepr::TimeExceeded { original, .. }
            | XcmpRepr::Redirect { original, .. } => {
                buf[4..8].fill(0);
                buf[HEADER_LEN..].copy_from_slice(original);
            }
            XcmpRepr::Other { body, .. } => buf[4..].copy_from_slice(body),
        }
        Packet::new_unchecked(buf).fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Echo request id 0x1234 seq 1 with data "abcd", checksum computed by hand:
    // words 0800 0000 1234 0001 6162 6364 sum to 0xdefb, complemented 0x2104.
    static ECHO: [u8; 12] = [8, 0, 0x21, 0x04, 0x12, 0x34, 0x00, 0x01, b'a', b'b', b'c', b'd'];

    #[test]
    fn test_deconstruct() {
        let p = Packet::new_checked(&ECHO[..]).unwrap();
        assert_eq!(p.msg_type(), Message::EchoRequest);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.checksum(), 0x2104);
        assert!(p.verify_checksum());
        assert_eq!(p.echo_ident(), 0x1234);
        assert_eq!(p.echo_seq(), 1);
        assert_eq!(p.data(), b"abcd");
    }

    #[test]
    fn test_parse_and_emit() {
        let r = XcmpRepr::parse(&Packet::new_checked(&ECHO[..]).unwrap()).unwrap();
        assert_eq!(r, XcmpRepr::EchoRequest { ident: 0x1234, seq: 1, data: b"abcd" });
        let mut buf = [0u8; 12];
        r.emit(&mut buf).unwrap();
        assert_eq!(buf, ECHO);
    }

    #[test]
    fn bad_checksum_and_short_input() {
        let mut bad = ECHO;
        bad[11] ^= 0xff;
        assert_eq!(XcmpRepr::parse(&Packet::new_unchecked(&bad[..])).unwrap_err(), WireError::Checksum);
        assert_eq!(
            XcmpRepr::parse(&Packet::new_unchecked(&ECHO[..7])).unwrap_err(),
            WireError::Truncated { need: 8, have: 7 }
        );
        let mut small = [0u8; 4];
        assert!(matches!(
            XcmpRepr::EchoReply { ident: 1, seq: 2, data: &[] }.emit(&mut small),
            Err(WireError::BufferTooSmall { .. })
        ));
    }

    #[test]
    fn nonzero_reserved_fields_are_refused() {
        let mut v = ECHO;
        v[1] = 7;
        Packet::new_unchecked(&mut v[..]).fill_checksum();
        assert_eq!(
            XcmpRepr::parse(&Packet::new_unchecked(&v[..])).unwrap_err(),
            WireError::Field("XCMP echo code")
        );
        let mut v = [3u8, 1, 0, 0, 0, 0, 0, 1, 9];
        Packet::new_unchecked(&mut v[..]).fill_checksum();
        assert_eq!(
            XcmpRepr::parse(&Packet::new_unchecked(&v[..])).unwrap_err(),
            WireError::Field("XCMP unused bytes")
        );
    }

    #[test]
    fn errors_round_trip() {
        let original = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        for r in [
            XcmpRepr::DstUnreachable { reason: Unreachable::Host, original: &original },
            XcmpRepr::TimeExceeded { code: 0, original: &original },
            XcmpRepr::Redirect { code: 1, original: &original },
            XcmpRepr::Other { msg_type: 42, code: 7, body: &original },
        ] {
            let mut buf = vec![0u8; r.buffer_len()];
            r.emit(&mut buf).unwrap();
            assert_eq!(buf[4..8] == [0; 4], !matches!(r, XcmpRepr::Other { .. }));
            assert_eq!(XcmpRepr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap(), r);
        }
    }

    #[test]
    fn quote_takes_header_and_eight_bytes() {
        let pkt: Vec<u8> = {
            let mut v = vec![1, 0, 0, 20, 250, 1, 1, 0x7e];
            v.extend_from_slice(&[0u8; 56]);
            v.extend_from_slice(&[9u8; 20]);
            v
        };
        assert_eq!(XcmpRepr::quote(&pkt).len(), 8 + 56 + 8);
        assert_eq!(XcmpRepr::quote(&pkt[..5]).len(), 5);
        assert_eq!(XcmpRepr::quote(&pkt[..70]).len(), 70);
    }
}
