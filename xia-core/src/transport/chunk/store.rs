//! The content store: a publisher's (or cache's) bounded store of chunks by CID, least recently
//! used out first.

use std::sync::Arc;

use lru::LruCache;

use super::CachePolicy;
use crate::xid::{Xid, XidId, XidMap};

/// Why content could not be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Bigger than the store's chunk limit.
    #[error("chunk of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// Published chunks already fill the store: remove some first.
    #[error("content store full: {held} of {capacity} bytes published")]
    Full {
        /// Bytes of published chunks held.
        held: usize,
        /// The store's size.
        capacity: usize,
    },
}

/// A bounded store of chunks by CID. Published chunks ([`ContentStore::put`]) stay until removed:
/// whoever published them handed out their CIDs. Cached chunks ([`ContentStore::insert_verified`],
/// what passed by) fill the room left, least recently used evicted first.
#[derive(Debug)]
pub struct ContentStore {
    published: XidMap<(Arc<[u8]>, CachePolicy)>,
    published_bytes: usize,
    cache: LruCache<XidId, Arc<[u8]>>,
    cached_bytes: usize,
    capacity: usize,
    max_chunk: usize,
}

impl ContentStore {
    /// A store of at most `capacity` bytes holding chunks of at most `max_chunk` bytes.
    pub fn new(capacity: usize, max_chunk: usize) -> ContentStore {
        ContentStore {
            published: XidMap::default(),
            published_bytes: 0,
            cache: LruCache::unbounded(),
            cached_bytes: 0,
            capacity,
            max_chunk,
        }
    }

    /// Publishes `data` under its CID, making room by evicting cached chunks, and returns the
    /// CID. Publishing the same content twice holds it once.
    pub fn put(&mut self, data: Arc<[u8]>) -> Result<Xid, StoreError> {
        self.check_size(data.len())?;
        self.put_hashed(Xid::cid_of(&data), data, CachePolicy::Cacheable)
    }

    /// Whether a chunk of `len` bytes could be published at all (not too large).
    pub fn check_size(&self, len: usize) -> Result<(), StoreError> {
        if len > self.max_chunk || len > self.capacity {
            return Err(StoreError::TooLarge(len));
        }
        Ok(())
    }

    /// [`ContentStore::put`] of `data` whose SHA-1 the caller computed (on another thread):
    /// `cid` must be [`Xid::cid_of`]`(&data)`. `policy` goes with the chunk's responses; content
    /// published again takes the latest.
    pub fn put_hashed(&mut self, cid: Xid, data: Arc<[u8]>, policy: CachePolicy) -> Result<Xid, StoreError> {
        self.check_size(data.len())?;
        debug_assert_eq!(cid, Xid::cid_of(&data), "a CID that is not the content's");
        if let Some(held) = self.published.get_mut(cid.id()) {
            held.1 = policy;
            return Ok(cid);
        }
        if self.published_bytes + data.len() > self.capacity {
            return Err(StoreError::Full { held: self.published_bytes, capacity: self.capacity });
        }
        if let Some(old) = self.cache.pop(cid.id()) {
            self.cached_bytes -= old.len();
        }
        self.published_bytes += data.len();
        self.published.insert(*cid.id(), (data, policy));
        self.evict();
        Ok(cid)
    }

    /// Caches `data` known to hash to `cid` (a cache filling itself from verified traffic); it
    /// may be evicted at once when published chunks leave no room.
    pub fn insert_verified(&mut self, cid: Xid, data: Arc<[u8]>) {
        if data.len() > self.max_chunk || data.len() > self.capacity || self.published.contains_key(cid.id())
        {
            return;
        }
        if let Some(old) = self.cache.pop(cid.id()) {
            self.cached_bytes -= old.len();
        }
        self.cached_bytes += data.len();
        self.cache.put(*cid.id(), data);
        self.evict();
    }

    fn evict(&mut self) {
        while self.published_bytes + self.cached_bytes > self.capacity {
            match self.cache.pop_lru() {
                Some((_, old)) => self.cached_bytes -= old.len(),
                None => break,
            }
        }
    }

