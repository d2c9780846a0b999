//! Keys behind self-certifying XIDs.
//!
//! Project profile: a keyed principal's XID is the SHA-1 of its Ed25519 public key. A host, a
//! service or a domain proves that it owns its XID by signing with the matching secret key, and
//! anyone checks the proof with nothing but the XID and the message ([`PublicKey::verify_for`]).

use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::xid::{Principal, Xid};

/// Length of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// First line of a key file.
const KEY_FILE_HEADER: &str = "# XIA Ed25519 secret key";

/// Errors of key handling and signature checks.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The operating system gave no randomness for a new key.
    #[error("no randomness for key generation: {0}")]
    Randomness(getrandom::Error),
    /// Reading or writing a key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The key file grants permissions to its group or to others (as ssh does, such a secret is
    /// not used: whoever could read it may have copied it).
    #[error(
        "key file {path} is accessible to other users (mode {mode:04o}): \
         its secret may be known to them; if it is not, run `chmod 600 {path}`"
    )]
    Exposed {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is not in the expected format.
    #[error("key file {0} is not an XIA key file (one line of 64 hex digits expected)")]
    BadKeyFile(String),
    /// The bytes are not a valid Ed25519 public key.
    #[error("invalid Ed25519 public key")]
    BadPublicKey,
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// The public key does not hash to the XID it is supposed to prove.
    #[error("public key does not hash to {0}")]
    XidMismatch(Xid),
}

/// A secret key and the public key that goes with it.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.debug_struct("Keypair").field("public", &self.public()).finish()
    }
}

impl Keypair {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Result<Keypair, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(KeyError::Randomness)?;
        Ok(Keypair::from_seed(seed))
    }

    /// The key for a 32-byte seed (deterministic; for tests and derived keys).
    pub fn from_seed(seed: [u8; 32]) -> Keypair {
        Keypair { signing: SigningKey::from_bytes(&seed) }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// The XID this key owns as `principal`.
    pub fn xid(&self, principal: Principal) -> Xid {
        self.public().xid(principal)
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature(self.signing.sign(msg).to_bytes())
    }

    /// Reads a key file written by [`Keypair::save`]. A file that grants any permission to its
    /// group or to others is refused ([`KeyError::Exposed`]), as ssh refuses such private keys.
    pub fn load(path: &Path) -> Result<Keypair, KeyError> {
        let io = |source| KeyError::Io { path: path.display().to_string(), source };
        let mut f = fs::File::open(path).map_err(io)?;
        // The mode of the file opened, not of whatever the path names by now.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = f.metadata().map_err(io)?.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Exposed { path: path.display().to_string(), mode });
            }
        }
        let mut text = String::new();
        f.read_to_string(&mut text).map_err(io)?;
        Keypair::from_file_text(&text).ok_or_else(|| KeyError::BadKeyFile(path.display().to_string()))
    }

    /// Parses the text of a key file: comment lines start with `#`, one line holds the seed.
    pub fn from_file_text(text: &str) -> Option<Keypair> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
        let line = lines.next()?;
        if lines.next().is_some() {
            return None;
        }
        let mut seed = [0u8; 32];
        crate::xid::decode_hex(line, &mut seed).then(|| Keypair::from_seed(seed))
    }

    /// The text of a key file for this key; it names the XIDs the key owns, for people.
    pub fn to_file_text(&self) -> String {
        let mut s = String::new();
        s.push_str(KEY_FILE_HEADER);
        s.push_str(" (keep it private)\n");
        for p in [Principal::Hid, Principal::Sid, Principal::Ad] {
            s.push_str(&format!("# {}\n", self.xid(p)));
        }
        for b in self.signing.to_bytes() {
            s.push_str(&format!("{b:02x}"));
        }
        s.push('\n');
        s
    }

    /// Writes the key to a new file readable by its owner only (created with mode 0600: a
    /// umask can only take permissions away). The file appears whole or not at all: the key is
    /// written to a temporary file beside it, then linked to its name. An existing file is not
    /// overwritten (an error of kind `AlreadyExists`): losing a key means losing the XIDs it
    /// owns.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let io = |source| KeyError::Io { path: path.display().to_string(), source };
        if path.exists() {
            return Err(io(std::io::ErrorKind::AlreadyExists.into()));
        }
        let tmp = temporary_beside(path).map_err(io)?;
        let written = (|| {
            let mut opts = fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp)?;
            f.write_all(self.to_file_text().as_bytes())?;
            f.sync_all()?;
            link_new(&tmp, path)
        })();
        let _ = fs::remove_file(&tmp);
        written.map_err(io)?;
        // The new name itself survives a crash.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// Loads the key at `path`, creating it first if there is none.
    pub fn load_or_generate(path: &Path) -> Result<Keypair, KeyError> {
        if path.exists() {
            return Keypair::load(path);
        }
        let k = Keypair::generate()?;
        match k.save(path) {
            Ok(()) => Ok(k),
            // Someone else created it meanwhile: theirs wins.
            Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
                Keypair::load(path)
            }
            Err(e) => Err(e),
        }
    }
}

