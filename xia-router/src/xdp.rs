//! The XDP fast path: forwarding decisions the router has made, replayed in the kernel.
//!
//! Every port gets a small eBPF program at the driver's receive hook (XDP). It looks the
//! arriving packet's forwarding key up in a table the daemon fills: the XIP header's last-node
//! byte followed by the destination DAG's nodes, exactly as on the wire. On a hit it does what
//! the router did to the first packet with that key (hop limit minus one, the new last node,
//! the next hop's and the port's MACs) and hands the frame to the outgoing port's driver
//! (`bpf_redirect`): no socket buffer, no copy to user space, no system call. Anything else
//! goes up to the daemon as before (`XDP_PASS`): unknown keys, CHUNK packets (the chunk cache
//! watches and answers them) except responses marked no-store (their publisher wants no copy
//! kept: nothing to watch), hop limits about to run out (time exceeded is the daemon's),
//! frames not addressed to the port, frames too long for the outgoing port, DAGs of more than
//! [`MAX_NODES`] nodes, lengths that are not the frame's (as the daemon checks them).
//!
//! The daemon learns a key when the router forwards a packet and changed nothing but those
//! fields; DAGs naming a CID are never learned (whether the cache holds it changes the
//! decision). Whenever the router's tables change ([`Router::fib_generation`]) every learned
//! key is forgotten at once, so a route deleted, expired, patched or learned anew applies to
//! the packets after the change (the daemon checks the generation after every frame it
//! handles, every timer and every admin command): each key carries the epoch it was learned in, the program takes only
//! the current epoch's, and a new epoch is one write. The tables are LRU maps: the busiest
//! keys stay, stale ones are overwritten or evicted.
//!
//! The program is assembled here, instruction by instruction (no compiler for eBPF is needed
//! to build the router), and checked by the kernel's verifier when loaded; links tie it to the
//! ports for as long as the daemon holds them, so it goes away with the daemon.
//!
//! Redirecting needs the outgoing driver to take XDP frames: physical NICs with XDP support
//! do; a veth does when NAPI runs on its peer (an XDP program there, or GRO on). Frames the
//! driver refuses are lost, hence `--xdp` is asked for, never assumed, and the daemon watches
//! the ports' drop counters: when they grow with what the fast path forwards, it reports it,
//! and turns the fast path off when half of it is lost ([`FastPath::check_drops`]).
//!
//! [`Router::fib_generation`]: crate::router::Router::fib_generation

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use xia_core::wire::chunk::{self as chunk_wire, NO_STORE, TYPE_RESPONSE};
use xia_core::wire::xip::{FIXED_HEADER_LEN, NODE_LEN};
use xia_core::xid::Principal;

/// Frames the fast path must have forwarded in a second for its drops to turn it off.
const MIN_JUDGED: u64 = 64;
/// The longest destination DAG (in nodes) the fast path knows.
pub const MAX_NODES: usize = 8;
/// Keys per DAG size.
const MAX_FLOWS: u32 = 16384;
const ETH: usize = 14;
/// Offset of the XIP header's fields in the frame.
const HOP: usize = ETH + 4;
const LAST: usize = ETH + 7;
const NEXT_CHUNK: u8 = 0x0C;

// The map value, as the program reads it.
const V_OUT: i16 = 0; // u32: outgoing ifindex
const V_IN: i16 = 4; // u32: the ingress ifindex the key was learned on
const V_IN_MAC: i16 = 8; // [u8; 6]: that port's MAC (the frame's destination)
const V_MAX_FRAME: i16 = 14; // u16: the longest frame the outgoing port takes
const V_LAST: i16 = 16; // u8: the new last node
const V_DST_MAC: i16 = 20; // [u8; 6]: the next hop
const V_SRC_MAC: i16 = 26; // [u8; 6]: the outgoing port
const V_EDGES: i16 = 32; // [u32; MAX_NODES]: bits to set in each node's edges (visited marks)
const V_EPOCH: i16 = 64; // u64: the epoch it was learned in (stale unless the current one)
const VALUE_LEN: usize = 72;

// bpf(2) commands, map and program types, helpers (linux/bpf.h).
const BPF_MAP_CREATE: i64 = 0;
const BPF_MAP_LOOKUP_ELEM: i64 = 1;
const BPF_MAP_UPDATE_ELEM: i64 = 2;
const BPF_PROG_LOAD: i64 = 5;
const BPF_LINK_CREATE: i64 = 28;
const MAP_LRU_HASH: u32 = 9;
const MAP_ARRAY: u32 = 2;
const MAP_PERCPU_ARRAY: u32 = 6;
const PROG_XDP: u32 = 6;
const ATTACH_XDP: u32 = 37;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const FN_MAP_LOOKUP: i32 = 1;
const FN_REDIRECT: i32 = 23;
const FN_XDP_GET_BUFF_LEN: i32 = 188;
/// `BPF_F_XDP_HAS_FRAGS`: the program takes frames in several buffers (a veth or NIC with an
/// MTU beyond a page accepts no other).
const PROG_F_XDP_HAS_FRAGS: u32 = 1 << 5;
const XDP_PASS: i32 = 2;

