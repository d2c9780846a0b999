//! XIA name service: a DGRAM service at `SID_NS` mapping names to DAGs, with its daemon, client
//! and CLI.
//!
//! Built so far: the name table and its rules ([`table`]), its durable log ([`store`]); the
//! messages are [`xia_core::wire::names`]. To come: the daemon `xnsd`, the client in the app
//! API and the `xns` command.

pub mod store;
pub mod table;

pub use store::{Store, StoreError};
pub use table::{Entry, NameTable, TableConfig, TableStats};
