//! The operator's control-plane policy, as BGP neighbours are configured: which ports face
//! hosts and which face other routers, and which ADs are trusted to announce which ADs.
//!
//! - A port is **access** (hosts attach there: registrations and route patches, never beacons
//!   or distance vectors), **peering** (routers of other ADs: beacons and distance vectors, no
//!   host registrations), or **open** (both; the default, which keeps a router without policy
//!   working as before).
//! - **Trust anchors** (a file, one AD per line with the ADs it may announce): without them any
//!   AD that proves its key is heard; with them, beacons and distance vectors of ADs not listed
//!   are refused, and a distance vector's routes to ADs its signer may not announce are dropped.
//!   The router's own AD is always trusted. AD XIDs are self-certifying (the hash of the AD's
//!   public key), so an anchor names a key.
//!
//! ```text
//! # signer AD                                  may announce
//! AD:0af3abf72913cd2c66f9af0d4c0634efeb044145   *
//! AD:2a63582e3b7f764dd0d54187d8e309f13f675d34   AD:1111111111111111111111111111111111111111 AD:2222222222222222222222222222222222222222
//! AD:5555555555555555555555555555555555555555                       # its own AD only
//! ```

use xia_core::xid::{Principal, Xid, XidMap};

/// What a port is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PortRole {
    /// Hosts and routers alike (no policy).
    #[default]
    Open,
    /// Hosts: registrations and route patches; beacons and distance vectors are refused.
    Access,
    /// Routers of other ADs: beacons and distance vectors; host registrations are refused.
    Peering,
}

impl PortRole {
    /// Whether beacons and distance vectors are heard on a port of this role.
    pub fn hears_routers(self) -> bool {
        self != PortRole::Access
    }

    /// Whether hosts may register on a port of this role.
    pub fn takes_hosts(self) -> bool {
        self != PortRole::Peering
    }
}

/// What an AD may announce.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Announces {
    /// Any AD.
    Any,
    /// Itself and these.
    These(XidMap<()>),
}

/// The ADs trusted to announce routes, and what each may announce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustAnchors {
    ads: XidMap<Announces>,
}

/// A trust-anchor file that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("trust anchors, line {line}: {what}")]
pub struct TrustAnchorError {
    /// Line number (from 1).
    pub line: usize,
    /// What is wrong.
    pub what: String,
}

impl TrustAnchors {
    /// Parses the file's text (see the module's text for the format).
    pub fn parse(text: &str) -> Result<TrustAnchors, TrustAnchorError> {
        let mut ads = XidMap::default();
        for (i, raw) in text.lines().enumerate() {
            let err = |what: String| TrustAnchorError { line: i + 1, what };
            let line = raw.split('#').next().unwrap_or("").trim();
            let mut words = line.split_whitespace();
            let Some(first) = words.next() else { continue };
            let signer = ad(first).map_err(err)?;
            let mut announces = Announces::These(XidMap::default());
            for w in words {
                if w == "*" {
                    announces = Announces::Any;
                    continue;
                }
                let x = ad(w).map_err(err)?;
                if let Announces::These(set) = &mut announces {
                    set.insert(*x.id(), ());
                }
            }
            if ads.insert(*signer.id(), announces).is_some() {
                return Err(err(format!("{signer} listed twice")));
            }
        }
        Ok(TrustAnchors { ads })
    }

    /// Whether `signer` is trusted at all.
    pub fn trusts(&self, signer: &Xid) -> bool {
        self.ads.contains_key(signer.id())
    }

    /// Whether `signer` may announce a route to `ad` (itself always, if trusted).
    pub fn may_announce(&self, signer: &Xid, ad: &Xid) -> bool {
        match self.ads.get(signer.id()) {
            None => false,
            Some(_) if signer == ad => true,
            Some(Announces::Any) => true,
            Some(Announces::These(set)) => set.contains_key(ad.id()),
        }
    }

    /// ADs listed.
    pub fn len(&self) -> usize {
        self.ads.len()
    }

    /// True when no AD is listed.
    pub fn is_empty(&self) -> bool {
        self.ads.is_empty()
    }
}

fn ad(word: &str) -> Result<Xid, String> {
    let x: Xid = word.parse().map_err(|e| format!("{word}: {e}"))?;
    if x.principal() != Principal::Ad {
        return Err(format!("{word}: not an AD"));
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(b: u8) -> Xid {
        Xid::new(Principal::Ad, [b; 20])
    }

    #[test]
    fn anchors_parse_and_decide() {
        let text = format!("# comment\n\n{} *\n{} {} {}  # two\n{}\n", x(1), x(2), x(3), x(4), x(5));
        let t = TrustAnchors::parse(&text).unwrap();
        assert_eq!(t.len(), 3);
        assert!(t.may_announce(&x(1), &x(9)));
        assert!(t.may_announce(&x(2), &x(3)) && t.may_announce(&x(2), &x(2)));
        assert!(!t.may_announce(&x(2), &x(9)));
        assert!(t.may_announce(&x(5), &x(5)) && !t.may_announce(&x(5), &x(1)));
        assert!(!t.trusts(&x(7)) && !t.may_announce(&x(7), &x(7)));
    }

    #[test]
    fn bad_anchor_files_say_where() {
        let hid = Xid::new(Principal::Hid, [1; 20]);
        assert_eq!(TrustAnchors::parse(&format!("{} *\n{hid}", x(1))).unwrap_err().line, 2);
        assert!(TrustAnchors::parse("AD:12 *").unwrap_err().what.contains("AD:12"));
        let twice = format!("{} *\n{} {}", x(1), x(1), x(2));
        assert!(TrustAnchors::parse(&twice).unwrap_err().what.contains("twice"));
        assert!(TrustAnchors::parse(&format!("{} {hid}", x(1))).unwrap_err().what.contains("not an AD"));
    }

    #[test]
    fn roles() {
        assert!(PortRole::Open.hears_routers() && PortRole::Open.takes_hosts());
        assert!(!PortRole::Access.hears_routers() && PortRole::Access.takes_hosts());
        assert!(PortRole::Peering.hears_routers() && !PortRole::Peering.takes_hosts());
    }
}
