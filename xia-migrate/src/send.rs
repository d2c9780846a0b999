//! `xmigrate send`: QEMU's outgoing stream (its stdin) published as chunks and offered, in
//! order, to the receiver over the control connection; chunks are unpublished as the receiver
//! acknowledges them, and no more than a window of bytes is ever unacknowledged, so QEMU feels
//! the network's pace in its own writes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use xia_core::api::{Publisher, Xia, XiaError};
use xia_core::xid::Xid;
use xia_core::Dag;

use crate::proto::{self, Msg, Reader, VERSION};
use crate::stdio::{read_stdin, Input};
use crate::{MigrateError, Summary};

/// How `xmigrate send` runs.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// The receiver's DAG (its intent the migration SID).
    pub dest: Dag,
    /// Give up when nothing moves for this long (and to reach the receiver at all).
    pub timeout: Duration,
    /// Largest chunk.
    pub chunk: usize,
    /// A pause of QEMU's stream this long sends the partial chunk.
    pub idle: Duration,
    /// Bytes offered and not yet acknowledged, at most.
    pub window: usize,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            dest: Dag::linear(&[xia_core::xid::SID_MIGRATE]).expect("a one-node DAG"),
            timeout: Duration::from_secs(10),
            chunk: 1 << 20,
            idle: Duration::from_micros(500),
            window: 4 << 20,
        }
    }
}

/// Sends QEMU's stream from stdin to the receiver at `opts.dest`.
pub async fn send(xia: Xia, opts: SendOptions) -> Result<Summary, MigrateError> {
    let start = Instant::now();
    let t = opts.timeout;
    let stream = tokio::time::timeout(t, connect(&xia, &opts.dest))
        .await
        .map_err(|_| {
            MigrateError::Unreachable(format!("no answer from {} within {t:?}", one_line(&opts.dest)))
        })?
        .map_err(|e| MigrateError::Unreachable(format!("{}: {e}", one_line(&opts.dest))))?;
    let (r, mut w) = tokio::io::split(stream);
    let mut reader = Reader::new(r);
    let session = session_id();
    proto::send(&mut w, &Msg::Hello { version: VERSION, session, chunk_max: opts.chunk as u32 }).await?;
    match tokio::time::timeout(t, reader.next()).await.map_err(|_| MigrateError::Stalled(t))?? {
        Msg::Welcome { version: VERSION, session: s } if s == session => {}
        Msg::Abort { reason } => return Err(MigrateError::Remote(reason)),
        m => return Err(MigrateError::Protocol(format!("expected Welcome, got {m:?}"))),
    }
    tracing::info!("session {session:016x}: sending to {}", one_line(&opts.dest));
    // Chunks leased: if this process dies, its daemon unpublishes them. No-store: a VM's memory
    // is fetched once and has no business in routers' caches (and the routers' fast path
    // forwards what it need not watch).
    let mut chunks = xia.chunks_leased().await?;
    chunks.set_no_store().await?;
    let mut publisher = Publisher::new(chunks);
    let mut input = read_stdin(opts.chunk, opts.idle, 2);
    let r = run(&mut publisher, &mut input, &mut reader, &mut w, &opts, start).await;
    if let Err(e) = &r {
        if !matches!(e, MigrateError::Remote(_)) {
            // Best effort: the receiver learns why at once instead of timing out.
            let abort = Msg::Abort { reason: e.to_string() };
            let _ = tokio::time::timeout(Duration::from_millis(500), proto::send(&mut w, &abort)).await;
        }
    }
    let _ = w.shutdown().await;
    r
}

/// Connects to the receiver, again while it refuses (it may start a moment after the sender:
/// both are started by their QEMU).
async fn connect(xia: &Xia, dest: &Dag) -> Result<xia_core::api::XiaStream, XiaError> {
    loop {
        match xia.connect(dest).await {
            Err(XiaError::Refused) => tokio::time::sleep(Duration::from_millis(50)).await,
            r => return r,
        }
    }
}

