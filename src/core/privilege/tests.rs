use proptest::prelude::*;

use super::*;

fn t() -> &'static Table {
    Table::shipped()
}

fn doc(label: &str, statements: &str) -> Doc {
    Doc::parse(
        label,
        &format!(r#"{{"Version":"2012-10-17","Statement":{statements}}}"#),
    )
    .unwrap()
}

fn allow(actions: &str, resource: &str) -> String {
    format!(r#"{{"Effect":"Allow","Action":{actions},"Resource":{resource}}}"#)
}

fn class(docs: &[Doc]) -> Class {
    evaluate(t(), docs, None).class
}

#[test]
fn allow_everything_on_everything_is_admin_with_its_policy_named() {
    let d = doc(
        "AdministratorAccess attached to group admins",
        &allow(r#""*""#, r#""*""#),
    );
    let p = evaluate(t(), &[d], None);
    assert_eq!(p.class, Class::Admin);
    assert!(!p.conditional);
    assert_eq!(
        p.evidence,
        vec!["AdministratorAccess attached to group admins allows every action on every resource"]
    );
}

#[test]
fn a_deny_on_anything_makes_it_less_than_admin_and_a_deny_on_everything_leaves_nothing() {
    let admin = doc("inline policy all", &allow(r#""*""#, r#""*""#));
    let deny_one = doc(
        "inline policy guard",
        r#"{"Effect":"Deny","Action":"s3:DeleteBucket","Resource":"*"}"#,
    );
    assert_eq!(class(&[admin.clone(), deny_one]), Class::Escalation);
    let deny_all = doc(
        "inline policy stop",
        r#"{"Effect":"Deny","Action":"*","Resource":"*"}"#,
    );
    assert_eq!(class(&[admin, deny_all]), Class::None);
}

#[test]
fn not_action_allows_everything_else() {
    // PowerUserAccess: everything but IAM and Organizations.
    let d = doc(
        "PowerUserAccess attached to the user",
        &format!(
            "[{}]",
            r#"{"Effect":"Allow","NotAction":["iam:*","organizations:*","account:*"],"Resource":"*"}"#
        ),
    );
    let p = evaluate(t(), &[d], None);
    // Not admin (no IAM), but it may rewrite an existing function's code
    // and run as that function's role: a known escalation path.
    assert_eq!(p.class, Class::Escalation, "{p:?}");
    assert!(
        p.evidence[0].contains("lambda:UpdateFunctionCode on *"),
        "{p:?}"
    );
    // NotAction with the escalation services left out too: write.
    let d = doc(
        "inline policy narrower",
        r#"{"Effect":"Allow","NotAction":["iam:*","organizations:*","lambda:*","glue:*"],"Resource":"*"}"#,
    );
    assert_eq!(class(&[d]), Class::Write);
}

#[test]
fn escalation_actions_on_any_resource_but_not_on_oneself_only() {
    let d = doc(
        "inline policy rotate",
        &allow(r#""iam:CreateAccessKey""#, r#""arn:aws:iam::*:user/*""#),
    );
    let p = evaluate(t(), &[d], None);
    assert_eq!(p.class, Class::Escalation);
    assert!(p.evidence[0].contains("iam:CreateAccessKey on *"), "{p:?}");
    let own = doc(
        "inline policy self",
        &allow(
            r#""iam:CreateAccessKey""#,
            r#""arn:aws:iam::111122223333:user/${aws:username}""#,
        ),
    );
    assert_eq!(class(&[own]), Class::Write, "its own keys only");
}

#[test]
fn pass_role_with_a_compute_creating_action_escalates_and_alone_does_not() {
    let both = doc(
        "inline policy deploy",
        &allow(r#"["iam:PassRole","lambda:CreateFunction"]"#, r#""*""#),
    );
    let p = evaluate(t(), &[both], None);
    assert_eq!(p.class, Class::Escalation);
    assert_eq!(
        p.evidence,
        vec!["inline policy deploy allows iam:PassRole and lambda:CreateFunction on *"]
    );
    let alone = doc("inline policy pass", &allow(r#""iam:PassRole""#, r#""*""#));
    assert_eq!(class(&[alone]), Class::Write);
}

#[test]
fn read_and_write_come_from_aws_access_levels() {
    let ro = doc(
        "inline policy queries",
        &allow(
            r#"["logs:StartQuery","athena:Batch*","polly:SynthesizeSpeech","s3:Get*"]"#,
            r#""*""#,
        ),
    );
    let p = evaluate(t(), &[ro], None);
    assert_eq!(p.class, Class::Read, "{p:?}");
    assert!(p.evidence[0].contains("only read and list"));
    let w = doc(
        "inline policy upload",
        &allow(r#""s3:PutObject""#, r#""arn:aws:s3:::b/*""#),
    );
    let p = evaluate(t(), &[w], None);
    assert_eq!(p.class, Class::Write);
    assert_eq!(p.evidence, vec!["inline policy upload allows s3:PutObject"]);
}

#[test]
fn an_action_the_table_does_not_know_counts_as_write_and_says_so() {
    let d = doc("inline policy new", &allow(r#""newsvc:DoThing""#, r#""*""#));
    let p = evaluate(t(), &[d], None);
    assert_eq!(p.class, Class::Write);
    assert!(p.evidence[0].contains("does not know"), "{p:?}");
}

#[test]
fn no_policy_is_none() {
    assert_eq!(class(&[]), Class::None);
}

#[test]
fn conditions_may_apply_the_class_is_marked_conditional() {
    let d = doc(
        "inline policy office-hours",
        r#"{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}"#,
    );
    let p = evaluate(t(), &[d], None);
    assert_eq!(p.class, Class::Admin);
    assert!(p.conditional);
    assert!(p.evidence.last().unwrap().contains("without them: none"));
    // A conditional Deny may not apply: the Allow stands, marked conditional.
    let a = doc("inline policy all", &allow(r#""*""#, r#""*""#));
    let guard = doc(
        "inline policy mfa",
        r#"{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"BoolIfExists":{"aws:MultiFactorAuthPresent":"false"}}}"#,
    );
    let p = evaluate(t(), &[a, guard], None);
    assert_eq!(p.class, Class::Admin);
    assert!(p.conditional);
}

#[test]
fn a_permissions_boundary_caps_the_class_and_says_so() {
    let admin = doc(
        "AdministratorAccess attached to the user",
        &allow(r#""*""#, r#""*""#),
    );
    let boundary = doc(
        "ReadOnlyBoundary",
        &allow(r#"["s3:Get*","s3:List*"]"#, r#""*""#),
    );
    let p = evaluate(t(), &[admin], Some(&boundary));
    assert_eq!(p.class, Class::Read, "{p:?}");
    assert!(p
        .evidence
        .iter()
        .any(|e| e == "the permissions boundary ReadOnlyBoundary caps it (without it: admin)"));
}

#[test]
fn policy_documents_in_every_shape_parse_and_bad_ones_are_named() {
    // A single statement object, string or array fields, NotResource.
    let d = Doc::parse(
        "x",
        r#"{"Statement":{"Effect":"Allow","Action":"s3:GetObject","NotResource":"arn:aws:s3:::secret/*"}}"#,
    )
    .unwrap();
    assert_eq!(class(&[d]), Class::Read);
    let e = Doc::parse(
        "inline policy broken",
        r#"{"Statement":[{"Effect":"Maybe","Action":"*","Resource":"*"}]}"#,
    )
    .unwrap_err();
    assert!(e.contains("inline policy broken"), "{e}");
    assert!(Doc::parse("y", "not json").is_err());
}

/// A few actions across levels and the escalation table, for the properties.
const ACTIONS: &[&str] = &[
    "*",
    "s3:GetObject",
    "s3:PutObject",
    "s3:*",
    "iam:PassRole",
    "lambda:CreateFunction",
    "iam:PutUserPolicy",
    "ec2:Describe*",
    "logs:StartQuery",
];

fn statement() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::sample::subsequence(ACTIONS.to_vec(), 1..4),
        prop_oneof![
            Just(r#""*""#),
            Just(r#""arn:aws:s3:::b/*""#),
            Just(r#""arn:aws:iam::1:user/x""#)
        ],
        any::<bool>(),
    )
        .prop_map(|(allow, not_action, actions, resource, conditional)| {
            format!(
                r#"{{"Effect":"{}","{}":{},"Resource":{}{}}}"#,
                if allow { "Allow" } else { "Deny" },
                if not_action { "NotAction" } else { "Action" },
                serde_json::to_string(&actions).unwrap(),
                resource,
                if conditional {
                    r#","Condition":{"Bool":{"aws:SecureTransport":"true"}}"#
                } else {
                    ""
                }
            )
        })
}

fn policy() -> impl Strategy<Value = Doc> {
    prop::collection::vec(statement(), 0..4)
        .prop_map(|s| doc("generated", &format!("[{}]", s.join(","))))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_deny_of_everything_always_wins(docs in prop::collection::vec(policy(), 0..3)) {
        let mut docs = docs;
        docs.push(doc("deny", r#"{"Effect":"Deny","Action":"*","Resource":"*"}"#));
        prop_assert_eq!(class(&docs), Class::None);
    }

    #[test]
    fn adding_an_allow_never_lowers_the_class(docs in prop::collection::vec(policy(), 0..3), extra in statement()) {
        prop_assume!(extra.contains("\"Allow\""));
        let before = class(&docs);
        let mut more = docs.clone();
        more.push(doc("extra", &extra));
        prop_assert!(class(&more) >= before);
    }

    #[test]
    fn a_boundary_never_raises_the_class(docs in prop::collection::vec(policy(), 0..3), boundary in policy()) {
        let free = class(&docs);
        let capped = evaluate(t(), &docs, Some(&boundary)).class;
        prop_assert!(capped <= free, "{:?} > {:?}", capped, free);
    }
}

#[test]
fn documents_come_url_encoded_from_iam() {
    let enc = "%7B%22Version%22%3A%20%222012-10-17%22%2C%20%22Statement%22%3A%20%5B%7B%22Effect%22%3A%20%22Allow%22%2C%20%22Action%22%3A%20%22%2A%22%2C%20%22Resource%22%3A%20%22%2A%22%7D%5D%7D";
    let p = of_user(
        t(),
        &[("inline policy all".to_owned(), enc.to_owned())],
        None,
    );
    assert_eq!(p.class, Class::Admin);
    let plain = r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#;
    assert_eq!(decode_document(plain), plain);
    let bad = of_user(
        t(),
        &[("inline policy junk".to_owned(), "%7Bnope".to_owned())],
        None,
    );
    assert_eq!(bad.class, Class::Unknown);
    assert!(bad.evidence[0].contains("inline policy junk"), "{bad:?}");
}
