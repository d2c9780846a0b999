//! XIA name service: a DGRAM service at `SID_NS` mapping names to DAGs, with its daemon, client
//! and CLI.
//!
//! Here: the name table and its rules ([`table`]), its durable log ([`store`]), the handling of
//! one request ([`service`]), the daemon `xnsd` and the `xns` command. The messages are
//! [`xia_core::wire::names`]; clients use the app API's [`xia_core::api::NameClient`]. To come:
//! a secondary server.

pub mod service;
pub mod store;
pub mod table;

pub use service::{Handled, Service, ServiceStats};
pub use store::{Store, StoreError};
pub use table::{Entry, NameTable, TableConfig, TableStats};
