//! Tap devices (a VM's NIC on the host side) and bridges, as guards that remove what they made.
//!
//! QEMU attaches to an existing tap by name (`-netdev tap,ifname=X,script=no,downscript=no`),
//! so the tap is made beforehand, persistent (`ip tuntap add`), in the namespace QEMU will run
//! in, and up; QEMU needs no `/etc/qemu-ifup` script and no privileges beyond opening it. To put
//! the VM on a network the tap joins a bridge, which the veths of the testbed join too.
//!
//! Every command goes through `ip -n <namespace>` (or plain `ip` in the root namespace), so no
//! interface ever appears in a namespace it does not belong to. `ip link set dev NAME`: a name
//! that is a prefix of an `ip` keyword (`ma`) would otherwise be read as that keyword.

use std::io;
use std::process::{Command, Stdio};

use xia_testbed::Netns;

/// A tap device, deleted when dropped.
#[derive(Debug)]
pub struct Tap {
    name: String,
    netns: Option<String>,
}

impl Tap {
    /// Creates tap `name` in `netns` (the root namespace when `None`), brings it up and, with
    /// `bridge`, makes it a port of that (existing) bridge.
    pub fn new(netns: Option<&Netns>, name: &str, bridge: Option<&str>) -> io::Result<Tap> {
        check_ifname(name)?;
        let ns = netns.map(|n| n.name().to_string());
        ip(ns.as_deref(), &["tuntap", "add", "dev", name, "mode", "tap"])?;
        // The guard exists from here: a failure below still deletes the tap.
        let tap = Tap { name: name.to_string(), netns: ns };
        if let Some(br) = bridge {
            check_ifname(br)?;
            tap.ip(&["link", "set", "dev", name, "master", br])?;
        }
        tap.ip(&["link", "set", "dev", name, "up"])?;
        Ok(tap)
    }

    /// Its name (what `-netdev tap,ifname=` takes).
    pub fn name(&self) -> &str {
        &self.name
    }

    fn ip(&self, args: &[&str]) -> io::Result<()> {
        ip(self.netns.as_deref(), args)
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        // Best effort: the namespace may be gone already, and the tap with it.
        let _ = quiet_ip(self.netns.as_deref(), &["link", "del", "dev", &self.name]);
    }
}

/// A Linux bridge, deleted when dropped (its ports are released, not deleted).
#[derive(Debug)]
pub struct Bridge {
    name: String,
    netns: Option<String>,
}

impl Bridge {
    /// Creates bridge `name` in `netns` (root namespace when `None`) and brings it up. STP is off
    /// and the forwarding delay 0, so ports forward at once.
    pub fn new(netns: Option<&Netns>, name: &str) -> io::Result<Bridge> {
        check_ifname(name)?;
        let ns = netns.map(|n| n.name().to_string());
        ip(
            ns.as_deref(),
            &["link", "add", "name", name, "type", "bridge", "stp_state", "0", "forward_delay", "0"],
        )?;
        let br = Bridge { name: name.to_string(), netns: ns };
        ip(br.netns.as_deref(), &["link", "set", "dev", name, "up"])?;
        Ok(br)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Makes the existing interface `ifname` (a veth end, a tap) a port of the bridge.
    pub fn add_port(&self, ifname: &str) -> io::Result<()> {
        check_ifname(ifname)?;
        ip(self.netns.as_deref(), &["link", "set", "dev", ifname, "master", &self.name])
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = quiet_ip(self.netns.as_deref(), &["link", "del", "dev", &self.name]);
    }
}

fn ip_cmd(netns: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.args(args).stdin(Stdio::null());
    cmd
}

fn ip(netns: Option<&str>, args: &[&str]) -> io::Result<()> {
    let what = format!("`ip {}{}`", netns.map(|n| format!("-n {n} ")).unwrap_or_default(), args.join(" "));
    let out = ip_cmd(netns, args)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{what}: cannot run: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{what}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn quiet_ip(netns: Option<&str>, args: &[&str]) -> io::Result<()> {
    ip_cmd(netns, args).stdout(Stdio::null()).stderr(Stdio::null()).status().map(drop)
}

fn check_ifname(name: &str) -> io::Result<()> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '"', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?} (1 to 15 bytes, no '/', space or quote)"),
        ));
    }
    Ok(())
}
