//! The name service end to end on Fig. 1b: `xnsd` on host B (AD2); A registers its name, C
//! resolves it through both routers; another key cannot take the name; a restarted server
//! (even after `kill -9`) still knows it. Needs root.

use std::path::Path;
use std::time::Duration;

use xia_tests::{bin, require_root, run_ok, Child, Fig1, Netns, Xiad};

fn xns(ns: &Netns, host: &Xiad, server: &str, args: &[&str]) -> std::process::Command {
    let mut c = ns.cmd(bin("xns"));
    c.arg("--socket").arg(&host.socket).arg("--server").arg(server).args(args);
    c
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
    let a_key = f.dir.path().join("a.key");
    let c_key = f.dir.path().join("c.key");
    let a_key = a_key.to_str().unwrap();
    // A registers its own DAG (the default) under its name.
    let out = run_ok(xns(&f.ns_a, &f.a, &dag, &["register", "Host-A.xia", "-k", a_key]));
    assert!(out.starts_with("host-a.xia DAG"), "{out}");
    // C, in AD1 too, and B itself resolve it (C's requests cross both routers).
    let want = f.a.dag.trim().to_string();
    for (ns, h) in [(&f.ns_c, &f.c), (&f.ns_b, &f.b)] {
        let got = run_ok(xns(ns, h, &dag, &["resolve", "host-a.xia"]));
        assert_eq!(got.trim(), want, "resolved");
    }
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
}
