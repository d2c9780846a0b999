//! The two text forms of a DAG, as the prototype writes them: `RE ...` (a path with fallback
//! groups) and `DAG ...` (any DAG, as edge lists). Reading ([`FromStr`]) takes either; writing
//! ([`fmt::Display`]) gives the `RE` form when the DAG has that shape, the `DAG` form otherwise.

use std::fmt;
use std::str::FromStr;

use super::{edge_targets, Dag, DagBuilder, DagError, MAX_EDGES, MAX_NODES};
use crate::xid::Xid;

impl Dag {
    /// Writes the DAG in the prototype's `DAG` text form (always possible).
    pub fn to_dag_string(&self) -> String {
        let n = self.len();
        let mut s = String::from("DAG");
        let push_edges = |s: &mut String, edges: &[u8; MAX_EDGES]| {
            for t in edge_targets(edges) {
                s.push_str(&format!(" {t}"));
            }
            s.push_str(" - \n");
        };
        push_edges(&mut s, &self.nodes[n - 1].edges);
        for node in &self.nodes[..n - 1] {
            s.push_str(&node.xid.to_string());
            push_edges(&mut s, &node.edges);
        }
        s.push_str(&self.nodes[n - 1].xid.to_string());
        s
    }

    /// Writes the DAG in the `RE` text form, if it has that shape: a primary path with at most
    /// one fallback group per hop, each group a simple chain rejoining at the next node, and the
    /// nodes in the order the text lists them (so that reading the text back gives this DAG).
    pub fn to_re_string(&self) -> Option<String> {
        let n = self.len();
        let sink = n - 1;
        // The RE form names nodes by XID, so a DAG with the same XID twice has none.
        let nodes = self.nodes();
        if (1..n).any(|i| nodes[..i].iter().any(|m| m.xid == nodes[i].xid)) {
            return None;
        }
        let edges_of = |from: Option<usize>| -> ([usize; MAX_EDGES], usize) {
            let mut out = [0; MAX_EDGES];
            let mut k = 0;
            let it: Box<dyn Iterator<Item = usize>> = match from {
                None => Box::new(self.entry_edges()),
                Some(i) => Box::new(self.out_edges(i)),
            };
            for t in it {
                out[k] = t;
                k += 1;
            }
            (out, k)
        };
        // Nodes in text order; the text is right only if that is 0, 1, .., n-1.
        let mut next_expected = 0;
        let mut take = |i: usize| {
            let ok = i == next_expected;
            next_expected += 1;
            ok
        };
        let mut s = String::from("RE");
        let mut cur: Option<usize> = None;
        loop {
            let (e, k) = edges_of(cur);
            let next = e[0];
            match k {
                1 => {}
                2 => {
                    s.push_str(" (");
                    let mut c = e[1];
                    while c != next {
                        if c > next || !take(c) {
                            return None;
                        }
                        s.push(' ');
                        s.push_str(&self.nodes[c].xid.to_string());
                        let (ce, ck) = edges_of(Some(c));
                        if ck != 1 {
                            return None;
                        }
                        c = ce[0];
                    }
                    if s.ends_with('(') {
                        return None;
                    }
                    s.push_str(" )");
                }
                _ => return None,
            }
            if !take(next) {
                return None;
            }
            s.push(' ');
            s.push_str(&self.nodes[next].xid.to_string());
            if next == sink {
                break;
            }
            cur = Some(next);
        }
        // Every node appeared once, in order, and every edge list was fully written out.
        (next_expected == n).then_some(s)
    }
}

impl fmt::Display for Dag {
    /// The `RE` form when the DAG has that shape, the `DAG` form otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_re_string() {
            Some(s) => f.write_str(&s),
            None => f.write_str(&self.to_dag_string()),
        }
    }
}

impl FromStr for Dag {
    type Err = DagError;

    /// Reads either text form; whitespace (spaces, newlines) separates tokens.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut toks = s.split_whitespace();
        match toks.next() {
            Some("RE") => parse_re(toks),
            Some("DAG") => parse_dag(toks),
            _ => Err(DagError::Syntax("must start with `RE` or `DAG`".into())),
        }
    }
}

