//! The admin language, in the style of `ip route`: one command per line, the same for the admin
//! socket (`xia-router route add ...`) and the static-routes file (one `route add` argument list
//! per line, `#` comments).
//!
//! ```text
//! route show
//! route add <dest> via <port> <mac>     # out of interface <port> to the neighbour at <mac>
//! route add <dest> local                # this router
//! route add <dest> fallback             # use the DAG's next edge
//! route add <dest> follow <AD>          # wherever the route to <AD> leads
//! route del <dest>
//! cache <MIB>                          # resize the chunk cache (emptying it); 0: off
//! stats
//! info
//! <dest> = <XID> (e.g. AD:<40 hex>) | default <PRINCIPAL> (e.g. default AD)
//! ```

use std::fmt::Write as _;
use std::time::Instant;

use xia_core::wire::ethernet::EthernetAddress;
use xia_core::xid::{Principal, Xid};

use crate::router::{Router, Target};

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `route show`.
    RouteShow,
    /// `route add`.
    RouteAdd(RouteSpec),
    /// `route del`.
    RouteDel {
        /// The table.
        principal: Principal,
        /// The destination (`None`: the table's default).
        xid: Option<Xid>,
    },
    /// `stats`.
    Stats,
    /// `info`.
    Info,
    /// `cache <MIB>`.
    Cache(usize),
}

/// A route to add, as written (the port by name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// The table.
    pub principal: Principal,
    /// The destination (`None`: the table's default).
    pub xid: Option<Xid>,
    /// Where it leads.
    pub target: TargetSpec,
}

/// A route's target as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// `via <port> <mac>`.
    Via(String, EthernetAddress),
    /// `local`.
    Local,
    /// `fallback`.
    Fallback,
    /// `follow <AD>`.
    Follow(Xid),
}

fn dest<'a>(words: &mut impl Iterator<Item = &'a str>) -> Result<(Principal, Option<Xid>), String> {
    match words.next() {
        Some("default") => {
            let p = words.next().ok_or("`default` wants a principal (AD, HID, SID, CID, IP)")?;
            let p: Principal = p.parse().map_err(|e| format!("{p}: {e}"))?;
            Ok((p, None))
        }
        Some(x) => {
            let x: Xid = x.parse().map_err(|e| format!("{x}: {e}"))?;
            Ok((x.principal(), Some(x)))
        }
        None => Err("a destination is missing (an XID, or `default <PRINCIPAL>`)".into()),
    }
}

/// Parses the arguments of `route add` (without the two words).
pub fn parse_route_add(line: &str) -> Result<RouteSpec, String> {
    let mut w = line.split_whitespace();
    let (principal, xid) = dest(&mut w)?;
    let target = match w.next() {
        Some("via") => {
            let port = w.next().ok_or("`via` wants a port (interface name) and a MAC")?;
            let mac = w.next().ok_or("`via <port>` wants the neighbour's MAC")?;
            TargetSpec::Via(port.to_string(), mac.parse().map_err(|_| format!("{mac}: not a MAC"))?)
        }
        Some("local") => TargetSpec::Local,
        Some("fallback") => TargetSpec::Fallback,
        Some("follow") => {
            let ad = w.next().ok_or("`follow` wants an AD")?;
            let ad: Xid = ad.parse().map_err(|e| format!("{ad}: {e}"))?;
            if ad.principal() != Principal::Ad {
                return Err(format!("{ad}: `follow` wants an AD"));
            }
            TargetSpec::Follow(ad)
        }
        Some(other) => return Err(format!("{other}: expected via, local, fallback or follow")),
        None => return Err("a target is missing (via, local, fallback or follow)".into()),
    };
    if let Some(extra) = w.next() {
        return Err(format!("{extra}: unexpected"));
    }
    Ok(RouteSpec { principal, xid, target })
}

