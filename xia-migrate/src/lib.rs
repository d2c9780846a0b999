//! `xmigrate`: QEMU's exec-mode live migration over XIA. The source QEMU writes its migration
//! stream into `xmigrate send`, which publishes it as chunks (CIDs, checked by whoever fetches
//! them) and offers them in order over a STREAM control connection; `xmigrate recv` on the
//! destination fetches them over CHUNK with a window of requests in flight and writes them to
//! the destination QEMU. The control protocol is in `PROTOCOL.md` next to this crate's
//! `Cargo.toml`, and in [`proto`].
//!
//! - [`send`]: the source side (QEMU's stdin in, chunks out);
//! - [`recv`]: the destination side (chunks in, QEMU's stdout out);
//! - [`stdio`]: the pipes to QEMU, on threads of their own;
//! - [`migrate`]: the whole migration driven over QMP (`xmigrate migrate`).
//!
//! Logs and errors go to stderr: the receiver's stdout is the migration stream and nothing else.

pub mod migrate;
pub mod proto;
pub mod recv;
pub mod send;
pub mod stdio;

use std::time::Duration;

use xia_core::api::XiaError;

/// What a migration moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Chunks.
    pub chunks: u64,
    /// Bytes of QEMU's stream.
    pub bytes: u64,
    /// From the control connection's start to the end.
    pub elapsed: Duration,
}

/// Why a migration failed: one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The other side could not be reached, or did not come.
    #[error("cannot reach the other side: {0}")]
    Unreachable(String),
    /// Nothing moved for the timeout.
    #[error("no progress for {0:?}: giving up")]
    Stalled(Duration),
    /// The network or the local daemon failed.
    #[error("{0}")]
    Network(#[from] XiaError),
    /// The other side gave up, and said why.
    #[error("the other side gave up: {0}")]
    Remote(String),
    /// The other side broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// QEMU's pipe failed or its stream is not one.
    #[error("{0}")]
    Qemu(String),
}
