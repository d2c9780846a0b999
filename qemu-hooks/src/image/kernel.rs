//! The guest's kernel and virtio modules, taken from Debian's cloud kernel package.
//!
//! Why that package: it is a small kernel made for virtual machines, signed and maintained by
//! Debian, and `apt-get download` fetches it without installing anything on the host (the host
//! boots its own kernel; the guest's is just a file for QEMU's `-kernel`). Its virtio drivers are
//! modules, so the initramfs carries them and `/init` loads them in dependency order.
//!
//! The package name changes with every kernel ABI bump (`linux-image-6.1.0-57-cloud-amd64`), so
//! it is read from what the metapackage `linux-image-cloud-amd64` depends on (which pins the
//! version too: `apt-cache show`); the apt lists are refreshed (once) only when the name is unknown or
//! the download fails. What is kept of a package (the kernel, the modules) goes to
//! `<cache>/kernels/<package>_<version>`, made in a temporary directory and renamed into place,
//! so concurrent builders never see a half-written one; the package file itself is not kept.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{io_err, run, tool, unique_tmp, ImageError};

/// The metapackage that always depends on the current cloud kernel.
pub const META_PACKAGE: &str = "linux-image-cloud-amd64";

/// The modules `/init` loads, in this order (each one needs the ones before it): virtio-net on
/// virtio-pci, legacy and modern devices, with the failover modules virtio_net links against.
pub const VIRTIO_MODULES: [&str; 8] = [
    "virtio_ring",
    "virtio",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
];

/// A kernel extracted into the cache.
#[derive(Debug, Clone)]
pub struct KernelParts {
    /// Debian package name.
    pub package: String,
    /// Its version.
    pub version: String,
    /// The compressed kernel image.
    pub vmlinuz: PathBuf,
    /// The modules to load, in order, uncompressed (built-in ones left out).
    pub modules: Vec<(String, PathBuf)>,
}

/// Finds the kernel package (`package`, or the cloud kernel's current one), downloads and
/// extracts it into `cache` unless it is there already.
pub fn fetch(cache: &Path, package: Option<&str>) -> Result<KernelParts, ImageError> {
    let mut updated = false;
    loop {
        let (package, version) = match resolve(package) {
            Ok(found) => found,
            Err(e) if !updated => {
                tracing::info!("{e}; refreshing the apt lists (apt-get update)");
                apt_update()?;
                updated = true;
                continue;
            }
            Err(e) => return Err(e),
        };
        let dir = cache.join("kernels").join(format!("{package}_{}", path_safe(&version)));
        if let Some(parts) = load(&dir, &package, &version)? {
            return Ok(parts);
        }
        // Not extracted yet: download into a temporary directory, extract, drop the package
        // (27 MB; the kernel and the modules kept are 14 MB).
        let tmp = unique_tmp(cache, "download")?;
        let deb = match download(&tmp, &package, &version) {
            Ok(deb) => deb,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                if updated {
                    return Err(e);
                }
                // Stale lists point at a file the mirror no longer has: refresh and start over
                // (the version may then change).
                tracing::info!("{e}; refreshing the apt lists and trying again");
                apt_update()?;
                updated = true;
                continue;
            }
        };
        let extracted = extract(cache, &deb, &dir);
        let _ = fs::remove_dir_all(&tmp);
        extracted?;
        return load(&dir, &package, &version)?
            .ok_or_else(|| ImageError::Kernel(format!("{} is incomplete after extraction", dir.display())));
    }
}

/// The package name and its candidate version, from the local apt lists (no network). One
/// `apt-cache show` when the metapackage pins the version (it does: `(= 6.1.192-3)`), since each
/// call reads every list (about 0.4 s here, where apt keeps no binary cache).
fn resolve(package: Option<&str>) -> Result<(String, String), ImageError> {
    let package = match package {
        Some(p) => p.to_string(),
        None => {
            let out = show(META_PACKAGE)?;
            let (name, pinned) = field(&out, "Depends")
                .and_then(|d| kernel_dependency(&d))
                .ok_or_else(|| ImageError::Kernel(format!("{META_PACKAGE} depends on no kernel package")))?;
            if let Some(version) = pinned {
                return Ok((name, version));
            }
            name
        }
    };
    let version = field(&show(&package)?, "Version")
        .ok_or_else(|| ImageError::Kernel(format!("{package}: no Version")))?;
    Ok((package, version))
}

