//! CHUNK: publishing content named by its SHA-1 and fetching it, one chunk or many in order.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::conn::{deadline, unexpected, within, Conn};
use super::XiaError;
use crate::dag::Dag;
use crate::ipc::{Request, Response};
use crate::xid::Xid;

/// A published chunk: what a fetcher needs to ask for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRef {
    /// Its CID.
    pub cid: Xid,
    /// Its length.
    pub len: usize,
    /// Where to ask for it.
    pub dag: Dag,
}

/// Content cut into chunks, in order: what [`ChunkClient::put_all`] publishes and
/// [`ChunkClient::fetch_manifest`] fetches. Its text form has a line per chunk:
/// `<CID> <length> <DAG in one-line DAG form>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The chunks, in content order.
    pub chunks: Vec<ChunkRef>,
}

/// Why a manifest's text does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("manifest line {line}: {why}")]
pub struct ManifestError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub why: String,
}

impl Manifest {
    /// Bytes of content in all.
    pub fn total_len(&self) -> u64 {
        self.chunks.iter().map(|c| c.len as u64).sum()
    }
}

impl fmt::Display for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.chunks {
            writeln!(f, "{} {} {}", c.cid, c.len, c.dag.to_dag_string().replace('\n', ""))?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Manifest {
    type Err = ManifestError;
    fn from_str(text: &str) -> Result<Manifest, ManifestError> {
        let mut chunks = Vec::new();
        for (i, l) in text.lines().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            let err = |why: String| ManifestError { line: i + 1, why };
            let mut w = l.trim().splitn(3, ' ');
            let (Some(cid), Some(len), Some(dag)) = (w.next(), w.next(), w.next()) else {
                return Err(err("want `<CID> <length> <DAG>`".into()));
            };
            let cid: Xid = cid.parse().map_err(|e| err(format!("{cid}: {e}")))?;
            let len: usize = len.parse().map_err(|_| err(format!("bad length {len}")))?;
            let dag: Dag = dag.parse().map_err(|e| err(format!("{dag}: {e}")))?;
            chunks.push(ChunkRef { cid, len, dag });
        }
        Ok(Manifest { chunks })
    }
}

/// How a bulk fetch runs.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Chunks requested and not yet delivered, at most. 32 chunks of 1 MiB keep a fetch
    /// pipeline full at MTU 9000 here (16 ran dry between chunks).
    pub window: usize,
    /// When the whole transfer must be done; past it, [`Fetch::next`] fails with
    /// [`XiaError::TimedOut`]. Chunks that time out or arrive corrupt are asked for again until
    /// then; without a deadline the first failure of a chunk is final.
    pub deadline: Option<Instant>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions { window: 32, deadline: None }
    }
}

/// Publishes and fetches chunks (content named by its SHA-1), like `XputChunk` and
/// `XrequestChunk`. One client holds one connection to the daemon; fetches on it are pipelined.
///
/// A call given up (dropped, or past its deadline) leaves nothing that a later call would
/// mistake for its own: answers owed to it are counted and skipped, its fetches cancelled. One
/// given up in the middle of writing its request (a chunk too big for the socket's buffer)
/// leaves the connection unusable: later calls fail with [`XiaError::Protocol`].
#[derive(Debug)]
pub struct ChunkClient {
    conn: Conn,
    next_tag: u64,
    /// Results that arrived while another answer was awaited.
    done: HashMap<u64, Result<Vec<u8>, XiaError>>,
    order: VecDeque<u64>,
    /// Fetches given up: their results are dropped when they come, until the daemon confirms the
    /// cancel.
    abandoned: HashSet<u64>,
    /// Cancels to send before the next request.
    cancels: Vec<u64>,
    /// Answers (to publications and removals) the daemon still owes, in order.
    owed: usize,
    /// The fetch of a [`ChunkClient::fetch`] under way (abandoned if that call was dropped).
    current: Option<u64>,
    timeout: Option<Duration>,
}

/// Publications in flight at once in [`ChunkClient::put_iter`].
const PUT_WINDOW: usize = 8;

