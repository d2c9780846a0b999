//! The name service end to end on Fig. 1b: `xnsd` on host B (AD2); A registers its name, C
//! resolves it through both routers; another key cannot take the name; a restarted server
//! (even after `kill -9`) still knows it. Needs root.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use xia_core::api::XiaError;
use xia_core::api::{NameClient, Xia};
use xia_core::dag::Dag;
use xia_core::keys::Keypair;
use xia_core::wire::names::{Name, NsBody, NsErrorCode, Record};
use xia_tests::{bin, require_root, run_ok, Child, Fig1, Netns, Xiad};

fn xns(ns: &Netns, host: &Xiad, server: &str, args: &[&str]) -> std::process::Command {
    let mut c = ns.cmd(bin("xns"));
    c.arg("--socket").arg(&host.socket).arg("--server").arg(server).args(args);
    c
}

/// Restarts R1 of Fig. 1b announcing the name server at `dag` in its beacons.
fn restart_r1_announcing(f: &mut Fig1, dag: &str) {
    f.r1.child.terminate().unwrap();
    f.r1 = xia_tests::XRouter::start(
        &f.ns_r1,
        &["r1a", "r1c", "r1r2"],
        f.dir.path(),
        "r1",
        "ad1",
        &["--access", "r1a", "--access", "r1c", "--peering", "r1r2", "--name-server", dag],
    )
    .unwrap();
}

/// Starts `xnsd` on `host` with its store at `store`; its DAG.
fn xnsd(ns: &Netns, host: &Xiad, store: &Path) -> (Child, String) {
    let mut c = ns.cmd(bin("xnsd"));
    c.arg("--socket").arg(&host.socket).arg("--store").arg(store);
    let mut child = Child::spawn(c).unwrap();
    let line = child.wait_for_line(|l| l.starts_with("xnsd ready"), Duration::from_secs(10)).unwrap();
    let dag = line.split(" dag=").nth(1).and_then(|s| s.split(" names=").next()).unwrap().to_string();
    (child, dag)
}