/// The learned keys and the program using them, attached to every port.
#[derive(Debug)]
pub struct FastPath {
    /// One table per destination DAG size (1 to MAX_NODES nodes).
    maps: Vec<OwnedFd>,
    /// Frames forwarded, per CPU.
    counter: OwnedFd,
    /// The current epoch (one u64): keys learned in another are ignored by the program, so
    /// forgetting everything is one write.
    epoch_map: OwnedFd,
    epoch: u64,
    _prog: OwnedFd,
    /// The program's attachments to the ports (closing one detaches it).
    links: Vec<OwnedFd>,
    /// Keys written, and when (one learned again is rewritten at most every 100 ms: it was
    /// evicted, or the frame raced its learning).
    learned: HashMap<Vec<u8>, Instant>,
    generation: u64,
    cpus: usize,
    /// For [`FastPath::check_drops`]: the counters when last read, and whether it gave up.
    last_forwarded: u64,
    port_drops: Vec<Option<u64>>,
    off: bool,
    /// Keys written, and flushes.
    pub learned_total: u64,
    pub flushes: u64,
}

/// A port as the fast path sees it.
#[derive(Debug, Clone, Copy)]
pub struct Port {
    pub ifindex: u32,
    pub mac: [u8; 6],
    /// The longest frame it sends (MTU plus the Ethernet header).
    pub max_frame: usize,
}

impl FastPath {
    /// Loads the program and attaches it to every port (in driver mode).
    pub fn attach(ports: &[Port], generation: u64) -> io::Result<FastPath> {
        let maps = (1..=MAX_NODES)
            .map(|n| map_create(MAP_LRU_HASH, key_len(n) as u32, VALUE_LEN as u32, MAX_FLOWS))
            .collect::<io::Result<Vec<_>>>()?;
        let counter = map_create(MAP_PERCPU_ARRAY, 4, 8, 1)?;
        let epoch_map = map_create(MAP_ARRAY, 4, 8, 1)?;
        map_update(&epoch_map, &0u32.to_ne_bytes(), &1u64.to_ne_bytes())?;
        let code = program(&maps, &counter, &epoch_map);
        let prog = prog_load(&code)?;
        let links = ports
            .iter()
            .map(|p| {
                link_create(&prog, p.ifindex)
                    .map_err(|e| io::Error::new(e.kind(), format!("XDP on ifindex {}: {e}", p.ifindex)))
            })
            .collect::<io::Result<Vec<_>>>()?;
        // The per-CPU counter is read into one u64 per possible CPU: their number must be known.
        let cpus = std::fs::read_to_string("/sys/devices/system/cpu/possible")
            .ok()
            .and_then(|s| possible_cpus(s.trim()))
            .ok_or_else(|| io::Error::other("the number of possible CPUs is unknown"))?;
        Ok(FastPath {
            maps,
            counter,
            epoch_map,
            epoch: 1,
            _prog: prog,
            links,
            learned: HashMap::new(),
            generation,
            cpus,
            last_forwarded: 0,
            port_drops: Vec::new(),
            off: false,
            learned_total: 0,
            flushes: 0,
        })
    }

    /// The router forwarded `after` (from `before`, the frame as it arrived on `from`) out of
    /// `to`: learn it when replaying it is right. `generation`: the router's tables' now.
    pub fn learn(&mut self, generation: u64, before: &[u8], after: &[u8], from: &Port, to: &Port) {
        self.sync(generation);
        if self.off {
            return;
        }
        let Some(Replay { key, last, edges }) = replayable(before, after) else { return };
        if from.ifindex == to.ifindex {
            // Back out where it came from: the router checks each frame's sender for loops.
            return;
        }
        let now = Instant::now();
        if self.learned.get(key).is_some_and(|t| now.duration_since(*t) < Duration::from_millis(100)) {
            return;
        }
        let mut v = [0u8; VALUE_LEN];
        v[V_OUT as usize..][..4].copy_from_slice(&to.ifindex.to_ne_bytes());
        v[V_IN as usize..][..4].copy_from_slice(&from.ifindex.to_ne_bytes());
        v[V_IN_MAC as usize..][..6].copy_from_slice(&from.mac);
        v[V_MAX_FRAME as usize..][..2]
            .copy_from_slice(&(to.max_frame.min(u16::MAX as usize) as u16).to_ne_bytes());
        v[V_LAST as usize] = last;
        v[V_DST_MAC as usize..][..6].copy_from_slice(&after[..6]);
        v[V_SRC_MAC as usize..][..6].copy_from_slice(&after[6..12]);
        for (i, e) in edges.iter().enumerate() {
            v[V_EDGES as usize + 4 * i..][..4].copy_from_slice(e);
        }
        v[V_EPOCH as usize..][..8].copy_from_slice(&self.epoch.to_ne_bytes());
        let n = (key.len() - 1) / NODE_LEN;
        if let Err(e) = map_update(&self.maps[n - 1], key, &v) {
            tracing::debug!("XDP key not written: {e}");
            return;
        }
        if self.learned.len() >= 4 * MAX_FLOWS as usize {
            self.learned.clear();
        }
        self.learned.insert(key.to_vec(), now);
        self.learned_total += 1;
    }