/// Parses one command line.
pub fn parse(line: &str) -> Result<Command, String> {
    let line = line.trim();
    let (first, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    match first {
        "stats" => Ok(Command::Stats),
        "info" => Ok(Command::Info),
        "cache" => match rest.trim().parse::<usize>() {
            Ok(mib) if mib <= 1 << 20 => Ok(Command::Cache(mib)),
            _ => Err(format!("cache {}: wants a size in MiB (0 turns the cache off)", rest.trim())),
        },
        "route" => {
            let rest = rest.trim();
            let (verb, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            match verb {
                "show" | "" => Ok(Command::RouteShow),
                "add" => parse_route_add(args).map(Command::RouteAdd),
                "del" | "delete" => {
                    let mut w = args.split_whitespace();
                    let (principal, xid) = dest(&mut w)?;
                    match w.next() {
                        Some(extra) => Err(format!("{extra}: unexpected")),
                        None => Ok(Command::RouteDel { principal, xid }),
                    }
                }
                other => Err(format!("route {other}: expected show, add or del")),
            }
        }
        other => Err(format!("{other}: expected route, cache, stats or info")),
    }
}

/// Resolves a spec's port name against the router's ports.
pub fn target(router: &Router, t: &TargetSpec) -> Result<Target, String> {
    Ok(match t {
        TargetSpec::Via(name, mac) => {
            let port = router
                .ports()
                .iter()
                .position(|p| &p.name == name)
                .ok_or_else(|| format!("{name}: not a port of this router"))?;
            Target::Via { port, mac: *mac }
        }
        TargetSpec::Local => Target::Local,
        TargetSpec::Fallback => Target::Fallback,
        TargetSpec::Follow(ad) => Target::FollowAd(*ad),
    })
}

/// Adds a route from its spec.
pub fn add(router: &mut Router, spec: &RouteSpec) -> Result<(), String> {
    let t = target(router, &spec.target)?;
    router.add_route(spec.principal, spec.xid, t).map_err(|e| e.to_string())
}

/// Reads a static-routes file: one `route add` argument list per line.
pub fn load_routes(router: &mut Router, text: &str) -> Result<usize, String> {
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let spec = parse_route_add(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        add(router, &spec).map_err(|e| format!("line {}: {e}", i + 1))?;
        n += 1;
    }
    Ok(n)
}

/// Runs a command; the reply's first line is `ok` or `error: ...`.
pub fn execute(router: &mut Router, now: Instant, cmd: &Command, extra_stats: &[(String, u64)]) -> String {
    let mut out = String::new();
    match cmd {
        Command::RouteShow => {
            out.push_str("ok\n");
            for e in router.routes() {
                let dest = match e.xid {
                    Some(x) => x.to_string(),
                    None => format!("default {}", e.principal),
                };
                let target = match e.route.target {
                    Target::Local => "local".to_string(),
                    Target::Fallback => "fallback".to_string(),
                    Target::FollowAd(ad) => format!("follow {ad}"),
                    Target::Via { port, mac } => format!("via {} {mac}", router.ports()[port].name),
                };
                let _ = write!(out, "{dest} {target} proto {}", e.route.origin.name());
                if e.principal == Principal::Ad {
                    let _ = write!(out, " metric {}", e.route.metric);
                }
                if let Some(t) = e.route.expires {
                    let _ = write!(out, " expires {}ms", t.saturating_duration_since(now).as_millis());
                }
                out.push('\n');
            }
        }
        Command::RouteAdd(spec) => match add(router, spec) {
            Ok(()) => out.push_str("ok\n"),
            Err(e) => {
                let _ = writeln!(out, "error: {e}");
            }
        },
        Command::RouteDel { principal, xid } => match router.del_route(*principal, *xid) {
            Ok(()) => out.push_str("ok\n"),
            Err(e) => {
                let _ = writeln!(out, "error: {e}");
            }
        },
        Command::Stats => {
            out.push_str("ok\n");
            for (k, v) in crate::router::stats_fields(&router.stats()) {
                let _ = writeln!(out, "{k} {v}");
            }
            for (k, v) in extra_stats {
                let _ = writeln!(out, "{k} {v}");
            }
        }
        Command::Cache(mib) => {
            router.set_cache_bytes(mib << 20);
            out.push_str("ok\n");
        }
        Command::Info => {
            let _ = writeln!(
                out,
                "ok\nad {}\nhid {}\ndag {}",
                router.ad(),
                router.hid(),
                router.dag().to_dag_string().replace('\n', "")
            );
            if let Some(re) = router.dag().to_re_string() {
                let _ = writeln!(out, "re {re}");
            }
            let (size, held) = router.cache_usage();
            let _ = writeln!(out, "cache {} MiB, {held} bytes held", size >> 20);
            for (i, p) in router.ports().iter().enumerate() {
                let _ = writeln!(out, "port {i} {} mac {} mtu {}", p.name, p.mac, p.mtu);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_bad_ones_say_why() {
        let ad = "AD:".to_string() + &"ab".repeat(20);
        assert_eq!(parse("route show").unwrap(), Command::RouteShow);
        assert_eq!(parse("stats").unwrap(), Command::Stats);
        assert_eq!(parse("cache 0").unwrap(), Command::Cache(0));
        assert!(parse("cache lots").is_err());
        let c = parse(&format!("route add {ad} via eth1 02:00:00:00:00:01")).unwrap();
        let Command::RouteAdd(spec) = c else { panic!() };
        assert_eq!(spec.principal, Principal::Ad);
        assert_eq!(spec.target, TargetSpec::Via("eth1".into(), EthernetAddress([2, 0, 0, 0, 0, 1])));
        let c = parse("route add default HID fallback").unwrap();
        assert_eq!(
            c,
            Command::RouteAdd(RouteSpec {
                principal: Principal::Hid,
                xid: None,
                target: TargetSpec::Fallback
            })
        );
        assert!(matches!(parse(&format!("route del {ad}")).unwrap(), Command::RouteDel { xid: Some(_), .. }));
        for bad in [
            "route add",
            "route add AD:12 local",
            &format!("route add {ad} via eth1"),
            &format!("route add {ad} via eth1 zz"),
            &format!("route add {ad} follow HID:{}", "00".repeat(20)),
            &format!("route add {ad} local extra"),
            "route frob",
            "reboot",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
