//! A writer of cpio archives in the "newc" format, the one the Linux kernel unpacks as an
//! initramfs.
//!
//! Written here rather than driving the `cpio` tool because the archive must contain what the
//! host has no business creating: `/dev/console` as a character device (without it the kernel
//! starts `/init` with no stdin/stdout), files owned by root whoever builds, and no timestamps
//! (the same inputs give the same bytes). The format is a 110-byte ASCII header per entry, the
//! name, the data, each padded to 4 bytes, and a `TRAILER!!!` entry.

use std::io::{self, Write};

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// A newc archive being written to `W`. Entries go in the order given: parents before children.
#[derive(Debug)]
pub struct CpioWriter<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
}

impl<W: Write> CpioWriter<W> {
    /// An archive written to `out`.
    pub fn new(out: W) -> Self {
        CpioWriter { out, written: 0, next_ino: 1 }
    }

    /// A directory (`path` without a leading `/`), mode `perm`.
    pub fn dir(&mut self, path: &str, perm: u32) -> io::Result<()> {
        self.entry(path, S_IFDIR | (perm & 0o7777), 2, (0, 0), b"")
    }

    /// A regular file with `data`, mode `perm`.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(path, S_IFREG | (perm & 0o7777), 1, (0, 0), data)
    }

    /// A symbolic link at `path` pointing to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// A character device node `major:minor`, mode `perm`.
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(path, S_IFCHR | (perm & 0o7777), 1, (major, minor), b"")
    }

    /// Writes the trailer and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.header("TRAILER!!!", 0, 1, (0, 0), 0, 0)?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn entry(&mut self, path: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) -> io::Result<()> {
        let path = path.trim_start_matches('/');
        if path.is_empty() || path.contains('\0') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad cpio path {path:?}")));
        }
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{path}: over 4 GiB")))?;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(path, mode, nlink, rdev, size, ino)?;
        self.out.write_all(data)?;
        self.written += data.len() as u64;
        self.pad()
    }

    fn header(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        size: u32,
        ino: u32,
    ) -> io::Result<()> {
        let namesize = name.len() as u32 + 1;
        // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
        // rdevminor, namesize, check.
        let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0];
        let mut h = String::with_capacity(110);
        h.push_str("070701");
        for f in fields {
            h.push_str(&format!("{f:08X}"));
        }
        self.out.write_all(h.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        self.written += h.len() as u64 + u64::from(namesize);
        self.pad()
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.out.write_all(&[0u8; 3][..n])?;
        self.written += n as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout() {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("dev", 0o755).unwrap();
        w.char_dev("/dev/console", 0o600, 5, 1).unwrap();
        w.file("init", 0o755, b"#!/bin/sh\n").unwrap();
        w.symlink("bin/sh", "busybox").unwrap();
        let out = w.finish().unwrap();
        assert_eq!(out.len() % 4, 0);
        // First header: a directory named "dev".
        assert_eq!(&out[..6], b"070701");
        assert_eq!(&out[14..22], b"000041ED");
        assert_eq!(&out[110..114], b"dev\0");
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("dev/console\0"));
        assert!(text.contains("#!/bin/sh\n"));
        assert!(text.ends_with("TRAILER!!!\0\0\0\0") || text.contains("TRAILER!!!\0"));
    }

    /// The system's `cpio` reads back what we wrote, when it is installed.
    #[test]
    fn cpio_tool_lists_it() {
        let Ok(mut child) = std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("no cpio tool: layout checked by newc_layout only");
            return;
        };
        let mut w = CpioWriter::new(Vec::new());
        w.dir("bin", 0o755).unwrap();
        w.file("bin/a", 0o644, b"abcde").unwrap();
        w.symlink("bin/b", "a").unwrap();
        let bytes = w.finish().unwrap();
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "bin\nbin/a\nbin/b\n");
    }
}
