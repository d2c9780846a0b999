//! The name table, sans I/O: what `xnsd` knows and the rules by which it changes (time is
//! passed in, as wall-clock milliseconds).
//!
//! - A record is taken only if it verifies (its key signed it and owns its DAG's intent).
//! - The first record of a name binds the name to its key; later records of the name must be
//!   signed by the same key and carry a higher sequence number (replays and reordered updates
//!   are refused). A name whose binding lapsed (expired, or deleted and its tombstone gone) is
//!   free for any key.
//! - A record lives its TTL (clamped to the table's bounds) from when it is taken; a deletion
//!   leaves a tombstone for the longest TTL, so the records it replaced cannot be replayed.
//! - Lookups by name, by the DAG's intent (reverse), and in name order (list) never return an
//!   expired record or a tombstone.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use xia_core::wire::names::{Name, NsErrorCode, Record};
use xia_core::xid::Xid;

/// Bounds of a table.
#[derive(Debug, Clone)]
pub struct TableConfig {
    /// Names held at most (tombstones included).
    pub max_names: usize,
    /// Shortest life of a record (ms): a TTL below it is raised to it.
    pub min_ttl_ms: u32,
    /// Longest life of a record (ms), and of a tombstone.
    pub max_ttl_ms: u32,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig { max_names: 1 << 20, min_ttl_ms: 1_000, max_ttl_ms: 24 * 3600 * 1000 }
    }
}

/// A name as held: its latest record, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The latest record taken (a tombstone when its DAG is `None`).
    pub record: Record,
    /// Wall-clock ms after which it is gone.
    pub expires_ms: u64,
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Records taken (registrations, updates, deletions).
    pub taken: u64,
    /// Records refused: not signed by their key, or the key does not own the DAG.
    pub refused_forged: u64,
    /// Records refused: the name is bound to another key.
    pub refused_not_owner: u64,
    /// Records refused: a sequence number not above the name's last (replays, reordering).
    pub refused_stale: u64,
    /// Records refused: the table is full.
    pub refused_full: u64,
    /// Entries gone at their expiry.
    pub expired: u64,
}

/// The names, by name and by their DAG's intent.
#[derive(Debug, Default)]
pub struct NameTable {
    cfg: TableConfig,
    names: BTreeMap<Name, Entry>,
    /// DAG intent -> names leading there (live records only).
    by_intent: HashMap<Xid, BTreeSet<Name>>,
    /// (expiry, name), earliest first.
    expiry: BTreeSet<(u64, Name)>,
    stats: TableStats,
}

impl NameTable {
    /// An empty table.
    pub fn new(cfg: TableConfig) -> NameTable {
        NameTable { cfg, ..NameTable::default() }
    }

    /// Takes `record` at `now_ms`, or says why not. On success, the entry as held.
    pub fn put(&mut self, now_ms: u64, record: Record) -> Result<&Entry, NsErrorCode> {
        self.expire(now_ms);
        if record.verify().is_err() {
            self.stats.refused_forged += 1;
            return Err(NsErrorCode::Forged);
        }
        match self.names.get(&record.name) {
            Some(e) if e.record.key != record.key => {
                self.stats.refused_not_owner += 1;
                return Err(NsErrorCode::NotOwner);
            }
            Some(e) if record.seq <= e.record.seq => {
                self.stats.refused_stale += 1;
                return Err(NsErrorCode::Stale);
            }
            None if self.names.len() >= self.cfg.max_names => {
                self.stats.refused_full += 1;
                return Err(NsErrorCode::Unavailable);
            }
            _ => {}
        }
        let ttl = match record.dag {
            // A tombstone outlives every record it may have replaced.
            None => self.cfg.max_ttl_ms,
            Some(_) => record.ttl_ms.clamp(self.cfg.min_ttl_ms, self.cfg.max_ttl_ms),
        };
        let entry = Entry { expires_ms: now_ms.saturating_add(u64::from(ttl)), record };
        self.stats.taken += 1;
        Ok(self.insert(entry))
    }

    /// Holds `entry` (a record already checked, e.g. read back from the store), replacing the
    /// name's previous one.
    pub fn insert(&mut self, entry: Entry) -> &Entry {
        let name = entry.record.name.clone();
        self.unindex(&name);
        self.expiry.insert((entry.expires_ms, name.clone()));
        if let Some(d) = &entry.record.dag {
            self.by_intent.entry(*d.intent()).or_default().insert(name.clone());
        }
        self.names.entry(name).insert_entry(entry).into_mut()
    }

    /// The live record of `name`.
    pub fn resolve(&self, now_ms: u64, name: &Name) -> Option<&Record> {
        self.names.get(name).filter(|e| e.expires_ms > now_ms && e.record.dag.is_some()).map(|e| &e.record)
    }