    /// The router's tables are at `generation`: keys learned before a change are forgotten.
    pub fn sync(&mut self, generation: u64) {
        if generation != self.generation {
            self.flush();
            self.generation = generation;
        }
    }

    /// Forgets every learned key: a new epoch, in which none of them counts (they are
    /// overwritten when learned again, or evicted).
    pub fn flush(&mut self) {
        if self.learned.is_empty() {
            return;
        }
        self.epoch += 1;
        if let Err(e) = map_update(&self.epoch_map, &0u32.to_ne_bytes(), &self.epoch.to_ne_bytes()) {
            // Cannot happen with a valid map; if it did, the old keys would stay in force.
            tracing::error!("XDP epoch not written ({e}): fast path turned off");
            self.links.clear();
            self.off = true;
        }
        self.learned.clear();
        self.flushes += 1;
    }

    /// Checks the ports' drop counters once a second: a redirect the outgoing driver refuses
    /// is dropped silently, counted only by a driver (a veth counts it as received and dropped
    /// on the port the frame came in on). Drops while the fast path forwarded are reported;
    /// when they reach half of what it forwarded, the fast path is turned off (the program
    /// detached from the ports, every key forgotten): slower, but nothing black-holed. Counters are read from
    /// sysfs (rx_dropped + tx_dropped); ports without them are skipped.
    pub fn check_drops(&mut self, names: &[String]) -> Option<String> {
        let forwarded = self.forwarded();
        let moved = forwarded.saturating_sub(self.last_forwarded);
        self.last_forwarded = forwarded;
        let mut dropped = Vec::new();
        let mut total = 0;
        self.port_drops.resize(names.len(), None);
        for (name, last) in names.iter().zip(self.port_drops.iter_mut()) {
            let read = |c: &str| {
                std::fs::read_to_string(format!("/sys/class/net/{name}/statistics/{c}"))
                    .ok()
                    .and_then(|t| t.trim().parse::<u64>().ok())
            };
            let now = read("rx_dropped").zip(read("tx_dropped")).map(|(r, t)| r + t);
            if let (Some(n), Some(l)) = (now, *last) {
                if moved > 0 && n > l {
                    dropped.push(format!("{name} {}", n - l));
                    total += n - l;
                }
            }
            *last = now;
        }
        if dropped.is_empty() {
            return None;
        }
        let mut msg = format!(
            "drivers dropped frames while the XDP fast path forwarded {moved} in the last second ({}); \
             redirected frames a link does not take are dropped (a veth takes them when GRO is on at \
             its peer)",
            dropped.join(", ")
        );
        // Half of what the fast path forwarded, and enough of it to mean something: one
        // unrelated drop beside a trickle of forwarding is no reason.
        if moved >= MIN_JUDGED && total >= moved / 2 && !self.off {
            self.flush();
            self.links.clear();
            self.off = true;
            msg.push_str(": the fast path is turned off, the daemon forwards everything");
        }
        Some(msg)
    }

    /// True once [`FastPath::check_drops`] turned the fast path off.
    pub fn is_off(&self) -> bool {
        self.off
    }

    /// Frames the fast path has forwarded.
    pub fn forwarded(&self) -> u64 {
        let mut per_cpu = vec![0u64; self.cpus];
        let key = 0u32.to_ne_bytes();
        let mut attr = Attr::new();
        attr.u32(0, self.counter.as_raw_fd() as u32);
        attr.u64(8, key.as_ptr() as u64);
        attr.u64(16, per_cpu.as_mut_ptr() as u64);
        // SAFETY: the kernel writes one u64 per possible CPU into `per_cpu`, sized for them.
        match unsafe { bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) } {
            Ok(_) => per_cpu.iter().sum(),
            // Cannot happen with a valid map; the last figure is better than none.
            Err(_) => self.last_forwarded,
        }
    }
}

