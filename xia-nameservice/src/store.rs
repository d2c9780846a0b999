//! The durable store of the name table: an append-only log of the entries taken, each written
//! and synced to disk before it is acknowledged (callers batch: one sync for all the records of
//! a turn), replayed in order at start, compacted when it has grown well past what is live.
//!
//! ```text
//! file  : magic "XNSLOG\0\0" (8) | version (4) | reserved (4) | entries
//! entry : length (4) | CRC32C of the payload (4) | payload = expiry ms (8) | record (as on the wire)
//! ```
//!
//! A crash can leave only the last entry torn (shorter than its length, or failing its CRC with
//! nothing after it): that entry was never acknowledged, and opening cuts it off. Anything
//! else that does not read (a damaged entry with entries after it, another version, another
//! kind of file) is an error naming the file and the offset, and the file is left as it is.
//! Compaction writes the live entries to a new file, syncs it and renames it over the log.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use xia_core::wire::integrity::Crc32c;
use xia_core::wire::names::Record;

use crate::table::Entry;

const MAGIC: &[u8; 8] = b"XNSLOG\0\0";
/// The log format this version writes and reads.
pub const FORMAT: u32 = 1;
const HEADER_LEN: usize = 16;
/// An entry's payload is at most this long (a record with a DAG of 20 nodes is under 1 KiB).
const MAX_ENTRY: usize = 4096;

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file system said no.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        source: io::Error,
    },
    /// Not a name store.
    #[error("{0}: not a name store (no XNSLOG header); left as it is")]
    NotAStore(String),
    /// A store of another format version.
    #[error("{path}: a name store of format {found}, this xnsd reads format {FORMAT}; left as it is")]
    Version {
        /// The file.
        path: String,
        /// Its version.
        found: u32,
    },
    /// An entry that does not read, with more after it: damage, not a torn last write.
    #[error("{path}: damaged entry at byte {offset} ({what}); left as it is")]
    Damaged {
        /// The file.
        path: String,
        /// Where.
        offset: u64,
        /// What is wrong.
        what: String,
    },
}

/// The log, open for appending.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    file: File,
    /// Bytes in the log.
    len: u64,
    /// Entries in the log (superseded ones included).
    entries: u64,
}

impl Store {
    /// Opens the log at `path` (created, with its directory, when missing) and returns the
    /// entries it holds, oldest first. A torn last entry is cut off.
    pub fn open(path: &Path) -> Result<(Store, Vec<Entry>), StoreError> {
        let io = |source| StoreError::Io { path: path.display().to_string(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io)?;
        }
        if !path.exists() {
            write_new(path, &[]).map_err(io)?;
        }
        let mut file = OpenOptions::new().read(true).write(true).open(path).map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let name = path.display().to_string();
        if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
            return Err(StoreError::NotAStore(name));
        }
        let found = u32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if found != FORMAT {
            return Err(StoreError::Version { path: name, found });
        }
        let (entries, good) = read_entries(&bytes, &name)?;
        if good < bytes.len() {
            tracing::warn!("{name}: cutting off a torn last entry ({} bytes at {good})", bytes.len() - good);
            file.set_len(good as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        file.seek(SeekFrom::Start(good as u64)).map_err(io)?;
        let n = entries.len() as u64;
        Ok((Store { path: path.to_path_buf(), file, len: good as u64, entries: n }, entries))
    }

    /// Appends `entries` and syncs them to disk: when this returns, they survive a crash.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StoreError> {
        let io = |source| StoreError::Io { path: self.path.display().to_string(), source };
        let mut buf = Vec::new();
        for e in entries {
            encode(e, &mut buf);
        }
        self.file.write_all(&buf).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.len += buf.len() as u64;
        self.entries += entries.len() as u64;
        Ok(())
    }

    /// Whether the log is worth compacting, holding `live` entries.
    pub fn wants_compaction(&self, live: usize) -> bool {
        self.entries > 1024 && self.entries > 2 * live as u64
    }