/// Publications in flight at once. One: on two cores the sender is CPU-bound, and more in
/// flight only added work (Fig. 1b, MTU 9000, 512 MiB from a file, release build: 3.8 Gbit/s
/// with 1, 3.3 with 2, 3.1 with 4).
const PUBLISHING: usize = 1;

struct Offered {
    seq: u64,
    cid: Xid,
    len: usize,
}

async fn run<R, W>(
    publisher: &mut Publisher,
    input: &mut tokio::sync::mpsc::Receiver<Input>,
    reader: &mut Reader<R>,
    w: &mut W,
    opts: &SendOptions,
    start: Instant,
) -> Result<Summary, MigrateError>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut unacked: VecDeque<Offered> = VecDeque::new();
    // Offered and not acknowledged, or being published.
    let mut held = 0usize;
    let mut next_seq = 0u64;
    let mut total = 0u64;
    let mut input_done = false;
    let mut done_sent = false;
    let mut progress = tokio::time::Instant::now();
    loop {
        if input_done && !done_sent && publisher.in_flight() == 0 {
            proto::send(w, &Msg::Done { chunks: next_seq, bytes: total }).await?;
            done_sent = true;
            tracing::info!("QEMU's stream ended: {total} bytes in {next_seq} chunks");
        }
        let room = held < opts.window && publisher.in_flight() < PUBLISHING;
        let publishing = publisher.in_flight() > 0;
        tokio::select! {
            biased;
            m = reader.next() => {
                progress = tokio::time::Instant::now();
                match m? {
                    Msg::Ack { seq } => {
                        while unacked.front().is_some_and(|o| o.seq <= seq) {
                            let o = unacked.pop_front().expect("checked");
                            held -= o.len;
                            publisher.unpublish(o.cid);
                        }
                    }
                    Msg::Finished { bytes } if done_sent => {
                        if bytes != total {
                            return Err(MigrateError::Protocol(format!("receiver wrote {bytes} of {total} bytes")));
                        }
                        return Ok(Summary { chunks: next_seq, bytes: total, elapsed: start.elapsed() });
                    }
                    Msg::Abort { reason } => return Err(MigrateError::Remote(reason)),
                    m => return Err(MigrateError::Protocol(format!("unexpected {m:?}"))),
                }
            }
            c = publisher.next_published(), if publishing => {
                progress = tokio::time::Instant::now();
                let c = c?;
                proto::send(w, &Msg::Offer { seq: next_seq, cid: c.cid, len: c.len as u32, dag: c.dag }).await?;
                unacked.push_back(Offered { seq: next_seq, cid: c.cid, len: c.len });
                next_seq += 1;
            }
            i = input.recv(), if !input_done && room => {
                progress = tokio::time::Instant::now();
                match i {
                    Some(Input::Chunk(data)) => {
                        publisher.publish(&data).await?;
                        held += data.len();
                        total += data.len() as u64;
                    }
                    Some(Input::End) | None => input_done = true,
                    Some(Input::Failed(e)) => return Err(MigrateError::Qemu(format!("reading QEMU's stream: {e}"))),
                }
            }
            _ = tokio::time::sleep_until(progress + opts.timeout) => {
                return Err(MigrateError::Stalled(opts.timeout));
            }
        }
    }
}

/// A random session number (0 if the OS has no randomness: it only names the session in logs).
pub(crate) fn session_id() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::getrandom(&mut b);
    u64::from_le_bytes(b)
}

pub(crate) fn one_line(d: &Dag) -> String {
    d.to_dag_string().replace('\n', "")
}

impl From<proto::ProtoError> for MigrateError {
    fn from(e: proto::ProtoError) -> MigrateError {
        match e {
            proto::ProtoError::Xia(x) => MigrateError::Network(x),
            proto::ProtoError::Malformed(m) => MigrateError::Protocol(m),
            proto::ProtoError::Closed => MigrateError::Network(XiaError::Closed),
        }
    }
}
