//! What happens to the host, pushed by the daemon as it happens.

use std::time::Duration;

use super::conn::{deadline, unexpected, within, Conn};
use super::XiaError;
use crate::ipc::{Event, HostInfo, Response};

/// The host's events ([`Event`]: attached to an AD, registered, DAG changed, gateway lost, link
/// down or up), in the order they happened, from the moment of [`super::Xia::events`]; its
/// [`EventStream::info`] is how the host stood then, so nothing falls between a look at the
/// host and the first event.
#[derive(Debug)]
pub struct EventStream {
    pub(crate) conn: Conn,
    pub(crate) info: HostInfo,
    pub(crate) timeout: Option<Duration>,
}

impl EventStream {
    /// The host as it was when the stream started.
    pub fn info(&self) -> &HostInfo {
        &self.info
    }

    /// How long [`EventStream::next`] waits at most (`None`: for ever).
    pub fn set_timeout(&mut self, t: Option<Duration>) {
        self.timeout = t;
    }

    /// The next event.
    pub async fn next(&mut self) -> Result<Event, XiaError> {
        let d = deadline(self.timeout);
        self.next_by(d).await
    }

    async fn next_by(&mut self, d: super::conn::Deadline) -> Result<Event, XiaError> {
        let conn = &mut self.conn;
        within(d, async move {
            match conn.recv().await? {
                (Response::Event(e), _) => Ok(e),
                (Response::Error { code, message }, _) => Err(XiaError::from_code(code, message)),
                (m, _) => Err(unexpected(&m)),
            }
        })
        .await
    }

    /// Waits for the first event `want` accepts, skipping the others (the timeout counts for the
    /// whole wait).
    pub async fn wait_for(&mut self, mut want: impl FnMut(&Event) -> bool) -> Result<Event, XiaError> {
        let d = deadline(self.timeout);
        loop {
            let e = self.next_by(d).await?;
            if want(&e) {
                return Ok(e);
            }
        }
    }
}
