//! `xmigrate send` and `xmigrate recv` end to end, without QEMU: a stream of bytes in the
//! sender's stdin comes out of the receiver's stdout byte-exact, across routers and through
//! impairments; and both give up, cleanly and in time, when the other side or the path dies.
//! Needs root; under CI=true it must run.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use xia_tests::{bin, require_root, Child, Fig1, Netns, TwoHosts, Xiad};

/// Pseudo-random bytes (a prime period, so data at a wrong offset does not match by accident).
fn stream(len: usize, seed: u64) -> Vec<u8> {
    let mut block = vec![0u8; 1_048_573];
    xia_core::rng::Rng::new(seed).fill(&mut block);
    block.iter().copied().cycle().take(len).collect()
}

/// `xmigrate recv` on `host`, its stdout into `out`.
fn receiver(ns: &Netns, host: &Xiad, out: &std::path::Path, args: &[&str]) -> Child {
    let mut c = ns.cmd(bin("xmigrate"));
    c.arg("--socket").arg(&host.socket).arg("recv").arg("--any-stream").args(args);
    c.stdout(Stdio::from(std::fs::File::create(out).unwrap()));
    Child::spawn_with_stdout(c).unwrap()
}

/// `xmigrate send` on `host` to `dest` (a host's DAG), its stdin a pipe.
fn sender(ns: &Netns, host: &Xiad, dest: &str, args: &[&str]) -> Child {
    let mut c = ns.cmd(bin("xmigrate"));
    c.arg("--socket").arg(&host.socket).arg("send").args(args).args(dest.split(' '));
    c.stdin(Stdio::piped());
    Child::spawn(c).unwrap()
}

/// Feeds `data` into the child's stdin on a thread, then closes it.
fn feed(child: &mut Child, data: Vec<u8>) -> std::thread::JoinHandle<()> {
    let mut stdin = child.take_stdin().expect("a piped stdin");
    std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    })
}

