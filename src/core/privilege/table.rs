//! Every IAM action with AWS's access level (Read, List, Write, Permissions
//! management, Tagging), from the Service Authorization Reference as
//! `access_levels.txt` keeps it (its first line names the source and date),
//! and IAM's wildcard matching over them.

use std::collections::HashMap;
use std::sync::OnceLock;

/// AWS's access level of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Read,
    List,
    Write,
    PermissionsManagement,
    Tagging,
}

impl Level {
    /// Read and List change nothing; every other level does.
    pub fn is_read(self) -> bool {
        matches!(self, Level::Read | Level::List)
    }
}

/// One known action.
#[derive(Debug, Clone)]
pub struct Action {
    /// `service:Action` as AWS spells it.
    pub name: String,
    /// Lowercase `service` and `action`, for matching.
    service: String,
    action: String,
    pub level: Level,
}

/// The table: actions in service order.
#[derive(Debug)]
pub struct Table {
    pub actions: Vec<Action>,
    by_service: HashMap<String, (usize, usize)>,
    by_name: HashMap<String, usize>,
    /// The source line (package, version, date).
    pub source: String,
}

static TEXT: &str = include_str!("access_levels.txt");

impl Table {
    /// The table shipped with keywarden, parsed once.
    pub fn shipped() -> &'static Table {
        static TABLE: OnceLock<Table> = OnceLock::new();
        TABLE.get_or_init(|| Table::parse(TEXT))
    }

    /// Parses `service R=A,B W=C …` lines (`#` lines are comments; the
    /// first one is the source).
    pub fn parse(text: &str) -> Table {
        let mut actions = Vec::new();
        let mut by_service = HashMap::new();
        let mut source = String::new();
        for line in text.lines() {
            if let Some(c) = line.strip_prefix('#') {
                if source.is_empty() {
                    source = c.trim().to_owned();
                }
                continue;
            }
            let mut parts = line.split_whitespace();
            let Some(service) = parts.next() else {
                continue;
            };
            let start = actions.len();
            for part in parts {
                let Some((letter, names)) = part.split_once('=') else {
                    continue;
                };
                let level = match letter {
                    "R" => Level::Read,
                    "L" => Level::List,
                    "P" => Level::PermissionsManagement,
                    "T" => Level::Tagging,
                    _ => Level::Write,
                };
                for name in names.split(',').filter(|n| !n.is_empty()) {
                    actions.push(Action {
                        name: format!("{service}:{name}"),
                        service: service.to_ascii_lowercase(),
                        action: name.to_ascii_lowercase(),
                        level,
                    });
                }
            }
            by_service.insert(service.to_ascii_lowercase(), (start, actions.len()));
        }
        let by_name = actions
            .iter()
            .enumerate()
            .map(|(i, a)| (format!("{}:{}", a.service, a.action), i))
            .collect();
        Table {
            actions,
            by_service,
            by_name,
            source,
        }
    }

    pub fn len(&self) -> usize {
        self.actions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// The index of `service:Action` (any case).
    pub fn index(&self, name: &str) -> Option<usize> {
        self.by_name.get(&name.to_ascii_lowercase()).copied()
    }

    /// The actions `pattern` matches, as IAM matches them (case-insensitive,
    /// `*` any run, `?` one character), into `set`; `false` when the pattern
    /// names no wildcard and no known action (an action the table does not know).
    pub fn expand(&self, pattern: &str, set: &mut Bits) -> bool {
        let p = pattern.to_ascii_lowercase();
        if p == "*" {
            set.fill();
            return true;
        }
        let Some((svc, act)) = p.split_once(':') else {
            return false;
        };
        let wild = |s: &str| s.contains(['*', '?']);
        if !wild(svc) && !wild(act) {
            return match self.by_name.get(&p) {
                Some(i) => {
                    set.insert(*i);
                    true
                }
                None => false,
            };
        }
        let ranges: Vec<(usize, usize)> = if wild(svc) {
            self.by_service
                .iter()
                .filter(|(s, _)| glob(svc, s))
                .map(|(_, r)| *r)
                .collect()
        } else {
            self.by_service.get(svc).copied().into_iter().collect()
        };
        for (start, end) in ranges {
            for i in start..end {
                if act == "*" || glob(act, &self.actions[i].action) {
                    set.insert(i);
                }
            }
        }
        true
    }
}

/// IAM's wildcard match: `*` any run (also empty), `?` exactly one character.
/// Both sides already lowercase.
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// A set of action indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bits {
    words: Vec<u64>,
    len: usize,
}

impl Bits {
    pub fn new(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(64)],
            len,
        }
    }
    pub fn fill(&mut self) {
        for w in &mut self.words {
            *w = u64::MAX;
        }
        if self.len % 64 != 0 {
            if let Some(last) = self.words.last_mut() {
                *last = (1u64 << (self.len % 64)) - 1;
            }
        }
    }
    pub fn insert(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
    }
    pub fn contains(&self, i: usize) -> bool {
        self.words[i / 64] & (1 << (i % 64)) != 0
    }
    pub fn union(&mut self, other: &Bits) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }
    pub fn intersect(&mut self, other: &Bits) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= b;
        }
    }
    pub fn remove_all(&mut self, other: &Bits) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= !b;
        }
    }
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }
    pub fn is_full(&self) -> bool {
        self.count() == self.len
    }
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len).filter(|i| self.contains(*i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_knows_aws_access_levels_not_verb_prefixes() {
        let t = Table::shipped();
        assert!(t.len() > 15_000, "{}", t.len());
        assert!(t.source.contains("iam-data"), "{}", t.source);
        let level = |n: &str| t.actions[t.index(n).unwrap()].level;
        // ReadOnlyAccess grants these: AWS calls them Read, whatever the verb.
        assert!(level("logs:StartQuery").is_read());
        assert!(level("athena:BatchGetQueryExecution").is_read());
        assert!(level("polly:SynthesizeSpeech").is_read());
        // And no verb says write here, but it is.
        assert!(!level("iam:PassRole").is_read());
        assert_eq!(level("iam:PutUserPolicy"), Level::PermissionsManagement);
        assert_eq!(level("s3:GetObject"), Level::Read);
        assert_eq!(level("IAM:listusers"), Level::List, "any case");
    }

    #[test]
    fn wildcards_match_as_iam_matches_them() {
        assert!(glob("get*", "getobject"));
        assert!(glob("get*", "get"));
        assert!(glob("g?tobject", "getobject"));
        assert!(!glob("g?tobject", "gtobject"));
        assert!(glob("*object*", "putobjectacl"));
        assert!(!glob("put*", "getobject"));
        let t = Table::shipped();
        let mut s = Bits::new(t.len());
        assert!(t.expand("s3:Get*", &mut s));
        assert!(s.contains(t.index("s3:GetObject").unwrap()));
        assert!(!s.contains(t.index("s3:PutObject").unwrap()));
        let mut all = Bits::new(t.len());
        assert!(t.expand("*", &mut all));
        assert!(all.is_full());
        let mut none = Bits::new(t.len());
        assert!(
            !t.expand("madeup:DoThing", &mut none),
            "unknown to the table"
        );
        assert!(none.is_empty());
        let mut svc = Bits::new(t.len());
        assert!(t.expand("i?m:*", &mut svc));
        assert!(svc.contains(t.index("iam:PassRole").unwrap()));
    }
}
