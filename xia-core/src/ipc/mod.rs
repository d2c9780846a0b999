//! The local protocol between applications and `xiad`, over a Unix stream socket.
//!
//! Every connection starts with a hello each way (the protocol version: a client and a daemon of
//! different versions fail with a clear error, not garbage), then carries framed messages:
//! [`Request`]s from the application, [`Response`]s from the daemon ([`codec`] has the layout).
//! Requests and responses are separate types, encoded by `serde`; bulk bytes (datagrams, chunks)
//! travel raw after their message.
//!
//! A stream connection (after [`Response::Connected`]) switches to raw mode: from then on the
//! socket carries the stream's bytes both ways with no framing, so the application's reads and
//! writes are the socket's own (no extra copy, and the socket buffers give back-pressure both
//! ways). The daemon ends the application's socket when the stream ends: an orderly close by the
//! peer as an end of file, anything else by closing it; [`Request::StreamStatus`] (on a new
//! connection) then tells the two apart, and the API does that for the application.
//!
//! Everything read off a socket is checked: bounded lengths, validated DAGs, typed errors.

pub mod codec;
mod codes;
mod messages;

pub use codec::IpcError;
pub use codes::ErrorCode;
pub use messages::{Event, HostInfo, Request, Response, StreamEnd, MAX_DATAGRAM};

/// Environment variable naming the daemon's socket.
pub const SOCKET_ENV: &str = "XIAD_SOCKET";
/// Where the daemon listens when nothing else is said.
pub const DEFAULT_SOCKET: &str = "/run/xia/xiad.sock";

/// The daemon socket path: `$XIAD_SOCKET` or [`DEFAULT_SOCKET`].
pub fn default_socket() -> std::path::PathBuf {
    std::env::var_os(SOCKET_ENV).map_or_else(|| DEFAULT_SOCKET.into(), Into::into)
}