/// `apt-cache show --no-all-versions PACKAGE`: the candidate's record.
fn show(package: &str) -> Result<String, ImageError> {
    run(Command::new("apt-cache").args(["show", "--no-all-versions", package]))
        .map_err(|e| ImageError::Kernel(format!("{package} unknown to apt ({e})")))
}

/// The value of `name:` in an apt record.
fn field(record: &str, name: &str) -> Option<String> {
    record.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == name).then(|| v.trim().to_string()).filter(|v| !v.is_empty())
    })
}

/// The first `linux-image-*` package of a `Depends` value, with its version when pinned by `=`.
fn kernel_dependency(depends: &str) -> Option<(String, Option<String>)> {
    depends.split([',', '|']).find_map(|dep| {
        let dep = dep.trim();
        let (name, constraint) = match dep.split_once('(') {
            Some((n, c)) => (n.trim(), Some(c.trim_end_matches(')').trim())),
            None => (dep, None),
        };
        if !name.starts_with("linux-image-") || name == META_PACKAGE {
            return None;
        }
        let pinned = constraint.and_then(|c| c.strip_prefix('=')).map(|v| v.trim().to_string());
        Some((name.to_string(), pinned))
    })
}

fn apt_update() -> Result<(), ImageError> {
    run(Command::new("apt-get").args(["update", "-qq", "-o", "DPkg::Lock::Timeout=120"])).map(drop)
}

/// `apt-get download PACKAGE=VERSION` into `dir`; the path of the package file.
fn download(dir: &Path, package: &str, version: &str) -> Result<PathBuf, ImageError> {
    tracing::info!("downloading {package} {version} (apt-get download)");
    run(Command::new("apt-get")
        .args(["download", "-qq", "-o", "APT::Sandbox::User=root", &format!("{package}={version}")])
        .current_dir(dir))?;
    fs::read_dir(dir)
        .map_err(|e| io_err(dir, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| ImageError::Kernel(format!("apt-get download {package} left no .deb")))
}

/// Extracts the kernel image and the virtio modules of `deb` into `dir` (made aside, renamed).
fn extract(cache: &Path, deb: &Path, dir: &Path) -> Result<(), ImageError> {
    let tmp = unique_tmp(cache, "extract")?;
    let result = (|| {
        let root = tmp.join("root");
        run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root))?;
        let out = tmp.join("out");
        fs::create_dir_all(out.join("modules")).map_err(|e| io_err(&out, e))?;

        let vmlinuz = find_files(&root.join("boot"), &|name: &str| name.starts_with("vmlinuz"))?
            .into_iter()
            .next()
            .ok_or_else(|| ImageError::Kernel(format!("no boot/vmlinuz* in {}", deb.display())))?;
        fs::copy(&vmlinuz, out.join("vmlinuz")).map_err(|e| io_err(&vmlinuz, e))?;

        let mut mod_roots = Vec::new();
        for base in ["lib/modules", "usr/lib/modules"] {
            if let Ok(rd) = fs::read_dir(root.join(base)) {
                mod_roots.extend(rd.filter_map(Result::ok).map(|e| e.path()));
            }
        }
        let mod_root = mod_roots
            .into_iter()
            .next()
            .ok_or_else(|| ImageError::Kernel(format!("no lib/modules/<version> in {}", deb.display())))?;
        let builtin = fs::read_to_string(mod_root.join("modules.builtin")).unwrap_or_default();
        let all = find_files(&mod_root, &|name: &str| module_name(name).is_some())?;

        let mut list = String::new();
        for want in VIRTIO_MODULES {
            let found = all.iter().find(|p| {
                p.file_name().and_then(|n| n.to_str()).and_then(module_name).is_some_and(|n| n == want)
            });
            match found {
                Some(path) => {
                    let ko = out.join("modules").join(format!("{want}.ko"));
                    decompress(path, &ko)?;
                    list.push_str(want);
                    list.push('\n');
                }
                None if builtin
                    .lines()
                    .any(|l| l.rsplit('/').next().and_then(module_name).is_some_and(|n| n == want)) =>
                {
                    tracing::debug!("{want} is built into the kernel");
                }
                None => {
                    return Err(ImageError::Kernel(format!(
                        "module {want} is neither in {} nor built in",
                        deb.display()
                    )))
                }
            }
        }
        fs::write(out.join("modules.list"), list).map_err(|e| io_err(&out, e))?;
        let parent = dir.parent().unwrap_or(cache);
        fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
        match fs::rename(&out, dir) {
            Ok(()) => Ok(()),
            // Another builder got there first: its copy is as good as ours.
            Err(_) if dir.join("modules.list").exists() => Ok(()),
            Err(e) => Err(io_err(dir, e)),
        }
    })();
    let _ = fs::remove_dir_all(&tmp);
    result
}

