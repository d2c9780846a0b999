//! What an application sent that is not yet a whole request: the storage of a payload being
//! received (a small one in the read-ahead buffer; a big one, a chunk, in a buffer of its own
//! read straight into, or in pieces that grow with the bytes received), charged to the
//! daemon's budget before it is allocated, and the reads that fill it.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use crate::ipc::Request;

/// Payloads at least this big are read into storage of their own (only chunks are that big).
pub(super) const DIRECT_PAYLOAD: usize = 64 << 10;
/// Bytes read ahead from an application before its requests are handled.
pub(super) const READ_AHEAD: usize = 1 << 20;
/// The read-ahead buffer's first size, and what it grows by at least.
pub(super) const READ_CHUNK: usize = 64 << 10;
/// With less room than this, the read-ahead buffer grows before the next read.
pub(super) const MIN_READ: usize = 4 << 10;
/// A big payload received in pieces: the first is the read-ahead buffer it started in, each new
/// one as big as what came before it (memory follows the bytes received), at least
/// [`READ_CHUNK`], at most this.
pub(super) const MAX_PIECE: usize = 1 << 20;
/// Bytes read from one application per turn: a fast publisher does not hold the loop.
pub(super) const READ_PER_TURN: usize = 4 << 20;
/// An unfinished message progresses when this many of its bytes come, or when it is whole.
pub(super) const PROGRESS_BYTES: usize = 64 << 10;

/// A request's payload.
#[derive(Debug)]
pub(super) enum Payload {
    /// A small one, in one buffer.
    Bytes(Arc<[u8]>),
    /// A big one (a chunk), as it came, still charged to the budget.
    Big(Big),
}

impl Payload {
    pub(super) fn len(&self) -> usize {
        match self {
            Payload::Bytes(b) => b.len(),
            Payload::Big(p) => p.len,
        }
    }

    /// Bytes of the budget it holds.
    pub(super) fn charge(&self) -> usize {
        match self {
            Payload::Bytes(_) => 0,
            Payload::Big(p) => p.charge,
        }
    }

    /// One buffer, and the charge it held (a copy for one that came in pieces).
    pub(super) fn into_bytes(self) -> (Arc<[u8]>, usize) {
        match self {
            Payload::Bytes(b) => (b, 0),
            Payload::Big(p) => {
                let charge = p.charge;
                (p.into_bytes(), charge)
            }
        }
    }
}

/// A big payload, as it is received.
#[derive(Debug)]
pub(super) struct Big {
    pub(super) store: Store,
    /// Bytes received (in order, from the start).
    pub(super) len: usize,
    /// What its storage is charged to the budget.
    pub(super) charge: usize,
}

#[derive(Debug)]
pub(super) enum Store {
    /// Its own buffer, of the length announced: no copy once it is whole.
    Whole(Arc<[MaybeUninit<u8>]>),
    /// Pieces, allocated as bytes come; copied into one buffer once whole.
    Pieces(Vec<Vec<u8>>),
}

impl Big {
    /// The bytes in one buffer (each piece is freed once copied). Only once whole.
    fn into_bytes(self) -> Arc<[u8]> {
        match self.store {
            Store::Whole(whole) => {
                assert_eq!(whole.len(), self.len, "a payload is taken whole");
                // SAFETY: every byte was written, by the reads that received them (in order).
                unsafe { whole.assume_init() }
            }
            Store::Pieces(bufs) => {
                let mut out = Arc::<[u8]>::new_uninit_slice(self.len);
                let dst = Arc::get_mut(&mut out).expect("a fresh buffer has one owner");
                let mut at = 0;
                for b in bufs {
                    assert!(b.len() <= dst.len() - at, "pieces hold more than their length");
                    // SAFETY: `b.len()` bytes fit in `dst` from `at` on (checked above), and a
                    // fresh buffer does not overlap a piece.
                    unsafe {
                        std::ptr::copy_nonoverlapping(b.as_ptr(), dst.as_mut_ptr().add(at).cast(), b.len())
                    };
                    at += b.len();
                }
                assert_eq!(at, dst.len(), "pieces hold the whole payload");
                // SAFETY: every byte was written above.
                unsafe { out.assume_init() }
            }
        }
    }
}

/// A request and its payload.
pub(super) type WithPayload = (Request, Payload);

/// A big payload being received.
#[derive(Debug)]
pub(super) struct Body {
    pub(super) req: Request,
    pub(super) big: Big,
    /// Its length, as announced.
    pub(super) len: usize,
}

/// What a turn of reading found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReadIn {
    /// The application's bytes ended (end of file or a broken socket).
    pub(super) eof: bool,
    /// Room it needed and the budget did not give (0: none).
    pub(super) need: usize,
}

/// Reads from `sock` into `buf` (not necessarily initialized; `buf` is not empty: a read of
/// nothing would look like the end of file). The bytes read are initialized.
pub(super) fn read_uninit(sock: &UnixStream, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    debug_assert!(!buf.is_empty());
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, memory we may write.
    let r = unsafe { libc::read(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

/// Reads from `sock` into the unused capacity of `buf`, at most `max` bytes (`max` > 0, and
/// that much unused capacity).
pub(super) fn read_spare(sock: &UnixStream, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    let n = spare.len().min(max);
    let r = read_uninit(sock, &mut spare[..n])?;
    // SAFETY: the read initialized the first `r` bytes after the vector's length.
    unsafe { buf.set_len(buf.len() + r) };
    Ok(r)
}
