//! What `xnsd` does with one request datagram, sans I/O: the answer, and the entry the store
//! must hold before the answer may go (the daemon syncs a turn's entries once, then answers).

use xia_core::wire::names::{NsBody, NsErrorCode, NsMessage, Record, MAX_RECORDS};

use crate::table::{Entry, NameTable};

/// What one request led to.
#[derive(Debug, Default)]
pub struct Handled {
    /// The answer (none to what is not even a request: too short to carry an id, or an
    /// answer itself).
    pub reply: Option<Vec<u8>>,
    /// An entry to make durable before the answer goes.
    pub persist: Option<Entry>,
}

/// Counters of requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceStats {
    /// Requests answered.
    pub requests: u64,
    /// Resolutions, and those of names not held.
    pub resolves: u64,
    /// Resolutions of names not held.
    pub not_found: u64,
    /// Datagrams that did not parse (answered with `Malformed` when they carried an id).
    pub malformed: u64,
    /// Datagrams that were not requests, or too short to answer: dropped.
    pub dropped: u64,
}

/// The name table behind the protocol.
#[derive(Debug)]
pub struct Service {
    /// The names.
    pub table: NameTable,
    /// The longest answer (a datagram to the client): lists are cut to fit.
    max_reply: usize,
    stats: ServiceStats,
}

impl Service {
    /// Serves `table`, with answers of at most `max_reply` bytes.
    pub fn new(table: NameTable, max_reply: usize) -> Service {
        Service { table, max_reply, stats: ServiceStats::default() }
    }

    /// The counters.
    pub fn stats(&self) -> &ServiceStats {
        &self.stats
    }

