//! Frames a node builds itself, and its answers to XARP requests and XCMP echo.

use crate::dag::Dag;
use crate::keys::Keypair;
use crate::wire::ethernet::{self, EtherType, EthernetAddress, EthernetRepr};
use crate::wire::integrity;
use crate::wire::xarp::{self, XarpRepr};
use crate::wire::xcmp::XcmpRepr;
use crate::wire::xip::{NextHeader, XipRepr};
use crate::xid::Xid;

/// An Ethernet frame carrying an XIP packet from `src` to `dst` with `payload`, as a node sends
/// its own (last node at the entry, no visited edges, the transport's integrity check filled
/// in when `payload` is a whole STREAM, DGRAM or CHUNK packet); `None` if it would exceed `mtu`
/// or the DAGs cannot be written.
pub fn xip_frame(
    from: EthernetAddress,
    to: EthernetAddress,
    mtu: usize,
    next: NextHeader,
    dst: &Dag,
    src: &Dag,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let x = XipRepr::new(next, dst.clone(), src.clone(), payload.len());
    if x.buffer_len() > mtu {
        return None;
    }
    let mut f = vec![0u8; ethernet::HEADER_LEN + x.buffer_len()];
    EthernetRepr { src: from, dst: to, ethertype: EtherType::Xip }
        .emit(&mut ethernet::Frame::new_unchecked(&mut f[..]))
        .ok()?;
    x.emit(&mut f[ethernet::HEADER_LEN..]).ok()?;
    f[ethernet::HEADER_LEN + x.header_len()..].copy_from_slice(payload);
    integrity::seal_frame(&mut f);
    Some(f)
}

/// An Ethernet frame carrying an XARP message.
pub fn xarp_frame(from: EthernetAddress, to: EthernetAddress, x: &XarpRepr) -> Vec<u8> {
    let mut f = vec![0u8; ethernet::HEADER_LEN + x.buffer_len()];
    // Both fit the buffer made for them.
    let _ = EthernetRepr { src: from, dst: to, ethertype: EtherType::Xarp }
        .emit(&mut ethernet::Frame::new_unchecked(&mut f[..]));
    let _ = x.emit(&mut f[ethernet::HEADER_LEN..]);
    f
}

/// The XCMP payload answering an echo request.
pub fn echo_reply(ident: u16, seq: u16, data: &[u8]) -> Option<Vec<u8>> {
    let reply = XcmpRepr::EchoReply { ident, seq, data };
    let mut buf = vec![0u8; reply.buffer_len()];
    reply.emit(&mut buf).ok()?;
    Some(buf)
}

/// How old a signed XARP binding may get before a new one is signed (signing costs ~20 us).
const RESIGN_MS: u64 = 10_000;

/// Answers "who has HID X" for a node's own HID with a signed binding of HID to MAC (so that
/// nobody can claim another's HID), re-signing only now and then.
#[derive(Debug, Default)]
pub struct XarpResponder {
    /// Recent bindings, one per MAC the node answers for (a router has one per port).
    bindings: Vec<(EthernetAddress, xarp::Binding)>,
}

impl XarpResponder {
    /// The reply frame to a request from `sender` at `sender_mac`, for `hid` at `mac`, signed
    /// with `key` at wall time `wall_ms`.
    pub fn reply(
        &mut self,
        key: &Keypair,
        hid: Xid,
        mac: EthernetAddress,
        wall_ms: u64,
        sender: Xid,
        sender_mac: EthernetAddress,
    ) -> Vec<u8> {
        let binding = match self.bindings.iter().position(|(m, _)| *m == mac) {
            Some(i) if wall_ms.saturating_sub(self.bindings[i].1.timestamp_ms) < RESIGN_MS => {
                self.bindings[i].1
            }
            found => {
                let b = xarp::Binding::sign(key, mac, wall_ms);
                match found {
                    Some(i) => self.bindings[i] = (mac, b),
                    None => self.bindings.push((mac, b)),
                }
                b
            }
        };
        let reply =
            XarpRepr::Reply { sender: hid, sender_mac: mac, target: sender, target_mac: sender_mac, binding };
        xarp_frame(mac, sender_mac, &reply)
    }
}