/// The extracted kernel at `dir`, if it is there.
fn load(dir: &Path, package: &str, version: &str) -> Result<Option<KernelParts>, ImageError> {
    let list = match fs::read_to_string(dir.join("modules.list")) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(dir, e)),
    };
    let modules = list
        .lines()
        .filter(|l| !l.is_empty())
        .map(|m| (m.to_string(), dir.join("modules").join(format!("{m}.ko"))))
        .collect();
    Ok(Some(KernelParts {
        package: package.into(),
        version: version.into(),
        vmlinuz: dir.join("vmlinuz"),
        modules,
    }))
}

/// The module name of a file name (`virtio_ring.ko`, `virtio_ring.ko.xz`, ...), with `-` read as
/// `_` as the kernel does.
fn module_name(file: &str) -> Option<String> {
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"].iter().find_map(|ext| file.strip_suffix(ext))?;
    Some(stem.replace('-', "_"))
}

/// Writes `src` uncompressed to `dst`: busybox's `insmod` takes plain `.ko` files only, and the
/// guest is better off not spending TCG time on decompression.
fn decompress(src: &Path, dst: &Path) -> Result<(), ImageError> {
    let name = src.to_string_lossy();
    let tool_name = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else if name.ends_with(".gz") {
        "gzip"
    } else {
        return fs::copy(src, dst).map(drop).map_err(|e| io_err(src, e));
    };
    let file = fs::File::create(dst).map_err(|e| io_err(dst, e))?;
    let mut cmd = tool(tool_name);
    cmd.args(["-d", "-c"]).arg(src).stdout(file);
    run(&mut cmd).map(drop)
}

/// Files under `dir` (recursively) whose name satisfies `want`, sorted.
fn find_files(dir: &Path, want: &dyn Fn(&str) -> bool) -> Result<Vec<PathBuf>, ImageError> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = match fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&d, e)),
        };
        for entry in rd.filter_map(Result::ok) {
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                stack.push(path);
            } else if entry.file_name().to_str().is_some_and(want) {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// A version as a file name component (epochs have a `:`).
fn path_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || ".+~-".contains(c) { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_output_is_read() {
        let record = "Package: linux-image-cloud-amd64\nVersion: 6.1.192-3\n\
                      Depends: linux-image-6.1.0-57-cloud-amd64 (= 6.1.192-3)\nDescription: x\n";
        let deps = field(record, "Depends").unwrap();
        assert_eq!(
            kernel_dependency(&deps),
            Some(("linux-image-6.1.0-57-cloud-amd64".into(), Some("6.1.192-3".into())))
        );
        assert_eq!(field(record, "Version").as_deref(), Some("6.1.192-3"));
        assert_eq!(
            kernel_dependency("libc6, linux-image-6.2-cloud-amd64 | other"),
            Some(("linux-image-6.2-cloud-amd64".into(), None))
        );
        assert_eq!(kernel_dependency("linux-image-x (>= 1)").map(|d| d.1), Some(None));
        assert_eq!(kernel_dependency("libc6"), None);
    }

    #[test]
    fn module_names() {
        assert_eq!(module_name("virtio_ring.ko").as_deref(), Some("virtio_ring"));
        assert_eq!(module_name("virtio-rng.ko.xz").as_deref(), Some("virtio_rng"));
        assert_eq!(module_name("virtio.ko.zst").as_deref(), Some("virtio"));
        assert_eq!(module_name("modules.builtin"), None);
        assert_eq!(path_safe("1:6.1-3"), "1_6.1-3");
    }
}