    /// Handles one request datagram at `now_ms`.
    pub fn handle(&mut self, now_ms: u64, datagram: &[u8]) -> Handled {
        let msg = match NsMessage::parse(datagram) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed += 1;
                // Version, type and id are the first six bytes: answer if there is an id.
                let Some(id) = datagram.get(2..6).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")))
                else {
                    self.stats.dropped += 1;
                    return Handled::default();
                };
                return self.answer(id, NsBody::Error { code: NsErrorCode::Malformed, text: e.to_string() });
            }
        };
        let body = match msg.body {
            NsBody::Put(record) => {
                let name = record.name.clone();
                match self.table.put(now_ms, *record) {
                    Ok(entry) => {
                        let persist = Some(entry.clone());
                        return Handled { persist, ..self.answer(msg.id, NsBody::Ok) };
                    }
                    Err(code) => NsBody::Error { code, text: refusal(code, &name.to_string()) },
                }
            }
            NsBody::Resolve(name) => {
                self.stats.resolves += 1;
                match self.table.resolve(now_ms, &name) {
                    Some(r) => NsBody::Records(vec![r.clone()]),
                    None => {
                        self.stats.not_found += 1;
                        NsBody::Error { code: NsErrorCode::NotFound, text: format!("{name}: no such name") }
                    }
                }
            }
            NsBody::Reverse(xid) => {
                let found = self.table.reverse(now_ms, &xid, MAX_RECORDS);
                NsBody::Records(self.fit(found))
            }
            NsBody::List { after, max } => {
                let found = self.table.list(now_ms, after.as_ref(), usize::from(max).min(MAX_RECORDS));
                NsBody::Records(self.fit(found))
            }
            NsBody::Stats => NsBody::Counters(self.counters()),
            NsBody::Records(_) | NsBody::Ok | NsBody::Error { .. } | NsBody::Counters(_) => {
                self.stats.dropped += 1;
                return Handled::default();
            }
        };
        self.answer(msg.id, body)
    }

    /// Every counter, by name: the table's, the requests', the names held.
    pub fn counters(&self) -> Vec<(String, u64)> {
        let t = self.table.stats();
        let s = &self.stats;
        [
            ("names", self.table.len() as u64),
            ("taken", t.taken),
            ("refused_forged", t.refused_forged),
            ("refused_not_owner", t.refused_not_owner),
            ("refused_stale", t.refused_stale),
            ("refused_full", t.refused_full),
            ("expired", t.expired),
            ("requests", s.requests),
            ("resolves", s.resolves),
            ("not_found", s.not_found),
            ("malformed", s.malformed),
            ("dropped", s.dropped),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// As many of `records` as fit an answer, in order.
    fn fit(&self, records: Vec<&Record>) -> Vec<Record> {
        let mut room = self.max_reply.saturating_sub(7);
        let mut out = Vec::new();
        for r in records {
            let n = r.buffer_len();
            if n > room {
                break;
            }
            room -= n;
            out.push(r.clone());
        }
        out
    }

    fn answer(&mut self, id: u32, body: NsBody) -> Handled {
        self.stats.requests += 1;
        let reply = NsMessage { id, body }.to_bytes().ok();
        Handled { reply, persist: None }
    }
}

fn refusal(code: NsErrorCode, name: &str) -> String {
    match code {
        NsErrorCode::Forged => format!("{name}: the record is not signed by a key owning its DAG"),
        NsErrorCode::NotOwner => format!("{name} is bound to another key"),
        NsErrorCode::Stale => {
            format!("{name}: sequence number not above the last one (replayed or out of order)")
        }
        NsErrorCode::Unavailable => format!("{name}: the server holds all the names it can"),
        _ => format!("{name}: refused"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::TableConfig;
    use xia_core::dag::Dag;
    use xia_core::keys::Keypair;
    use xia_core::xid::{Principal, Xid};

    const T0: u64 = 1_800_000_000_000;

    fn ask(s: &mut Service, id: u32, body: NsBody) -> (NsBody, Option<Entry>) {
        let h = s.handle(T0, &NsMessage { id, body }.to_bytes().unwrap());
        let m = NsMessage::parse(&h.reply.expect("an answer")).unwrap();
        assert_eq!(m.id, id);
        (m.body, h.persist)
    }

    #[test]
    fn requests_get_typed_answers() {
        let mut s = Service::new(NameTable::new(TableConfig::default()), 1400);
        let k = Keypair::from_seed([3; 32]);
        let dag = Dag::host(Xid::new(Principal::Ad, [1; 20]), k.xid(Principal::Hid)).unwrap();
        let r = Record::signed(&k, "vm1".parse().unwrap(), Some(dag), 1, 60_000);
        let (b, persist) = ask(&mut s, 1, NsBody::Put(Box::new(r.clone())));
        assert_eq!(b, NsBody::Ok);
        assert_eq!(persist.unwrap().record, r);
        let (b, persist) = ask(&mut s, 2, NsBody::Put(Box::new(r.clone())));
        assert!(matches!(b, NsBody::Error { code: NsErrorCode::Stale, .. }) && persist.is_none());
        assert_eq!(
            ask(&mut s, 3, NsBody::Resolve("VM1".parse().unwrap())).0,
            NsBody::Records(vec![r.clone()])
        );
        assert!(matches!(
            ask(&mut s, 4, NsBody::Resolve("vm2".parse().unwrap())).0,
            NsBody::Error { code: NsErrorCode::NotFound, .. }
        ));
        assert_eq!(ask(&mut s, 5, NsBody::Reverse(k.xid(Principal::Hid))).0, NsBody::Records(vec![r]));
        // Garbage after a valid header: a typed error to its id; too short: nothing.
        let h = s.handle(T0, &[1, 2, 0, 0, 0, 9, 0xff]);
        let m = NsMessage::parse(&h.reply.unwrap()).unwrap();
        assert!(matches!(m, NsMessage { id: 9, body: NsBody::Error { code: NsErrorCode::Malformed, .. } }));
        assert!(s.handle(T0, &[1, 2]).reply.is_none());
        // An answer sent to the server is not answered.
        assert!(s.handle(T0, &NsMessage { id: 1, body: NsBody::Ok }.to_bytes().unwrap()).reply.is_none());
        let st = s.stats();
        assert_eq!((st.malformed, st.dropped, st.resolves, st.not_found), (2, 2, 2, 1));
        let NsBody::Counters(cs) = ask(&mut s, 6, NsBody::Stats).0 else { panic!() };
        let get = |k: &str| cs.iter().find(|(n, _)| n == k).map(|(_, v)| *v);
        assert_eq!((get("taken"), get("refused_stale"), get("names")), (Some(1), Some(1), Some(1)));
    }

    #[test]
    fn lists_are_cut_to_fit_a_datagram() {
        let mut s = Service::new(NameTable::new(TableConfig::default()), 1400);
        let k = Keypair::from_seed([3; 32]);
        let dag = Dag::host(Xid::new(Principal::Ad, [1; 20]), k.xid(Principal::Hid)).unwrap();
        for i in 0..40 {
            let r = Record::signed(&k, format!("host-{i:02}").parse().unwrap(), Some(dag.clone()), 1, 60_000);
            s.table.put(T0, r).unwrap();
        }
        let NsBody::Records(rs) = ask(&mut s, 1, NsBody::List { after: None, max: 1000 }).0 else { panic!() };
        let bytes = NsMessage { id: 1, body: NsBody::Records(rs.clone()) }.to_bytes().unwrap();
        assert!(bytes.len() <= 1400 && rs.len() >= 5, "{} records in {} bytes", rs.len(), bytes.len());
        // The next page starts after the last name.
        let after = rs.last().unwrap().name.clone();
        let NsBody::Records(next) = ask(&mut s, 2, NsBody::List { after: Some(after.clone()), max: 3 }).0
        else {
            panic!()
        };
        assert_eq!(next.len(), 3);
        assert!(next[0].name > after);
    }
}
