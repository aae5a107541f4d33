//! What a user's key can do, from the user's identity policies alone: a
//! pure evaluator (no I/O) over the policy documents, giving a class
//! (`admin`, `escalation`, `write`, `read`, `none`) with evidence in words.
//!
//! Allow and Deny with Deny winning; `Action`/`NotAction`,
//! `Resource`/`NotResource`; wildcards as IAM matches them against AWS's
//! action table ([`table`]); the permissions boundary as a cap. A statement
//! with a `Condition` may or may not apply: the class is the one where
//! conditional Allows apply and conditional Denies do not, and it is marked
//! `conditional` when it would be lower the other way round. SCPs, resource
//! policies and session policies are out of scope.

pub mod cache;
pub mod escalation;
pub mod table;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use table::{Bits, Table};

/// What a key can do, highest last. `Unknown` (the policies could not be
/// read) ranks between read and write: it may be anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    None,
    Read,
    Unknown,
    Write,
    Escalation,
    Admin,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::None => "none",
            Class::Read => "read",
            Class::Unknown => "unknown",
            Class::Write => "write",
            Class::Escalation => "escalation",
            Class::Admin => "admin",
        }
    }

    /// A verb phrase, for messages ("it can …"; `Unknown`: "not known").
    pub fn words(self) -> &'static str {
        match self {
            Class::Admin => "do everything (administrator)",
            Class::Escalation => "give itself more rights (privilege escalation)",
            Class::Write => "change resources",
            Class::Read => "only read",
            Class::None => "do nothing",
            Class::Unknown => "not known",
        }
    }
}

/// A finding's `privilege`: the class, whether conditions decide it, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Privilege {
    pub class: Class,
    #[serde(default)]
    pub conditional: bool,
    #[serde(default)]
    pub evidence: Vec<String>,
    /// When the policies were read (this run, or an earlier one whose
    /// reading the ledger keeps: `core::privilege::cache`); none for a root
    /// key and for `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<jiff::Timestamp>,
}

impl Privilege {
    /// A root key: the account's root user can do everything.
    pub fn root() -> Self {
        Self {
            class: Class::Admin,
            conditional: false,
            evidence: vec!["the account's root user".to_owned()],
            read_at: None,
        }
    }

    /// The policies could not be read: say why.
    pub fn unknown(why: impl Into<String>) -> Self {
        Self {
            class: Class::Unknown,
            conditional: false,
            evidence: vec![why.into()],
            read_at: None,
        }
    }
}

/// One policy document and how it reaches the user, in words
/// ("AdministratorAccess attached to group admins", "inline policy deploy").
#[derive(Debug, Clone)]
pub struct Doc {
    pub label: String,
    statements: Vec<Statement>,
}

#[derive(Debug, Clone)]
struct Statement {
    allow: bool,
    conditional: bool,
    /// `Resource` is `*` (or `NotResource` names nothing): every resource.
    every_resource: bool,
    /// Not limited to named resources: `*`, a wildcard ARN, or `NotResource`.
    broad: bool,
    not_action: bool,
    actions: Vec<String>,
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => Some(
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect(),
        ),
        _ => Some(Vec::new()),
    }
}

