//! The image cache (no guest booted): builders racing on one new image all get it, whole; the
//! initramfs holds what `/init` needs; images unused for a week go; a dynamically linked file
//! is refused. Uses the shared
//! cache (`target/qemu-guest/`), so the kernel is downloaded once for all tests.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use qemu_hooks::image::{default_cache_dir, ImageBuilder, ImageError};

#[test]
fn concurrent_builders_share_one_whole_image() {
    let cache = default_cache_dir();
    // A file no earlier run had makes a key no earlier run built.
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let scratch = std::env::temp_dir().join(format!("qh-image-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let stamp = scratch.join("stamp");
    std::fs::write(&stamp, format!("{nanos}\n")).expect("stamp");
    let builder = ImageBuilder::new(&cache).file(&stamp, "/etc/qh/stamp").program(["cat", "/etc/qh/stamp"]);

    // Two images as an earlier run could have left them: one unused for 8 days, one just used.
    let fake = |name: &str, age: Duration| {
        let dir = cache.join("images").join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("fake image");
        let inputs = std::fs::File::create(dir.join("inputs.txt")).expect("fake inputs");
        inputs.set_modified(SystemTime::now() - age).expect("mtime");
        dir
    };
    let stale = fake("stale-test", Duration::from_secs(8 * 24 * 3600));
    let recent = fake("recent-test", Duration::ZERO);

    let racers: Vec<_> = (0..4)
        .map(|_| {
            let b = builder.clone();
            std::thread::spawn(move || b.build())
        })
        .collect();
    let images: Vec<_> =
        racers.into_iter().map(|t| t.join().expect("builder thread").expect("image builds")).collect();
    assert!(images.windows(2).all(|w| w[0] == w[1]), "{images:#?}");
    let image = &images[0];

    // The archive is whole and holds what the init needs.
    let gz = std::fs::File::open(&image.initrd).expect("initrd");
    let mut gunzip = Command::new("gzip").arg("-dc").stdin(gz).stdout(Stdio::piped()).spawn().expect("gzip");
    let list = Command::new("cpio")
        .args(["-t", "--quiet"])
        .stdin(gunzip.stdout.take().expect("gzip stdout"))
        .output()
        .expect("cpio -t");
    assert!(gunzip.wait().expect("gzip exits").success(), "the initrd is not whole gzip");
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    let names = String::from_utf8_lossy(&list.stdout);
    for want in ["init", "dev/console", "bin/busybox", "bin/sh", "lib/modules/virtio_net.ko", "etc/qh/stamp"]
    {
        assert!(names.lines().any(|l| l == want), "{want} missing from the initramfs:\n{names}");
    }

    // Building a new image removed the one unused for a week, not the other.
    assert!(!stale.exists(), "{} was not pruned", stale.display());
    assert!(recent.exists());
    let _ = std::fs::remove_dir_all(&recent);

    // Found again, not rebuilt.
    let t = Instant::now();
    assert_eq!(&builder.build().expect("cached image"), image);
    eprintln!("cache hit in {:.2} s", t.elapsed().as_secs_f64());

    // No builder left its temporary directory behind.
    let pid = format!(".{}.", std::process::id());
    let leftovers: Vec<_> = std::fs::read_dir(cache.join("tmp"))
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(!leftovers.iter().any(|n: &String| n.contains(&pid)), "{leftovers:?}");

    // This test's image goes; the kernel stays for the others.
    if let Some(dir) = image.initrd.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn dynamically_linked_files_are_refused() {
    // The test binary itself: built for the gnu target without crt-static.
    let me = std::env::current_exe().expect("own path");
    let err = ImageBuilder::new(default_cache_dir()).file(&me, "/bin/x").build().expect_err("refused");
    assert!(matches!(err, ImageError::NotStatic(ref p) if *p == me), "{err}");
}