    /// Replaces the log with one holding only `live`, atomically (a new file synced, then
    /// renamed over the old one).
    pub fn compact<'a>(&mut self, live: impl Iterator<Item = &'a Entry>) -> Result<(), StoreError> {
        let io = |source| StoreError::Io { path: self.path.display().to_string(), source };
        let live: Vec<&Entry> = live.collect();
        let tmp = self.path.with_extension("compacting");
        write_new(&tmp, &live).map_err(io)?;
        fs::rename(&tmp, &self.path).map_err(io)?;
        sync_dir(&self.path).map_err(io)?;
        self.file = OpenOptions::new().read(true).write(true).open(&self.path).map_err(io)?;
        self.len = self.file.seek(SeekFrom::End(0)).map_err(io)?;
        self.entries = live.len() as u64;
        Ok(())
    }

    /// Bytes in the log.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the log holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

fn encode(e: &Entry, buf: &mut Vec<u8>) {
    let record = e.record.to_bytes();
    let mut payload = Vec::with_capacity(8 + record.len());
    payload.extend_from_slice(&e.expires_ms.to_be_bytes());
    payload.extend_from_slice(&record);
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(&Crc32c::of(&payload).to_be_bytes());
    buf.extend_from_slice(&payload);
}

/// The entries of a log's bytes, and where the good part ends (before a torn last entry).
fn read_entries(bytes: &[u8], name: &str) -> Result<(Vec<Entry>, usize), StoreError> {
    let mut entries = Vec::new();
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        let damaged =
            |what: &str| StoreError::Damaged { path: name.to_string(), offset: at as u64, what: what.into() };
        let Some(head) = bytes.get(at..at + 8) else {
            return Ok((entries, at)); // torn inside the entry's header
        };
        let len = u32::from_be_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(head[4..].try_into().expect("4 bytes"));
        let end = at + 8 + len;
        if !(8..=MAX_ENTRY).contains(&len) {
            // A length no writer made: torn only if nothing could follow it.
            return if end >= bytes.len() { Ok((entries, at)) } else { Err(damaged("impossible length")) };
        }
        let Some(payload) = bytes.get(at + 8..end) else {
            return Ok((entries, at)); // torn inside the payload
        };
        if Crc32c::of(payload) != crc {
            return if end == bytes.len() { Ok((entries, at)) } else { Err(damaged("CRC mismatch")) };
        }
        let expires_ms = u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"));
        let record = Record::from_bytes(&payload[8..]).map_err(|e| damaged(&e.to_string()))?;
        entries.push(Entry { record, expires_ms });
        at = end;
    }
    Ok((entries, at))
}