impl ChunkClient {
    pub(crate) fn new(conn: Conn, timeout: Option<Duration>) -> ChunkClient {
        ChunkClient {
            conn,
            next_tag: 1,
            done: HashMap::new(),
            order: VecDeque::new(),
            abandoned: HashSet::new(),
            cancels: Vec::new(),
            owed: 0,
            current: None,
            timeout,
        }
    }

    /// How long each call waits at most (`None`: for ever).
    pub fn set_timeout(&mut self, t: Option<Duration>) {
        self.timeout = t;
    }

    /// Gives up fetch `tag`: its result, if here, goes; one still to come is dropped.
    fn abandon(&mut self, tag: u64) {
        if self.done.remove(&tag).is_some() {
            self.order.retain(|&t| t != tag);
        } else {
            self.abandoned.insert(tag);
            self.cancels.push(tag);
        }
    }

    /// What every call does first: cleans up after calls that were given up.
    async fn settle(&mut self) -> Result<(), XiaError> {
        if let Some(t) = self.current.take() {
            self.abandon(t);
        }
        while let Some(&tag) = self.cancels.last() {
            self.conn.send(&Request::ChunkCancel { tag }, &[]).await?;
            self.cancels.pop();
        }
        Ok(())
    }

    /// Reads one message: a fetch result is kept aside (`None`); an answer to a publication or
    /// removal (or an error) is returned.
    async fn pump(&mut self) -> Result<Option<Response>, XiaError> {
        let (m, data) = self.conn.recv().await?;
        match m {
            Response::ChunkData { tag } => self.note(tag, Ok(data)),
            Response::ChunkFailed { tag, code } => {
                self.note(tag, Err(XiaError::from_code(code, String::new())))
            }
            Response::Cancelled { tag } => {
                self.abandoned.remove(&tag);
            }
            m => return Ok(Some(m)),
        }
        Ok(None)
    }

    /// The answer owed to the caller, after `stale` answers owed to calls given up.
    async fn answer(&mut self, stale: &mut usize) -> Result<Response, XiaError> {
        loop {
            let Some(m) = self.pump().await? else { continue };
            self.owed = self.owed.saturating_sub(1);
            if *stale > 0 {
                *stale -= 1;
                continue;
            }
            return match m {
                Response::Error { code, message } => Err(XiaError::from_code(code, message)),
                m => Ok(m),
            };
        }
    }

    /// Waits for fetch results; answers owed to calls given up are skipped.
    async fn pump_results(&mut self) -> Result<(), XiaError> {
        match self.pump().await? {
            None => Ok(()),
            Some(_) if self.owed > 0 => {
                self.owed -= 1;
                Ok(())
            }
            Some(Response::Error { code, message }) => Err(XiaError::from_code(code, message)),
            Some(m) => Err(unexpected(&m)),
        }
    }

    fn note(&mut self, tag: u64, r: Result<Vec<u8>, XiaError>) {
        if self.abandoned.contains(&tag) {
            return;
        }
        self.done.insert(tag, r);
        self.order.push_back(tag);
    }

    /// Sends a request owed an answer.
    async fn send_owed(&mut self, req: &Request, payload: &[u8]) -> Result<(), XiaError> {
        self.owed += 1;
        if let Err(e) = self.conn.send(req, payload).await {
            // Not sent (too large, or the connection is gone): nothing is owed for it.
            self.owed -= 1;
            return Err(e);
        }
        Ok(())
    }

    /// Publishes `data` on this host; returns its CID and the DAG others fetch it at. A chunk
    /// of 64 KiB or more is written from `data` and read by xiad straight into its store.
    pub async fn put(&mut self, data: &[u8]) -> Result<(Xid, Dag), XiaError> {
        let d = deadline(self.timeout);
        within(d, async {
            self.settle().await?;
            let mut stale = self.owed;
            self.send_owed(&Request::ChunkPut, data).await?;
            match self.answer(&mut stale).await? {
                Response::Put { cid, dag } => Ok((cid, dag)),
                m => Err(unexpected(&m)),
            }
        })
        .await
    }

