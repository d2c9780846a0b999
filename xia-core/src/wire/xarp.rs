//! XARP: ARP for XIDs (ethertype 0x9990), how a host finds the MAC address of an HID on its
//! link when there is no router to send through.
//!
//! ```text
//!  0        2          4                       28           34                      58        64
//! +--------+----------+-----------------------+------------+-----------------------+---------+
//! | op     | reserved | sender XID (24)       | sender MAC | target XID (24)       | tgt MAC |
//! +--------+----------+-----------------------+------------+-----------------------+---------+
//! replies go on:
//!  64              72                   104                                        168
//! +---------------+--------------------+------------------------------------------+
//! | timestamp (ms)| public key (32)    | signature (64)                           |
//! +---------------+--------------------+------------------------------------------+
//! ```
//! op 1 = request (to broadcast, target MAC zero), 2 = reply (to the asker).
//!
//! HIDs are self-certifying, so unlike ARP a reply proves itself: the sender signs its HID, its
//! MAC and the time with the key behind the HID. Nobody on the link can claim another host's HID,
//! and an old reply stops being believed once its time is past the receiver's window. The
//! signature does not cover the target fields, so one signature answers every asker for a while.

use super::ethernet::EthernetAddress;
use super::{be16, be64, need, put16, put64, read_xid, room, write_xid, Result, WireError, XID_WIRE_LEN};
use crate::keys::{Keypair, PublicKey, Signature, PUBLIC_KEY_LEN, SIGNATURE_LEN};
use crate::xid::{Principal, Xid};

/// Request length.
pub const LEN: usize = 4 + 2 * (XID_WIRE_LEN + 6);
/// Reply length.
pub const REPLY_LEN: usize = LEN + 8 + PUBLIC_KEY_LEN + SIGNATURE_LEN;

const SENDER_XID: usize = 4;
const SENDER_MAC: usize = SENDER_XID + XID_WIRE_LEN;
const TARGET_XID: usize = SENDER_MAC + 6;
const TARGET_MAC: usize = TARGET_XID + XID_WIRE_LEN;
const TIMESTAMP: usize = LEN;
const KEY: usize = TIMESTAMP + 8;
const SIG: usize = KEY + PUBLIC_KEY_LEN;
const CONTEXT: &[u8] = b"XIA XARP v1\0";

/// A host's signed statement "HID is at MAC, as of this time" (what replies carry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// Milliseconds since the Unix epoch when it was signed.
    pub timestamp_ms: u64,
    /// The key behind the HID.
    pub public_key: PublicKey,
    /// Over the context, the HID, the MAC and the time.
    pub signature: Signature,
}

fn signed_bytes(hid: &Xid, mac: &EthernetAddress, timestamp_ms: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + XID_WIRE_LEN + 6 + 8);
    m.extend_from_slice(CONTEXT);
    let mut x = [0u8; XID_WIRE_LEN];
    write_xid(&mut x, 0, hid);
    m.extend_from_slice(&x);
    m.extend_from_slice(&mac.0);
    m.extend_from_slice(&timestamp_ms.to_be_bytes());
    m
}

impl Binding {
    /// Signs "`key`'s HID is at `mac`" at `timestamp_ms`.
    pub fn sign(key: &Keypair, mac: EthernetAddress, timestamp_ms: u64) -> Binding {
        let hid = key.xid(Principal::Hid);
        Binding {
            timestamp_ms,
            public_key: key.public(),
            signature: key.sign(&signed_bytes(&hid, &mac, timestamp_ms)),
        }
    }

    /// True when the key owns `hid` and signed `hid` at `mac` at this binding's time.
    pub fn verify(&self, hid: &Xid, mac: &EthernetAddress) -> bool {
        self.public_key.verify_for(hid, &signed_bytes(hid, mac, self.timestamp_ms), &self.signature).is_ok()
    }
}

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
    /// "`sender` is at `sender_mac`", to the asker, with the proof.
    Reply {
        /// The answering host's HID.
        sender: Xid,
        /// Its MAC.
        sender_mac: EthernetAddress,
        /// The asker's HID.
        target: Xid,
        /// The asker's MAC.
        target_mac: EthernetAddress,
        /// The signed statement (check it with [`Binding::verify`]).
        binding: Binding,
    },
}

fn mac_at(b: &[u8], at: usize) -> EthernetAddress {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[at..at + 6]);
    EthernetAddress(m)
}

