//! `xmigrate recv`: accepts the sender's control connection, fetches the chunks it offers with
//! a window of requests in flight (each verified against its CID by xiad), writes them to stdout
//! (the destination QEMU) in order, and acknowledges each one written. A chunk whose CID came
//! before is not fetched again.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use xia_core::api::{ChunkRef, FetchOptions, Xia, XiaError};
use xia_core::xid::Xid;

use crate::proto::{self, Msg, Reader, VERSION};
use crate::send::one_line;
use crate::stdio::{write_stdout, Written};
use crate::{MigrateError, Summary};

/// How `xmigrate recv` runs.
#[derive(Debug, Clone)]
pub struct RecvOptions {
    /// The SID to listen on.
    pub sid: Xid,
    /// How long to wait for the sender to connect.
    pub wait: Duration,
    /// Give up when nothing moves for this long.
    pub timeout: Duration,
    /// Chunks requested at once.
    pub window: usize,
    /// Bytes of recent chunks kept to deliver a repeated CID without fetching it.
    pub cache: usize,
    /// Refuse a stream that does not start as QEMU's does (`QEVM`).
    pub check_magic: bool,
}

impl Default for RecvOptions {
    fn default() -> Self {
        RecvOptions {
            sid: xia_core::xid::SID_MIGRATE,
            wait: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
            window: 32,
            cache: 32 << 20,
            check_magic: true,
        }
    }
}

/// What QEMU's migration stream starts with.
const QEMU_MAGIC: &[u8; 4] = b"QEVM";

/// Recent chunks by CID, bounded in bytes.
struct Recent {
    map: lru::LruCache<Xid, Arc<Vec<u8>>>,
    bytes: usize,
    limit: usize,
}

impl Recent {
    fn new(limit: usize) -> Recent {
        Recent { map: lru::LruCache::unbounded(), bytes: 0, limit }
    }

    fn get(&mut self, cid: &Xid) -> Option<Arc<Vec<u8>>> {
        self.map.get(cid).cloned()
    }

    fn put(&mut self, cid: Xid, data: Arc<Vec<u8>>) {
        if data.len() > self.limit {
            return;
        }
        self.bytes += data.len();
        if let Some(old) = self.map.put(cid, data) {
            self.bytes -= old.len();
        }
        while self.bytes > self.limit {
            match self.map.pop_lru() {
                Some((_, d)) => self.bytes -= d.len(),
                None => break,
            }
        }
    }
}

/// Receives one migration and writes it to stdout.
pub async fn recv(xia: Xia, opts: RecvOptions) -> Result<Summary, MigrateError> {
    let mut listener = xia.listen(Some(opts.sid)).await?;
    tracing::info!("listening at {}", one_line(listener.dag()));
    let (stream, peer) = tokio::time::timeout(opts.wait, listener.accept())
        .await
        .map_err(|_| MigrateError::Unreachable(format!("no sender within {:?}", opts.wait)))??;
    drop(listener);
    let start = Instant::now();
    let (r, mut w) = tokio::io::split(stream);
    let mut reader = Reader::new(r);
    let t = opts.timeout;
    let session =
        match tokio::time::timeout(t, reader.next()).await.map_err(|_| MigrateError::Stalled(t))?? {
            Msg::Hello { version: VERSION, session, .. } => session,
            Msg::Hello { version, .. } => {
                let reason = format!("protocol version {version}, this receiver speaks {VERSION}");
                let _ = proto::send(&mut w, &Msg::Abort { reason: reason.clone() }).await;
                return Err(MigrateError::Protocol(reason));
            }
            m => return Err(MigrateError::Protocol(format!("expected Hello, got {m:?}"))),
        };
    proto::send(&mut w, &Msg::Welcome { version: VERSION, session }).await?;
    tracing::info!("session {session:016x}: receiving from {}", one_line(&peer));
    let r = run(&xia, &opts, &mut reader, &mut w, start).await;
    if let Err(e) = &r {
        if !matches!(e, MigrateError::Remote(_)) {
            let abort = Msg::Abort { reason: e.to_string() };
            let _ = tokio::time::timeout(Duration::from_millis(500), proto::send(&mut w, &abort)).await;
        }
    }
    let _ = w.shutdown().await;
    r
}

