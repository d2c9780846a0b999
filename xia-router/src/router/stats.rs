//! The router's counters: every frame it handles, makes or drops is counted, drops by reason;
//! `stats` on the admin socket lists them by name.

/// Counters, all monotonic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterStats {
    /// Frames received.
    pub rx_frames: u64,
    /// Frames forwarded.
    pub forwarded: u64,
    /// Packets for this router itself.
    pub delivered: u64,
    /// Frames the router made (beacons, receipts, XCMP).
    pub originated: u64,
    /// Too short, or an XIP header that does not hold together.
    pub drop_malformed: u64,
    /// Not addressed to the port's MAC.
    pub drop_not_for_us: u64,
    /// Neither XIP nor XARP.
    pub drop_ethertype: u64,
    /// No usable edge: XCMP unreachable sent (unless rate-limited).
    pub drop_unreachable: u64,
    /// Hop limit exhausted: XCMP time exceeded sent (unless rate-limited).
    pub drop_hop_limit: u64,
    /// Larger than the outgoing port's MTU.
    pub drop_too_big: u64,
    /// Would go back out of the port it came in on to the MAC it came from.
    pub drop_loop: u64,
    /// For this router but of no use to it (an unknown transport, an unbound service).
    pub drop_local: u64,
    /// STREAM, DGRAM or CHUNK packets whose integrity check failed: dropped when addressed
    /// here, not cached when passing through (they are forwarded: the receiver drops them).
    pub bad_check: u64,
    /// Control messages refused: malformed, or not for this AD or router.
    pub drop_bad_control: u64,
    /// Control messages whose signature (or router co-signature) did not check: forged, or
    /// naming an identity whose key did not sign.
    pub drop_control_forged: u64,
    /// Control messages replayed: a sequence number not above the last one its signer used.
    pub drop_control_replayed: u64,
    /// Control messages whose sequence number ran ahead of their own timestamp (a signer's
    /// mark pushed into the future).
    pub drop_control_seq_jump: u64,
    /// Beacons, distance vectors or registrations refused by the operator's policy: the wrong
    /// kind of port, or an AD the trust anchors do not list.
    pub drop_control_policy: u64,
    /// Routes of accepted distance vectors dropped: ADs their signer may not announce.
    pub dv_routes_refused: u64,
    /// Control messages refused as stale: stamped outside the freshness window, or before
    /// the router started (less the clock skew allowed).
    pub drop_stale_control: u64,
    /// Route patches refused (bad signature, replay: also counted above).
    pub patches_refused: u64,
    /// Route patches applied.
    pub patches_applied: u64,
    /// Registrations accepted (refreshes included).
    pub registrations: u64,
    /// Beacons sent.
    pub beacons_sent: u64,
    /// Beacons of neighbour routers accepted.
    pub beacons_heard: u64,
    /// XCMP errors and replies sent.
    pub xcmp_sent: u64,
    /// XCMP errors not sent: over the rate.
    pub xcmp_rate_limited: u64,
    /// Frames made by the router dropped: out-queue full.
    pub drop_queue_full: u64,
    /// Routes refused: table full.
    pub drop_table_full: u64,
    /// Routes expired.
    pub routes_expired: u64,
    /// CHUNK response pieces seen passing through (with the cache on).
    pub cache_pieces_seen: u64,
    /// CHUNK response pieces marked no-store passing through (forwarded, never kept).
    pub cache_pieces_no_store: u64,
    /// Chunks put together from passing pieces and cached (hashed when first asked for).
    pub cache_chunks_stored: u64,
    /// Cached chunks whose bytes did not hash to their CID when first asked for (dropped).
    pub cache_chunks_corrupt: u64,
    /// Chunks given up half assembled (room for newer ones).
    pub cache_assemblies_dropped: u64,
    /// Requests answered from the cache.
    pub cache_hits: u64,
    /// Response pieces sent from the cache.
    pub cache_pieces_out: u64,
    /// Distance vectors sent (one per port with a neighbour router).
    pub dv_sent: u64,
    /// Distance vectors of neighbour routers accepted.
    pub dv_heard: u64,
}

/// The counters as (name, value) pairs, in declaration order (for `stats`).
pub fn stats_fields(s: &RouterStats) -> Vec<(&'static str, u64)> {
    vec![
        ("rx_frames", s.rx_frames),
        ("forwarded", s.forwarded),
        ("delivered", s.delivered),
        ("originated", s.originated),
        ("drop_malformed", s.drop_malformed),
        ("drop_not_for_us", s.drop_not_for_us),
        ("drop_ethertype", s.drop_ethertype),
        ("drop_unreachable", s.drop_unreachable),
        ("drop_hop_limit", s.drop_hop_limit),
        ("drop_too_big", s.drop_too_big),
        ("drop_loop", s.drop_loop),
        ("drop_local", s.drop_local),
        ("drop_bad_control", s.drop_bad_control),
        ("drop_control_forged", s.drop_control_forged),
        ("drop_control_replayed", s.drop_control_replayed),
        ("drop_control_seq_jump", s.drop_control_seq_jump),
        ("drop_control_policy", s.drop_control_policy),
        ("dv_routes_refused", s.dv_routes_refused),
        ("bad_check", s.bad_check),
        ("drop_stale_control", s.drop_stale_control),
        ("patches_refused", s.patches_refused),
        ("patches_applied", s.patches_applied),
        ("registrations", s.registrations),
        ("beacons_sent", s.beacons_sent),
        ("beacons_heard", s.beacons_heard),
        ("xcmp_sent", s.xcmp_sent),
        ("xcmp_rate_limited", s.xcmp_rate_limited),
        ("drop_queue_full", s.drop_queue_full),
        ("drop_table_full", s.drop_table_full),
        ("routes_expired", s.routes_expired),
        ("cache_pieces_seen", s.cache_pieces_seen),
        ("cache_pieces_no_store", s.cache_pieces_no_store),
        ("cache_chunks_stored", s.cache_chunks_stored),
        ("cache_chunks_corrupt", s.cache_chunks_corrupt),
        ("cache_assemblies_dropped", s.cache_assemblies_dropped),
        ("cache_hits", s.cache_hits),
        ("cache_pieces_out", s.cache_pieces_out),
        ("dv_sent", s.dv_sent),
        ("dv_heard", s.dv_heard),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_counter_is_listed() {
        let decl = include_str!("stats.rs");
        let body =
            decl.split("pub struct RouterStats {").nth(1).and_then(|s| s.split('}').next()).unwrap_or("");
        let declared = body.matches(": u64,").count();
        assert_eq!(super::stats_fields(&super::RouterStats::default()).len(), declared);
    }
}