    /// Publishes `data` cut into chunks of `chunk_size` bytes (the last one shorter); returns
    /// their manifest.
    pub async fn put_all(&mut self, data: &[u8], chunk_size: usize) -> Result<Manifest, XiaError> {
        self.put_iter(data.chunks(chunk_size.max(1))).await
    }

    /// Publishes each of `chunks`, in order, as they come; returns their manifest. The
    /// publications are pipelined (a few in flight at once) and each chunk is written from where
    /// it is. On an error, the chunks published before it stay published.
    pub async fn put_iter<B: AsRef<[u8]>>(
        &mut self,
        chunks: impl IntoIterator<Item = B>,
    ) -> Result<Manifest, XiaError> {
        let d = deadline(self.timeout);
        let mut chunks = chunks.into_iter();
        within(d, async {
            self.settle().await?;
            let mut stale = self.owed;
            let mut done = Vec::new();
            let mut lens = VecDeque::new();
            loop {
                while lens.len() < PUT_WINDOW {
                    let Some(c) = chunks.next() else { break };
                    self.send_owed(&Request::ChunkPut, c.as_ref()).await?;
                    lens.push_back(c.as_ref().len());
                }
                let Some(len) = lens.pop_front() else { break };
                match self.answer(&mut stale).await? {
                    Response::Put { cid, dag } => done.push(ChunkRef { cid, len, dag }),
                    m => return Err(unexpected(&m)),
                }
            }
            Ok(Manifest { chunks: done })
        })
        .await
    }

    /// Marks what this client publishes from now on as not to be kept by the nodes that forward
    /// it: no router caches it (and routers with a fast path forward it there). For content
    /// fetched once, or that should not sit in caches: a VM's memory in migration.
    pub async fn set_no_store(&mut self) -> Result<(), XiaError> {
        within(deadline(self.timeout), async {
            self.settle().await?;
            let mut stale = self.owed;
            self.send_owed(&Request::ChunkNoStore, &[]).await?;
            match self.answer(&mut stale).await? {
                Response::Ok => Ok(()),
                m => Err(unexpected(&m)),
            }
        })
        .await
    }

    /// Stops publishing `cid`.
    pub async fn remove(&mut self, cid: Xid) -> Result<(), XiaError> {
        within(deadline(self.timeout), async {
            self.settle().await?;
            let mut stale = self.owed;
            self.send_owed(&Request::ChunkRemove { cid }, &[]).await?;
            match self.answer(&mut stale).await? {
                Response::Ok => Ok(()),
                m => Err(unexpected(&m)),
            }
        })
        .await
    }

    /// Starts fetching `cid` from `dag` (`len` if known); returns a tag for
    /// [`ChunkClient::next`]. Many fetches can be in flight: the daemon pipelines them.
    pub async fn request(&mut self, cid: Xid, dag: &Dag, len: Option<usize>) -> Result<u64, XiaError> {
        within(deadline(self.timeout), async {
            self.settle().await?;
            self.send_request(cid, dag, len).await
        })
        .await
    }

    async fn send_request(&mut self, cid: Xid, dag: &Dag, len: Option<usize>) -> Result<u64, XiaError> {
        let tag = self.next_tag;
        self.next_tag += 1;
        let req = Request::ChunkFetch { tag, cid, dag: dag.clone(), len: len.map(|l| l as u64) };
        self.conn.send(&req, &[]).await?;
        Ok(tag)
    }

    /// Gives up the fetch `tag`: nothing more is heard of it.
    pub async fn cancel(&mut self, tag: u64) -> Result<(), XiaError> {
        self.abandon(tag);
        within(deadline(self.timeout), self.settle()).await
    }

    /// The next fetch to finish: its tag and its verified bytes (or why not).
    pub async fn next(&mut self) -> Result<(u64, Result<Vec<u8>, XiaError>), XiaError> {
        within(deadline(self.timeout), async {
            loop {
                if let Some(tag) = self.order.pop_front() {
                    let r = self.done.remove(&tag).expect("ordered tags are stored");
                    return Ok((tag, r));
                }
                self.pump_results().await?;
            }
        })
        .await
    }