/// The key of a forwarded frame, the last node it left with and the bits set in each
/// destination node's edges (the router marks the edges it took), when the router changed
/// nothing but what the program replays and the packet is one the program would take.
fn replayable<'a>(before: &'a [u8], after: &[u8]) -> Option<Replay<'a>> {
    let x = before.get(ETH..)?;
    if before.get(12..14)? != [0xC0, 0xDE] || x.len() < FIXED_HEADER_LEN || x[0] != 1 {
        return None;
    }
    let (nd, ns) = (x[5] as usize, x[6] as usize);
    if nd == 0 || nd > MAX_NODES || x[4] < 2 {
        return None;
    }
    let head = ETH + FIXED_HEADER_LEN + (nd + ns) * NODE_LEN;
    if before.len() < head || after.len() < head {
        return None;
    }
    // CHUNK: the cache's to watch, unless a response its publisher wants kept nowhere.
    if x[1] == NEXT_CHUNK && !chunk_wire::is_no_store_response(&before[head..]) {
        return None;
    }
    let dag_end = ETH + FIXED_HEADER_LEN + nd * NODE_LEN;
    let key = &before[LAST..dag_end];
    // No CID in the DAG: whether the cache holds one changes where it goes.
    if key[1..].chunks(NODE_LEN).any(|n| n[..4] == u32::from(Principal::Cid).to_be_bytes()) {
        return None;
    }
    let same = |a: usize, b: usize| before[a..b] == after[a..b];
    if !(same(12, HOP) && after[HOP] == before[HOP] - 1 && same(HOP + 1, LAST) && same(dag_end, head)) {
        return None;
    }
    let mut edges = Vec::with_capacity(nd);
    for i in 0..nd {
        let node = LAST + 1 + i * NODE_LEN;
        if !same(node, node + NODE_LEN - 4) {
            return None;
        }
        let mut set = [0u8; 4];
        for (k, s) in set.iter_mut().enumerate() {
            let (b, a) = (before[node + NODE_LEN - 4 + k], after[node + NODE_LEN - 4 + k]);
            // Bits set, none cleared: an OR replays it.
            if a & b != b {
                return None;
            }
            *s = a ^ b;
        }
        edges.push(set);
    }
    Some(Replay { key, last: after[LAST], edges })
}

/// What [`replayable`] found.
#[derive(Debug)]
struct Replay<'a> {
    key: &'a [u8],
    last: u8,
    edges: Vec<[u8; 4]>,
}

fn key_len(nodes: usize) -> usize {
    1 + nodes * NODE_LEN
}

/// "0-1", "0", "0-3,5"...: how many possible CPUs (the highest plus one).
fn possible_cpus(s: &str) -> Option<usize> {
    let last = s.split([',', '-']).filter_map(|t| t.parse::<usize>().ok()).max()?;
    Some(last + 1)
}

// ---------------------------------------------------------------- the program

// Instructions are encoded, and map values laid out, for a little-endian kernel.
#[cfg(target_endian = "big")]
compile_error!("the XDP fast path is written for little-endian machines");

/// One eBPF instruction (linux/bpf.h `struct bpf_insn`).
#[derive(Debug, Clone, Copy)]
struct Insn {
    code: u8,
    dst: u8,
    src: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    fn encode(self) -> u64 {
        u64::from(self.code)
            | u64::from(self.dst | (self.src << 4)) << 8
            | u64::from(self.off as u16) << 16
            | u64::from(self.imm as u32) << 32
    }
}

