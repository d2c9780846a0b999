//! XIA name service: a DGRAM service at `SID_NS` mapping names to DAGs, with its daemon, client
//! and CLI.
//!
//! Built so far: the name table and its rules ([`table`]), its durable log ([`store`]), the
//! handling of one request ([`service`]), the daemon `xnsd`, a client ([`client`]) and the
//! `xns` command; the messages are [`xia_core::wire::names`]. To come: resolution in the app
//! API with caching, hosts naming themselves, names in the tools, a secondary server.

pub mod client;
pub mod service;
pub mod store;
pub mod table;

pub use client::NsClient;
pub use service::{Handled, Service, ServiceStats};
pub use store::{Store, StoreError};
pub use table::{Entry, NameTable, TableConfig, TableStats};