    /// Fetches one chunk, like `XrequestChunk` + `XreadChunk`.
    pub async fn fetch(&mut self, cid: Xid, dag: &Dag, len: Option<usize>) -> Result<Vec<u8>, XiaError> {
        let d = deadline(self.timeout);
        let r = within(d, async {
            self.settle().await?;
            let want = self.send_request(cid, dag, len).await?;
            self.current = Some(want);
            loop {
                if let Some(r) = self.done.remove(&want) {
                    self.order.retain(|&t| t != want);
                    self.current = None;
                    return r;
                }
                self.pump_results().await?;
            }
        })
        .await;
        // Given up (deadline): cancelled now rather than at the next call.
        if r.is_err() && self.current.is_some() {
            let _ = self.settle().await;
        }
        r
    }

    /// A bulk fetch: chunks announced through the returned [`Announcer`] (from another task, as
    /// their CIDs become known) are fetched with a window of requests in flight and delivered in
    /// the order announced by [`Fetch::next`].
    pub fn fetch_announced(&mut self, opts: FetchOptions) -> (Announcer, Fetch<'_>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Announcer(tx), Fetch::new(self, rx, opts))
    }

    /// Fetches every chunk of `m`, delivered in order by [`Fetch::next`].
    pub fn fetch_manifest(&mut self, m: &Manifest, opts: FetchOptions) -> Fetch<'_> {
        let (tx, rx) = mpsc::unbounded_channel();
        for c in &m.chunks {
            let _ = tx.send(Item::Fetch(c.clone()));
        }
        drop(tx);
        Fetch::new(self, rx, opts)
    }
}

/// Publishes a stream of chunks with several publications in flight, and unpublishes them, on
/// one connection (xmigrate's sender does both as QEMU's stream goes by): a publication's answer
/// is taken when the caller wants it, in the order published, and removals ride along without
/// anyone waiting for them.
#[derive(Debug)]
pub struct Publisher {
    client: ChunkClient,
    /// Answers owed to this publisher, in order: a publication (its length), or a removal.
    expect: VecDeque<Option<usize>>,
    /// Answers owed to calls given up before (on the client), to skip first.
    stale: usize,
    removals: Vec<Xid>,
}

impl Publisher {
    /// Publishes through `client` (a leased one, for a stream that must not outlive its
    /// publisher).
    pub fn new(client: ChunkClient) -> Publisher {
        let stale = client.owed;
        Publisher { client, expect: VecDeque::new(), stale, removals: Vec::new() }
    }

    /// Publications sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.expect.iter().filter(|e| e.is_some()).count()
    }

    /// Sends the removals queued by [`Publisher::unpublish`].
    pub async fn flush(&mut self) -> Result<(), XiaError> {
        self.client.settle().await?;
        while let Some(&cid) = self.removals.last() {
            self.client.send_owed(&Request::ChunkRemove { cid }, &[]).await?;
            self.expect.push_back(None);
            self.removals.pop();
        }
        Ok(())
    }

    /// Sends `data` for publication (after the queued removals); its answer comes from
    /// [`Publisher::next_published`], in order. Does not wait for the daemon.
    pub async fn publish(&mut self, data: &[u8]) -> Result<(), XiaError> {
        self.flush().await?;
        self.client.send_owed(&Request::ChunkPut, data).await?;
        self.expect.push_back(Some(data.len()));
        Ok(())
    }

    /// Queues the removal of `cid` (one reference, on a leased client), sent with the next call.
    pub fn unpublish(&mut self, cid: Xid) {
        self.removals.push(cid);
    }

    /// The oldest publication in flight, published: its CID, length and DAG. Cancel-safe.
    pub async fn next_published(&mut self) -> Result<ChunkRef, XiaError> {
        loop {
            if !self.expect.iter().any(Option::is_some) {
                return Err(XiaError::BadRequest("no publication in flight".into()));
            }
            let Some(m) = self.client.pump().await? else { continue };
            self.client.owed = self.client.owed.saturating_sub(1);
            if self.stale > 0 {
                self.stale -= 1;
                continue;
            }
            match (self.expect.pop_front(), m) {
                (Some(Some(len)), Response::Put { cid, dag }) => return Ok(ChunkRef { cid, len, dag }),
                (Some(None), Response::Ok) => {}
                (_, Response::Error { code, message }) => return Err(XiaError::from_code(code, message)),
                (_, m) => return Err(unexpected(&m)),
            }
        }
    }
}