/// Instructions with symbolic jump targets, resolved by [`Asm::finish`].
#[derive(Default)]
struct Asm {
    code: Vec<Insn>,
    /// (instruction, label) of jumps still to resolve.
    fixups: Vec<(usize, &'static str)>,
    labels: HashMap<&'static str, usize>,
}

// Registers.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;
const R10: u8 = 10;

// Opcodes.
const LDX_W: u8 = 0x61;
const LDX_H: u8 = 0x69;
const LDX_B: u8 = 0x71;
const LDX_DW: u8 = 0x79;
const STX_W: u8 = 0x63;
const STX_H: u8 = 0x6b;
const STX_B: u8 = 0x73;
const STX_DW: u8 = 0x7b;
const ST_W: u8 = 0x62;
const MOV_K: u8 = 0xb7;
const MOV_X: u8 = 0xbf;
const ADD_K: u8 = 0x07;
const ADD_X: u8 = 0x0f;
const MUL_K: u8 = 0x27;
const AND_K: u8 = 0x57;
const OR_X: u8 = 0x4f;
const TO_BE16: u8 = 0xdc;
const JA: u8 = 0x05;
const JEQ_K: u8 = 0x15;
const JNE_K: u8 = 0x55;
const JNE_X: u8 = 0x5d;
const JLT_K: u8 = 0xa5;
const JGT_K: u8 = 0x25;
const JGT_X: u8 = 0x2d;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const LD_IMM64: u8 = 0x18;
const PSEUDO_MAP_FD: u8 = 1;

impl Asm {
    fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.code.push(Insn { code, dst, src, off, imm });
    }
    fn jmp(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: &'static str) {
        self.fixups.push((self.code.len(), to));
        self.op(code, dst, src, 0, imm);
    }
    fn label(&mut self, name: &'static str) {
        self.labels.insert(name, self.code.len());
    }
    fn ld_map(&mut self, dst: u8, map: &OwnedFd) {
        self.op(LD_IMM64, dst, PSEUDO_MAP_FD, 0, map.as_raw_fd());
        self.op(0, 0, 0, 0, 0);
    }
    /// Jumps to `labels[n - 1]` for a destination DAG of n nodes (the frame in r7), to
    /// "pass" for any other count. Clobbers r2.
    fn by_dag_size(&mut self, labels: &[&'static str; MAX_NODES]) {
        self.op(LDX_B, R2, R7, (ETH + 5) as i16, 0);
        for (i, l) in labels.iter().enumerate() {
            self.jmp(JEQ_K, R2, 0, i as i32 + 1, l);
        }
        self.jmp(JA, 0, 0, 0, "pass");
    }
    /// To "pass" unless the frame (r7, its end r8) holds the fixed header and `nodes`
    /// destination nodes. Clobbers r3.
    fn dag_in_frame(&mut self, nodes: usize) {
        self.op(MOV_X, R3, R7, 0, 0);
        self.op(ADD_K, R3, 0, 0, (ETH + FIXED_HEADER_LEN + nodes * NODE_LEN) as i32);
        self.jmp(JGT_X, R3, R8, 0, "pass");
    }
    fn finish(mut self) -> Vec<u64> {
        for (at, to) in std::mem::take(&mut self.fixups) {
            let target = self.labels[to];
            self.code[at].off = (target as isize - at as isize - 1) as i16;
        }
        self.code.into_iter().map(Insn::encode).collect()
    }
}

/// The fast path's program (see the module's text for what it does).
fn program(maps: &[OwnedFd], counter: &OwnedFd, epoch: &OwnedFd) -> Vec<u64> {
    let mut a = Asm::default();
    a.op(MOV_X, R6, R1, 0, 0); // r6 = ctx
    a.op(LDX_W, R7, R6, 0, 0); // r7 = data
    a.op(LDX_W, R8, R6, 4, 0); // r8 = data_end
    a.op(MOV_X, R2, R7, 0, 0);
    a.op(ADD_K, R2, 0, 0, (ETH + FIXED_HEADER_LEN) as i32);
    a.jmp(JGT_X, R2, R8, 0, "pass"); // Ethernet and XIP's fixed header are there
    a.op(LDX_H, R2, R7, 12, 0);
    a.jmp(JNE_K, R2, 0, i32::from(u16::from_ne_bytes([0xC0, 0xDE])), "pass"); // XIP
    a.op(LDX_B, R2, R7, ETH as i16, 0);
    a.jmp(JNE_K, R2, 0, 1, "pass"); // version 1
    a.op(LDX_B, R2, R7, (ETH + 1) as i16, 0);
    a.jmp(JNE_K, R2, 0, i32::from(NEXT_CHUNK), "not_chunk");
    // CHUNK: the cache's, unless a response marked no-store. Its header follows the DAGs:
    // r2 = data + ETH + 8 + 28 * (destination + source nodes), bounded for the verifier.
    a.op(LDX_B, R3, R7, (ETH + 5) as i16, 0);
    a.jmp(JGT_K, R3, 0, MAX_NODES as i32, "pass");
    a.op(LDX_B, R4, R7, (ETH + 6) as i16, 0);
    a.jmp(JGT_K, R4, 0, xia_core::dag::MAX_NODES as i32, "pass");
    a.op(ADD_X, R3, R4, 0, 0);
    a.op(MUL_K, R3, 0, 0, NODE_LEN as i32);
    a.op(ADD_K, R3, 0, 0, (ETH + FIXED_HEADER_LEN) as i32);
    a.op(MOV_X, R2, R7, 0, 0);
    a.op(ADD_X, R2, R3, 0, 0);
    a.op(MOV_X, R4, R2, 0, 0);
    a.op(ADD_K, R4, 0, 0, 4);
    a.jmp(JGT_X, R4, R8, 0, "pass"); // type and code are in the first buffer
    a.op(LDX_B, R3, R2, 2, 0);
    a.jmp(JNE_K, R3, 0, i32::from(TYPE_RESPONSE), "pass");
    a.op(LDX_B, R3, R2, 3, 0);
    a.op(AND_K, R3, 0, 0, i32::from(NO_STORE));
    a.jmp(JEQ_K, R3, 0, 0, "pass");
    a.label("not_chunk");
    a.op(LDX_B, R2, R7, HOP as i16, 0);
    a.jmp(JLT_K, R2, 0, 2, "pass"); // time exceeded: the daemon's
    const SIZES: [&str; MAX_NODES] = ["n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8"];
    a.by_dag_size(&SIZES);
    for (i, l) in SIZES.iter().enumerate() {
        a.label(l);
        a.dag_in_frame(i + 1); // the key is in the frame
        a.ld_map(R1, &maps[i]);
        a.op(MOV_X, R2, R7, 0, 0);
        a.op(ADD_K, R2, 0, 0, LAST as i32);
        a.op(CALL, 0, 0, 0, FN_MAP_LOOKUP);
        a.jmp(JEQ_K, R0, 0, 0, "pass");
        a.jmp(JA, 0, 0, 0, "found");
    }
    a.label("found");
    // r9 = the value; learned in the current epoch?
    a.op(MOV_X, R9, R0, 0, 0);
    a.op(ST_W, R10, 0, -8, 0);
    a.ld_map(R1, epoch);
    a.op(MOV_X, R2, R10, 0, 0);
    a.op(ADD_K, R2, 0, 0, -8);
    a.op(CALL, 0, 0, 0, FN_MAP_LOOKUP);
    a.jmp(JEQ_K, R0, 0, 0, "pass");
    a.op(LDX_DW, R2, R0, 0, 0);
    a.op(LDX_DW, R3, R9, V_EPOCH, 0);
    a.jmp(JNE_X, R2, R3, 0, "pass");
    a.op(LDX_W, R2, R6, 12, 0); // ingress ifindex
    a.op(LDX_W, R3, R9, V_IN, 0);
    a.jmp(JNE_X, R2, R3, 0, "pass");
    a.op(LDX_W, R2, R7, 0, 0); // addressed to the port
    a.op(LDX_W, R3, R9, V_IN_MAC, 0);
    a.jmp(JNE_X, R2, R3, 0, "pass");
    a.op(LDX_H, R2, R7, 4, 0);
    a.op(LDX_H, R3, R9, V_IN_MAC + 4, 0);
    a.jmp(JNE_X, R2, R3, 0, "pass");
    // The packet's lengths are the frame's, as the daemon checks them: at most MAX_NODES
    // source nodes, and ETH + 8 + 28 * (dst + src) + payload == the frame's length.
    // A frame may come in several buffers (jumbo frames): r7..r8 is only the first, which
    // holds the headers; the whole length is the helper's.
    a.op(MOV_X, R1, R6, 0, 0);
    a.op(CALL, 0, 0, 0, FN_XDP_GET_BUFF_LEN);
    a.op(LDX_B, R2, R7, (ETH + 6) as i16, 0);
    a.jmp(JGT_K, R2, 0, xia_core::dag::MAX_NODES as i32, "pass");
    a.op(LDX_H, R2, R7, (ETH + 2) as i16, 0);
    a.op(TO_BE16, R2, 0, 0, 16);
    a.op(LDX_B, R3, R7, (ETH + 5) as i16, 0);
    a.op(LDX_B, R4, R7, (ETH + 6) as i16, 0);
    a.op(ADD_X, R3, R4, 0, 0);
    a.op(MUL_K, R3, 0, 0, NODE_LEN as i32);
    a.op(ADD_X, R2, R3, 0, 0);
    a.op(ADD_K, R2, 0, 0, (ETH + FIXED_HEADER_LEN) as i32);
    a.jmp(JNE_X, R2, R0, 0, "pass");
    // The frame fits the outgoing port.
    a.op(LDX_H, R2, R9, V_MAX_FRAME, 0);
    a.jmp(JGT_X, R0, R2, 0, "pass");
    // What the router did to the first packet: the edges it marked (per DAG size again: the
    // verifier wants each access under a bounds check on its own path)...
    const EDGES: [&str; MAX_NODES] = ["e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8"];
    a.by_dag_size(&EDGES);
    for (i, l) in EDGES.iter().enumerate() {
        a.label(l);
        a.dag_in_frame(i + 1);
        for n in 0..=i {
            let at = (ETH + FIXED_HEADER_LEN + (n + 1) * NODE_LEN - 4) as i16;
            a.op(LDX_W, R2, R7, at, 0);
            a.op(LDX_W, R3, R9, V_EDGES + 4 * n as i16, 0);
            a.op(OR_X, R2, R3, 0, 0);
            a.op(STX_W, R7, R2, at, 0);
        }
        a.jmp(JA, 0, 0, 0, "rewrite");
    }
    // ...the hop limit, the last node, the MACs.
    a.label("rewrite");
    a.op(LDX_B, R2, R7, HOP as i16, 0);
    a.op(ADD_K, R2, 0, 0, -1);
    a.op(STX_B, R7, R2, HOP as i16, 0);
    a.op(LDX_B, R2, R9, V_LAST, 0);
    a.op(STX_B, R7, R2, LAST as i16, 0);
    a.op(LDX_W, R2, R9, V_DST_MAC, 0);
    a.op(STX_W, R7, R2, 0, 0);
    a.op(LDX_H, R2, R9, V_DST_MAC + 4, 0);
    a.op(STX_H, R7, R2, 4, 0);
    a.op(LDX_H, R2, R9, V_SRC_MAC, 0);
    a.op(STX_H, R7, R2, 6, 0);
    a.op(LDX_W, R2, R9, V_SRC_MAC + 2, 0);
    a.op(STX_W, R7, R2, 8, 0);
    // Counted.
    a.op(ST_W, R10, 0, -4, 0);
    a.ld_map(R1, counter);
    a.op(MOV_X, R2, R10, 0, 0);
    a.op(ADD_K, R2, 0, 0, -4);
    a.op(CALL, 0, 0, 0, FN_MAP_LOOKUP);
    a.jmp(JEQ_K, R0, 0, 0, "send");
    a.op(LDX_DW, R2, R0, 0, 0);
    a.op(ADD_K, R2, 0, 0, 1);
    a.op(STX_DW, R0, R2, 0, 0);
    a.label("send");
    a.op(LDX_W, R1, R9, V_OUT, 0);
    a.op(MOV_K, R2, 0, 0, 0);
    a.op(CALL, 0, 0, 0, FN_REDIRECT);
    a.op(EXIT, 0, 0, 0, 0);
    a.label("pass");
    a.op(MOV_K, R0, 0, 0, XDP_PASS);
    a.op(EXIT, 0, 0, 0, 0);
    a.finish()
}

// ---------------------------------------------------------------- bpf(2)

/// A `union bpf_attr`, zeroed beyond what a command sets (the kernel insists).
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32(&mut self, at: usize, v: u32) {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }
    fn u64(&mut self, at: usize, v: u64) {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    }
}