#[test]
fn a_name_registered_in_one_ad_resolves_in_the_other_is_kept_from_others_and_survives_kill_9() {
    if !require_root() {
        return;
    }
    let f = Fig1::new(true, 1500, false, false).unwrap();
    let store = f.dir.path().join("names.log");
    let (mut server, dag) = xnsd(&f.ns_b, &f.b, &store);
    let c_key = f.dir.path().join("c.key");
    // A registers its own DAG (the default) under its name.
    let out = run_ok(xns(&f.ns_a, &f.a, &dag, &["register", "Host-A.xia"]));
    assert!(out.starts_with("host-a.xia DAG"), "{out}");
    // C, in AD1 too, and B itself resolve it (C's requests cross both routers).
    let want = f.a.dag.trim().to_string();
    for (ns, h) in [(&f.ns_c, &f.c), (&f.ns_b, &f.b)] {
        let got = run_ok(xns(ns, h, &dag, &["resolve", "host-a.xia"]));
        assert_eq!(got.trim(), want, "resolved");
    }
    // Tools take the name where they take a DAG.
    let mut ping = f.ns_c.cmd(bin("xping"));
    ping.arg("--socket").arg(&f.c.socket).args([
        "--name-server",
        &dag,
        "-c",
        "3",
        "-i",
        "0.05",
        "host-a.xia",
    ]);
    let out = run_ok(ping);
    assert!(out.starts_with("PING host-a.xia (") && out.contains("3 received"), "{out}");
    // C cannot take A's name with its own key (its DAG, its key: valid, but not the owner's).
    let out = xns(&f.ns_c, &f.c, &dag, &["register", "host-a.xia", "-k", c_key.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("NotOwner"), "{err}");
    // Nor with A's DAG and its own key.
    let out = xns(&f.ns_c, &f.c, &dag, &["register", "x.xia", "-k", c_key.to_str().unwrap(), &want])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("Forged"), "{out:?}");
    // xiad signs with the host's key only names of the host's own DAG.
    let c_dag = f.c.dag.trim().to_string();
    let out = xns(&f.ns_a, &f.a, &dag, &["register", "c.xia", &c_dag]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("its HID only"), "{err}");
    // An unknown name: a typed error.
    let out = xns(&f.ns_c, &f.c, &dag, &["resolve", "nobody.xia"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"), "{out:?}");
    // kill -9, restart: the name is still there.
    server.signal(libc::SIGKILL).unwrap();
    let _ = server.wait_timeout(Duration::from_secs(5));
    let (_server, dag2) = xnsd(&f.ns_b, &f.b, &store);
    assert_eq!(dag2, dag, "same SID, same DAG");
    let got = run_ok(xns(&f.ns_c, &f.c, &dag, &["resolve", "host-a.xia"]));
    assert_eq!(got.trim(), want);
    let list = run_ok(xns(&f.ns_a, &f.a, &dag, &["list"]));
    assert!(list.starts_with("host-a.xia DAG"), "{list}");

    // R1 announces the name server in its beacons: C's tools find it without being told.
    let mut f = f;
    restart_r1_announcing(&mut f, &dag);
    let announced = xia_tests::probe::within(Duration::from_secs(15), || {
        let mut info = f.c.xia(&f.ns_c);
        info.arg("info");
        info.output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("SID:"))
    });
    announced.expect("C learns the name server from R1's beacons");
    let reachable = xia_tests::probe::within(Duration::from_secs(15), || {
        let mut ping = f.ns_c.cmd(bin("xping"));
        ping.arg("--socket").arg(&f.c.socket).args(["-c", "1", "-W", "1", "host-a.xia"]);
        ping.output().is_ok_and(|o| o.status.success())
    });
    reachable.expect("xping host-a.xia through the AD's name server");
}

fn counter(cs: &[(String, u64)], k: &str) -> u64 {
    cs.iter().find(|(n, _)| n == k).map_or(0, |(_, v)| *v)
}

/// A burst of 1,000 registrations from A, `kill -9` of the server in the middle of it, a
/// restart: every registration the server acknowledged is there. Then a replayed and an older
/// record are refused with their typed error, and counted.
#[test]
fn kill_9_in_a_burst_of_updates_loses_nothing_acknowledged_and_replays_are_refused() {
    if !require_root() {
        return;
    }
    let f = Fig1::new(true, 1500, false, false).unwrap();
    let store = f.dir.path().join("names.log");
    let (server, dag) = xnsd(&f.ns_b, &f.b, &store);
    let server_dag: Dag = dag.parse().unwrap();
    let a_dag: Dag = f.a.dag.trim().parse().unwrap();
    let key = Keypair::load(&f.dir.path().join("a.key")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let acked = Arc::new(AtomicUsize::new(0));
    // The killer: once 300 are acknowledged.
    let killer = {
        let acked = acked.clone();
        let pid = server.id();
        std::thread::spawn(move || {
            while acked.load(Ordering::Relaxed) < 300 {
                std::thread::sleep(Duration::from_millis(1));
            }
            // SAFETY: a signal to the server this test started (its guard still holds it).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        })
    };
    let xia = Xia::at(&f.a.socket);
    let names: Vec<Name> = rt.block_on(async {
        let mut c = NameClient::new(&xia, server_dag.clone()).await.unwrap();
        c.tries = 1;
        c.patience = Duration::from_millis(300);
        let mut done = Vec::new();
        for i in 0..1000 {
            let name: Name = format!("burst-{i:04}.xia").parse().unwrap();
            match c.put(&key, name.clone(), Some(a_dag.clone()), Duration::from_secs(600)).await {
                Ok(()) => {
                    done.push(name);
                    acked.store(done.len(), Ordering::Relaxed);
                }
                Err(XiaError::TimedOut) => break,
                Err(e) => panic!("{e}"),
            }
        }
        done
    });
    killer.join().unwrap();
    drop(server);
    eprintln!("{} registrations acknowledged before kill -9", names.len());
    assert!((300..1000).contains(&names.len()), "killed in the middle: {}", names.len());
    let (_server, _) = xnsd(&f.ns_b, &f.b, &store);
    rt.block_on(async {
        let mut c = NameClient::new(&xia, server_dag.clone()).await.unwrap();
        for n in &names {
            let r = c.lookup(n).await.unwrap_or_else(|e| panic!("{n} acknowledged, then lost: {e}"));
            assert_eq!(r.dag.as_ref(), Some(&a_dag));
        }
        // An update, its replay, and an older one arriving late.
        let name: Name = "moving.xia".parse().unwrap();
        let old = Record::signed(&key, name.clone(), Some(a_dag.clone()), 10, 60_000);
        let new = Record::signed(&key, name.clone(), Some(a_dag.clone()), 11, 60_000);
        assert_eq!(c.request(NsBody::Put(Box::new(new.clone()))).await.unwrap(), NsBody::Ok);
        for r in [&new, &old] {
            match c.request(NsBody::Put(Box::new(r.clone()))).await {
                Err(XiaError::Name { code: NsErrorCode::Stale, .. }) => {}
                other => panic!("{other:?}"),
            }
        }
        let cs = c.stats().await.unwrap();
        assert_eq!(counter(&cs, "refused_stale"), 2, "{cs:?}");
        assert!(counter(&cs, "names") as usize > names.len(), "{cs:?}");
    });
}

/// `xiad --name`: a host names itself once registered, and again when it moves. A's xiad moves
/// from AD1 to AD2 (restarted on its link to R2, same key): C resolves A's name to the new DAG
/// soon after, through the name server both routers announce.
#[test]
fn a_host_that_moves_is_found_at_its_new_dag() {
    if !require_root() {
        return;
    }
    let mut f = Fig1::new(true, 1500, false, true).unwrap();
    let store = f.dir.path().join("names.log");
    let (_server, dag) = xnsd(&f.ns_b, &f.b, &store);
    // Both routers announce the name server.
    restart_r1_announcing(&mut f, &dag);
    let mut r2 = f.r2.take().unwrap();
    r2.child.terminate().unwrap();
    let r2 = xia_tests::XRouter::start(
        f.ns_r2.as_ref().unwrap(),
        &["r2r1", "r2b", "r2a"],
        f.dir.path(),
        "r2",
        "ad2",
        &["--access", "r2b", "--access", "r2a", "--peering", "r2r1", "--name-server", &dag],
    )
    .unwrap();
    let resolve = || {
        let out = xns(&f.ns_c, &f.c, &dag, &["resolve", "a.xia"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // A names itself in AD1.
    f.a.child.terminate().unwrap();
    let a1 = Xiad::start_with(&f.ns_a, "eth0", f.dir.path(), "a", &["--name", "a.xia"]).unwrap();
    let in_ad1 = xia_tests::probe::within(Duration::from_secs(15), || resolve().contains(&f.r1.ad));
    in_ad1.expect("a.xia resolves to A in AD1");
    // A moves to AD2: its xiad restarted on its link to R2, same key.
    drop(a1);
    let t0 = std::time::Instant::now();
    let _a2 = Xiad::start_with(&f.ns_a, "eth1", f.dir.path(), "a", &["--name", "a.xia"]).unwrap();
    let started = t0.elapsed();
    let found = xia_tests::probe::within(Duration::from_secs(15), || resolve().contains(&r2.ad));
    let found = found.expect("a.xia resolves to A in AD2");
    eprintln!(
        "a.xia at its new DAG {:?} after xiad started in AD2 ({:?} to start; beacons every 100 ms)",
        found, started
    );
    assert!(found < Duration::from_millis(1000), "{found:?}");
}

/// Garbage at `SID_NS`: 20,000 random datagrams (some with a valid header, most noise) from C
/// while A resolves: every request with an id gets a typed error, the server keeps answering,
/// its memory stays bounded.
#[test]
fn a_flood_of_garbage_at_the_name_server_is_counted_and_survived() {
    if !require_root() {
        return;
    }
    let f = Fig1::new(true, 1500, false, false).unwrap();
    let store = f.dir.path().join("names.log");
    let (server, dag) = xnsd(&f.ns_b, &f.b, &store);
    run_ok(xns(&f.ns_a, &f.a, &dag, &["register", "host-a.xia"]));
    let server_dag: Dag = dag.parse().unwrap();
    let rss = || xia_tests::probe::rss_kb(server.id());
    let before = rss();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (sent, answered) = rt.block_on(async {
        let c = Xia::at(&f.c.socket);
        let mut sock = c.bind_dgram(None).await.unwrap();
        let mut rng = xia_core::rng::Rng::new(5);
        let mut sent = 0u32;
        for i in 0..20_000u32 {
            let mut d = vec![0u8; 1 + rng.below(1200) as usize];
            rng.fill(&mut d);
            if i % 4 == 0 && d.len() >= 6 {
                // A valid version and a request type: the rest is garbage.
                d[0] = 1;
                d[1] = 1 + (i % 5) as u8;
            }
            if sock.send_to(&d, &server_dag).await.is_ok() {
                sent += 1;
            }
        }
        // What came back: typed errors (and answers to what happened to be a request).
        let mut answered = 0u32;
        while let Ok(Ok((data, _))) = tokio::time::timeout(Duration::from_millis(300), sock.recv_from()).await
        {
            let m = xia_core::wire::names::NsMessage::parse(&data).unwrap();
            // (A datagram of six bytes with the type of `stats` is a valid request.)
            assert!(
                matches!(m.body, NsBody::Error { .. } | NsBody::Records(_) | NsBody::Counters(_)),
                "{m:?}"
            );
            answered += 1;
        }
        (sent, answered)
    });
    // Still serving, and it counted the garbage.
    let got = run_ok(xns(&f.ns_c, &f.c, &dag, &["resolve", "host-a.xia"]));
    assert_eq!(got.trim(), f.a.dag.trim());
    let stats = run_ok(xns(&f.ns_c, &f.c, &dag, &["stats"]));
    let malformed: u64 = stats.lines().find_map(|l| l.strip_prefix("malformed ")).unwrap().parse().unwrap();
    let after = rss();
    eprintln!("{sent} garbage datagrams sent, {answered} answered, malformed {malformed}, RSS {before} -> {after} kB");
    assert!(malformed > u64::from(sent) / 4, "{stats}");
    assert!(after < before + 32 * 1024, "{before} -> {after} kB");
}
