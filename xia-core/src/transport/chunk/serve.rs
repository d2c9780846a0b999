//! Serving a chunk: the responses to one request, the chunk cut into pieces that fit a frame.

use std::sync::Arc;

use super::CachePolicy;
use crate::wire::chunk::{ChunkRepr, NackReason};

/// The responses to one request: consecutive pieces of a chunk.
#[derive(Debug, Clone)]
pub struct ServeJob {
    data: Arc<[u8]>,
    request_id: u32,
    next: usize,
    end: usize,
    no_store: bool,
}

impl ServeJob {
    /// Answers `request` for `data` with at most `max_len` bytes (a request is small and its
    /// answer may be large: the cap bounds what a forged requester address can reflect), or
    /// says why not.
    pub fn new(data: Arc<[u8]>, request: &ChunkRepr<'_>, max_len: usize) -> Result<ServeJob, NackReason> {
        let ChunkRepr::Request { request_id, offset, length } = *request else {
            return Err(NackReason::BadRange);
        };
        let start = offset as usize;
        let asked = if length == 0 { usize::MAX } else { length as usize };
        let end = start.saturating_add(asked.min(max_len.max(1))).min(data.len());
        if start > data.len() || (start == data.len() && !data.is_empty()) {
            return Err(NackReason::BadRange);
        }
        Ok(ServeJob { data, request_id, next: start, end, no_store: false })
    }

    /// Marks every response [`NO_STORE`](crate::wire::chunk::NO_STORE) (the publisher wants no
    /// copy kept on the way) when `policy` says so.
    pub fn with_policy(mut self, policy: CachePolicy) -> ServeJob {
        self.no_store = policy == CachePolicy::NoStore;
        self
    }

    /// The next response, with at most `max_data` bytes of the chunk; `None` when done.
    pub fn next_piece(&mut self, max_data: usize) -> Option<ChunkRepr<'_>> {
        if self.next >= self.end && !(self.next == 0 && self.end == 0 && self.data.is_empty()) {
            return None;
        }
        let start = self.next;
        let stop = (start + max_data.max(1)).min(self.end);
        // An empty chunk is answered once, with no data.
        self.next = if self.data.is_empty() { 1 } else { stop };
        Some(ChunkRepr::Response {
            request_id: self.request_id,
            offset: start as u32,
            total_len: self.data.len() as u32,
            no_store: self.no_store,
            data: &self.data[start..stop],
        })
    }

    /// True when every piece was handed out.
    pub fn is_done(&self) -> bool {
        self.next >= self.end && !(self.data.is_empty() && self.next == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_job_cuts_pieces() {
        let data: Arc<[u8]> = (0..250u8).collect::<Vec<_>>().into();
        let req = ChunkRepr::Request { request_id: 9, offset: 100, length: 120 };
        let mut job = ServeJob::new(data.clone(), &req, usize::MAX).unwrap();
        let mut got = Vec::new();
        while let Some(ChunkRepr::Response { request_id, offset, total_len, no_store, data }) =
            job.next_piece(50)
        {
            assert_eq!((request_id, total_len, no_store), (9, 250, false));
            got.push((offset, data.len()));
        }
        assert_eq!(got, vec![(100, 50), (150, 50), (200, 20)]);
        assert!(job.is_done());
        let whole = ServeJob::new(
            data.clone(),
            &ChunkRepr::Request { request_id: 1, offset: 0, length: 0 },
            usize::MAX,
        );
        assert_eq!(whole.unwrap().end, 250);
        assert!(ServeJob::new(
            data.clone(),
            &ChunkRepr::Request { request_id: 1, offset: 251, length: 1 },
            usize::MAX
        )
        .is_err());
        // The cap bounds what one request gets back.
        let capped =
            ServeJob::new(data, &ChunkRepr::Request { request_id: 1, offset: 0, length: 0 }, 100).unwrap();
        assert_eq!(capped.end, 100);
        let mut empty = ServeJob::new(
            Arc::from(&[][..]),
            &ChunkRepr::Request { request_id: 1, offset: 0, length: 0 },
            usize::MAX,
        )
        .unwrap();
        assert!(matches!(empty.next_piece(10), Some(ChunkRepr::Response { data: [], total_len: 0, .. })));
        assert!(empty.next_piece(10).is_none());
        let mut private = ServeJob::new(
            Arc::from(&[1u8][..]),
            &ChunkRepr::Request { request_id: 1, offset: 0, length: 0 },
            usize::MAX,
        )
        .unwrap()
        .with_policy(CachePolicy::NoStore);
        assert!(matches!(private.next_piece(10), Some(ChunkRepr::Response { no_store: true, .. })));
    }
}
