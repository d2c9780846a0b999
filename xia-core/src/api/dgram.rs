//! DGRAM sockets: datagrams to and from SIDs.

use std::time::Duration;

use super::conn::{deadline, unexpected, within, Conn};
use super::XiaError;
use crate::dag::Dag;
use crate::ipc::{Request, Response};

/// A datagram socket bound to a SID, like `Xsocket(XSOCK_DGRAM)` + `Xbind`. Its two halves can
/// go to two tasks ([`XiaDatagram::split`]): each has its own connection to the daemon, so a
/// task waiting for datagrams never holds up one sending them.
#[derive(Debug)]
pub struct XiaDatagram {
    tx: DgramSender,
    rx: DgramReceiver,
}

/// The sending half of a datagram socket.
#[derive(Debug)]
pub struct DgramSender {
    conn: Conn,
    dag: Dag,
    max: usize,
    timeout: Option<Duration>,
    /// Answers still owed to sends that were given up (dropped, or past their deadline).
    owed: usize,
}

/// The receiving half of a datagram socket. The socket stays bound while either half lives.
#[derive(Debug)]
pub struct DgramReceiver {
    conn: Conn,
    dag: Dag,
    timeout: Option<Duration>,
}

impl XiaDatagram {
    pub(crate) async fn bind(
        path: &std::path::Path,
        sid: Option<crate::xid::Xid>,
        timeout: Option<Duration>,
    ) -> Result<XiaDatagram, XiaError> {
        within(deadline(timeout), async {
            let mut rx = Conn::open(path).await?;
            let (dag, max, token) = match rx.call(&Request::DgramBind { sid }, &[]).await? {
                Response::Bound { dag, max, token } => (dag, max as usize, token),
                m => return Err(unexpected(&m)),
            };
            let mut tx = Conn::open(path).await?;
            match tx.call(&Request::DgramSender { token }, &[]).await? {
                Response::Ok => {}
                m => return Err(unexpected(&m)),
            }
            Ok(XiaDatagram {
                tx: DgramSender { conn: tx, dag: dag.clone(), max, timeout, owed: 0 },
                rx: DgramReceiver { conn: rx, dag, timeout },
            })
        })
        .await
    }

    /// The socket's DAG.
    pub fn dag(&self) -> &Dag {
        &self.rx.dag
    }

    /// Largest datagram (to a destination with a DAG as long as this socket's).
    pub fn max_datagram(&self) -> usize {
        self.tx.max
    }

    /// How long each send or receive waits at most (`None`: for ever).
    pub fn set_timeout(&mut self, t: Option<Duration>) {
        self.tx.timeout = t;
        self.rx.timeout = t;
    }

    /// Sends one datagram to `dst`, like `Xsendto` (see [`DgramSender::send_to`]).
    pub async fn send_to(&mut self, data: &[u8], dst: &Dag) -> Result<(), XiaError> {
        self.tx.send_to(data, dst).await
    }

    /// The next datagram and its sender's DAG, like `Xrecvfrom`.
    pub async fn recv_from(&mut self) -> Result<(Vec<u8>, Dag), XiaError> {
        self.rx.recv_from().await
    }

    /// The two halves, for two tasks.
    pub fn split(self) -> (DgramSender, DgramReceiver) {
        (self.tx, self.rx)
    }
}

impl DgramSender {
    /// The socket's DAG.
    pub fn dag(&self) -> &Dag {
        &self.dag
    }

    /// Largest datagram (to a destination with a DAG as long as this socket's).
    pub fn max_datagram(&self) -> usize {
        self.max
    }

    /// How long each send waits at most (`None`: for ever).
    pub fn set_timeout(&mut self, t: Option<Duration>) {
        self.timeout = t;
    }

    /// Sends one datagram to `dst` (a DAG whose intent is a SID). It is on its way when this
    /// returns; a datagram larger than one frame ([`XiaError::TooLarge`]), a destination
    /// without a route ([`XiaError::NoRoute`]) or not a service ([`XiaError::BadAddress`]) fail
    /// here. Nothing is fragmented or retransmitted.
    pub async fn send_to(&mut self, data: &[u8], dst: &Dag) -> Result<(), XiaError> {
        let (conn, owed) = (&mut self.conn, &mut self.owed);
        within(deadline(self.timeout), async move {
            // The answers of sends given up come first.
            let mut stale = *owed;
            conn.send(&Request::SendTo { dst: dst.clone() }, data).await?;
            *owed += 1;
            loop {
                let (m, _) = conn.recv().await?;
                *owed -= 1;
                if stale > 0 {
                    stale -= 1;
                    continue;
                }
                return match m {
                    Response::Ok => Ok(()),
                    Response::Error { code, message } => Err(XiaError::from_code(code, message)),
                    m => Err(unexpected(&m)),
                };
            }
        })
        .await
    }
}

impl DgramReceiver {
    /// The socket's DAG.
    pub fn dag(&self) -> &Dag {
        &self.dag
    }

    /// How long each receive waits at most (`None`: for ever).
    pub fn set_timeout(&mut self, t: Option<Duration>) {
        self.timeout = t;
    }

    /// The next datagram and its sender's DAG.
    pub async fn recv_from(&mut self) -> Result<(Vec<u8>, Dag), XiaError> {
        let conn = &mut self.conn;
        within(deadline(self.timeout), async move {
            match conn.recv().await? {
                (Response::RecvFrom { src }, data) => Ok((data, src)),
                (Response::Error { code, message }, _) => Err(XiaError::from_code(code, message)),
                (m, _) => Err(unexpected(&m)),
            }
        })
        .await
    }
}
