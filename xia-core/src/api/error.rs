//! Why an application's call failed.

use std::io;
use std::sync::Arc;

use crate::ipc::{ErrorCode, IpcError};

/// Why a call of the application API failed: one variant per cause an application can act on.
///
/// Stream I/O goes through `std::io` (`AsyncRead`, `AsyncWrite`); its errors carry a
/// `XiaError` inside, which [`XiaError::from_io`] takes back out.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum XiaError {
    /// No router has confirmed this host's registration yet.
    #[error("not registered with a router")]
    NotRegistered,
    /// No route to the destination.
    #[error("no route to the destination")]
    NoRoute,
    /// The peer refused the connection (nothing listens on its SID).
    #[error("connection refused")]
    Refused,
    /// The peer reset the connection.
    #[error("connection reset by peer")]
    Reset,
    /// The peer or the network stopped answering, or the call's deadline passed.
    #[error("timed out")]
    TimedOut,
    /// Closed before it could complete.
    #[error("closed")]
    Closed,
    /// The content store is full of published chunks.
    #[error("no space left in the content store")]
    NoSpace,
    /// An address that cannot be used for this (e.g. a stream to a DAG whose intent is not a
    /// SID, a router DAG that is not a path).
    #[error("bad address: {0}")]
    BadAddress(String),
    /// The SID is already bound on this host.
    #[error("address in use")]
    AddrInUse,
    /// A datagram or chunk too large.
    #[error("too large: {0}")]
    TooLarge(String),
    /// No holder has the chunk.
    #[error("chunk not found")]
    NotFound,
    /// Every copy of the chunk that arrived failed its CID check.
    #[error("chunk content does not match its CID")]
    Corrupt,
    /// No such socket, stream or token.
    #[error("no such socket or stream")]
    BadHandle,
    /// The daemon refused the request as malformed or out of place (a bug in the caller).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// `xiad` cannot be reached, or went away in the middle of the call.
    #[error("xiad is gone: {0}")]
    DaemonGone(String),
    /// `xiad` speaks another version of the local protocol.
    #[error("xiad speaks protocol version {daemon}, this program version {client}: update one of them")]
    Version {
        /// The daemon's version.
        daemon: u16,
        /// This library's.
        client: u16,
    },
    /// The daemon said something this library does not expect (a bug on one side).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The name server refused (or has no such name), and why.
    #[error("name server: {code:?}: {text}")]
    Name {
        /// The cause.
        code: crate::wire::names::NsErrorCode,
        /// The server's words.
        text: String,
    },
    /// Any other I/O error on the local socket.
    #[error("{0}")]
    Io(Arc<io::Error>),
}

impl XiaError {
    /// The error for a daemon's answer.
    pub fn from_code(code: ErrorCode, message: String) -> XiaError {
        match code {
            ErrorCode::BadRequest => XiaError::BadRequest(message),
            ErrorCode::BadHandle => XiaError::BadHandle,
            ErrorCode::AddrInUse => XiaError::AddrInUse,
            ErrorCode::TooLarge => XiaError::TooLarge(message),
            ErrorCode::Unreachable => XiaError::NoRoute,
            ErrorCode::BadAddress => XiaError::BadAddress(message),
            ErrorCode::Refused => XiaError::Refused,
            ErrorCode::Reset => XiaError::Reset,
            ErrorCode::TimedOut => XiaError::TimedOut,
            ErrorCode::NotFound => XiaError::NotFound,
            ErrorCode::Corrupt => XiaError::Corrupt,
            ErrorCode::Closed => XiaError::Closed,
            ErrorCode::NoSpace => XiaError::NoSpace,
            ErrorCode::NotRegistered => XiaError::NotRegistered,
        }
    }

    /// The `XiaError` inside an I/O error of a stream, or the I/O error itself as
    /// [`XiaError::Io`].
    pub fn from_io(e: io::Error) -> XiaError {
        if e.get_ref().is_some_and(|i| i.is::<XiaError>()) {
            if let Some(inner) = e.into_inner() {
                if let Ok(x) = inner.downcast::<XiaError>() {
                    return *x;
                }
            }
            unreachable!("checked to hold a XiaError");
        }
        XiaError::Io(Arc::new(e))
    }

    /// The closest `std::io` error kind.
    pub fn io_kind(&self) -> io::ErrorKind {
        use io::ErrorKind as K;
        match self {
            XiaError::NotRegistered | XiaError::Closed => K::NotConnected,
            XiaError::NoRoute => K::HostUnreachable,
            XiaError::Refused => K::ConnectionRefused,
            XiaError::Reset => K::ConnectionReset,
            XiaError::TimedOut => K::TimedOut,
            XiaError::NoSpace => K::StorageFull,
            XiaError::BadAddress(_) | XiaError::TooLarge(_) | XiaError::BadRequest(_) => K::InvalidInput,
            XiaError::AddrInUse => K::AddrInUse,
            XiaError::NotFound | XiaError::BadHandle => K::NotFound,
            XiaError::Corrupt | XiaError::Protocol(_) => K::InvalidData,
            XiaError::DaemonGone(_) => K::BrokenPipe,
            XiaError::Version { .. } => K::Unsupported,
            XiaError::Name { code, .. } => match code {
                crate::wire::names::NsErrorCode::NotFound => K::NotFound,
                crate::wire::names::NsErrorCode::Unavailable => K::ResourceBusy,
                _ => K::PermissionDenied,
            },
            XiaError::Io(e) => e.kind(),
        }
    }

    /// From a failure of the local socket: the daemon closing or resetting it means it is gone.
    pub(crate) fn socket(e: io::Error) -> XiaError {
        match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => XiaError::DaemonGone(e.to_string()),
            _ => XiaError::Io(Arc::new(e)),
        }
    }
}

impl From<XiaError> for io::Error {
    fn from(e: XiaError) -> io::Error {
        match e {
            XiaError::Io(inner) => match Arc::try_unwrap(inner) {
                Ok(io) => io,
                Err(shared) => io::Error::new(shared.kind(), shared.to_string()),
            },
            e => io::Error::new(e.io_kind(), e),
        }
    }
}

/// Stream I/O in a function returning `XiaError`: `s.write_all(..).await?` keeps the cause.
impl From<io::Error> for XiaError {
    fn from(e: io::Error) -> XiaError {
        XiaError::from_io(e)
    }
}

impl From<IpcError> for XiaError {
    fn from(e: IpcError) -> XiaError {
        match e {
            IpcError::Version { theirs } => {
                XiaError::Version { daemon: theirs, client: crate::ipc::codec::VERSION }
            }
            e => XiaError::Protocol(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_xia_error_survives_a_trip_through_io_error() {
        let e: io::Error = XiaError::Reset.into();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert!(matches!(XiaError::from_io(e), XiaError::Reset));
        let plain = io::Error::other("x");
        assert!(matches!(XiaError::from_io(plain), XiaError::Io(_)));
        let back: io::Error = XiaError::Io(Arc::new(io::Error::from(io::ErrorKind::WouldBlock))).into();
        assert_eq!(back.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn every_code_has_its_own_error() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            let e = XiaError::from_code(c, String::new());
            assert!(seen.insert(std::mem::discriminant(&e)), "{c:?} shares {e:?}");
        }
    }
}