/// What is announced to a [`Fetch`]: a chunk to fetch, or bytes the application already holds
/// (a chunk it fetched before: it is delivered in its turn without asking the network).
// As announced: a few a millisecond at most; boxing the DAG would gain nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Item {
    Fetch(ChunkRef),
    Local(Vec<u8>),
}

/// Announces chunks to a [`Fetch`]. Dropping it (every clone) says no more will come: the fetch
/// then ends once it has delivered what was announced.
#[derive(Debug, Clone)]
pub struct Announcer(mpsc::UnboundedSender<Item>);

impl Announcer {
    /// Adds a chunk to fetch after those announced before. False if the fetch is gone.
    pub fn announce(&self, c: ChunkRef) -> bool {
        self.0.send(Item::Fetch(c)).is_ok()
    }

    /// Adds bytes already held (e.g. a chunk whose CID came before), delivered in their turn
    /// without a fetch. False if the fetch is gone.
    pub fn announce_local(&self, bytes: Vec<u8>) -> bool {
        self.0.send(Item::Local(bytes)).is_ok()
    }
}

/// An announced chunk on its way.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Slot {
    Fetching { tag: u64, chunk: ChunkRef },
    Ready(Vec<u8>),
}

/// Chunks fetched with a window of requests in flight, delivered in the order announced.
#[derive(Debug)]
pub struct Fetch<'a> {
    client: &'a mut ChunkClient,
    announced: mpsc::UnboundedReceiver<Item>,
    /// No more announcements will come.
    closed: bool,
    queue: VecDeque<Item>,
    /// Announced and taken up, in delivery order.
    in_flight: VecDeque<Slot>,
    /// Of which fetches.
    fetching: usize,
    opts: FetchOptions,
    delivered_bytes: u64,
    delivered_chunks: u64,
    retries: u64,
}