/// A policy document as IAM's API returns it: URL-encoded JSON (RFC 3986
/// percent-encoding); text that is already JSON is returned as it is.
pub fn decode_document(text: &str) -> String {
    if text.trim_start().starts_with('{') {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|b| hex(*b)),
            bytes.get(i + 2).and_then(|b| hex(*b)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a user's policies allow: each `(label, document)` as IAM returned
/// it, and the permissions boundary. A document that does not parse makes
/// the class `unknown`, naming it.
pub fn of_user(
    table: &Table,
    identity: &[(String, String)],
    boundary: Option<&(String, String)>,
) -> Privilege {
    let parse =
        |(label, text): &(String, String)| Doc::parse(label.clone(), &decode_document(text));
    let docs: Result<Vec<Doc>, String> = identity.iter().map(parse).collect();
    let boundary = boundary.map(parse).transpose();
    match (docs, boundary) {
        (Ok(docs), Ok(b)) => evaluate(table, &docs, b.as_ref()),
        (Err(e), _) | (_, Err(e)) => Privilege::unknown(format!("a policy could not be read: {e}")),
    }
}

impl Doc {
    /// Parses an IAM policy document (JSON text, already URL-decoded).
    pub fn parse(label: impl Into<String>, json: &str) -> Result<Doc, String> {
        let label = label.into();
        let v: Value = serde_json::from_str(json)
            .map_err(|e| format!("{label}: not a policy document: {e}"))?;
        let list = match v.get("Statement") {
            Some(Value::Array(a)) => a.clone(),
            Some(s @ Value::Object(_)) => vec![s.clone()],
            _ => return Err(format!("{label}: no Statement")),
        };
        let mut statements = Vec::new();
        for s in &list {
            let allow = match s.get("Effect").and_then(Value::as_str) {
                Some("Allow") => true,
                Some("Deny") => false,
                other => {
                    return Err(format!(
                        "{label}: Effect {other:?} is neither Allow nor Deny"
                    ))
                }
            };
            let (not_action, actions) =
                match (strings(s.get("Action")), strings(s.get("NotAction"))) {
                    (Some(a), None) => (false, a),
                    (None, Some(a)) => (true, a),
                    _ => return Err(format!("{label}: a statement needs Action or NotAction")),
                };
            let (every_resource, broad) =
                match (strings(s.get("Resource")), strings(s.get("NotResource"))) {
                    (Some(r), None) => (
                        r.iter().any(|r| r == "*"),
                        r.iter().any(|r| r.ends_with('*') && !r.contains("${")),
                    ),
                    (None, Some(r)) => (r.is_empty(), true),
                    // An identity policy without Resource is invalid; read it as every resource.
                    _ => (true, true),
                };
            let conditional = s
                .get("Condition")
                .is_some_and(|c| c.as_object().is_none_or(|o| !o.is_empty()));
            statements.push(Statement {
                allow,
                conditional,
                every_resource,
                broad,
                not_action,
                actions,
            });
        }
        Ok(Doc { label, statements })
    }
}

/// The effective sets of one world (conditions apply or not).
#[derive(Debug, Clone)]
struct Effect {
    /// Allowed on some resource.
    any: Bits,
    /// Allowed on every resource, with nothing denied.
    every: Bits,
    /// Allowed broadly (not only on named resources).
    broad: Bits,
    /// Allowed actions the table does not know, with the policy naming them.
    unknown: Vec<(String, String)>,
}

fn expand(table: &Table, st: &Statement) -> (Bits, Vec<String>) {
    let mut set = Bits::new(table.len());
    let mut unknown = Vec::new();
    for a in &st.actions {
        if !table.expand(a, &mut set) {
            unknown.push(a.clone());
        }
    }
    if st.not_action {
        let mut all = Bits::new(table.len());
        all.fill();
        all.remove_all(&set);
        return (all, Vec::new());
    }
    (set, unknown)
}

/// `hi`: conditional Allows apply, conditional Denies do not; `lo`: the reverse.
fn effect(table: &Table, docs: &[Doc], hi: bool) -> Effect {
    let n = table.len();
    let (mut any, mut every, mut broad) = (Bits::new(n), Bits::new(n), Bits::new(n));
    let (mut deny_full, mut deny_some) = (Bits::new(n), Bits::new(n));
    let mut unknown = Vec::new();
    let mut deny_patterns: Vec<String> = Vec::new();
    for d in docs {
        for st in &d.statements {
            let applies = if st.allow {
                hi || !st.conditional
            } else {
                !hi || !st.conditional
            };
            if !applies {
                continue;
            }
            let (set, names) = expand(table, st);
            if st.allow {
                any.union(&set);
                if st.every_resource {
                    every.union(&set);
                }
                if st.broad {
                    broad.union(&set);
                }
                unknown.extend(names.into_iter().map(|a| (a, d.label.clone())));
            } else {
                deny_some.union(&set);
                if st.every_resource {
                    deny_full.union(&set);
                    if !st.not_action {
                        deny_patterns.extend(st.actions.iter().map(|a| a.to_ascii_lowercase()));
                    }
                }
            }
        }
    }
    any.remove_all(&deny_full);
    broad.remove_all(&deny_full);
    every.remove_all(&deny_some);
    unknown.retain(|(a, _)| {
        let a = a.to_ascii_lowercase();
        !deny_patterns.iter().any(|p| table::glob(p, &a))
    });
    Effect {
        any,
        every,
        broad,
        unknown,
    }
}

fn capped(mut e: Effect, cap: Option<&Effect>) -> Effect {
    if let Some(c) = cap {
        e.any.intersect(&c.any);
        e.every.intersect(&c.every);
        e.broad.intersect(&c.broad);
        // An action the table does not know passes a boundary only if the
        // boundary names it too.
        e.unknown
            .retain(|(a, _)| c.unknown.iter().any(|(b, _)| b.eq_ignore_ascii_case(a)));
    }
    e
}

fn class_of(table: &Table, e: &Effect) -> Class {
    if !e.every.is_empty() && e.every.is_full() {
        return Class::Admin;
    }
    let has = |set: &Bits, name: &str| table.index(name).is_some_and(|i| set.contains(i));
    let alone = escalation::ALONE.iter().any(|(a, _)| has(&e.broad, a));
    let pass = has(&e.broad, escalation::PASS_ROLE)
        && escalation::WITH_PASS_ROLE.iter().any(|a| has(&e.any, a));
    if alone || pass {
        return Class::Escalation;
    }
    if !e.unknown.is_empty() || e.any.iter().any(|i| !table.actions[i].level.is_read()) {
        return Class::Write;
    }
    if !e.any.is_empty() {
        return Class::Read;
    }
    Class::None
}

/// Which documents allow `action` (broadly, when `broad`), for evidence.
fn granted_by(table: &Table, docs: &[Doc], action: usize, broad: bool) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    for d in docs {
        let yes = d
            .statements
            .iter()
            .any(|st| st.allow && (!broad || st.broad) && expand(table, st).0.contains(action));
        if yes && !labels.contains(&d.label) {
            labels.push(d.label.clone());
        }
    }
    labels
}

fn evidence(table: &Table, docs: &[Doc], e: &Effect, class: Class) -> Vec<String> {
    let name = |i: usize| table.actions[i].name.clone();
    let index = |n: &str| table.index(n);
    match class {
        Class::Admin => {
            let whole: Vec<String> = docs
                .iter()
                .filter(|d| {
                    d.statements
                        .iter()
                        .any(|st| st.allow && st.every_resource && expand(table, st).0.is_full())
                })
                .map(|d| d.label.clone())
                .collect();
            if whole.is_empty() {
                vec!["its policies together allow every action on every resource".to_owned()]
            } else {
                whole
                    .into_iter()
                    .map(|l| format!("{l} allows every action on every resource"))
                    .collect()
            }
        }
        Class::Escalation => {
            let mut out = Vec::new();
            for (a, why) in escalation::ALONE {
                if let Some(i) = index(a).filter(|i| e.broad.contains(*i)) {
                    for l in granted_by(table, docs, i, true) {
                        out.push(format!("{l} allows {} on * ({why})", name(i)));
                    }
                }
            }
            if let Some(p) = index(escalation::PASS_ROLE).filter(|i| e.broad.contains(*i)) {
                for c in escalation::WITH_PASS_ROLE {
                    if let Some(ci) = index(c).filter(|i| e.any.contains(*i)) {
                        let (lp, lc) = (
                            granted_by(table, docs, p, true).join(", "),
                            granted_by(table, docs, ci, false).join(", "),
                        );
                        out.push(if lp == lc {
                            format!("{lp} allows iam:PassRole and {} on *", name(ci))
                        } else {
                            format!("{lp} allows iam:PassRole on *, {lc} allows {}", name(ci))
                        });
                        break;
                    }
                }
            }
            out.truncate(3);
            out
        }
        Class::Write => {
            if let Some((a, l)) = e.unknown.first() {
                return vec![format!(
                    "{l} allows {a}, an action the access-level table does not know (counted as write)"
                )];
            }
            let writes: Vec<usize> = e
                .any
                .iter()
                .filter(|i| !table.actions[*i].level.is_read())
                .collect();
            let first = writes[0];
            let labels = granted_by(table, docs, first, false).join(", ");
            let more = writes.len() - 1;
            vec![if more == 0 {
                format!("{labels} allows {}", name(first))
            } else {
                format!(
                    "{labels} allows {} and {more} more write actions",
                    name(first)
                )
            }]
        }
        Class::Read => {
            let first = e.any.iter().next().unwrap_or(0);
            let labels = granted_by(table, docs, first, false).join(", ");
            vec![format!(
                "{labels} allows only read and list actions (e.g. {})",
                name(first)
            )]
        }
        Class::None => vec!["no policy allows it any action".to_owned()],
        Class::Unknown => Vec::new(),
    }
}

/// What `identity` allows, capped by `boundary` (the user's permissions
/// boundary, when it has one), against `table`.
pub fn evaluate(table: &Table, identity: &[Doc], boundary: Option<&Doc>) -> Privilege {
    let bounds = boundary.map(std::slice::from_ref);
    let world = |hi: bool| {
        let cap = bounds.map(|b| effect(table, b, hi));
        capped(effect(table, identity, hi), cap.as_ref())
    };
    let (hi, lo) = (world(true), world(false));
    let class = class_of(table, &hi);
    let conditional = class > class_of(table, &lo);
    let mut ev = evidence(table, identity, &hi, class);
    if let Some(b) = boundary {
        let uncapped = class_of(table, &effect(table, identity, true));
        if uncapped > class {
            ev.push(format!(
                "the permissions boundary {} caps it (without it: {})",
                b.label,
                uncapped.as_str()
            ));
        }
    }
    if conditional {
        ev.push(format!(
            "only where their conditions hold; without them: {}",
            class_of(table, &lo).as_str()
        ));
    }
    Privilege {
        class,
        conditional,
        evidence: ev,
        read_at: None,
    }
}

#[cfg(test)]
mod tests;
