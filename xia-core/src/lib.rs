//! The XIA protocol as a library.
//!
//! - [`xid`]: principals and XIDs (self-certifying identifiers), fast XID-keyed maps;
//! - [`keys`]: Ed25519 keys behind HIDs, SIDs and ADs; signing and verification;
//! - [`dag`]: DAG addresses with fallback, their text forms and validation;
//! - [`select`](mod@select): the next-hop selection over a DAG that routers and hosts share;
//! - [`wire`]: every header on the wire (Ethernet, XIP, XCMP, DGRAM, STREAM, CHUNK, control);
//! - [`pcap`]: a capture writer for any link;
//! - [`samples`]: example frames of every kind (captures, dissector checks, fuzz seeds).

pub mod api;
pub mod cli;
pub mod daemon;
pub mod dag;
pub mod host;
pub mod ipc;
pub mod keys;
pub mod link;
pub mod node;
pub mod pcap;
pub mod rng;
pub mod samples;
pub mod select;
pub mod sys;
pub mod transport;
pub mod wire;
pub mod xid;

pub use dag::{Dag, DagError};
pub use keys::{Keypair, PublicKey, Signature};
pub use select::{select, Lookup, Selection};
pub use xid::{Principal, Xid};
