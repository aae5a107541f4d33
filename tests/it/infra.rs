//! Code and infrastructure agree: the actions keywarden calls (one list per
//! adapter in src/aws/), the StackSet member role, the Terraform execution
//! role, the role name default and the settings keys.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use hcl::expr::{Expression, TraversalOperator};
use hcl::{Block, Body};
use keywarden::aws::{
    iam::IAM_ACTIONS, organizations::ORGANIZATIONS_ACTIONS, ses::SES_ACTIONS, sts::STS_ACTIONS,
};
use serde_yaml::Value as Yaml;

fn file(rel: &str) -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn set<'a>(items: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    items.into_iter().map(str::to_owned).collect()
}

fn member_template() -> Yaml {
    serde_yaml::from_str(&file("stacksets/member-role.yaml")).expect("the template is YAML")
}

fn terraform(rel: &str) -> Body {
    hcl::from_str(&file(rel)).unwrap_or_else(|e| panic!("{rel} is not HCL: {e}"))
}

fn blocks<'a>(body: &'a Body, kind: &'a str) -> impl Iterator<Item = &'a Block> + 'a {
    body.blocks().filter(move |b| b.identifier() == kind)
}

fn labelled<'a>(body: &'a Body, kind: &'a str, labels: &[&str]) -> &'a Block {
    blocks(body, kind)
        .find(|b| {
            b.labels()
                .iter()
                .map(|l| l.as_str())
                .eq(labels.iter().copied())
        })
        .unwrap_or_else(|| panic!("no {kind} {labels:?}"))
}

fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr())
}

fn strings(e: &Expression) -> Vec<String> {
    match e {
        Expression::Array(items) => items
            .iter()
            .map(|i| match i {
                Expression::String(s) => s.clone(),
                other => panic!("expected a string, found {other:?}"),
            })
            .collect(),
        other => panic!("expected a list of strings, found {other:?}"),
    }
}

fn locals(body: &Body) -> BTreeMap<String, Expression> {
    blocks(body, "locals")
        .flat_map(|b| {
            b.body()
                .attributes()
                .map(|a| (a.key().to_owned(), a.expr().clone()))
        })
        .collect()
}

/// A statement's actions: a literal list or `local.<name>`.
fn actions(e: &Expression, locals: &BTreeMap<String, Expression>) -> Vec<String> {
    match e {
        Expression::Traversal(t) => match (&t.expr, t.operators.as_slice()) {
            (Expression::Variable(v), [TraversalOperator::GetAttr(name)])
                if v.as_str() == "local" =>
            {
                strings(&locals[name.as_str()])
            }
            other => panic!("unexpected traversal {other:?}"),
        },
        other => strings(other),
    }
}

