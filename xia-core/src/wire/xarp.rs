//! XARP: ARP for XIDs (ethertype 0x9990), how a host finds the MAC address of an HID on its
//! link when there is no router to send through.
//!
//! ```text
//!  0        2          4                       28           34                      58        64
//! +--------+----------+-----------------------+------------+-----------------------+---------+
//! | op     | reserved | sender XID (24)       | sender MAC | target XID (24)       | tgt MAC |
//! +--------+----------+-----------------------+------------+-----------------------+---------+
//! ```
//! op 1 = request (target MAC zero, sent to broadcast), 2 = reply (to the asker).

use super::ethernet::EthernetAddress;
use super::{be16, need, put16, read_xid, room, write_xid, Result, WireError, XID_WIRE_LEN};
use crate::xid::{Principal, Xid};

/// Message length.
pub const LEN: usize = 4 + 2 * (XID_WIRE_LEN + 6);

const SENDER_XID: usize = 4;
const SENDER_MAC: usize = SENDER_XID + XID_WIRE_LEN;
const TARGET_XID: usize = SENDER_MAC + 6;
const TARGET_MAC: usize = TARGET_XID + XID_WIRE_LEN;

/// An XARP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XarpRepr {
    /// "Who has `target`? Tell `sender` at `sender_mac`."
    Request {
        /// The asking host's HID.
        sender: Xid,
        /// Its MAC.
        sender_mac: EthernetAddress,
        /// The HID looked for.
        target: Xid,
    },
    /// "`sender` is at `sender_mac`", to the asker.
    Reply {
        /// The answering host's HID.
        sender: Xid,
        /// Its MAC.
        sender_mac: EthernetAddress,
        /// The asker's HID.
        target: Xid,
        /// The asker's MAC.
        target_mac: EthernetAddress,
    },
}

fn mac_at(b: &[u8], at: usize) -> EthernetAddress {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[at..at + 6]);
    EthernetAddress(m)
}

impl XarpRepr {
    /// Reads a message (the Ethernet payload; padding after it is ignored).
    pub fn parse(b: &[u8]) -> Result<XarpRepr> {
        need(b, LEN)?;
        if be16(b, 2) != 0 {
            return Err(WireError::Field("XARP reserved"));
        }
        let (sender, target) = (read_xid(b, SENDER_XID), read_xid(b, TARGET_XID));
        if sender.principal() != Principal::Hid || target.principal() != Principal::Hid {
            return Err(WireError::Field("XARP XIDs must be HIDs"));
        }
        let sender_mac = mac_at(b, SENDER_MAC);
        if !sender_mac.is_unicast() {
            return Err(WireError::Field("XARP sender MAC"));
        }
        match be16(b, 0) {
            1 => Ok(XarpRepr::Request { sender, sender_mac, target }),
            2 => Ok(XarpRepr::Reply { sender, sender_mac, target, target_mac: mac_at(b, TARGET_MAC) }),
            op => Err(WireError::UnknownType(op.min(255) as u8)),
        }
    }

    /// Message length.
    pub const fn buffer_len(&self) -> usize {
        LEN
    }

    /// Writes the message into `buf[..LEN]`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        room(buf, LEN)?;
        let (op, sender, sender_mac, target, target_mac) = match *self {
            XarpRepr::Request { sender, sender_mac, target } => {
                (1, sender, sender_mac, target, EthernetAddress([0; 6]))
            }
            XarpRepr::Reply { sender, sender_mac, target, target_mac } => {
                (2, sender, sender_mac, target, target_mac)
            }
        };
        put16(buf, 0, op);
        put16(buf, 2, 0);
        write_xid(buf, SENDER_XID, &sender);
        buf[SENDER_MAC..SENDER_MAC + 6].copy_from_slice(&sender_mac.0);
        write_xid(buf, TARGET_XID, &target);
        buf[TARGET_MAC..TARGET_MAC + 6].copy_from_slice(&target_mac.0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let a = Xid::new(Principal::Hid, [1; 20]);
        let b = Xid::new(Principal::Hid, [2; 20]);
        let ma = EthernetAddress([2, 0, 0, 0, 0, 1]);
        let req = XarpRepr::Request { sender: a, sender_mac: ma, target: b };
        let mut buf = [0u8; LEN];
        req.emit(&mut buf).unwrap();
        assert_eq!(&buf[..4], &[0, 1, 0, 0]);
        assert_eq!(&buf[4..8], &0x11u32.to_be_bytes());
        assert_eq!(&buf[SENDER_MAC..SENDER_MAC + 6], &ma.0);
        assert_eq!(XarpRepr::parse(&buf).unwrap(), req);
        let rep = XarpRepr::Reply {
            sender: b,
            sender_mac: EthernetAddress([2, 0, 0, 0, 0, 2]),
            target: a,
            target_mac: ma,
        };
        rep.emit(&mut buf).unwrap();
        assert_eq!(XarpRepr::parse(&buf).unwrap(), rep);
    }

    #[test]
    fn bad_messages() {
        let mut buf = [0u8; LEN];
        assert!(XarpRepr::parse(&buf[..LEN - 1]).is_err());
        let req = XarpRepr::Request {
            sender: Xid::new(Principal::Hid, [1; 20]),
            sender_mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            target: Xid::new(Principal::Ad, [2; 20]),
        };
        req.emit(&mut buf).unwrap();
        assert!(matches!(XarpRepr::parse(&buf), Err(WireError::Field(_))));
        let good = XarpRepr::Request {
            sender: Xid::new(Principal::Hid, [1; 20]),
            sender_mac: EthernetAddress([2, 0, 0, 0, 0, 1]),
            target: Xid::new(Principal::Hid, [2; 20]),
        };
        good.emit(&mut buf).unwrap();
        buf[1] = 7;
        assert_eq!(XarpRepr::parse(&buf).unwrap_err(), WireError::UnknownType(7));
        buf[1] = 1;
        buf[SENDER_MAC] = 0xff;
        assert!(matches!(XarpRepr::parse(&buf), Err(WireError::Field(_))));
    }
}
