//! XCMP echo, for `xping` and anything measuring reachability.

use std::time::Duration;

use super::conn::{deadline, unexpected, within, Conn};
use super::XiaError;
use crate::dag::Dag;
use crate::ipc::{Request, Response};
use crate::wire::xcmp;

/// What a ping got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingReply {
    /// An echo reply.
    Echo {
        /// Sequence number.
        seq: u16,
        /// Who answered.
        from: Dag,
        /// The data sent.
        data: Vec<u8>,
    },
    /// An XCMP error about an echo request.
    Error {
        /// Sequence number.
        seq: u16,
        /// Who reported it.
        from: Dag,
        /// What it says.
        kind: xcmp::Message,
        /// Its code (for unreachable: [`xcmp::Unreachable`]).
        code: u8,
    },
}

/// Sends XCMP echo requests and receives the replies (what `xping` uses).
#[derive(Debug)]
pub struct Pinger {
    pub(crate) conn: Conn,
    pub(crate) timeout: Option<Duration>,
}

impl Pinger {
    /// Sends an echo request. Local failures (too large, no route) come back from
    /// [`Pinger::recv`].
    pub async fn send(&mut self, dst: &Dag, seq: u16, data: &[u8]) -> Result<(), XiaError> {
        self.conn.send(&Request::PingSend { dst: dst.clone(), seq }, data).await
    }

    /// How long [`Pinger::recv`] waits at most (`None`: for ever).
    pub fn set_timeout(&mut self, t: Option<Duration>) {
        self.timeout = t;
    }

    /// The next reply or error. Cancel-safe.
    pub async fn recv(&mut self) -> Result<PingReply, XiaError> {
        let conn = &mut self.conn;
        within(deadline(self.timeout), async move {
            match conn.recv().await? {
                (Response::EchoReply { seq, from }, data) => Ok(PingReply::Echo { seq, from, data }),
                (Response::EchoError { seq, from, kind, code }, _) => {
                    Ok(PingReply::Error { seq, from, kind: xcmp::Message::from(kind), code })
                }
                (Response::Error { code, message }, _) => Err(XiaError::from_code(code, message)),
                (m, _) => Err(unexpected(&m)),
            }
        })
        .await
    }
}