    /// The chunk named `cid` (a cached one is marked recently used).
    pub fn get(&mut self, cid: &Xid) -> Option<Arc<[u8]>> {
        if let Some((d, _)) = self.published.get(cid.id()) {
            return Some(d.clone());
        }
        self.cache.get(cid.id()).cloned()
    }

    /// What the publisher of `cid` allows nodes on the path to keep (a cached chunk, or one not
    /// held: [`CachePolicy::Cacheable`]).
    pub fn policy(&self, cid: &Xid) -> CachePolicy {
        self.published.get(cid.id()).map(|p| p.1).unwrap_or_default()
    }

    /// True when the store holds `cid` (without touching its recency).
    pub fn contains(&self, cid: &Xid) -> bool {
        self.published.contains_key(cid.id()) || self.cache.contains(cid.id())
    }

    /// Removes a chunk, published or cached.
    pub fn remove(&mut self, cid: &Xid) -> bool {
        if let Some((old, _)) = self.published.remove(cid.id()) {
            self.published_bytes -= old.len();
            return true;
        }
        match self.cache.pop(cid.id()) {
            Some(old) => {
                self.cached_bytes -= old.len();
                true
            }
            None => false,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.published_bytes + self.cached_bytes
    }

    /// Bytes of published chunks held.
    pub fn published_bytes(&self) -> usize {
        self.published_bytes
    }

    /// Chunks held.
    pub fn len(&self) -> usize {
        self.published.len() + self.cache.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_evicts_least_recently_used() {
        let mut s = ContentStore::new(300, 200);
        let chunk = |b: u8| -> (Xid, Arc<[u8]>) { (Xid::cid_of(&[b; 100]), vec![b; 100].into()) };
        let (a, b, c, d) = (chunk(1), chunk(2), chunk(3), chunk(4));
        for (cid, data) in [&a, &b, &c] {
            s.insert_verified(*cid, data.clone());
        }
        assert!(s.get(&a.0).is_some(), "touch a");
        s.insert_verified(d.0, d.1.clone());
        assert!(!s.contains(&b.0), "b was least recently used");
        assert!(s.contains(&a.0) && s.contains(&c.0) && s.contains(&d.0));
        assert_eq!(s.bytes(), 300);
        assert_eq!(s.put(vec![0u8; 201].into()), Err(StoreError::TooLarge(201)));
    }

    #[test]
    fn published_chunks_stay_and_fill_the_store_at_most() {
        let mut s = ContentStore::new(300, 200);
        let cached = Xid::cid_of(&[9u8; 100]);
        s.insert_verified(cached, vec![9u8; 100].into());
        let a = s.put(vec![1u8; 100].into()).unwrap();
        assert_eq!(a, Xid::cid_of(&[1u8; 100]));
        assert_eq!(s.put(vec![1u8; 100].into()), Ok(a), "the same content is held once");
        let b = s.put(vec![2u8; 100].into()).unwrap();
        s.put(vec![3u8; 100].into()).unwrap();
        assert!(!s.contains(&cached), "the cache made room for what was published");
        assert_eq!(s.put(vec![4u8; 100].into()), Err(StoreError::Full { held: 300, capacity: 300 }));
        // A cached copy never displaces a published chunk.
        s.insert_verified(Xid::cid_of(&[5u8; 10]), vec![5u8; 10].into());
        assert!(s.contains(&a) && s.contains(&b));
        assert_eq!(s.bytes(), 300);
        assert!(s.remove(&b));
        assert!(s.put(vec![4u8; 100].into()).is_ok());
        assert_eq!(s.published_bytes(), 300);
    }

    #[test]
    fn a_chunk_keeps_the_policy_it_was_last_published_with() {
        let mut s = ContentStore::new(300, 200);
        let data: Arc<[u8]> = vec![7u8; 10].into();
        let cid = Xid::cid_of(&data);
        assert_eq!(s.policy(&cid), CachePolicy::Cacheable, "not held");
        s.put_hashed(cid, data.clone(), CachePolicy::NoStore).unwrap();
        assert_eq!(s.policy(&cid), CachePolicy::NoStore);
        s.put_hashed(cid, data, CachePolicy::Cacheable).unwrap();
        assert_eq!(s.policy(&cid), CachePolicy::Cacheable);
        assert_eq!(s.published_bytes(), 10, "held once");
    }
}