fn sha(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

fn migrate_bytes(
    ns_a: &Netns,
    a: &Xiad,
    ns_b: &Netns,
    b: &Xiad,
    dest: &str,
    len: usize,
    dir: &std::path::Path,
) {
    let data = stream(len, 3);
    let out = dir.join("recv.out");
    let mut r = receiver(ns_b, b, &out, &[]);
    // The receiver listens before the sender connects.
    r.wait_for_stderr(|l| l.contains("listening at"), Duration::from_secs(10)).unwrap();
    let mut s = sender(ns_a, a, dest, &[]);
    let t = Instant::now();
    let writer = feed(&mut s, data.clone());
    let ss = s.wait_timeout(Duration::from_secs(120)).unwrap().expect("the sender ends");
    let rs = r.wait_timeout(Duration::from_secs(10)).unwrap().expect("the receiver ends");
    writer.join().unwrap();
    assert!(ss.success(), "sender: {}", s.stderr_tail());
    assert!(rs.success(), "receiver: {}", r.stderr_tail());
    let got = std::fs::read(&out).unwrap();
    assert_eq!(got.len(), data.len());
    assert!(sha(&got) == sha(&data), "bytes differ");
    eprintln!("{len} bytes in {:?}", t.elapsed());
}

#[test]
fn a_stream_crosses_two_routers_byte_exact() {
    if !require_root() {
        return;
    }
    let f = Fig1::new(true, 1500, false, false).unwrap();
    migrate_bytes(&f.ns_a, &f.a, &f.ns_b, &f.b, &f.b.dag, 64 << 20, f.dir.path());
    // Nothing left published at the source.
    let s = f.a.stats(&f.ns_a).unwrap();
    assert_eq!(s["store_published_bytes"], 0, "{s:?}");
}

#[test]
fn a_stream_crosses_loss_reordering_and_duplication_byte_exact() {
    if !require_root() {
        return;
    }
    let i =
        TwoHosts::impaired(1500, &["--loss", "0.02", "--reorder", "0.05", "--duplicate", "0.01"]).unwrap();
    let h = &i.hosts;
    migrate_bytes(&h.ns_a, &h.a, &h.ns_b, &h.b, &h.b.re_dag(), 64 << 20, h.dir.path());
}

#[test]
fn the_sender_gives_up_in_time_when_the_receiver_dies_and_leaves_nothing_published() {
    if !require_root() {
        return;
    }
    let h = TwoHosts::new(9000, false).unwrap();
    let mut r = receiver(&h.ns_b, &h.b, &h.dir.path().join("recv.out"), &[]);
    r.wait_for_stderr(|l| l.contains("listening at"), Duration::from_secs(10)).unwrap();
    let mut s = sender(&h.ns_a, &h.a, &h.b.re_dag(), &["--timeout", "2"]);
    // A stream that never ends (QEMU still writing): 16 MiB, then the pipe stays open.
    let mut stdin = s.take_stdin().unwrap();
    stdin.write_all(&stream(16 << 20, 5)).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while h.b.stats(&h.ns_b).unwrap()["chunk_pieces_in"] == 0 {
        assert!(Instant::now() < until, "nothing arrives");
        std::thread::sleep(Duration::from_millis(20));
    }
    r.signal(libc::SIGKILL).unwrap();
    let t = Instant::now();
    let status = s.wait_timeout(Duration::from_secs(10)).unwrap().expect("the sender gives up");
    assert!(!status.success());
    assert!(t.elapsed() < Duration::from_secs(5), "gave up after {:?}", t.elapsed());
    let why = s.stderr_tail();
    assert_eq!(why.lines().filter(|l| l.starts_with("xmigrate send:")).count(), 1, "one clear line: {why}");
    drop(stdin);
    // Its chunks went with it (published under a lease).
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let p = h.a.stats(&h.ns_a).unwrap()["store_published_bytes"];
        if p == 0 {
            break;
        }
        assert!(Instant::now() < until, "{p} bytes still published");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn both_sides_give_up_in_time_when_the_path_is_cut_and_the_next_attempt_succeeds() {
    if !require_root() {
        return;
    }
    let h = TwoHosts::new(9000, false).unwrap();
    let out = h.dir.path().join("recv.out");
    let mut r = receiver(&h.ns_b, &h.b, &out, &["--timeout", "2"]);
    r.wait_for_stderr(|l| l.contains("listening at"), Duration::from_secs(10)).unwrap();
    let mut s = sender(&h.ns_a, &h.a, &h.b.re_dag(), &["--timeout", "2"]);
    let mut stdin = s.take_stdin().unwrap();
    stdin.write_all(&stream(16 << 20, 6)).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while h.b.stats(&h.ns_b).unwrap()["chunk_pieces_in"] == 0 {
        assert!(Instant::now() < until, "nothing arrives");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Every frame lost, both ways.
    xia_tests::nft_loss(&h.ns_a, "xa0", 100).unwrap();
    xia_tests::nft_loss(&h.ns_b, "xb0", 100).unwrap();
    let t = Instant::now();
    let ss = s.wait_timeout(Duration::from_secs(10)).unwrap().expect("the sender gives up");
    let rs = r.wait_timeout(Duration::from_secs(10)).unwrap().expect("the receiver gives up");
    assert!(!ss.success() && !rs.success());
    assert!(t.elapsed() < Duration::from_secs(6), "gave up after {:?}", t.elapsed());
    drop(stdin);
    // The path back: a second attempt goes through.
    xia_tests::nft_loss(&h.ns_a, "xa0", 0).unwrap();
    xia_tests::nft_loss(&h.ns_b, "xb0", 0).unwrap();
    migrate_bytes(&h.ns_a, &h.a, &h.ns_b, &h.b, &h.b.re_dag(), 8 << 20, h.dir.path());
}