    /// Live records whose DAG's intent is `xid`, at most `max`, in name order.
    pub fn reverse(&self, now_ms: u64, xid: &Xid, max: usize) -> Vec<&Record> {
        let Some(names) = self.by_intent.get(xid) else { return Vec::new() };
        names.iter().filter_map(|n| self.resolve(now_ms, n)).take(max).collect()
    }

    /// Live records in name order, after `after`, at most `max`.
    pub fn list(&self, now_ms: u64, after: Option<&Name>, max: usize) -> Vec<&Record> {
        use std::ops::Bound::{Excluded, Unbounded};
        let from = after.map_or(Unbounded, Excluded);
        self.names
            .range((from, Unbounded))
            .filter(|(_, e)| e.expires_ms > now_ms && e.record.dag.is_some())
            .map(|(_, e)| &e.record)
            .take(max)
            .collect()
    }

    /// Removes what expired by `now_ms`; returns the names gone.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Name> {
        let mut gone = Vec::new();
        while let Some((t, _)) = self.expiry.first() {
            if *t > now_ms {
                break;
            }
            let Some((_, name)) = self.expiry.pop_first() else { break };
            self.unindex(&name);
            self.names.remove(&name);
            self.stats.expired += 1;
            gone.push(name);
        }
        gone
    }

    /// The entry of `name`, live, expired or a tombstone (for the store and diagnostics).
    pub fn entry(&self, name: &Name) -> Option<&Entry> {
        self.names.get(name)
    }

    /// Every entry held, in name order (tombstones included): what a store must keep.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.names.values()
    }

    /// Names held (tombstones included).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no name is held.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The counters.
    pub fn stats(&self) -> &TableStats {
        &self.stats
    }

    /// The wall-clock ms of the next expiry, if any.
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiry.first().map(|(t, _)| *t)
    }

    /// Forgets `name`'s indexes (its entry stays until replaced or removed).
    fn unindex(&mut self, name: &Name) {
        let Some(old) = self.names.get(name) else { return };
        self.expiry.remove(&(old.expires_ms, name.clone()));
        if let Some(d) = &old.record.dag {
            let intent = *d.intent();
            if let Some(set) = self.by_intent.get_mut(&intent) {
                set.remove(name);
                if set.is_empty() {
                    self.by_intent.remove(&intent);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xia_core::dag::Dag;
    use xia_core::keys::Keypair;
    use xia_core::xid::Principal;

    const T0: u64 = 1_800_000_000_000;

    fn key(b: u8) -> Keypair {
        Keypair::from_seed([b; 32])
    }
    fn dag(k: &Keypair, ad: u8) -> Dag {
        Dag::host(Xid::new(Principal::Ad, [ad; 20]), k.xid(Principal::Hid)).unwrap()
    }
    fn name(s: &str) -> Name {
        s.parse().unwrap()
    }
    fn rec(k: &Keypair, n: &str, ad: Option<u8>, seq: u64, ttl: u32) -> Record {
        Record::signed(k, name(n), ad.map(|a| dag(k, a)), seq, ttl)
    }

    #[test]
    fn the_first_key_owns_a_name_and_only_newer_records_count() {
        let mut t = NameTable::new(TableConfig::default());
        let (a, b) = (key(1), key(2));
        t.put(T0, rec(&a, "vm1", Some(1), 10, 60_000)).unwrap();
        assert_eq!(t.resolve(T0, &name("vm1")).unwrap().dag, Some(dag(&a, 1)));
        // Another key, even with its own valid record: the name is taken.
        assert_eq!(t.put(T0, rec(&b, "vm1", Some(1), 99, 60_000)).unwrap_err(), NsErrorCode::NotOwner);
        // The owner moves to AD 2: a higher sequence number.
        t.put(T0 + 5, rec(&a, "vm1", Some(2), 11, 60_000)).unwrap();
        assert_eq!(t.resolve(T0 + 5, &name("vm1")).unwrap().dag, Some(dag(&a, 2)));
        // A replay of the first, and an older update arriving late: refused.
        assert_eq!(t.put(T0 + 6, rec(&a, "vm1", Some(1), 10, 60_000)).unwrap_err(), NsErrorCode::Stale);
        assert_eq!(t.put(T0 + 6, rec(&a, "vm1", Some(3), 11, 60_000)).unwrap_err(), NsErrorCode::Stale);
        // A forged record (a's DAG, b's key claiming it; or a tampered signature).
        let mut forged = rec(&a, "vm1", Some(4), 12, 60_000);
        forged.signature.0[0] ^= 1;
        assert_eq!(t.put(T0 + 7, forged).unwrap_err(), NsErrorCode::Forged);
        let claimed = Record::signed(&b, name("vm1"), Some(dag(&a, 4)), 12, 60_000);
        assert_eq!(t.put(T0 + 7, claimed).unwrap_err(), NsErrorCode::Forged);
        let s = t.stats();
        assert_eq!((s.taken, s.refused_not_owner, s.refused_stale, s.refused_forged), (2, 1, 2, 2));
        // Names are one spelling: the case does not matter.
        assert!(t.resolve(T0 + 7, &name("VM1")).is_some());
    }

    #[test]
    fn records_expire_and_deletions_leave_tombstones() {
        let cfg = TableConfig { min_ttl_ms: 1_000, max_ttl_ms: 10_000, ..TableConfig::default() };
        let mut t = NameTable::new(cfg);
        let (a, b) = (key(1), key(2));
        // A TTL below the minimum is raised, above the maximum lowered.
        assert_eq!(t.put(T0, rec(&a, "short", Some(1), 1, 1)).unwrap().expires_ms, T0 + 1_000);
        assert_eq!(t.put(T0, rec(&a, "long", Some(1), 1, u32::MAX)).unwrap().expires_ms, T0 + 10_000);
        assert!(t.resolve(T0 + 999, &name("short")).is_some());
        assert!(t.resolve(T0 + 1_000, &name("short")).is_none());
        assert_eq!(t.expire(T0 + 1_000), vec![name("short")]);
        // Expired, the name is free for anyone.
        t.put(T0 + 1_001, rec(&b, "short", Some(1), 1, 5_000)).unwrap();
        // Deleted by its owner: gone from lookups, but its old records cannot come back, and no
        // other key takes it while the tombstone lasts.
        t.put(T0 + 2_000, rec(&a, "long", None, 2, 0)).unwrap();
        assert!(t.resolve(T0 + 2_000, &name("long")).is_none());
        assert_eq!(t.put(T0 + 2_001, rec(&a, "long", Some(1), 1, 5_000)).unwrap_err(), NsErrorCode::Stale);
        assert_eq!(t.put(T0 + 2_001, rec(&b, "long", Some(1), 9, 5_000)).unwrap_err(), NsErrorCode::NotOwner);
        assert!(t.list(T0 + 2_001, None, 10).iter().all(|r| r.name != name("long")));
        t.expire(T0 + 12_000);
        assert!(t.is_empty());
        assert_eq!(t.stats().expired, 3);
    }

    #[test]
    fn reverse_and_list_follow_the_records() {
        let mut t = NameTable::new(TableConfig::default());
        let (a, b) = (key(1), key(2));
        for n in ["c.vm1", "a.vm1", "b.vm1"] {
            t.put(T0, rec(&a, n, Some(1), 1, 60_000)).unwrap();
        }
        t.put(T0, rec(&b, "other", Some(1), 1, 60_000)).unwrap();
        let hid_a = a.xid(Principal::Hid);
        let names = |v: Vec<&Record>| v.iter().map(|r| r.name.to_string()).collect::<Vec<_>>();
        assert_eq!(names(t.reverse(T0, &hid_a, 10)), ["a.vm1", "b.vm1", "c.vm1"]);
        assert_eq!(names(t.reverse(T0, &hid_a, 2)), ["a.vm1", "b.vm1"]);
        assert_eq!(names(t.list(T0, None, 10)), ["a.vm1", "b.vm1", "c.vm1", "other"]);
        assert_eq!(names(t.list(T0, Some(&name("b.vm1")), 10)), ["c.vm1", "other"]);
        // A service's record, by its SID.
        let svc = Dag::service(Xid::new(Principal::Ad, [1; 20]), hid_a, b.xid(Principal::Sid)).unwrap();
        t.put(T0, Record::signed(&b, name("cal"), Some(svc), 1, 60_000)).unwrap();
        assert_eq!(names(t.reverse(T0, &b.xid(Principal::Sid), 10)), ["cal"]);
        // Deleted: out of the index.
        t.put(T0 + 1, rec(&a, "b.vm1", None, 2, 0)).unwrap();
        assert_eq!(names(t.reverse(T0 + 1, &hid_a, 10)), ["a.vm1", "c.vm1"]);
    }

    #[test]
    fn a_full_table_refuses_new_names_but_takes_updates() {
        let mut t = NameTable::new(TableConfig { max_names: 2, ..TableConfig::default() });
        let a = key(1);
        t.put(T0, rec(&a, "one", Some(1), 1, 60_000)).unwrap();
        t.put(T0, rec(&a, "two", Some(1), 1, 60_000)).unwrap();
        assert_eq!(t.put(T0, rec(&a, "three", Some(1), 1, 60_000)).unwrap_err(), NsErrorCode::Unavailable);
        t.put(T0, rec(&a, "two", Some(2), 2, 60_000)).unwrap();
        assert_eq!(t.stats().refused_full, 1);
    }
}
