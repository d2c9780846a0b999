//! QEMU's side of the pipes, on threads of their own with plain blocking I/O (pipes, files or
//! terminals alike): the sender cuts its stdin into chunks, by size and by time, and the
//! receiver writes the chunks to its stdout in order.

use std::fs::File;
use std::io::{self, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

/// Something read from stdin.
#[derive(Debug)]
pub enum Input {
    /// The next piece of the stream.
    Chunk(Vec<u8>),
    /// The stream ended (end of file).
    End,
    /// Reading failed.
    Failed(io::Error),
}

/// Waits up to `timeout` for `fd` to become readable (or hang up); true if it did.
fn readable(fd: libc::c_int, timeout: Option<Duration>) -> bool {
    let ms = timeout.map_or(-1, |t| t.as_millis().clamp(1, i32::MAX as u128) as i32);
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    loop {
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r >= 0 {
            return r > 0;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            // Not pollable (or poll failed): read and let the read block.
            return true;
        }
    }
}

/// Reads stdin on a thread, in chunks of at most `chunk` bytes. A chunk goes as soon as it is
/// full, or when the stream pauses for `idle` with bytes waiting (QEMU's last pages before the
/// VM stops must not wait for a full chunk), or at the end. At most `queue` chunks wait in
/// the channel: beyond that the thread stops reading, and QEMU's writes block.
pub fn read_stdin(chunk: usize, idle: Duration, queue: usize) -> mpsc::Receiver<Input> {
    let (tx, rx) = mpsc::channel(queue.max(1));
    std::thread::Builder::new()
        .name("xmigrate-stdin".into())
        .spawn(move || {
            // The descriptor itself, unbuffered: what poll says is what read gets.
            // SAFETY: fd 0 is open for the process's life; ManuallyDrop never closes it.
            let mut stdin = ManuallyDrop::new(unsafe { File::from_raw_fd(libc::STDIN_FILENO) });
            let mut buf = vec![0u8; chunk];
            let mut filled = 0;
            loop {
                let wait = (filled > 0).then_some(idle);
                if filled > 0 && !readable(libc::STDIN_FILENO, wait) {
                    // A pause: what came goes now.
                    let piece = buf[..filled].to_vec();
                    filled = 0;
                    if tx.blocking_send(Input::Chunk(piece)).is_err() {
                        return;
                    }
                    continue;
                }
                match stdin.read(&mut buf[filled..]) {
                    Ok(0) => {
                        if filled > 0 && tx.blocking_send(Input::Chunk(buf[..filled].to_vec())).is_err() {
                            return;
                        }
                        let _ = tx.blocking_send(Input::End);
                        return;
                    }
                    Ok(n) => {
                        filled += n;
                        if filled == chunk {
                            let full = std::mem::replace(&mut buf, vec![0u8; chunk]);
                            filled = 0;
                            if tx.blocking_send(Input::Chunk(full)).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Input::Failed(e));
                        return;
                    }
                }
            }
        })
        .expect("a thread for stdin");
    rx
}

/// What the stdout thread reports.
#[derive(Debug)]
pub enum Written {
    /// Chunk `seq` is written (and flushed).
    Chunk(u64),
    /// Writing failed (QEMU closed the pipe).
    Failed(io::Error),
}

/// A chunk to write: its place in the stream and its bytes.
pub type ToWrite = (u64, Arc<Vec<u8>>);

/// Writes chunks to stdout on a thread, in the order given, and reports each one written. At
/// most `queue` chunks wait for the thread.
pub fn write_stdout(queue: usize) -> (mpsc::Sender<ToWrite>, mpsc::UnboundedReceiver<Written>) {
    let (tx, mut rx) = mpsc::channel::<ToWrite>(queue.max(1));
    let (done, written) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("xmigrate-stdout".into())
        .spawn(move || {
            // The descriptor itself, unbuffered (std's stdout buffers by lines).
            // SAFETY: fd 1 is open for the process's life; ManuallyDrop never closes it.
            let mut out = ManuallyDrop::new(unsafe { File::from_raw_fd(libc::STDOUT_FILENO) });
            while let Some((seq, data)) = rx.blocking_recv() {
                if let Err(e) = out.write_all(&data).and_then(|()| out.flush()) {
                    let _ = done.send(Written::Failed(e));
                    return;
                }
                if done.send(Written::Chunk(seq)).is_err() {
                    return;
                }
            }
        })
        .expect("a thread for stdout");
    (tx, written)
}