#[test]
fn the_member_role_grants_exactly_the_iam_actions_the_scanner_calls() {
    let t = member_template();
    let role = &t["Resources"]["ScanRole"]["Properties"];
    let statements: Vec<&Yaml> = role["Policies"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|p| p["PolicyDocument"]["Statement"].as_sequence().unwrap())
        .collect();
    let granted: BTreeSet<String> = statements
        .iter()
        .flat_map(|s| {
            s["Action"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(granted, set(IAM_ACTIONS.iter().copied()));
    assert!(statements.iter().all(|s| s["Effect"] == "Allow"));

    // Trust: only the scanner's role, only from inside the Organization.
    let trust = &role["AssumeRolePolicyDocument"]["Statement"][0];
    assert_eq!(trust["Principal"]["AWS"]["Ref"], "ScannerRoleArn");
    assert_eq!(trust["Action"], "sts:AssumeRole");
    let condition = serde_yaml::to_string(&trust["Condition"]).unwrap();
    assert!(
        condition.contains("aws:PrincipalOrgID") && condition.contains("OrganizationId"),
        "{condition}"
    );
    assert_eq!(
        t["Resources"]["ScanRole"]["Properties"]["MaxSessionDuration"], 3600,
        "the least IAM allows for a role"
    );
    assert_eq!(
        keywarden::aws::sts::SESSION_SECS,
        900,
        "the least STS allows"
    );
    let params = &t["Parameters"];
    for required in ["ScannerRoleArn", "OrganizationId"] {
        assert!(
            params[required]["Default"].is_null(),
            "{required} must be required"
        );
    }
}

#[test]
fn the_terraform_execution_role_grants_exactly_what_keywarden_calls() {
    let main = terraform("terraform/main.tf");
    let mut locals = locals(&main);
    locals.extend(self::locals(&terraform("terraform/state.tf")));
    let policy = labelled(&main, "data", &["aws_iam_policy_document", "execution"]);
    let mut granted = BTreeSet::new();
    let mut by_sid = BTreeMap::new();
    // Statements that exist only when a variable turns them on: checked below.
    let enforcement_sids = [
        "AssumeMemberEnforceRole",
        "EnforceOwnAccount",
        "ReadWebhookUrl",
        "ImportOwnFindings",
        "DescribeOwnHub",
    ];
    for statement in blocks(policy.body(), "statement")
        .chain(blocks(policy.body(), "dynamic").flat_map(|d| blocks(d.body(), "content")))
    {
        // Enforcement's statements exist only with enforcement = apply: checked below.
        if let Some(Expression::String(sid)) = attr(statement.body(), "sid") {
            if enforcement_sids.contains(&sid.as_str()) {
                continue;
            }
        }
        let acts = actions(attr(statement.body(), "actions").expect("actions"), &locals);
        if let Some(Expression::String(sid)) = attr(statement.body(), "sid") {
            by_sid.insert(sid.clone(), acts.clone());
        }
        granted.extend(acts);
    }
    // Runtime plumbing the code does not call itself: logs, tracing, KMS for the environment.
    let plumbing =
        |a: &String| a.starts_with("logs:") || a.starts_with("xray:") || a.starts_with("kms:");
    let calls: BTreeSet<String> = granted.iter().filter(|a| !plumbing(a)).cloned().collect();
    assert_eq!(calls, set(keywarden::aws::all_actions()));
    assert_eq!(
        set(by_sid["ReadOwnAccountAccessKeys"]
            .iter()
            .map(String::as_str)),
        set(IAM_ACTIONS.iter().copied())
    );
    assert_eq!(
        set(by_sid["ListOrganization"].iter().map(String::as_str)),
        set(ORGANIZATIONS_ACTIONS.iter().copied())
    );
    assert_eq!(
        set(by_sid["AssumeMemberScanRole"].iter().map(String::as_str)),
        set(STS_ACTIONS.iter().copied())
    );
    let ses: BTreeSet<String> = by_sid["SendFromSenderIdentity"]
        .iter()
        .chain(&by_sid["ReadSendQuota"])
        .chain(&by_sid["ReadSenderIdentity"])
        .cloned()
        .collect();
    assert_eq!(ses, set(SES_ACTIONS.iter().copied()));
    assert_eq!(
        set(by_sid["SendFromSenderIdentity"].iter().map(String::as_str)),
        set(["ses:SendEmail", "ses:SendRawEmail"]),
        "sending is conditioned on the sender: no other action in that statement"
    );
    let s3: BTreeSet<String> = by_sid["ReadWriteState"]
        .iter()
        .chain(&by_sid["ListState"])
        .chain(&by_sid["ReadStateBucketSettings"])
        .cloned()
        .collect();
    assert_eq!(s3, set(keywarden::aws::s3::S3_ACTIONS.iter().copied()));

    // AssumeRole only on the member role; sending only from the sender identity.
    let hcl_text = file("terraform/main.tf");
    assert!(
        hcl_text.contains(r#"resources = ["arn:${local.partition}:iam::*:role/${var.role_name}"]"#)
    );
    assert!(hcl_text
        .contains("resources = concat(local.sender_identity_arns, local.configuration_set_arns)"));
    // Issue 22 item 6: SES sends only with From = the sender, whatever a
    // mail batch in the state bucket says.
    assert!(
        hcl_text.contains("      variable = \"ses:FromAddress\"\n      values   = [var.sender]")
    );
    // Enforcement: the write actions are exactly the code's, only with apply.
    let list = |name: &str| actions(&locals[name], &locals);
    assert_eq!(
        set(list("enforce_actions").iter().map(String::as_str)),
        set(keywarden::aws::iam::ENFORCE_ACTIONS.iter().copied())
    );
    assert_eq!(
        set(list("delete_actions").iter().map(String::as_str)),
        set(keywarden::aws::iam::DELETE_ACTIONS.iter().copied())
    );
    assert!(hcl_text.contains(r#"enforcing       = local.enforce_mode == "apply""#));
    // Issue 26: the variable has the setting's name; the old one still works.
    assert!(hcl_text.contains("enforce_mode    = coalesce(var.enforce, var.enforcement)"));
    assert!(hcl_text.contains("for_each = local.enforcing ? [local.account_id] : []"));
    assert!(hcl_text.contains("for_each = local.enforcing ? [var.enforce_role_name] : []"));
    assert!(hcl_text.contains("EnableEnforcement = local.enforcing ? \"true\" : \"false\""));
    // Chat: the one SSM parameter that holds the webhook URL, only when named.
    assert_eq!(
        set(list("ssm_actions").iter().map(String::as_str)),
        set(keywarden::aws::ssm::SSM_ACTIONS.iter().copied())
    );
    assert!(hcl_text.contains(
        r#"for_each = var.webhook_url_parameter == "" ? [] : [trimprefix(var.webhook_url_parameter, "/")]"#
    ));
    assert!(hcl_text.contains(
        r#"resources = ["arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter/${statement.value}"]"#
    ));
    // Security Hub: the one import action, on the management account's own
    // default product, only with securityhub_export.
    assert_eq!(
        set(list("securityhub_actions").iter().map(String::as_str)),
        set(keywarden::aws::securityhub::SECURITYHUB_ACTIONS
            .iter()
            .copied())
    );
    assert!(hcl_text.contains("for_each = var.securityhub_export ? [local.account_id] : []"));
    assert_eq!(
        set(list("securityhub_doctor_actions")
            .iter()
            .map(String::as_str)),
        set(keywarden::aws::securityhub::SECURITYHUB_DOCTOR_ACTIONS
            .iter()
            .copied())
    );
    assert!(hcl_text.contains(
        r#"resources = ["arn:${local.partition}:securityhub:${local.securityhub_region}:${statement.value}:hub/default"]"#
    ));
    assert!(hcl_text.contains(
        r#"resources = ["arn:${local.partition}:securityhub:${local.securityhub_region}:${statement.value}:product/${statement.value}/default"]"#
    ));
    assert!(
        hcl_text.contains(r#"EnableSecurityHubExport = var.securityhub_export ? "true" : "false""#)
    );
    // Mail only to the allowed domains, in SES's own terms too.
    assert!(hcl_text.contains(r#"variable = "ses:Recipients""#));
    assert!(hcl_text.contains("KEYWARDEN_ALLOWED_RECIPIENT_DOMAINS"));
    // AssumeRole only into this Organization's accounts.
    assert!(hcl_text.contains(r#"variable = "aws:ResourceOrgID""#));
    // State only under its prefix of its own bucket.
    assert!(
        hcl_text.contains(r#"resources = ["${aws_s3_bucket.state.arn}/${local.state_prefix}/*"]"#)
    );
    assert!(hcl_text.contains("= local.state_uri") && hcl_text.contains("KEYWARDEN_STATE "));
}

#[test]
fn the_state_bucket_is_versioned_encrypted_private_tls_only_and_expires_reports() {
    let state = terraform("terraform/state.tf");
    let locals = locals(&state);
    let versioning = labelled(&state, "resource", &["aws_s3_bucket_versioning", "state"]);
    let status = blocks(versioning.body(), "versioning_configuration")
        .find_map(|b| attr(b.body(), "status").cloned());
    assert_eq!(status, Some(Expression::String("Enabled".into())));
    let pab = labelled(
        &state,
        "resource",
        &["aws_s3_bucket_public_access_block", "state"],
    );
    for key in [
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ] {
        assert_eq!(
            attr(pab.body(), key),
            Some(&Expression::Bool(true)),
            "{key}"
        );
    }
    labelled(
        &state,
        "resource",
        &[
            "aws_s3_bucket_server_side_encryption_configuration",
            "state",
        ],
    );
    let text = file("terraform/state.tf");
    assert!(
        text.contains(r#"variable = "aws:SecureTransport""#)
            && text.contains(r#"effect  = "Deny""#)
    );
    // Issue 22 item 6: only keywarden's roles and the named operators may
    // write or delete the state; the statement denies everyone else.
    let policy = labelled(&state, "data", &["aws_iam_policy_document", "state_bucket"]).body();
    let writes = blocks(policy, "statement")
        .map(|b| b.body())
        .find(|s| attr(s, "sid") == Some(&Expression::String("OnlyKeywardenWritesState".into())))
        .expect("the writers statement");
    assert_eq!(
        attr(writes, "effect"),
        Some(&Expression::String("Deny".into()))
    );
    assert_eq!(
        set(strings(attr(writes, "actions").unwrap())
            .iter()
            .map(String::as_str)),
        set(["s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion"])
    );
    let condition = blocks(writes, "condition").next().unwrap().body();
    assert_eq!(
        attr(condition, "test"),
        Some(&Expression::String("ArnNotEquals".into()))
    );
    assert_eq!(
        attr(condition, "variable"),
        Some(&Expression::String("aws:PrincipalArn".into()))
    );
    assert_eq!(
        attr(condition, "values").unwrap().to_string(),
        "local.state_writers"
    );
    assert_eq!(
        locals["state_writers"].to_string().split_whitespace().collect::<String>(),
        "concat([aws_iam_role.execution.arn],var.workflow?[aws_iam_role.workflow[0].arn]:[],var.state_writer_arns)"
    );
    assert!(text.contains(r#"prefix = "${local.state_prefix}/${var.organization_id}/reports/""#));
    assert!(text.contains("days = var.report_retention_days"));
    let acts: BTreeSet<String> = [
        "state_object_actions",
        "state_list_actions",
        "state_bucket_actions",
    ]
    .iter()
    .flat_map(|l| match locals.get(*l) {
        Some(Expression::Array(a)) => a
            .iter()
            .filter_map(|e| match e {
                Expression::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect::<Vec<_>>(),
        other => panic!("{l}: {other:?}"),
    })
    .collect();
    assert_eq!(acts, set(keywarden::aws::s3::S3_ACTIONS.iter().copied()));
}

#[test]
fn the_role_name_default_agrees_across_settings_terraform_and_the_template() {
    let settings_default = keywarden::config::KEYS
        .iter()
        .find(|(k, _)| *k == "role_name")
        .unwrap()
        .1
        .unwrap();
    let vars = terraform("terraform/variables.tf");
    let tf_default = match attr(
        labelled(&vars, "variable", &["role_name"]).body(),
        "default",
    ) {
        Some(Expression::String(s)) => s.clone(),
        other => panic!("{other:?}"),
    };
    let template_default = member_template()["Parameters"]["RoleName"]["Default"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        (tf_default.as_str(), template_default.as_str()),
        (settings_default, settings_default)
    );
    assert_eq!(settings_default, "KeywardenScanRole");
}

#[test]
fn terraform_settings_accept_exactly_the_keywarden_settings_it_does_not_set_itself() {
    let vars = terraform("terraform/variables.tf");
    let settings = labelled(&vars, "variable", &["settings"]).body();
    let validation = blocks(settings, "validation")
        .next()
        .expect("a validation block")
        .body();
    let condition = hcl::format::to_string(attr(validation, "condition").unwrap()).unwrap();
    let start = condition
        .find("contains([")
        .expect("the list of allowed keys")
        + "contains([".len();
    let end = start + condition[start..].find(']').unwrap();
    let allowed: BTreeSet<String> = condition[start..end]
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    // Set by the module from its own variables, or meaningless in a Lambda package (templates_dir).
    let managed = set([
        "role_name",
        "external_id",
        "sender",
        "security_recipients",
        "ses_region",
        "configuration_set",
        "templates_dir",
        "state",
        "allowed_recipient_domains",
        "enforce",
        "enforce_role_name",
        "delete_inactive_after_days",
        // Chat: the URL is a secret (never a Terraform value), the parameter
        // naming it and the format are the module's own variables.
        "webhook_url",
        "webhook_url_parameter",
        "webhook_format",
        // Security Hub: a module variable, as it changes the roles too.
        "securityhub_export",
        "securityhub_region",
    ]);
    let all = set(keywarden::config::KEYS
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| !keywarden::config::TEST_ONLY_KEYS.contains(k)));
    assert!(
        keywarden::config::TEST_ONLY_KEYS
            .iter()
            .all(|k| !allowed.contains(*k) && !managed.contains(*k)),
        "the module never sets or accepts a test-only key (clock_override)"
    );
    assert_eq!(
        allowed.union(&managed).cloned().collect::<BTreeSet<_>>(),
        all
    );
    assert!(allowed.is_disjoint(&managed));
}

#[test]
fn the_function_is_wired_for_a_safe_daily_run() {
    let main = terraform("terraform/main.tf");
    let f = labelled(&main, "resource", &["aws_lambda_function", "this"]).body();
    assert_eq!(
        attr(f, "runtime"),
        Some(&Expression::String("provided.al2023".into()))
    );
    assert_eq!(
        attr(f, "handler"),
        Some(&Expression::String("bootstrap".into()))
    );
    // One run at a time; with the workflow, its map children side by side.
    assert!(file("terraform/main.tf").contains(
        "reserved_concurrent_executions = var.workflow ? max(var.workflow_scan_concurrency, var.workflow_mail_concurrency) + 1 : 1"
    ));
    assert!(attr(f, "reserved_concurrent_executions").is_some());
    let invoke = labelled(
        &main,
        "resource",
        &["aws_lambda_function_event_invoke_config", "this"],
    )
    .body();
    assert_eq!(
        attr(invoke, "maximum_retry_attempts"),
        Some(&Expression::Number(2.into())),
        "retries are safe with the ledger (tests/ledger_moto.rs: a same-day re-run sends nothing)"
    );
    // The retry is only safe because the function always has its ledger.
    assert!(file("terraform/main.tf").contains("KEYWARDEN_STATE"));
    let stack_set = labelled(
        &main,
        "resource",
        &["aws_cloudformation_stack_set", "member_role"],
    )
    .body();
    assert_eq!(
        attr(stack_set, "permission_model"),
        Some(&Expression::String("SERVICE_MANAGED".into()))
    );
    assert_eq!(
        strings(attr(stack_set, "capabilities").unwrap()),
        ["CAPABILITY_NAMED_IAM"]
    );
    let auto = blocks(stack_set, "auto_deployment").next().unwrap().body();
    assert_eq!(attr(auto, "enabled"), Some(&Expression::Bool(true)));
    labelled(
        &main,
        "resource",
        &["aws_cloudformation_stack_set_instance", "member_role"],
    );
    labelled(&main, "resource", &["aws_scheduler_schedule", "daily"]);
    labelled(
        &main,
        "resource",
        &["aws_cloudwatch_metric_alarm", "errors"],
    );
    labelled(&main, "resource", &["aws_cloudwatch_log_group", "this"]);

    // terraform-aws-modules conventions: every variable and output says what it is for.
    for (rel, kind) in [
        ("terraform/variables.tf", "variable"),
        ("terraform/outputs.tf", "output"),
    ] {
        let body = terraform(rel);
        for b in blocks(&body, kind) {
            assert!(
                attr(b.body(), "description").is_some(),
                "{kind} {:?} has no description",
                b.labels()
            );
        }
    }
    let outputs = terraform("terraform/outputs.tf");
    for name in ["function_arn", "execution_role_arn", "schedule_arn"] {
        labelled(&outputs, "output", &[name]);
    }
}

#[test]
fn the_enforcement_role_exists_only_when_enabled_and_may_only_deactivate_or_delete_user_keys() {
    let t = member_template();
    let role = &t["Resources"]["EnforceRole"];
    assert_eq!(
        role["Condition"], "Enforce",
        "created only with EnableEnforcement"
    );
    assert_eq!(t["Parameters"]["EnableEnforcement"]["Default"], "false");
    assert_eq!(t["Parameters"]["EnableDeletion"]["Default"], "false");
    let enforce_role_default = keywarden::config::KEYS
        .iter()
        .find(|(k, _)| *k == "enforce_role_name")
        .unwrap()
        .1
        .unwrap();
    assert_eq!(
        t["Parameters"]["EnforceRoleName"]["Default"],
        enforce_role_default
    );
    let statement = &role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0];
    let branches = statement["Action"]["Fn::If"].as_sequence().unwrap();
    assert_eq!(branches[0], "Delete");
    let list = |y: &Yaml| -> BTreeSet<String> {
        y.as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    };
    let enforce = set(keywarden::aws::iam::ENFORCE_ACTIONS.iter().copied());
    let mut with_delete = enforce.clone();
    with_delete.extend(set(keywarden::aws::iam::DELETE_ACTIONS.iter().copied()));
    assert_eq!(list(&branches[1]), with_delete);
    assert_eq!(list(&branches[2]), enforce);
    assert!(serde_yaml::to_string(&statement["Resource"])
        .unwrap()
        .contains(":user/*"));
    // Issue 22 item 13: the same principal as the scan role, but only as
    // keywarden's enforcement session; the scan role trusts only the scan
    // and export sessions. The scan role stays read-only.
    use keywarden::aws::sts::{ENFORCE_SESSION, EXPORT_SESSION, SCAN_SESSION};
    let trust = |r: &str| {
        t["Resources"][r]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0].clone()
    };
    let (enforce_trust, scan_trust) = (trust("EnforceRole"), trust("ScanRole"));
    assert_eq!(enforce_trust["Principal"], scan_trust["Principal"]);
    for branch in [1, 2] {
        let e = &enforce_trust["Condition"]["Fn::If"][branch];
        assert_eq!(e["StringEquals"]["sts:RoleSessionName"], ENFORCE_SESSION);
        let s = &scan_trust["Condition"]["Fn::If"][branch];
        assert_eq!(
            list(&s["StringLike"]["sts:RoleSessionName"]),
            set([SCAN_SESSION, EXPORT_SESSION])
        );
        assert_eq!(
            e["StringEquals"]["aws:PrincipalOrgID"],
            s["StringEquals"]["aws:PrincipalOrgID"]
        );
    }
    let scan = serde_yaml::to_string(&t["Resources"]["ScanRole"]).unwrap();
    assert!(!scan.contains("UpdateAccessKey") && !scan.contains("DeleteAccessKey"));
}

#[test]
fn the_securityhub_export_permission_exists_only_when_enabled_and_only_on_the_accounts_own_product()
{
    let t = member_template();
    assert_eq!(
        t["Parameters"]["EnableSecurityHubExport"]["Default"],
        "false"
    );
    let policy = &t["Resources"]["SecurityHubExportPolicy"];
    assert_eq!(policy["Type"], "AWS::IAM::Policy");
    assert_eq!(
        policy["Condition"], "SecurityHubExport",
        "created only with EnableSecurityHubExport"
    );
    assert_eq!(
        serde_yaml::to_string(&t["Conditions"]["SecurityHubExport"]).unwrap(),
        serde_yaml::to_string(
            &serde_yaml::from_str::<Yaml>("Fn::Equals: [{Ref: EnableSecurityHubExport}, \"true\"]")
                .unwrap()
        )
        .unwrap()
    );
    let props = &policy["Properties"];
    assert_eq!(
        props["Roles"][0]["Ref"], "ScanRole",
        "attached to the scan role"
    );
    let statements = props["PolicyDocument"]["Statement"].as_sequence().unwrap();
    assert_eq!(statements.len(), 2);
    // keywarden doctor: DescribeHub on the account's own hub, nothing else.
    let d = &statements[1];
    assert_eq!(d["Effect"], "Allow");
    assert_eq!(
        d["Action"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect::<BTreeSet<_>>(),
        set(keywarden::aws::securityhub::SECURITYHUB_DOCTOR_ACTIONS
            .iter()
            .copied())
    );
    assert_eq!(
        d["Resource"]["Fn::Sub"],
        "arn:${AWS::Partition}:securityhub:*:${AWS::AccountId}:hub/default"
    );
    let s = &statements[0];
    assert_eq!(s["Effect"], "Allow");
    let actions: BTreeSet<String> = s["Action"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions,
        set(keywarden::aws::securityhub::SECURITYHUB_ACTIONS
            .iter()
            .copied())
    );
    assert_eq!(
        s["Resource"]["Fn::Sub"],
        "arn:${AWS::Partition}:securityhub:*:${AWS::AccountId}:product/${AWS::AccountId}/default"
    );
    // The scan role itself stays read-only.
    let scan = serde_yaml::to_string(&t["Resources"]["ScanRole"]).unwrap();
    assert!(!scan.contains("securityhub"), "{scan}");
}

#[test]
fn the_readme_iam_policies_for_the_cli_list_exactly_the_actions_the_code_calls() {
    // The README and its reference pages under docs/.
    let readme = [
        "README.md",
        "docs/using.md",
        "docs/deploying.md",
        "docs/exports.md",
    ]
    .map(file)
    .join("\n");
    let policy = |marker: &str| -> BTreeSet<String> {
        let start = readme
            .find(&format!("<!-- iam-policy:{marker} -->"))
            .unwrap_or_else(|| panic!("the docs have no {marker} policy"));
        let json_start = start + readme[start..].find("```json").unwrap() + "```json".len();
        let end = json_start + readme[json_start..].find("```").unwrap();
        let doc: serde_json::Value = serde_json::from_str(&readme[json_start..end])
            .unwrap_or_else(|e| panic!("the {marker} policy is not JSON: {e}"));
        doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["Action"].as_array().unwrap().iter())
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    };
    let scan: BTreeSet<String> = [ORGANIZATIONS_ACTIONS, STS_ACTIONS, IAM_ACTIONS]
        .concat()
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(policy("scan"), scan);
    let notify: BTreeSet<String> = [SES_ACTIONS, keywarden::aws::s3::S3_ACTIONS]
        .concat()
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(policy("notify"), notify);
    let mut all = policy("scan");
    all.extend(policy("notify"));
    assert_eq!(all, set(keywarden::aws::all_actions()));
    assert_eq!(
        policy("securityhub"),
        set(keywarden::aws::securityhub::SECURITYHUB_ACTIONS
            .iter()
            .chain(keywarden::aws::securityhub::SECURITYHUB_DOCTOR_ACTIONS)
            .copied())
    );
    // Issue 26: the member role as JSON, for accounts managed by hand.
    assert_eq!(policy("member-role"), set(IAM_ACTIONS.iter().copied()));
}

#[test]
fn the_workflow_is_off_by_default_and_its_role_reaches_only_the_function_and_its_manifests() {
    let vars = terraform("terraform/variables.tf");
    let workflow = labelled(&vars, "variable", &["workflow"]).body();
    assert_eq!(attr(workflow, "default"), Some(&Expression::Bool(false)));
    for (name, default) in [
        ("workflow_accounts_per_batch", 100),
        ("workflow_scan_concurrency", 8),
        ("workflow_mail_concurrency", 4),
    ] {
        let body = labelled(&vars, "variable", &[name]).body();
        assert_eq!(
            attr(body, "default"),
            Some(&Expression::Number(default.into())),
            "{name}"
        );
    }
    let tf = terraform("terraform/workflow.tf");
    let text = file("terraform/workflow.tf");
    // Every template variable of the definition is filled by templatefile, and nothing else is.
    let asl = file("terraform/workflow.asl.json");
    let placeholders: BTreeSet<String> = asl
        .split("${")
        .skip(1)
        .map(|rest| rest.split('}').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        placeholders,
        set([
            "function_arn",
            "accounts_per_batch",
            "scan_concurrency",
            "mail_concurrency"
        ])
    );
    for p in &placeholders {
        assert!(text.contains(&format!("    {p} ")), "templatefile sets {p}");
    }
    for resource in [
        ["aws_sfn_state_machine", "workflow"],
        ["aws_iam_role", "workflow"],
        ["aws_iam_role_policy", "workflow"],
        ["aws_cloudwatch_log_group", "workflow"],
        ["aws_cloudwatch_metric_alarm", "workflow_failed"],
    ] {
        let body = labelled(&tf, "resource", &resource).body();
        assert!(
            matches!(attr(body, "count"), Some(Expression::Conditional(_))),
            "{resource:?} exists only with var.workflow"
        );
    }
    let machine = labelled(&tf, "resource", &["aws_sfn_state_machine", "workflow"]).body();
    assert_eq!(
        attr(machine, "type"),
        Some(&Expression::String("STANDARD".into()))
    );
    // The role: invoke this function only, read manifests under the state prefix, run its own map children.
    let policy = labelled(&tf, "data", &["aws_iam_policy_document", "workflow"]).body();
    let statements: Vec<&Body> = blocks(policy, "statement").map(|b| b.body()).collect();
    let sid = |s: &Body| match attr(s, "sid") {
        Some(Expression::String(s)) => s.clone(),
        other => panic!("sid {other:?}"),
    };
    let by_sid: BTreeMap<String, &Body> = statements.iter().map(|s| (sid(s), *s)).collect();
    assert_eq!(
        by_sid.keys().cloned().collect::<BTreeSet<_>>(),
        set([
            "InvokeKeywarden",
            "ReadManifests",
            "RunMapChildren",
            "DeliverLogs",
            "Trace"
        ])
    );
    // Issue 22 item 19: with kms_key_arn, the ItemReader decrypts SSE-KMS
    // manifests (through S3 only) and the machine encrypts its own data (in
    // its own context only); without it, neither statement exists.
    let kms: BTreeMap<String, &Body> = blocks(policy, "dynamic")
        .map(|b| {
            let content = blocks(b.body(), "content").next().expect("content").body();
            (sid(content), b.body())
        })
        .collect();
    assert_eq!(
        kms.keys().cloned().collect::<BTreeSet<_>>(),
        set(["ReadEncryptedManifests", "EncryptExecutionData"])
    );
    for (name, dynamic) in &kms {
        assert_eq!(
            attr(dynamic, "for_each").expect("for_each").to_string(),
            "var.kms_key_arn == null ? [] : [var.kms_key_arn]",
            "{name} exists only with kms_key_arn"
        );
    }
    assert!(text.contains("actions   = [\"kms:Decrypt\"]"));
    assert!(text.contains("values   = [\"s3.${local.region}.amazonaws.com\"]"));
    assert!(text.contains("actions   = [\"kms:Decrypt\", \"kms:GenerateDataKey\"]"));
    assert!(text.contains("variable = \"kms:EncryptionContext:aws:states:stateMachineArn\""));
    assert!(text.contains("values   = [local.workflow_arn]"));
    assert!(text.contains(
        "resources = [aws_lambda_function.this.arn, \"${aws_lambda_function.this.arn}:*\"]"
    ));
    assert!(text.contains("*/workflow/*\"]"), "manifests only");
    assert!(text.contains("workflow_read_actions   = [\"s3:GetObject\"]"));
    // The schedule starts the workflow instead of the function when it is on.
    let main = file("terraform/main.tf");
    assert!(main.contains(
        "arn      = var.workflow ? aws_sfn_state_machine.workflow[0].arn : aws_lambda_function.this.arn"
    ));
    assert!(main.contains("actions   = [\"states:StartExecution\"]"));
}

/// Issue 26: the README's numbers of the demo Organization are the demo's.
#[test]
fn the_readme_describes_the_demo_organization_as_it_is() {
    let org: serde_json::Value = serde_json::from_str(&file("demo/org.json")).unwrap();
    let accounts = org["accounts"].as_array().unwrap();
    let users: Vec<&serde_json::Value> = accounts
        .iter()
        .flat_map(|a| a["users"].as_array().into_iter().flatten())
        .collect();
    let keys: usize = users
        .iter()
        .map(|u| u["keys"].as_array().map_or(0, Vec::len))
        .sum();
    let said = format!(
        "seeds `demo/org.json` ({} accounts, {} users, {} keys of",
        accounts.len(),
        users.len(),
        keys
    );
    assert!(
        file("README.md").replace('\n', " ").contains(&said),
        "README should say: {said}"
    );
}

#[test]
fn terraform_prints_the_doctor_command_to_run_after_apply() {
    let outputs = terraform("terraform/outputs.tf");
    let doctor = labelled(&outputs, "output", &["doctor_command"]);
    let value = attr(doctor.body(), "value").expect("a value").to_string();
    for part in [
        "aws lambda invoke",
        "aws_lambda_function.this.function_name",
        r#"--payload '{"doctor": true}'"#,
    ] {
        assert!(value.contains(part), "{part}: {value}");
    }
}