fn parse_re<'a>(toks: impl Iterator<Item = &'a str>) -> Result<Dag, DagError> {
    // Follows the prototype: the main path is the primary; `( f1 .. fk ) x` adds the fallback
    // chain prev -> f1 -> .. -> fk -> x after prev's edge to x.
    let mut b = DagBuilder::default();
    let mut last_main: Option<usize> = None;
    let mut group: Option<Vec<usize>> = None;
    let mut pending: Option<Vec<usize>> = None;
    for t in toks {
        match t {
            "(" => {
                if group.is_some() || pending.is_some() {
                    return Err(DagError::Syntax("a fallback group must be followed by a node".into()));
                }
                group = Some(Vec::new());
            }
            ")" => match group.take() {
                Some(g) if !g.is_empty() => pending = Some(g),
                Some(_) => return Err(DagError::Syntax("empty fallback group".into())),
                None => return Err(DagError::Syntax("`)` without `(`".into())),
            },
            x => {
                let xid: Xid = x.parse()?;
                let idx = b.node(xid)?;
                if let Some(g) = group.as_mut() {
                    if let Some(&prev) = g.last() {
                        b.edge(Some(prev), idx)?;
                    }
                    g.push(idx);
                    continue;
                }
                b.edge(last_main, idx)?;
                if let Some(g) = pending.take() {
                    b.edge(last_main, g[0])?;
                    b.edge(Some(g[g.len() - 1]), idx)?;
                }
                last_main = Some(idx);
            }
        }
    }
    if group.is_some() || pending.is_some() {
        return Err(DagError::Syntax("a fallback group must be followed by a node".into()));
    }
    if last_main.is_none() {
        return Err(DagError::Empty);
    }
    b.build()
}