impl XarpRepr {
    /// Reads a message (the Ethernet payload; padding after it is ignored). The signature of a
    /// reply is not checked here: see [`Binding::verify`].
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
            2 => {
                need(b, REPLY_LEN)?;
                let mut pk = [0u8; PUBLIC_KEY_LEN];
                pk.copy_from_slice(&b[KEY..KEY + PUBLIC_KEY_LEN]);
                let mut sig = [0u8; SIGNATURE_LEN];
                sig.copy_from_slice(&b[SIG..SIG + SIGNATURE_LEN]);
                Ok(XarpRepr::Reply {
                    sender,
                    sender_mac,
                    target,
                    target_mac: mac_at(b, TARGET_MAC),
                    binding: Binding {
                        timestamp_ms: be64(b, TIMESTAMP),
                        public_key: PublicKey(pk),
                        signature: Signature(sig),
                    },
                })
            }
            op => Err(WireError::UnknownType(op.min(255) as u8)),
        }
    }

    /// Message length.
    pub const fn buffer_len(&self) -> usize {
        match self {
            XarpRepr::Request { .. } => LEN,
            XarpRepr::Reply { .. } => REPLY_LEN,
        }
    }

    /// Writes the message into `buf[..buffer_len()]`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        room(buf, self.buffer_len())?;
        let (op, sender, sender_mac, target, target_mac) = match *self {
            XarpRepr::Request { sender, sender_mac, target } => {
                (1, sender, sender_mac, target, EthernetAddress([0; 6]))
            }
            XarpRepr::Reply { sender, sender_mac, target, target_mac, .. } => {
                (2, sender, sender_mac, target, target_mac)
            }
        };
        put16(buf, 0, op);
        put16(buf, 2, 0);
        write_xid(buf, SENDER_XID, &sender);
        buf[SENDER_MAC..SENDER_MAC + 6].copy_from_slice(&sender_mac.0);
        write_xid(buf, TARGET_XID, &target);
        buf[TARGET_MAC..TARGET_MAC + 6].copy_from_slice(&target_mac.0);
        if let XarpRepr::Reply { binding, .. } = self {
            put64(buf, TIMESTAMP, binding.timestamp_ms);
            buf[KEY..KEY + PUBLIC_KEY_LEN].copy_from_slice(&binding.public_key.0);
            buf[SIG..SIG + SIGNATURE_LEN].copy_from_slice(&binding.signature.0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let a = Xid::new(Principal::Hid, [1; 20]);
        let kb = Keypair::from_seed([2; 32]);
        let b = kb.xid(Principal::Hid);
        let ma = EthernetAddress([2, 0, 0, 0, 0, 1]);
        let mb = EthernetAddress([2, 0, 0, 0, 0, 2]);
        let req = XarpRepr::Request { sender: a, sender_mac: ma, target: b };
        let mut buf = [0u8; REPLY_LEN];
        req.emit(&mut buf).unwrap();
        assert_eq!(&buf[..4], &[0, 1, 0, 0]);
        assert_eq!(&buf[4..8], &0x11u32.to_be_bytes());
        assert_eq!(&buf[SENDER_MAC..SENDER_MAC + 6], &ma.0);
        assert_eq!(XarpRepr::parse(&buf[..LEN]).unwrap(), req);
        let binding = Binding::sign(&kb, mb, 1_800_000_000_000);
        let rep = XarpRepr::Reply { sender: b, sender_mac: mb, target: a, target_mac: ma, binding };
        rep.emit(&mut buf).unwrap();
        let parsed = XarpRepr::parse(&buf).unwrap();
        assert_eq!(parsed, rep);
        assert!(binding.verify(&b, &mb));
    }

    #[test]
    fn forged_bindings_do_not_verify() {
        let kb = Keypair::from_seed([2; 32]);
        let b = kb.xid(Principal::Hid);
        let mb = EthernetAddress([2, 0, 0, 0, 0, 2]);
        let evil = EthernetAddress([2, 0, 0, 0, 0, 0x66]);
        let good = Binding::sign(&kb, mb, 5);
        // Another MAC, another time, another HID, another key: all refused.
        assert!(!good.verify(&b, &evil));
        assert!(!Binding { timestamp_ms: 6, ..good }.verify(&b, &mb));
        assert!(!good.verify(&Xid::new(Principal::Hid, [9; 20]), &mb));
        let mallory = Keypair::from_seed([6; 32]);
        assert!(!Binding::sign(&mallory, evil, 5).verify(&b, &evil));
    }

    #[test]
    fn bad_messages() {
        let mut buf = [0u8; REPLY_LEN];
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
        // A reply cut before its proof.
        buf[1] = 2;
        assert!(matches!(XarpRepr::parse(&buf[..LEN + 8]), Err(WireError::Truncated { .. })));
        buf[1] = 1;
        buf[SENDER_MAC] = 0xff;
        assert!(matches!(XarpRepr::parse(&buf), Err(WireError::Field(_))));
    }
}