async fn run<R, W>(
    xia: &Xia,
    opts: &RecvOptions,
    reader: &mut Reader<R>,
    w: &mut W,
    start: Instant,
) -> Result<Summary, MigrateError>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    // The fetch runs in a task of its own, owning its client; chunks come back in order.
    let mut client = xia.chunks().await?;
    let (ann_tx, ann_rx) = oneshot::channel();
    let (fetched_tx, mut fetched) = mpsc::channel::<Result<Vec<u8>, XiaError>>(4);
    let window = opts.window;
    let fetcher = tokio::spawn(async move {
        let (announcer, mut fetch) = client.fetch_announced(FetchOptions { window, deadline: None });
        let _ = ann_tx.send(announcer);
        while let Some(c) = fetch.next().await {
            if fetched_tx.send(c).await.is_err() {
                return;
            }
        }
    });
    let mut announcer = Some(ann_rx.await.map_err(|_| MigrateError::Protocol("fetch task ended".into()))?);
    let (to_stdout, mut written) = write_stdout(4);
    let mut recent = Recent::new(opts.cache);
    // Offered and not yet delivered, in order; delivered and not yet written.
    let mut offers: VecDeque<(u64, Xid)> = VecDeque::new();
    let mut next_offer = 0u64;
    let mut done: Option<(u64, u64)> = None;
    let mut written_bytes = 0u64;
    let mut written_chunks = 0u64;
    let mut progress = tokio::time::Instant::now();
    let mut fetch_over = false;
    let result = loop {
        if let Some((chunks, bytes)) = done {
            if written_chunks == chunks {
                if written_bytes != bytes {
                    break Err(MigrateError::Protocol(format!("wrote {written_bytes} of {bytes} bytes")));
                }
                proto::send(w, &Msg::Finished { bytes }).await?;
                break Ok(Summary { chunks, bytes, elapsed: start.elapsed() });
            }
        }
        tokio::select! {
            biased;
            x = written.recv() => {
                progress = tokio::time::Instant::now();
                match x {
                    Some(Written::Chunk(seq)) => {
                        written_chunks += 1;
                        proto::send(w, &Msg::Ack { seq }).await?;
                    }
                    Some(Written::Failed(e)) => break Err(MigrateError::Qemu(format!("writing to QEMU: {e}"))),
                    None => break Err(MigrateError::Qemu("the stdout thread ended".into())),
                }
            }
            c = fetched.recv(), if !fetch_over => {
                progress = tokio::time::Instant::now();
                let data = match c {
                    Some(Ok(data)) => Arc::new(data),
                    Some(Err(e)) => break Err(MigrateError::Network(e)),
                    // Every offer delivered after Done: the writes finish it.
                    None if done.is_some() && offers.is_empty() => {
                        fetch_over = true;
                        continue;
                    }
                    None => break Err(MigrateError::Protocol("the fetch ended early".into())),
                };
                let Some((seq, cid)) = offers.pop_front() else {
                    break Err(MigrateError::Protocol("a chunk nobody offered".into()));
                };
                if seq == 0 && opts.check_magic && !data.starts_with(QEMU_MAGIC) {
                    break Err(MigrateError::Qemu("the stream does not start as QEMU's (QEVM)".into()));
                }
                recent.put(cid, data.clone());
                written_bytes += data.len() as u64;
                if to_stdout.send((seq, data)).await.is_err() {
                    break Err(MigrateError::Qemu("the stdout thread ended".into()));
                }
            }
            m = reader.next() => {
                progress = tokio::time::Instant::now();
                match m? {
                    Msg::Offer { seq, cid, len, dag } => {
                        if seq != next_offer || done.is_some() {
                            break Err(MigrateError::Protocol(format!("offer {seq} out of order (expected {next_offer})")));
                        }
                        next_offer += 1;
                        let Some(a) = announcer.as_ref() else { break Err(MigrateError::Protocol("offer after done".into())) };
                        // A CID that came before is delivered from here, not fetched again.
                        let ok = match recent.get(&cid) {
                            Some(d) => a.announce_local(d.as_ref().clone()),
                            None => a.announce(ChunkRef { cid, len: len as usize, dag }),
                        };
                        if !ok {
                            break Err(MigrateError::Protocol("fetch task ended".into()));
                        }
                        offers.push_back((seq, cid));
                    }
                    Msg::Done { chunks, bytes } => {
                        if chunks != next_offer {
                            break Err(MigrateError::Protocol(format!("done after {chunks} chunks, {next_offer} offered")));
                        }
                        done = Some((chunks, bytes));
                        announcer = None;
                    }
                    Msg::Abort { reason } => break Err(MigrateError::Remote(reason)),
                    m => break Err(MigrateError::Protocol(format!("unexpected {m:?}"))),
                }
            }
            _ = tokio::time::sleep_until(progress + opts.timeout) => break Err(MigrateError::Stalled(opts.timeout)),
        }
    };
    fetcher.abort();
    result
}