impl<'a> Fetch<'a> {
    fn new(
        client: &'a mut ChunkClient,
        announced: mpsc::UnboundedReceiver<Item>,
        opts: FetchOptions,
    ) -> Fetch<'a> {
        Fetch {
            client,
            announced,
            closed: false,
            queue: VecDeque::new(),
            in_flight: VecDeque::new(),
            fetching: 0,
            opts: FetchOptions { window: opts.window.max(1), ..opts },
            delivered_bytes: 0,
            delivered_chunks: 0,
            retries: 0,
        }
    }

    /// Bytes delivered so far.
    pub fn delivered_bytes(&self) -> u64 {
        self.delivered_bytes
    }

    /// Chunks delivered so far.
    pub fn delivered_chunks(&self) -> u64 {
        self.delivered_chunks
    }

    /// Chunks asked for again after a timeout or a corrupt copy.
    pub fn retries(&self) -> u64 {
        self.retries
    }

    fn take_announced(&mut self) {
        loop {
            match self.announced.try_recv() {
                Ok(c) => self.queue.push_back(c),
                Err(mpsc::error::TryRecvError::Empty) => return,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.closed = true;
                    return;
                }
            }
        }
    }

    async fn fill_window(&mut self) -> Result<(), XiaError> {
        self.client.settle().await?;
        while self.fetching < self.opts.window {
            match self.queue.pop_front() {
                None => break,
                Some(Item::Local(b)) => self.in_flight.push_back(Slot::Ready(b)),
                Some(Item::Fetch(chunk)) => {
                    let tag = self.client.send_request(chunk.cid, &chunk.dag, Some(chunk.len)).await?;
                    self.in_flight.push_back(Slot::Fetching { tag, chunk });
                    self.fetching += 1;
                }
            }
        }
        Ok(())
    }

    /// The next chunk in announced order, verified against its CID; `None` once the announcer
    /// is gone and every chunk it announced was delivered. A chunk that cannot be had is an
    /// error, in its turn.
    pub async fn next(&mut self) -> Option<Result<Vec<u8>, XiaError>> {
        let deadline = self.opts.deadline;
        let r = within(deadline, self.next_inner()).await;
        match r {
            Ok(Some(data)) => Some(Ok(data)),
            Ok(None) => None,
            Err(e) => {
                if matches!(e, XiaError::TimedOut) {
                    self.abandon();
                }
                Some(Err(e))
            }
        }
    }

    /// Gives up what is in flight (after the deadline); those chunks are announced again, in
    /// their order, at the head of the queue.
    fn abandon(&mut self) {
        for slot in self.in_flight.drain(..).rev() {
            match slot {
                Slot::Fetching { tag, chunk } => {
                    self.client.abandon(tag);
                    self.queue.push_front(Item::Fetch(chunk));
                }
                Slot::Ready(b) => self.queue.push_front(Item::Local(b)),
            }
        }
        self.fetching = 0;
    }

    fn delivered(&mut self, data: Vec<u8>) -> Option<Vec<u8>> {
        self.delivered_bytes += data.len() as u64;
        self.delivered_chunks += 1;
        Some(data)
    }

    async fn next_inner(&mut self) -> Result<Option<Vec<u8>>, XiaError> {
        loop {
            self.take_announced();
            self.fill_window().await?;
            let front = match self.in_flight.front() {
                Some(Slot::Ready(_)) => {
                    let Some(Slot::Ready(b)) = self.in_flight.pop_front() else { unreachable!("checked") };
                    return Ok(self.delivered(b));
                }
                Some(Slot::Fetching { tag, .. }) => *tag,
                None => {
                    if self.closed && self.queue.is_empty() {
                        return Ok(None);
                    }
                    // Nothing to fetch until more is announced.
                    match self.announced.recv().await {
                        Some(c) => self.queue.push_back(c),
                        None => self.closed = true,
                    }
                    continue;
                }
            };
            if let Some(r) = self.client.done.remove(&front) {
                self.client.order.retain(|&t| t != front);
                let Some(Slot::Fetching { chunk, .. }) = self.in_flight.pop_front() else {
                    unreachable!("the front is this fetch")
                };
                self.fetching -= 1;
                match r {
                    Ok(data) => return Ok(self.delivered(data)),
                    // With time left, a chunk that timed out or kept arriving corrupt is asked
                    // for again (the holder may have been busy, the path lossy).
                    Err(XiaError::TimedOut | XiaError::Corrupt)
                        if self.opts.deadline.is_some_and(|d| Instant::now() < d) =>
                    {
                        self.retries += 1;
                        let tag = self.client.send_request(chunk.cid, &chunk.dag, Some(chunk.len)).await?;
                        self.in_flight.push_front(Slot::Fetching { tag, chunk });
                        self.fetching += 1;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            // Wait for the daemon or for more announcements (they fill the window meanwhile).
            if self.closed || self.fetching >= self.opts.window {
                self.client.pump_results().await?;
                continue;
            }
            tokio::select! {
                r = self.client.pump_results() => r?,
                c = self.announced.recv() => match c {
                    Some(c) => self.queue.push_back(c),
                    None => self.closed = true,
                },
            }
        }
    }
}

impl Drop for Fetch<'_> {
    /// Fetches still in flight are given up (cancelled with the client's next call), so that
    /// their results do not pile up in the client.
    fn drop(&mut self) {
        for slot in self.in_flight.drain(..) {
            if let Slot::Fetching { tag, .. } = slot {
                self.client.abandon(tag);
            }
        }
    }
}