/// A name for a temporary file in the directory of `path`, unlikely to be taken.
fn temporary_beside(path: &Path) -> std::io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut r = [0u8; 8];
    if getrandom::getrandom(&mut r).is_err() {
        r = (u64::from(std::process::id()) ^ crate::sys::wall_ms().rotate_left(20)).to_le_bytes();
    }
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".{:016x}.tmp", u64::from_le_bytes(r)));
    Ok(path.with_file_name(tmp))
}

/// Gives the file at `tmp` the name `path` too, unless `path` exists (`AlreadyExists`): a hard
/// link, or on file systems without them a rename that does not replace.
fn link_new(tmp: &Path, path: &Path) -> std::io::Result<()> {
    let linked = match fs::hard_link(tmp, path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => e,
        r => return r,
    };
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes());
        let (from, to) = (c(tmp)?, c(path)?);
        // SAFETY: two NUL-terminated paths that live across the call.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            return Err(e);
        }
    }
    Err(linked)
}

/// An Ed25519 public key (32 bytes as on the wire).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; PUBLIC_KEY_LEN]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(")?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl PublicKey {
    /// The XID of `principal` that this key owns.
    pub fn xid(&self, principal: Principal) -> Xid {
        Xid::from_public_key(principal, &self.0)
    }

    /// Checks `sig` over `msg` (strict Ed25519: no malleable or small-order forms).
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<(), KeyError> {
        let vk = VerifyingKey::from_bytes(&self.0).map_err(|_| KeyError::BadPublicKey)?;
        let sig = ed25519_dalek::Signature::from_bytes(&sig.0);
        vk.verify_strict(msg, &sig).map_err(|_| KeyError::BadSignature)
    }

    /// Checks that this key owns `xid` and that `sig` over `msg` is its signature.
    pub fn verify_for(&self, xid: &Xid, msg: &[u8], sig: &Signature) -> Result<(), KeyError> {
        if self.xid(xid.principal()) != *xid {
            return Err(KeyError::XidMismatch(*xid));
        }
        self.verify(msg, sig)
    }
}

