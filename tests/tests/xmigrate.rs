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

/// A transfer under way between two hosts, its end not in sight (QEMU still writing): the
/// receiver (`recv_args`, stdout to `recv.out`) and the sender (`send_args`) started, 16 MiB
/// of stream fed, some of it arrived at B; the sender's stdin stays open.
struct UnderWay {
    r: Child,
    s: Child,
    stdin: std::process::ChildStdin,
    out: std::path::PathBuf,
    h: TwoHosts,
}

/// (Bind `h` first when taking it apart: bindings drop in reverse, the hosts last.)
fn under_way(recv_args: &[&str], send_args: &[&str], seed: u64) -> UnderWay {
    let h = TwoHosts::new(9000, false).unwrap();
    let out = h.dir.path().join("recv.out");
    let mut r = receiver(&h.ns_b, &h.b, &out, recv_args);
    r.wait_for_stderr(|l| l.contains("listening at"), Duration::from_secs(10)).unwrap();
    let mut s = sender(&h.ns_a, &h.a, &h.b.re_dag(), send_args);
    let mut stdin = s.take_stdin().unwrap();
    stdin.write_all(&stream(16 << 20, seed)).unwrap();
    await_chunks(&h.ns_b, &h.b);
    UnderWay { r, s, stdin, out, h }
}

#[test]
fn the_sender_gives_up_in_time_when_the_receiver_dies_and_leaves_nothing_published() {
    if !require_root() {
        return;
    }
    let UnderWay { h, mut r, mut s, stdin, .. } = under_way(&[], &["--timeout", "2"], 5);
    r.signal(libc::SIGKILL).unwrap();
    let t = Instant::now();
    let status = s.wait_timeout(Duration::from_secs(10)).unwrap().expect("the sender gives up");
    assert!(!status.success());
    assert!(t.elapsed() < Duration::from_secs(5), "gave up after {:?}", t.elapsed());
    one_clear_line(&s, "xmigrate send:");
    drop(stdin);
    // Its chunks went with it (published under a lease).
    await_nothing_published(&h.ns_a, &h.a);
}

