//! A name service client over the app API: requests to a server's DAG as datagrams, matched
//! to their answers by id, sent again when an answer is late.

use std::time::Duration;

use xia_core::api::{Xia, XiaDatagram, XiaError};
use xia_core::dag::Dag;
use xia_core::keys::Keypair;
use xia_core::wire::control::seq_base;
use xia_core::wire::names::{Name, NsBody, NsErrorCode, NsMessage, Record, MAX_RECORDS};
use xia_core::xid::Xid;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The host daemon failed us.
    #[error(transparent)]
    Xia(#[from] XiaError),
    /// No answer after every try.
    #[error("no answer from the name server {0} after {1} tries")]
    NoAnswer(String, u32),
    /// The server refused, and why.
    #[error("{code:?}: {text}")]
    Refused {
        /// The cause.
        code: NsErrorCode,
        /// The server's words.
        text: String,
    },
    /// An answer that does not fit the request, or a record that does not verify.
    #[error("bad answer: {0}")]
    BadAnswer(String),
}

/// A client of one name server.
#[derive(Debug)]
pub struct NsClient {
    sock: XiaDatagram,
    server: Dag,
    next_id: u32,
    /// The last sequence number this client signed (the next is above it and the clock's).
    last_seq: u64,
    /// Time to wait for each answer.
    pub patience: Duration,
    /// Tries per request.
    pub tries: u32,
}

impl NsClient {
    /// A client of the server at `server`, through the host daemon `xia`.
    pub async fn new(xia: &Xia, server: Dag) -> Result<NsClient, ClientError> {
        let sock = xia.bind_dgram(None).await?;
        let mut id = [0u8; 4];
        let _ = getrandom::getrandom(&mut id);
        Ok(NsClient {
            sock,
            server,
            next_id: u32::from_le_bytes(id),
            last_seq: 0,
            patience: Duration::from_millis(500),
            tries: 4,
        })
    }

    /// Sends `body`, returns the answer's body (errors as [`ClientError::Refused`]).
    pub async fn request(&mut self, body: NsBody) -> Result<NsBody, ClientError> {
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        let bytes = NsMessage { id, body }.to_bytes().map_err(|e| ClientError::BadAnswer(e.to_string()))?;
        for _ in 0..self.tries {
            self.sock.send_to(&bytes, &self.server).await?;
            let deadline = tokio::time::Instant::now() + self.patience;
            loop {
                let got = tokio::time::timeout_at(deadline, self.sock.recv_from()).await;
                let Ok(got) = got else { break };
                let (data, _) = got?;
                // Answers to earlier tries or other requests: not this one's.
                let Ok(m) = NsMessage::parse(&data) else { continue };
                if m.id != id {
                    continue;
                }
                return match m.body {
                    NsBody::Error { code, text } => Err(ClientError::Refused { code, text }),
                    b => Ok(b),
                };
            }
        }
        Err(ClientError::NoAnswer(self.server.to_string(), self.tries))
    }

    /// The record of `name`, checked (signed by a key owning its DAG).
    pub async fn resolve(&mut self, name: &Name) -> Result<Record, ClientError> {
        match self.request(NsBody::Resolve(name.clone())).await? {
            NsBody::Records(mut rs) if rs.len() == 1 && rs[0].name == *name => {
                let r = rs.remove(0);
                r.verify().map_err(|e| ClientError::BadAnswer(e.to_string()))?;
                Ok(r)
            }
            other => Err(ClientError::BadAnswer(format!("{other:?}"))),
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
    ) -> Result<(), ClientError> {
        let ttl_ms = ttl.as_millis().min(u128::from(u32::MAX)) as u32;
        self.last_seq = (self.last_seq + 1).max(seq_base(xia_core::sys::wall_ms()));
        let r = Record::signed(key, name, dag, self.last_seq, ttl_ms);
        match self.request(NsBody::Put(Box::new(r))).await? {
            NsBody::Ok => Ok(()),
            other => Err(ClientError::BadAnswer(format!("{other:?}"))),
        }
    }

    /// The names leading to `xid` (a HID or SID).
    pub async fn reverse(&mut self, xid: Xid) -> Result<Vec<Record>, ClientError> {
        match self.request(NsBody::Reverse(xid)).await? {
            NsBody::Records(rs) => Ok(rs),
            other => Err(ClientError::BadAnswer(format!("{other:?}"))),
        }
    }

    /// The server's counters, by name.
    pub async fn stats(&mut self) -> Result<Vec<(String, u64)>, ClientError> {
        match self.request(NsBody::Stats).await? {
            NsBody::Counters(cs) => Ok(cs),
            other => Err(ClientError::BadAnswer(format!("{other:?}"))),
        }
    }

    /// Every live record, in name order (page by page).
    pub async fn list(&mut self) -> Result<Vec<Record>, ClientError> {
        let mut all: Vec<Record> = Vec::new();
        loop {
            let after = all.last().map(|r| r.name.clone());
            match self.request(NsBody::List { after, max: MAX_RECORDS as u16 }).await? {
                NsBody::Records(rs) if rs.is_empty() => return Ok(all),
                NsBody::Records(rs) => all.extend(rs),
                other => return Err(ClientError::BadAnswer(format!("{other:?}"))),
            }
        }
    }
}