/// Writes a complete log of `entries` at `path` (replacing nothing: the file must not exist,
/// or is a temporary one), synced, its directory too.
fn write_new(path: &Path, entries: &[&Entry]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(HEADER_LEN);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&FORMAT.to_be_bytes());
    buf.extend_from_slice(&[0; 4]);
    for e in entries {
        encode(e, &mut buf);
    }
    let f = OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
    let mut w = BufWriter::new(f);
    w.write_all(&buf)?;
    let f = w.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xia_core::dag::Dag;
    use xia_core::keys::Keypair;
    use xia_core::xid::{Principal, Xid};

    fn entry(n: &str, seq: u64) -> Entry {
        let k = Keypair::from_seed([1; 32]);
        let dag = Dag::host(Xid::new(Principal::Ad, [1; 20]), k.xid(Principal::Hid)).unwrap();
        Entry {
            record: Record::signed(&k, n.parse().unwrap(), Some(dag), seq, 60_000),
            expires_ms: 1000 + seq,
        }
    }

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("xns-store-{}-{:x}", std::process::id(), rand()));
        fs::create_dir_all(&d).unwrap();
        d
    }
    fn rand() -> u64 {
        let mut b = [0u8; 8];
        getrandom::getrandom(&mut b).unwrap();
        u64::from_le_bytes(b)
    }

    #[test]
    fn entries_survive_a_reopen_and_a_torn_last_one_is_cut_off() {
        let d = dir();
        let p = d.join("names.log");
        let (mut s, got) = Store::open(&p).unwrap();
        assert!(got.is_empty() && s.is_empty());
        s.append(&[entry("a", 1), entry("b", 1)]).unwrap();
        s.append(&[entry("a", 2)]).unwrap();
        drop(s);
        let (_, got) = Store::open(&p).unwrap();
        assert_eq!(got, vec![entry("a", 1), entry("b", 1), entry("a", 2)]);
        // A write torn anywhere inside the last entry: that entry goes, the rest stays.
        let full = fs::read(&p).unwrap();
        let last_len = {
            let mut v = Vec::new();
            encode(&entry("a", 2), &mut v);
            v.len()
        };
        for cut in 1..last_len {
            fs::write(&p, &full[..full.len() - cut]).unwrap();
            let (s, got) = Store::open(&p).unwrap();
            assert_eq!(got, vec![entry("a", 1), entry("b", 1)], "cut {cut}");
            assert_eq!(s.len() as usize, full.len() - last_len);
            assert_eq!(fs::read(&p).unwrap().len(), full.len() - last_len, "cut off on disk");
        }
        // A last entry with a bad CRC (a torn write the disk filled with old bytes).
        let mut bad = full.clone();
        *bad.last_mut().unwrap() ^= 1;
        fs::write(&p, &bad).unwrap();
        assert_eq!(Store::open(&p).unwrap().1.len(), 2);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn damage_other_versions_and_other_files_are_errors_and_left_alone() {
        let d = dir();
        let p = d.join("names.log");
        let (mut s, _) = Store::open(&p).unwrap();
        s.append(&[entry("a", 1), entry("b", 1)]).unwrap();
        drop(s);
        let good = fs::read(&p).unwrap();
        // A flipped byte in the first entry, with the second after it.
        let mut damaged = good.clone();
        damaged[HEADER_LEN + 20] ^= 1;
        fs::write(&p, &damaged).unwrap();
        assert!(matches!(Store::open(&p), Err(StoreError::Damaged { offset: 16, .. })));
        assert_eq!(fs::read(&p).unwrap(), damaged, "nothing overwritten");
        let mut v2 = good.clone();
        v2[11] = 2;
        fs::write(&p, &v2).unwrap();
        let e = Store::open(&p).unwrap_err();
        assert!(matches!(e, StoreError::Version { found: 2, .. }), "{e}");
        assert!(e.to_string().contains("format 2"));
        assert_eq!(fs::read(&p).unwrap(), v2);
        fs::write(&p, b"something else entirely").unwrap();
        assert!(matches!(Store::open(&p), Err(StoreError::NotAStore(_))));
        assert_eq!(fs::read(&p).unwrap(), b"something else entirely");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn compaction_keeps_what_is_live() {
        let d = dir();
        let p = d.join("names.log");
        let (mut s, _) = Store::open(&p).unwrap();
        let seqs: Vec<u64> = (1..=2000).collect();
        for batch in seqs.chunks(100) {
            s.append(&batch.iter().map(|&q| entry("a", q)).collect::<Vec<_>>()).unwrap();
        }
        assert!(s.wants_compaction(1));
        let before = s.len();
        let live = [entry("a", 2000)];
        s.compact(live.iter()).unwrap();
        assert!(s.len() < before / 100);
        s.append(&[entry("b", 1)]).unwrap();
        drop(s);
        assert_eq!(Store::open(&p).unwrap().1, vec![entry("a", 2000), entry("b", 1)]);
        assert!(!p.with_extension("compacting").exists());
        fs::remove_dir_all(&d).unwrap();
    }
}