fn parse_dag<'a>(toks: impl Iterator<Item = &'a str>) -> Result<Dag, DagError> {
    // Entry edges, then `XID edges.. -` per node; the intent comes last with no edges. Nodes are
    // taken as listed (the same XID twice is two nodes) and put in topological order, and
    // repeated edges are dropped, as the prototype's Graph does.
    let mut entry: Vec<usize> = Vec::new();
    let mut nodes: Vec<(Xid, Vec<usize>)> = Vec::new();
    let mut closed = false;
    for t in toks {
        if t == "-" {
            if closed {
                return Err(DagError::Syntax("`-` without a node".into()));
            }
            closed = true;
        } else if t.bytes().all(|c| c.is_ascii_digit()) {
            if closed {
                return Err(DagError::Syntax(format!("edge `{t}` after `-`")));
            }
            let v: usize = t.parse().map_err(|_| DagError::Syntax(format!("bad edge `{t}`")))?;
            let holder = nodes.len().checked_sub(1);
            let list = nodes.last_mut().map_or(&mut entry, |n| &mut n.1);
            if list.len() == MAX_EDGES {
                return Err(DagError::TooManyEdges(holder));
            }
            list.push(v);
        } else {
            if !closed {
                return Err(DagError::Syntax("missing `-` before a node".into()));
            }
            if nodes.len() == MAX_NODES {
                return Err(DagError::TooManyNodes(MAX_NODES + 1));
            }
            nodes.push((t.parse()?, Vec::new()));
            closed = false;
        }
    }
    if nodes.is_empty() {
        return Err(DagError::Empty);
    }
    if closed || !nodes[nodes.len() - 1].1.is_empty() {
        return Err(DagError::Syntax("the intent (last node) has no edges".into()));
    }
    let mut b = DagBuilder::default();
    for (xid, _) in &nodes {
        b.push_node(*xid)?;
    }
    for &t in &entry {
        b.edge(None, t)?;
    }
    for (i, (_, list)) in nodes.iter().enumerate() {
        for &t in list {
            b.edge(Some(i), t)?;
        }
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::tests::{ad, cid, hid, sid, x};
    use crate::xid::Principal;

    #[test]
    fn content_dag_matches_prototype_example() {
        // The prototype's documentation: `DAG 2 0 - AD 2 1 - HID 2 - CID`.
        let d = Dag::content(cid(), ad(), hid()).unwrap();
        let want = format!("DAG 2 0 - \n{} 2 1 - \n{} 2 - \n{}", ad(), hid(), cid());
        assert_eq!(d.to_dag_string(), want);
        assert_eq!(want.parse::<Dag>().unwrap(), d);
        // Not expressible in RE form, so Display falls back to the DAG form.
        assert_eq!(d.to_re_string(), None);
        assert_eq!(d.to_string(), want);
    }

    #[test]
    fn dag_text_in_the_prototypes_insertion_order_is_reordered() {
        // (src -> HID -> SID) + (src -> AD -> HID -> SID), as the prototype prints it.
        let s = format!("DAG 0 1 - \n{} 2 - \n{} 0 - \n{}", hid(), ad(), sid());
        let d: Dag = s.parse().unwrap();
        assert_eq!(d, Dag::from_paths(&[&[hid(), sid()], &[ad(), hid(), sid()]]).unwrap());
        assert_eq!(d.nodes()[0].xid, ad(), "topological order on the wire");
        // Repeated edges are dropped.
        let dup: Dag = format!("DAG 0 0 - {} 1 1 - {}", ad(), hid()).parse().unwrap();
        assert_eq!(dup, Dag::host(ad(), hid()).unwrap());
    }

    #[test]
    fn a_dag_with_one_xid_twice_prints_in_dag_form() {
        // Found by fuzzing: RE text names nodes by XID and would merge the two.
        let s = format!("DAG 2 0 - {} 1 - {} 2 - {}", hid(), hid(), cid());
        let d: Dag = s.parse().unwrap();
        assert_eq!(d.to_re_string(), None);
        assert_eq!(d.to_string().parse::<Dag>().unwrap(), d);
    }

    #[test]
    fn dag_text_is_whitespace_tolerant() {
        let s = format!("DAG 0 -   {} 1 -\n{}", ad(), hid());
        let d: Dag = s.parse().unwrap();
        assert_eq!(d, Dag::host(ad(), hid()).unwrap());
    }

    #[test]
    fn text_errors_are_typed() {
        assert!(matches!("".parse::<Dag>(), Err(DagError::Syntax(_))));
        assert!(matches!("RE".parse::<Dag>(), Err(DagError::Empty)));
        assert!(matches!("RE ( )".parse::<Dag>(), Err(DagError::Syntax(_))));
        assert!(matches!(format!("RE ( {} )", ad()).parse::<Dag>(), Err(DagError::Syntax(_))));
        assert!(matches!(format!("RE {} )", ad()).parse::<Dag>(), Err(DagError::Syntax(_))));
        assert!(matches!("RE AD:12".parse::<Dag>(), Err(DagError::Xid(_))));
        // A node twice on a path is a cycle.
        assert!(matches!(format!("RE {} {}", ad(), ad()).parse::<Dag>(), Err(DagError::Sinks(0))));
        assert!(matches!(format!("DAG 5 - {}", ad()).parse::<Dag>(), Err(DagError::EdgeOutOfRange { .. })));
        assert!(matches!(format!("DAG 0 - {} 0 - {}", ad(), hid()).parse::<Dag>(), Err(DagError::Cycle)));
        assert!(matches!(
            format!("DAG 0 - {} 1 - {} 0", ad(), hid()).parse::<Dag>(),
            Err(DagError::Syntax(_))
        ));
        assert!(matches!(format!("DAG 0 1 2 3 4 - {}", ad()).parse::<Dag>(), Err(DagError::TooManyEdges(_))));
        let many: String = (0..21u8).map(|i| format!(" {}", x(Principal::Hid, i))).collect();
        assert!(matches!(format!("RE{many}").parse::<Dag>(), Err(DagError::TooManyNodes(_))));
    }
}
