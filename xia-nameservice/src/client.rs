//! The client is the app API's ([`xia_core::api::NameClient`]): every application resolves
//! names the same way.

pub use xia_core::api::NameClient as NsClient;