/// An Ed25519 signature (64 bytes as on the wire).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; SIGNATURE_LEN]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let k = Keypair::from_seed([7; 32]);
        let hid = k.xid(Principal::Hid);
        let sig = k.sign(b"route patch");
        k.public().verify_for(&hid, b"route patch", &sig).unwrap();
        assert!(matches!(k.public().verify_for(&hid, b"route patcH", &sig), Err(KeyError::BadSignature)));
        let other = Keypair::from_seed([8; 32]);
        assert!(matches!(
            other.public().verify_for(&hid, b"route patch", &other.sign(b"route patch")),
            Err(KeyError::XidMismatch(_))
        ));
    }

    #[test]
    fn rfc8032_test_vector_1() {
        // RFC 8032, section 7.1, TEST 1 (empty message).
        let seed = hex32("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let k = Keypair::from_seed(seed);
        assert_eq!(k.public().0, hex32("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"));
        let sig = k.sign(b"");
        assert_eq!(&sig.0[..4], &[0xe5, 0x56, 0x43, 0x00]);
    }

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    #[test]
    fn key_file_round_trip() {
        let dir = std::env::temp_dir().join(format!("xia-key-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("host.key");
        let _ = fs::remove_file(&path);
        let k = Keypair::load_or_generate(&path).unwrap();
        let again = Keypair::load_or_generate(&path).unwrap();
        assert_eq!(k.public(), again.public());
        assert!(k.save(&path).is_err(), "an existing key is never overwritten");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "key file readable by others: {mode:o}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A fresh directory for a test's key files.
    fn key_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("xia-key-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[cfg(unix)]
    fn chmod(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn key_files_other_users_can_access_are_refused() {
        let dir = key_dir("mode");
        let path = dir.join("host.key");
        let k = Keypair::from_seed([9; 32]);
        k.save(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(Keypair::load(&path).unwrap().public(), k.public());
        chmod(&path, 0o644);
        let e = Keypair::load(&path).unwrap_err();
        assert!(
            matches!(&e, KeyError::Exposed { mode: 0o644, path: p } if p == &path.display().to_string()),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(text.contains(&format!("chmod 600 {}", path.display())), "{text}");
        // Not replaced by a new key either: the file stays as it is.
        assert!(matches!(Keypair::load_or_generate(&path), Err(KeyError::Exposed { .. })));
        assert_eq!(mode(&path), 0o644);
        for refused in [0o640, 0o604, 0o660, 0o602, 0o610, 0o601, 0o700 | 0o020] {
            chmod(&path, refused);
            assert!(matches!(Keypair::load(&path), Err(KeyError::Exposed { .. })), "{refused:o}");
        }
        for accepted in [0o600, 0o400, 0o700] {
            chmod(&path, accepted);
            assert_eq!(Keypair::load(&path).unwrap().public(), k.public(), "{accepted:o}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn generated_key_files_are_private_whole_and_never_overwritten() {
        let dir = key_dir("gen");
        let path = dir.join("ad.key");
        // Several at once: one key wins, every caller gets it.
        let keys: Vec<PublicKey> = (0..8)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || Keypair::load_or_generate(&p).unwrap().public())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert!(keys.iter().all(|k| *k == keys[0]));
        assert_eq!(mode(&path), 0o600);
        let before = fs::read(&path).unwrap();
        let e = Keypair::from_seed([1; 32]).save(&path).unwrap_err();
        assert!(
            matches!(&e, KeyError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists)
        );
        assert_eq!(fs::read(&path).unwrap(), before);
        // No temporary file left behind.
        let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("ad.key")]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_key_files() {
        assert!(Keypair::from_file_text("").is_none());
        assert!(Keypair::from_file_text("# only a comment\n").is_none());
        assert!(Keypair::from_file_text(&"0".repeat(63)).is_none());
        assert!(Keypair::from_file_text(&format!("{}\n{}\n", "0".repeat(64), "0".repeat(64))).is_none());
        assert!(Keypair::from_file_text(&"g".repeat(64)).is_none());
        assert!(Keypair::from_file_text(&"+0".repeat(32)).is_none());
        assert!(Keypair::from_file_text(&"0".repeat(64)).is_some());
    }

    #[test]
    fn invalid_public_key_is_a_typed_error() {
        // Not a point on the curve.
        let pk = PublicKey([0xff; 32]);
        let sig = Signature([0; 64]);
        assert!(matches!(pk.verify(b"x", &sig), Err(KeyError::BadPublicKey) | Err(KeyError::BadSignature)));
    }
}