/// # Safety
/// Every pointer in `attr` must be valid for what `cmd` does with it.
unsafe fn bpf(cmd: i64, attr: &mut Attr) -> io::Result<i64> {
    // SAFETY: the caller vouches for the pointers inside `attr`; the size is attr's.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), attr.0.len()) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn fd(rc: i64) -> OwnedFd {
    // SAFETY: the kernel just returned this new descriptor, owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(rc as i32) }
}

fn map_create(kind: u32, key: u32, value: u32, entries: u32) -> io::Result<OwnedFd> {
    let mut attr = Attr::new();
    attr.u32(0, kind);
    attr.u32(4, key);
    attr.u32(8, value);
    attr.u32(12, entries);
    // SAFETY: no pointers.
    unsafe { bpf(BPF_MAP_CREATE, &mut attr) }.map(fd)
}

fn map_update(map: &OwnedFd, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut attr = Attr::new();
    attr.u32(0, map.as_raw_fd() as u32);
    attr.u64(8, key.as_ptr() as u64);
    attr.u64(16, value.as_ptr() as u64);
    // SAFETY: key and value have the map's sizes (the caller built them for it); read only.
    unsafe { bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map(drop)
}

fn prog_load(code: &[u64]) -> io::Result<OwnedFd> {
    let license = b"Dual MIT/GPL\0";
    let mut log = vec![0u8; 1 << 16];
    let mut attr = Attr::new();
    attr.u32(0, PROG_XDP);
    attr.u32(4, code.len() as u32);
    attr.u64(8, code.as_ptr() as u64);
    attr.u64(16, license.as_ptr() as u64);
    attr.u32(44, PROG_F_XDP_HAS_FRAGS);
    attr.u32(68, ATTACH_XDP);
    // SAFETY: code and license outlive the call; no log asked for.
    match unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
        Ok(rc) => Ok(fd(rc)),
        Err(first) => {
            // Again with the verifier's log, to say why.
            attr.u32(24, 1);
            attr.u32(28, log.len() as u32);
            attr.u64(32, log.as_mut_ptr() as u64);
            // SAFETY: as above, and `log` is writable for its length.
            let _ = unsafe { bpf(BPF_PROG_LOAD, &mut attr) };
            let text = String::from_utf8_lossy(&log);
            let tail: Vec<&str> = text.trim_end_matches('\0').lines().rev().take(8).collect();
            Err(io::Error::new(first.kind(), format!("XDP program refused: {first}: {}", tail.join(" | "))))
        }
    }
}