#[test]
fn both_sides_give_up_in_time_when_the_path_is_cut_and_the_next_attempt_succeeds() {
    if !require_root() {
        return;
    }
    let UnderWay { h, mut r, mut s, stdin, .. } = under_way(&["--timeout", "2"], &["--timeout", "2"], 6);
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

/// Waits until `host` has taken in CHUNK data (the transfer is under way).
fn await_chunks(ns: &Netns, host: &Xiad) {
    let until = Instant::now() + Duration::from_secs(10);
    while host.stats(ns).unwrap()["chunk_pieces_in"] == 0 {
        assert!(Instant::now() < until, "nothing arrives");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `host` holds no published chunk (a sender's lease ended with it).
fn await_nothing_published(ns: &Netns, host: &Xiad) {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let p = host.stats(ns).unwrap()["store_published_bytes"];
        if p == 0 {
            return;
        }
        assert!(Instant::now() < until, "{p} bytes still published");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One line on stderr starting with `prefix`, saying why.
fn one_clear_line(child: &Child, prefix: &str) {
    let why = child.stderr_tail();
    assert_eq!(why.lines().filter(|l| l.starts_with(prefix)).count(), 1, "one clear line: {why}");
}

#[test]
fn the_receiver_gives_up_in_time_when_the_sender_dies() {
    if !require_root() {
        return;
    }
    let UnderWay { h: _h, mut r, mut s, stdin, out } = under_way(&["--timeout", "2"], &[], 7);
    s.signal(libc::SIGKILL).unwrap();
    let t = Instant::now();
    let status = r.wait_timeout(Duration::from_secs(10)).unwrap().expect("the receiver gives up");
    assert!(!status.success());
    assert!(t.elapsed() < Duration::from_secs(4), "gave up after {:?}", t.elapsed());
    one_clear_line(&r, "xmigrate recv:");
    // QEMU would see a stream cut short: never the whole of it.
    assert!(std::fs::metadata(&out).unwrap().len() <= 16 << 20);
    drop(stdin);
}

#[test]
fn qemu_closing_its_pipe_ends_both_sides_at_once_and_leaves_nothing_published() {
    if !require_root() {
        return;
    }
    let h = TwoHosts::new(9000, false).unwrap();
    // The receiver writes into a pipe of ours, which we close after the first MiB, as a
    // destination QEMU that fails to load the stream does.
    let (mut qemu, pipe) = std::io::pipe().unwrap();
    let mut c = h.ns_b.cmd(bin("xmigrate"));
    c.arg("--socket").arg(&h.b.socket).arg("recv").arg("--any-stream").stdout(Stdio::from(pipe));
    let mut r = Child::spawn_with_stdout(c).unwrap();
    r.wait_for_stderr(|l| l.contains("listening at"), Duration::from_secs(10)).unwrap();
    let mut s = sender(&h.ns_a, &h.a, &h.b.re_dag(), &[]);
    let mut stdin = s.take_stdin().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&stream(64 << 20, 8));
        stdin
    });
    let mut first = vec![0u8; 1 << 20];
    std::io::Read::read_exact(&mut qemu, &mut first).unwrap();
    assert_eq!(first[..], stream(1 << 20, 8)[..], "the stream's start");
    drop(qemu);
    let t = Instant::now();
    let rs = r.wait_timeout(Duration::from_secs(10)).unwrap().expect("the receiver ends");
    let ss = s.wait_timeout(Duration::from_secs(10)).unwrap().expect("the sender ends");
    assert!(!rs.success() && !ss.success());
    // Told, not timed out: well within the 10 s timeout.
    assert!(t.elapsed() < Duration::from_secs(3), "ended after {:?}", t.elapsed());
    one_clear_line(&r, "xmigrate recv:");
    one_clear_line(&s, "xmigrate send:");
    drop(writer.join().unwrap());
    await_nothing_published(&h.ns_a, &h.a);
}

#[test]
fn a_router_restarted_within_the_timeout_does_not_stop_the_transfer() {
    if !require_root() {
        return;
    }
    let mut f = Fig1::new(true, 1500, false, false).unwrap();
    let data = stream(32 << 20, 9);
    let out = f.dir.path().join("recv.out");
    let mut r = receiver(&f.ns_b, &f.b, &out, &[]);
    r.wait_for_stderr(|l| l.contains("listening at"), Duration::from_secs(10)).unwrap();
    let mut s = sender(&f.ns_a, &f.a, &f.b.dag, &[]);
    let mut stdin = s.take_stdin().unwrap();
    stdin.write_all(&data[..8 << 20]).unwrap();
    await_chunks(&f.ns_b, &f.b);
    // R2 (B's gateway, AD2's only router) dies with everything it knew, and comes back with
    // the same keys: B registers again, R1 learns AD2 again, the transfer goes on.
    let ns_r2 = f.ns_r2.as_ref().unwrap();
    let mut r2 = f.r2.take().unwrap();
    r2.child.signal(libc::SIGKILL).unwrap();
    r2.child.wait_timeout(Duration::from_secs(5)).unwrap().expect("R2 is gone");
    drop(r2);
    let rest = data[8 << 20..].to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&rest);
    });
    std::thread::sleep(Duration::from_millis(500));
    f.r2 = Some(xia_tests::XRouter::start(ns_r2, &["r2r1", "r2b"], f.dir.path(), "r2", "ad2", &[]).unwrap());
    let ss = s.wait_timeout(Duration::from_secs(60)).unwrap().expect("the sender ends");
    let rs = r.wait_timeout(Duration::from_secs(10)).unwrap().expect("the receiver ends");
    writer.join().unwrap();
    assert!(ss.success(), "sender: {}", s.stderr_tail());
    assert!(rs.success(), "receiver: {}", r.stderr_tail());
    let got = std::fs::read(&out).unwrap();
    assert!(got.len() == data.len() && sha(&got) == sha(&data), "bytes differ");
}
