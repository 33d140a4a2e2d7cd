//! Which certificate a ClientHello's server name gets.
//!
//! Owns: the pure choice among a listener's certificates by SNI (exact names first, then a
//! wildcard covering exactly one left-most label, then the default: the first certificate).
//! Must not touch: TLS, files or sockets; the names come from `config::tls_check`.

use std::borrow::Cow;
use std::collections::HashMap;

/// The names of a listener's certificates, to pick one by SNI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SniTable {
    /// Exact names (lower case) to the first certificate that lists them.
    exact: HashMap<String, usize>,
    /// For `*.example.com`: `example.com` to the first certificate that lists the wildcard.
    wildcard: HashMap<String, usize>,
}

impl SniTable {
    /// The table of certificates whose names are `names[i]` for certificate `i`; a name listed
    /// by several certificates belongs to the first (the configuration's order).
    pub fn new<S: AsRef<str>>(names: &[Vec<S>]) -> SniTable {
        let mut table = SniTable::default();
        for (i, names) in names.iter().enumerate() {
            for name in names {
                let name = normalize(name.as_ref());
                match name.strip_prefix("*.") {
                    Some(parent) if !parent.is_empty() => {
                        table.wildcard.entry(parent.to_owned()).or_insert(i);
                    }
                    _ => {
                        table.exact.entry(name.into_owned()).or_insert(i);
                    }
                }
            }
        }
        table
    }

    /// The certificate for server name `sni`: an exact name, else a wildcard over its first
    /// label, else the default (0), which also serves clients that send no name.
    pub fn pick(&self, sni: Option<&str>) -> usize {
        sni.and_then(|s| self.lookup(s)).unwrap_or(0)
    }

    /// The certificate that names `sni` (exactly, or by a wildcard), if any.
    pub fn lookup(&self, sni: &str) -> Option<usize> {
        let name = normalize(sni);
        if let Some(&i) = self.exact.get(name.as_ref()) {
            return Some(i);
        }
        // A wildcard covers one label only: `*.example.com` serves `a.example.com`, neither
        // `example.com` nor `a.b.example.com` (RFC 6125 section 6.4.3, as browsers check it).
        match name.split_once('.') {
            Some((label, parent)) if !label.is_empty() => self.wildcard.get(parent).copied(),
            _ => None,
        }
    }
}

/// Lower case without a trailing dot; borrows when the name already is (rustls hands over
/// lower-case names, so a handshake allocates nothing here).
fn normalize(name: &str) -> Cow<'_, str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn table() -> SniTable {
        SniTable::new(&[
            vec!["default.test"],
            vec!["api.example.com", "www.example.com"],
            vec!["*.example.com", "example.com"],
        ])
    }

    #[test]
    fn exact_wildcard_and_default() {
        let t = table();
        assert_eq!(t.pick(None), 0);
        assert_eq!(t.pick(Some("default.test")), 0);
        assert_eq!(t.pick(Some("api.example.com")), 1);
        assert_eq!(t.pick(Some("WWW.Example.COM.")), 1);
        assert_eq!(t.pick(Some("shop.example.com")), 2);
        assert_eq!(t.pick(Some("example.com")), 2);
        // One label only, and nothing else falls to the wildcard.
        assert_eq!(t.pick(Some("a.b.example.com")), 0);
        assert_eq!(t.pick(Some(".example.com")), 0);
        assert_eq!(t.pick(Some("unknown.test")), 0);
        assert_eq!(t.pick(Some("")), 0);
        assert_eq!(t.lookup("unknown.test"), None);
        assert_eq!(t.lookup("default.test"), Some(0));
    }

    #[test]
    fn the_first_certificate_naming_a_host_wins() {
        let t = SniTable::new(&[vec!["a.test"], vec!["b.test", "*.test"], vec!["b.test", "*.test"]]);
        assert_eq!(t.pick(Some("b.test")), 1);
        assert_eq!(t.pick(Some("c.test")), 1);
        assert_eq!(t.pick(Some("a.test")), 0);
    }

    fn label() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,6}"
    }

    proptest! {
        #[test]
        fn picks_follow_the_rules(
            certs in prop::collection::vec(prop::collection::vec((any::<bool>(), label(), label()), 0..4), 1..5),
            asked in (label(), label(), label()),
            upper in any::<bool>(),
        ) {
            let names: Vec<Vec<String>> = certs
                .iter()
                .map(|c| c.iter().map(|(wild, a, b)| if *wild { format!("*.{b}") } else { format!("{a}.{b}") }).collect())
                .collect();
            let t = SniTable::new(&names);
            let (l1, l2, l3) = asked;
            for sni in [format!("{l1}.{l2}"), format!("{l1}.{l2}.{l3}"), l1.clone()] {
                let first_exact = names.iter().position(|n| n.contains(&sni));
                let parent = sni.split_once('.').map(|(_, p)| format!("*.{p}"));
                let first_wild = parent.and_then(|w| names.iter().position(|n| n.contains(&w)));
                let expected = first_exact.or(first_wild).unwrap_or(0);
                let shown = if upper { sni.to_ascii_uppercase() } else { sni.clone() };
                prop_assert_eq!(t.pick(Some(&shown)), expected, "sni {}", shown);
                prop_assert!(t.pick(Some(&shown)) < names.len());
            }
            prop_assert_eq!(t.pick(None), 0);
        }
    }
}
