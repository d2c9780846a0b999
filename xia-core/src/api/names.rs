//! Names: a client of a name server (`xnsd`, a DGRAM service at `SID_NS`), with a cache.
//!
//! Requests go as datagrams to the server's DAG, matched to their answers by id and sent again
//! when an answer is late. Answers are checked: a record must be signed by a key that owns its
//! DAG's intent, so a server (or anyone on the way) cannot make a name lead elsewhere.
//! Resolutions are cached for the record's TTL (at most [`NameClient::max_cache`]), names not
//! found for [`NameClient::negative_cache`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Xia, XiaDatagram, XiaError};
use crate::dag::Dag;
use crate::ipc::{Request, Response};
use crate::keys::Keypair;
use crate::wire::control::seq_base;
use crate::wire::names::{Name, NsBody, NsErrorCode, NsMessage, Record, MAX_RECORDS};
use crate::xid::Xid;

/// A client of one name server.
#[derive(Debug)]
pub struct NameClient {
    sock: XiaDatagram,
    server: Dag,
    next_id: u32,
    /// The last sequence number this client signed (the next is above it and the clock's).
    last_seq: u64,
    /// Resolutions: the DAG (or none: not found) and until when it holds.
    cache: HashMap<Name, (Option<Dag>, Instant)>,
    /// Time to wait for each answer.
    pub patience: Duration,
    /// Tries per request.
    pub tries: u32,
    /// Longest a resolution is kept.
    pub max_cache: Duration,
    /// How long a name not found is remembered as such.
    pub negative_cache: Duration,
}

/// Names remembered at most.
const CACHE_MAX: usize = 4096;

impl NameClient {
    /// A client of the server at `server`, through the host daemon `xia`.
    pub async fn new(xia: &Xia, server: Dag) -> Result<NameClient, XiaError> {
        let sock = xia.bind_dgram(None).await?;
        let mut id = [0u8; 4];
        let _ = getrandom::getrandom(&mut id);
        Ok(NameClient {
            sock,
            server,
            next_id: u32::from_le_bytes(id),
            last_seq: 0,
            cache: HashMap::new(),
            patience: Duration::from_millis(500),
            tries: 4,
            max_cache: Duration::from_secs(30),
            negative_cache: Duration::from_secs(1),
        })
    }

    /// Sends `body`; the answer's body (a refusal is [`XiaError::Name`]).
    pub async fn request(&mut self, body: NsBody) -> Result<NsBody, XiaError> {
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        let bytes = NsMessage { id, body }.to_bytes().map_err(|e| XiaError::BadRequest(e.to_string()))?;
        for _ in 0..self.tries {
            self.sock.send_to(&bytes, &self.server).await?;
            let deadline = tokio::time::Instant::now() + self.patience;
            loop {
                let Ok(got) = tokio::time::timeout_at(deadline, self.sock.recv_from()).await else { break };
                let (data, _) = got?;
                // Answers to earlier tries or to other requests: not this one's.
                let Ok(m) = NsMessage::parse(&data) else { continue };
                if m.id != id {
                    continue;
                }
                return match m.body {
                    NsBody::Error { code, text } => Err(XiaError::Name { code, text }),
                    b => Ok(b),
                };
            }
        }
        Err(XiaError::TimedOut)
    }

    /// The record of `name`, checked (signed by a key owning its DAG), from the server.
    pub async fn lookup(&mut self, name: &Name) -> Result<Record, XiaError> {
        match self.request(NsBody::Resolve(name.clone())).await? {
            NsBody::Records(mut rs) if rs.len() == 1 && rs[0].name == *name => {
                let r = rs.remove(0);
                r.verify().map_err(|e| XiaError::Protocol(format!("{name}: {e}")))?;
                Ok(r)
            }
            other => Err(XiaError::Protocol(format!("answer to a resolution: {other:?}"))),
        }
    }