fn link_create(prog: &OwnedFd, ifindex: u32) -> io::Result<OwnedFd> {
    let mut attr = Attr::new();
    attr.u32(0, prog.as_raw_fd() as u32);
    attr.u32(4, ifindex);
    attr.u32(8, ATTACH_XDP);
    attr.u32(12, XDP_FLAGS_DRV_MODE);
    // SAFETY: no pointers.
    unsafe { bpf(BPF_LINK_CREATE, &mut attr) }.map(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(nd: usize, ns: usize, next: u8, hop: u8) -> Vec<u8> {
        let mut f = vec![0u8; ETH + FIXED_HEADER_LEN + (nd + ns) * NODE_LEN + 10];
        f[12..14].copy_from_slice(&[0xC0, 0xDE]);
        let x = &mut f[ETH..];
        x[0] = 1;
        x[1] = next;
        x[2..4].copy_from_slice(&10u16.to_be_bytes());
        x[4] = hop;
        x[5] = nd as u8;
        x[6] = ns as u8;
        x[7] = 0xff;
        for i in 0..nd + ns {
            x[8 + i * NODE_LEN..][..4].copy_from_slice(&u32::from(Principal::Ad).to_be_bytes());
        }
        f
    }

    fn forwarded(before: &[u8]) -> Vec<u8> {
        let mut a = before.to_vec();
        a[..12].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        a[HOP] -= 1;
        a[LAST] = 2;
        a[ETH + FIXED_HEADER_LEN + 2 * NODE_LEN - 4] |= 0x80;
        a
    }

    #[test]
    fn only_what_the_program_replays_is_learned() {
        let b = frame(3, 2, 0x11, 64);
        let Replay { key, last, edges } = replayable(&b, &forwarded(&b)).unwrap();
        assert_eq!((key.len(), key[0], last), (key_len(3), 0xff, 2));
        assert_eq!(edges, [[0; 4], [0x80, 0, 0, 0], [0; 4]]);
        // An edge mark cleared cannot be replayed by setting bits.
        let mut marked = b.clone();
        marked[ETH + FIXED_HEADER_LEN + NODE_LEN - 3] = 0x80;
        assert!(replayable(&marked, &forwarded(&b)).is_none());
        // Anything else changed, or a packet the program leaves to the daemon: not learned.
        let mut other = forwarded(&b);
        other[ETH + FIXED_HEADER_LEN + 4 * NODE_LEN] ^= 1;
        assert!(replayable(&b, &other).is_none());
        for b in [frame(3, 2, NEXT_CHUNK, 64), frame(3, 2, 0x11, 1), frame(MAX_NODES + 1, 1, 0x11, 64)] {
            assert!(replayable(&b, &forwarded(&b)).is_none());
        }
        let mut cid = frame(3, 2, 0x11, 64);
        cid[ETH + FIXED_HEADER_LEN + 2 * NODE_LEN..][..4]
            .copy_from_slice(&u32::from(Principal::Cid).to_be_bytes());
        assert!(replayable(&cid, &forwarded(&cid)).is_none());
        assert!(replayable(&b[..40], &forwarded(&b)[..40]).is_none());
        // A CHUNK response marked no-store is replayed; any other CHUNK packet is the cache's.
        let chunk = |kind: u8, code: u8| {
            let mut c = frame(3, 2, NEXT_CHUNK, 64);
            let h = ETH + FIXED_HEADER_LEN + 5 * NODE_LEN;
            c[h + 2] = kind;
            c[h + 3] = code;
            c
        };
        let private = chunk(TYPE_RESPONSE, NO_STORE);
        assert!(replayable(&private, &forwarded(&private)).is_some());
        for c in [chunk(TYPE_RESPONSE, 0), chunk(1, NO_STORE)] {
            assert!(replayable(&c, &forwarded(&c)).is_none());
        }
    }

    #[test]
    fn jumps_resolve_forward_and_the_program_ends_in_exits() {
        let mut a = Asm::default();
        a.jmp(JA, 0, 0, 0, "end");
        a.op(MOV_K, R0, 0, 0, 1);
        a.label("end");
        a.op(EXIT, 0, 0, 0, 0);
        let code = a.finish();
        assert_eq!(code[0] >> 16 & 0xffff, 1);
        assert_eq!(code[2] & 0xff, u64::from(EXIT));
        assert_eq!(possible_cpus("0-1"), Some(2));
        assert_eq!(possible_cpus("0"), Some(1));
        assert_eq!(possible_cpus("0-3,5"), Some(6));
    }
}
