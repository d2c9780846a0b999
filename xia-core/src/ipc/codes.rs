//! The one table of error codes the daemon answers with, and where each comes from.

use serde::{Deserialize, Serialize};

use crate::host::HostError;
use crate::transport::chunk::{ChunkError, StoreError};
use crate::transport::stream::StreamError;

/// Why a request failed, as carried over the socket. The application API turns each into its
/// own [`crate::api::XiaError`] variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// A malformed request, or one this connection cannot make (wrong role).
    BadRequest,
    /// No such socket, stream or attach token.
    BadHandle,
    /// The SID is already bound on this host.
    AddrInUse,
    /// A datagram or chunk larger than allowed.
    TooLarge,
    /// No route to the destination.
    Unreachable,
    /// An address that cannot be used here (a stream or datagram intent that is not a SID, a
    /// router DAG that is not a path).
    BadAddress,
    /// The peer refused the connection (nothing listens on its SID).
    Refused,
    /// The peer reset the connection.
    Reset,
    /// The peer stopped answering.
    TimedOut,
    /// No holder has the chunk.
    NotFound,
    /// Every copy of the chunk that arrived failed its CID check.
    Corrupt,
    /// Closed before it could complete.
    Closed,
    /// The content store is full of published chunks.
    NoSpace,
    /// No router has confirmed this host's registration yet (nothing to show for a patch).
    NotRegistered,
}

impl ErrorCode {
    /// Every code, in table order.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::BadRequest,
        ErrorCode::BadHandle,
        ErrorCode::AddrInUse,
        ErrorCode::TooLarge,
        ErrorCode::Unreachable,
        ErrorCode::BadAddress,
        ErrorCode::Refused,
        ErrorCode::Reset,
        ErrorCode::TimedOut,
        ErrorCode::NotFound,
        ErrorCode::Corrupt,
        ErrorCode::Closed,
        ErrorCode::NoSpace,
        ErrorCode::NotRegistered,
    ];
}

impl From<StreamError> for ErrorCode {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::Refused => ErrorCode::Refused,
            StreamError::Reset => ErrorCode::Reset,
            StreamError::TimedOut => ErrorCode::TimedOut,
            StreamError::Unreachable => ErrorCode::Unreachable,
            StreamError::Closed => ErrorCode::Closed,
        }
    }
}

impl From<ChunkError> for ErrorCode {
    fn from(e: ChunkError) -> Self {
        match e {
            ChunkError::NotFound => ErrorCode::NotFound,
            ChunkError::TooLarge => ErrorCode::TooLarge,
            ChunkError::TimedOut => ErrorCode::TimedOut,
            ChunkError::Corrupt => ErrorCode::Corrupt,
            ChunkError::BadRange => ErrorCode::BadRequest,
        }
    }
}

impl From<&HostError> for ErrorCode {
    fn from(e: &HostError) -> Self {
        match e {
            HostError::BadHandle => ErrorCode::BadHandle,
            HostError::AddrInUse => ErrorCode::AddrInUse,
            HostError::TooLarge { .. } => ErrorCode::TooLarge,
            HostError::Unreachable => ErrorCode::Unreachable,
            HostError::Store(StoreError::TooLarge(_)) => ErrorCode::TooLarge,
            HostError::Store(StoreError::Full { .. }) => ErrorCode::NoSpace,
            HostError::NotAService | HostError::NotAPath | HostError::NotOwnDag => ErrorCode::BadAddress,
            HostError::NotRegistered => ErrorCode::NotRegistered,
        }
    }
}