    /// The DAG `name` leads to, from the cache while it holds.
    pub async fn resolve(&mut self, name: &Name) -> Result<Dag, XiaError> {
        let now = Instant::now();
        if let Some((dag, until)) = self.cache.get(name) {
            if *until > now {
                return dag.clone().ok_or_else(|| XiaError::Name {
                    code: NsErrorCode::NotFound,
                    text: format!("{name}: no such name (cached)"),
                });
            }
        }
        if self.cache.len() >= CACHE_MAX {
            self.cache.retain(|_, (_, until)| *until > now);
            if self.cache.len() >= CACHE_MAX {
                self.cache.clear();
            }
        }
        match self.lookup(name).await {
            Ok(r) => {
                let keep = Duration::from_millis(u64::from(r.ttl_ms)).min(self.max_cache);
                self.cache.insert(name.clone(), (r.dag.clone(), now + keep));
                r.dag.ok_or_else(|| XiaError::Name {
                    code: NsErrorCode::NotFound,
                    text: format!("{name}: deleted"),
                })
            }
            Err(e @ XiaError::Name { code: NsErrorCode::NotFound, .. }) => {
                self.cache.insert(name.clone(), (None, now + self.negative_cache));
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Binds `name` to `dag` (`None`: deletes it) for `ttl`, signed by `key` (which must own the
    /// DAG's intent), with a sequence number from the clock.
    pub async fn put(
        &mut self,
        key: &Keypair,
        name: Name,
        dag: Option<Dag>,
        ttl: Duration,
    ) -> Result<(), XiaError> {
        let seq = self.next_seq();
        self.send_put(Record::signed(key, name, dag, seq, ttl_ms(ttl))).await
    }

    /// A sequence number above the last one this client signed and the clock's.
    fn next_seq(&mut self) -> u64 {
        self.last_seq = (self.last_seq + 1).max(seq_base(crate::sys::wall_ms()));
        self.last_seq
    }

    /// Sends a signed record; the name's cached resolution goes.
    async fn send_put(&mut self, r: Record) -> Result<(), XiaError> {
        self.cache.remove(&r.name);
        match self.request(NsBody::Put(Box::new(r))).await? {
            NsBody::Ok => Ok(()),
            other => Err(XiaError::Protocol(format!("answer to a registration: {other:?}"))),
        }
    }

    /// Binds `name` to this host's DAG (`dag`; `None`: deletes it) for `ttl`, signed by the
    /// host's key through `xiad`.
    pub async fn put_as_host(
        &mut self,
        xia: &Xia,
        name: Name,
        dag: Option<Dag>,
        ttl: Duration,
    ) -> Result<(), XiaError> {
        let seq = self.next_seq();
        let r = xia.sign_name(&name, dag, seq, ttl_ms(ttl)).await?;
        self.send_put(r).await
    }

    /// The names leading to `xid` (a HID or SID).
    pub async fn reverse(&mut self, xid: Xid) -> Result<Vec<Record>, XiaError> {
        match self.request(NsBody::Reverse(xid)).await? {
            NsBody::Records(rs) => Ok(rs),
            other => Err(XiaError::Protocol(format!("answer to a reverse lookup: {other:?}"))),
        }
    }

    /// The server's counters, by name.
    pub async fn stats(&mut self) -> Result<Vec<(String, u64)>, XiaError> {
        match self.request(NsBody::Stats).await? {
            NsBody::Counters(cs) => Ok(cs),
            other => Err(XiaError::Protocol(format!("answer to stats: {other:?}"))),
        }
    }

    /// Every live record, in name order (page by page).
    pub async fn list(&mut self) -> Result<Vec<Record>, XiaError> {
        let mut all: Vec<Record> = Vec::new();
        loop {
            let after = all.last().map(|r| r.name.clone());
            match self.request(NsBody::List { after, max: MAX_RECORDS as u16 }).await? {
                NsBody::Records(rs) if rs.is_empty() => return Ok(all),
                NsBody::Records(rs) => all.extend(rs),
                other => return Err(XiaError::Protocol(format!("answer to a list: {other:?}"))),
            }
        }
    }
}

fn ttl_ms(ttl: Duration) -> u32 {
    ttl.as_millis().min(u128::from(u32::MAX)) as u32
}

impl Xia {
    /// A name record for `name` to `dag` (its intent this host's HID; `None`: a deletion),
    /// signed by the host's key in `xiad` (the application never sees the key).
    pub async fn sign_name(
        &self,
        name: &Name,
        dag: Option<Dag>,
        seq: u64,
        ttl_ms: u32,
    ) -> Result<Record, XiaError> {
        let req = Request::SignName { name: name.to_string(), dag, seq, ttl_ms };
        match self.call(req).await? {
            Response::SignedName(b) => Record::from_bytes(&b).map_err(|e| XiaError::Protocol(e.to_string())),
            m => Err(super::conn::unexpected(&m)),
        }
    }

    /// A client of the name server this host's AD announces (`xia info`'s name server).
    pub async fn names(&self) -> Result<NameClient, XiaError> {
        let server = self.info().await?.name_server.ok_or(XiaError::Name {
            code: NsErrorCode::NotFound,
            text: "no name server: the AD announces none".into(),
        })?;
        NameClient::new(self, server).await
    }
}
