//! CHUNK: content named by its SHA-1, fetched by the receiver.
//!
//! - [`ContentStore`]: a publisher's (or cache's) bounded store, least recently used out first.
//! - [`ServeJob`]: the responses to one request, a chunk cut into pieces that fit a frame.
//! - [`Fetcher`]: the receiver, a sans-IO state machine. It asks for byte ranges of chunks with a
//!   window of outstanding requests that grows and shrinks AIMD-style (like NDN's catchunks),
//!   takes RTT samples per request, detects lost pieces by time (a request sent well before one
//!   that completed is incomplete: re-ask for what is missing) and by timeout, checks every
//!   chunk's SHA-1 against its CID and fetches it again on a mismatch: a chunk that does not
//!   match its name never reaches the application.
//!
//! One file per concern, each re-exported here: `store` (the content store), `serve` (answering
//! a request) and `fetch` (the fetcher, its configuration, counters and errors). This file holds
//! what they share.

mod fetch;
mod serve;
mod store;

pub use fetch::{ChunkError, Completed, FetchConfig, FetchStats, Fetcher, Request, Verify, MIN_REQUEST};
pub use serve::ServeJob;
pub use store::{ContentStore, StoreError};

/// Whether nodes that forward a published chunk may keep a copy of it (a router's cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CachePolicy {
    /// Anyone on the path may cache it (content meant to be shared).
    #[default]
    Cacheable,
    /// Its responses are marked [`NO_STORE`](crate::wire::chunk::NO_STORE): forwarded, never
    /// kept (single-use or private content, like a VM's memory in migration; routers forward it
    /// in their fast path).
    NoStore,
}

/// Largest chunk this implementation handles by default.
pub const DEFAULT_MAX_CHUNK: usize = 16 << 20;
