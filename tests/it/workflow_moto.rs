//! The Step Functions workflow, end to end against moto: a local driver
//! interprets the shipped definition (terraform/workflow.asl.json: Task,
//! Distributed Map with ItemReader, ItemBatcher, BatchInput, ItemSelector,
//! ResultSelector, ResultPath, OutputPath) and runs every task as the real
//! binary's `keywarden workflow` step. (moto's ASL interpreter runs Lambda
//! tasks in Docker, which is not here.) The workflow's findings, messages
//! and ledger must equal a single invocation's of the same Organization,
//! day after day; a shard or a mail batch that never ran is named, never
//! lost; every step is safe to retry.

use crate::mail;
use crate::support;

use std::io::Write;
use std::process::Stdio;

use crate::support::{Moto, Seeded, NOW};
use keywarden::state::{Store, Version};
use serde_json::{json, Value};

/// What the function's role may do (the lists the infra tests hold the
/// Terraform role to), and GetCallerIdentity.
fn scanner_actions() -> Vec<&'static str> {
    use keywarden::aws::{iam, organizations, s3, ses, sts};
    [
        organizations::ORGANIZATIONS_ACTIONS,
        sts::STS_ACTIONS,
        ses::SES_ACTIONS,
        iam::IAM_ACTIONS,
        s3::S3_ACTIONS,
        &["sts:GetCallerIdentity"],
    ]
    .concat()
}

fn org_spec() -> Value {
    let mut spec: Value =
        serde_json::from_str(include_str!("../fixtures/org.json")).expect("fixture is JSON");
    spec["buckets"] = json!(["kw-state"]);
    spec["ses_identities"] = json!(["example.com"]);
    spec["scanner_actions"] = json!(scanner_actions());
    spec
}

/// The shipped definition with the module's template variables filled in.
fn definition(accounts_per_batch: u32, scan: u32, mail: u32) -> Value {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("terraform/workflow.asl.json"),
    )
    .expect("terraform/workflow.asl.json");
    let text = text
        .replace(
            "${function_arn}",
            "arn:aws:lambda:us-east-1:123456789012:function:keywarden",
        )
        .replace("${accounts_per_batch}", &accounts_per_batch.to_string())
        .replace("${scan_concurrency}", &scan.to_string())
        .replace("${mail_concurrency}", &mail.to_string());
    assert!(!text.contains("${"), "every template variable is filled");
    serde_json::from_str(&text).expect("the definition is JSON")
}

struct World {
    moto: Moto,
    seeded: Seeded,
    /// The day the next plan step runs as (`clock_override`: `--now` and
    /// the plan input's `now` cannot reach the S3 ledger).
    clock: std::cell::RefCell<Option<String>>,
    /// Every step's output, in order.
    outputs: std::cell::RefCell<Vec<Value>>,
}

const ENV: &[(&str, &str)] = &[
    ("KEYWARDEN_SENDER", "keywarden@example.com"),
    ("KEYWARDEN_SECURITY_RECIPIENTS", "security@example.com"),
    ("KEYWARDEN_MAX_SEND_RATE", "100"),
];

impl World {
    fn new() -> Self {
        let moto = Moto::start();
        let seeded = moto.seed(&org_spec());
        Self {
            moto,
            seeded,
            clock: Default::default(),
            outputs: Default::default(),
        }
    }

    fn creds(&self) -> (String, String) {
        self.seeded.scanner()
    }

    /// One single-invocation run (the CLI's notify, as the Lambda runs it).
    fn single(&self, state: &str, now: &str) -> (i32, Value) {
        let (ak, sk) = self.creds();
        let mut cmd = self.moto.keywarden((&ak, &sk));
        cmd.args(["notify", "--format", "json", "--state", state]);
        cmd.envs(ENV.iter().copied())
            .env("KEYWARDEN_CLOCK_OVERRIDE", now);
        let (code, stdout, stderr) = support::run(&mut cmd);
        assert!(code == 0 || code == 3, "{stderr}");
        (code, serde_json::from_str(&stdout).expect("a JSON report"))
    }

    /// One workflow step through the real binary; `Err` is what the state
    /// machine would see as the task's error (a close of an incomplete run
    /// included).
    fn step(&self, state: &str, event: &Value) -> Result<Value, String> {
        let (ak, sk) = self.creds();
        let mut cmd = self.moto.keywarden((&ak, &sk));
        cmd.args(["workflow", "--event", "-"])
            .env("KEYWARDEN_STATE", state)
            .envs(ENV.iter().copied())
            .envs(
                self.clock
                    .borrow()
                    .as_deref()
                    .map(|now| ("KEYWARDEN_CLOCK_OVERRIDE", now.to_owned())),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run keywarden workflow");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(event.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        match out.status.code() {
            Some(0) => {
                let output: Value = serde_json::from_str(&stdout).expect("a step prints JSON");
                self.outputs.borrow_mut().push(output.clone());
                Ok(output)
            }
            Some(3) => Err(format!("incomplete: {stdout}")),
            _ => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    }

    /// The state bucket as the scanner sees it (keys from the bucket's root).
    fn bucket<T>(&self, bucket: &str, f: impl AsyncFnOnce(Store) -> T) -> T {
        let (ak, sk) = self.creds();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let creds = aws_credential_types::Credentials::new(ak, sk, None, None, "test");
            let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .endpoint_url(&self.moto.endpoint)
                .region(aws_config::Region::new("us-east-1"))
                .credentials_provider(creds)
                .load()
                .await;
            f(Store::open(&format!("s3://{bucket}"), &sdk).unwrap()).await
        })
    }

    fn s3_json(&self, bucket: &str, key: &str) -> Value {
        let bytes = self.bucket(bucket, async |store| store.load(key).await.unwrap().0);
        serde_json::from_slice(&bytes.unwrap_or_else(|| panic!("s3://{bucket}/{key} exists")))
            .expect("JSON")
    }

    /// Every key under `prefix` of the state bucket.
    fn objects(&self, prefix: &str) -> Vec<String> {
        self.bucket("kw-state", async |store| {
            store.list(prefix).await.unwrap_or_default()
        })
    }
}

// ---------------------------------------------------------------------------
// The local driver: the subset of the Amazon States Language the definition
// uses, interpreted as Step Functions does.

/// `$`, `$.a.b` against `input`; `$$.Map.Item.Value` is the map item.
fn path(p: &str, input: &Value, item: Option<&Value>) -> Value {
    if p == "$$.Map.Item.Value" {
        return item.cloned().expect("a map item in this context");
    }
    let rest = p.strip_prefix('$').unwrap_or_else(|| panic!("path {p}"));
    rest.split('.')
        .filter(|s| !s.is_empty())
        .fold(input.clone(), |v, k| {
            v.get(k)
                .cloned()
                .unwrap_or_else(|| panic!("States.Runtime: path {p} not found in {input}"))
        })
}

/// A payload template: `"k.$"` keys are paths, the rest literal.
fn resolve(template: &Value, input: &Value, item: Option<&Value>) -> Value {
    match template {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| match k.strip_suffix(".$") {
                    Some(name) => (
                        name.to_owned(),
                        path(v.as_str().expect("a path"), input, item),
                    ),
                    None => (k.clone(), resolve(v, input, item)),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// One execution of `machine` on `input`; `invoke` is the Lambda task.
fn execute(
    world: &World,
    machine: &Value,
    input: Value,
    invoke: &mut dyn FnMut(Value) -> Result<Value, String>,
) -> Result<Value, String> {
    let states = &machine["States"];
    let mut name = machine["StartAt"].as_str().expect("StartAt").to_owned();
    let mut input = input;
    loop {
        let state = &states[&name];
        assert!(state.is_object(), "state {name} exists");
        let effective = match state["Type"].as_str().unwrap() {
            "Task" => {
                assert_eq!(state["Resource"], "arn:aws:states:::lambda:invoke");
                let params = resolve(&state["Parameters"], &input, None);
                let payload = match params.get("Payload") {
                    Some(p) => p.clone(),
                    None => panic!("{name}: a lambda:invoke task without Payload"),
                };
                let result = json!({ "Payload": invoke(payload)? });
                let result = match state.get("ResultSelector") {
                    Some(sel) => resolve(sel, &result, None),
                    None => result,
                };
                let output = match state.get("ResultPath") {
                    None => result,
                    Some(Value::String(p)) if p == "$" => result,
                    Some(Value::Null) => input.clone(),
                    Some(other) => panic!("{name}: ResultPath {other} is not interpreted"),
                };
                match state.get("OutputPath") {
                    Some(Value::String(p)) => path(p, &output, None),
                    _ => output,
                }
            }
            "Map" => {
                assert_eq!(
                    state["ItemProcessor"]["ProcessorConfig"]["Mode"],
                    "DISTRIBUTED"
                );
                let reader = &state["ItemReader"];
                assert_eq!(reader["Resource"], "arn:aws:states:::s3:getObject");
                assert_eq!(reader["ReaderConfig"]["InputType"], "JSON");
                let at = resolve(&reader["Parameters"], &input, None);
                let items =
                    world.s3_json(at["Bucket"].as_str().unwrap(), at["Key"].as_str().unwrap());
                let items = items
                    .as_array()
                    .expect("the manifest is a JSON array")
                    .clone();
                let children: Vec<Value> = match state.get("ItemBatcher") {
                    Some(b) => {
                        let size = b["MaxItemsPerBatch"].as_u64().unwrap() as usize;
                        let batch_input = resolve(&b["BatchInput"], &input, None);
                        items
                            .chunks(size)
                            .map(|c| json!({ "Items": c, "BatchInput": batch_input }))
                            .collect()
                    }
                    None => items
                        .iter()
                        .map(|item| match state.get("ItemSelector") {
                            Some(sel) => resolve(sel, &input, Some(item)),
                            None => item.clone(),
                        })
                        .collect(),
                };
                let tolerated = state["ToleratedFailurePercentage"].as_u64().unwrap_or(0);
                let mut failed = 0;
                for child in &children {
                    if execute(world, &state["ItemProcessor"], child.clone(), invoke).is_err() {
                        failed += 1;
                    }
                }
                if failed * 100 > tolerated as usize * children.len() {
                    return Err(format!("States.ExceedToleratedFailureThreshold in {name}"));
                }
                assert_eq!(
                    state["ResultPath"],
                    Value::Null,
                    "{name} discards its results"
                );
                input.clone()
            }
            other => panic!("state type {other} is not interpreted"),
        };
        if state["End"] == json!(true) {
            return Ok(effective);
        }
        name = state["Next"].as_str().expect("Next or End").to_owned();
        input = effective;
    }
}

/// Runs the workflow once with every step through the real binary; `fail`
/// decides which task invocations fail (as a crashed Lambda would).
fn workflow(
    world: &World,
    state: &str,
    input: Value,
    accounts_per_batch: u32,
    fail: &dyn Fn(&Value) -> bool,
) -> (Result<Value, String>, Vec<Value>) {
    let machine = definition(accounts_per_batch, 3, 2);
    // The day to run as travels as the test-only setting, not in the input.
    let mut input = input;
    *world.clock.borrow_mut() = input
        .as_object_mut()
        .and_then(|o| o.remove("now"))
        .and_then(|v| v.as_str().map(str::to_owned));
    let mut events = Vec::new();
    let mut invoke = |payload: Value| {
        events.push(payload.clone());
        if fail(&payload) {
            return Err("Lambda.Unknown: the function crashed".to_owned());
        }
        world.step(state, &payload)
    };
    let result = execute(world, &machine, input, &mut invoke);
    (result, events)
}

// ---------------------------------------------------------------------------

/// What must be equal between the two: findings, accounts, summary, and
/// every notification but SES's message id.
fn comparable(report: &Value) -> Value {
    let mut notes = report["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for n in &mut notes {
        n.as_object_mut().unwrap().remove("message_id");
    }
    notes.sort_by_key(|n| n.to_string());
    json!({
        "findings": report["findings"],
        "resolved": report["resolved"],
        "accounts": report["accounts"],
        "summary": report["summary"],
        "exempt": report["exempt"],
        "errors": report["errors"],
        "notifications": notes,
    })
}

/// The ledger with SES's message ids blanked (moto makes new ones per send).
fn ledger(world: &World, prefix: &str) -> Value {
    let org = world.objects(prefix);
    let key = org
        .iter()
        .find(|k| k.ends_with("/ledger.json") && !k.contains("/workflow/"))
        .unwrap_or_else(|| panic!("a ledger under {prefix}: {org:?}"))
        .clone();
    let mut ledger = world.s3_json("kw-state", &key);
    blank(&mut ledger, "message_id");
    ledger
}

fn blank(v: &mut Value, field: &str) {
    match v {
        Value::Object(map) => {
            if map.contains_key(field) {
                map.insert(field.to_owned(), Value::Null);
            }
            map.values_mut().for_each(|v| blank(v, field));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| blank(v, field)),
        _ => {}
    }
}

/// The archived report of the run at `now` under `prefix`.
fn archived(world: &World, prefix: &str, now: &str) -> Value {
    let stem = now
        .parse::<jiff::Timestamp>()
        .unwrap()
        .strftime("%Y-%m-%dT%H%M%SZ")
        .to_string();
    let org = world.objects(prefix);
    let key = org
        .iter()
        .find(|k| k.contains("/reports/") && k.ends_with(&format!("{stem}.json")))
        .unwrap_or_else(|| panic!("the report of {now} under {prefix}: {org:?}"))
        .clone();
    world.s3_json("kw-state", &key)
}

/// Sent mail since the `from`-th message, as what a person gets:
/// recipients, subject, both parts and the attachments (the MIME boundaries
/// are random; the Message-ID and Date come from the run).
fn mail_since(world: &World, from: usize) -> Vec<String> {
    let mut out: Vec<String> = mail::sent(&world.moto)[from..]
        .iter()
        .map(|m| {
            let message_id = m
                .raw_headers
                .lines()
                .find(|l| l.starts_with("Message-ID:"))
                .unwrap_or_default()
                .to_owned();
            format!(
                "{:?}\n{}\n{message_id}\n{}\n{}\n{:?}",
                m.to, m.subject, m.text, m.html, m.attachments
            )
        })
        .collect();
    out.sort();
    out
}

fn mail_count(world: &World) -> usize {
    world.moto.data()["ses"]["RawMessage"]
        .as_array()
        .map_or(0, Vec::len)
}

#[test]
fn the_workflow_equals_a_single_invocation_day_after_day() {
    let world = World::new();
    let days = [NOW, "2026-11-30T00:00:00Z", "2026-12-06T00:00:00Z"];
    for now in days {
        let before = mail_count(&world);
        let (code, _) = world.single("s3://kw-state/single", now);
        let single_mail = mail_since(&world, before);
        let middle = mail_count(&world);
        let (result, events) = workflow(
            &world,
            "s3://kw-state/flow",
            json!({ "now": now, "source": "keywarden.schedule" }),
            2,
            &|_| false,
        );
        let flow_mail = mail_since(&world, middle);
        let shards = events.iter().filter(|e| e["step"] == "shard").count();
        assert!(shards >= 2, "the scan ran in several shards: {shards}");
        // The plan wrote each batch's share of the ledger; every shard read
        // its own, not the ledger.
        let run = &events.iter().find(|e| e["step"] == "shard").unwrap()["run"];
        let memories = world.objects(&format!(
            "flow/{}/workflow/{}/memory",
            run["organization"].as_str().unwrap(),
            run["id"].as_str().unwrap()
        ));
        assert_eq!(memories.len(), shards, "{now}: {memories:?}");
        let outputs = world.outputs.take();
        let sources: Vec<&Value> = outputs
            .iter()
            .filter(|o| o.get("memory").is_some())
            .map(|o| &o["memory"])
            .collect();
        assert_eq!(
            sources.len(),
            shards,
            "{now}: every shard says where its memory came from"
        );
        assert!(sources.iter().all(|m| *m == "batch"), "{now}: {sources:?}");
        assert!(
            events
                .iter()
                .all(|e| e["step"] != "shard" || e["accounts"].as_array().unwrap().len() <= 2),
            "ItemBatcher's batch size is kept"
        );
        match code {
            0 => assert!(result.is_ok(), "{result:?}"),
            _ => assert!(
                result.as_ref().is_err_and(|e| e.starts_with("incomplete")),
                "{result:?}"
            ),
        }
        assert!(!single_mail.is_empty(), "{now}: the single run sent mail");
        assert_eq!(
            single_mail, flow_mail,
            "{now}: the same messages, byte for byte"
        );
        assert_eq!(
            comparable(&archived(&world, "single", now)),
            comparable(&archived(&world, "flow", now)),
            "{now}: the same findings, accounts and notifications"
        );
        assert_eq!(
            ledger(&world, "single"),
            ledger(&world, "flow"),
            "{now}: the same ledger"
        );
    }
}

/// The shard event whose batch holds the management account.
fn holds_management(event: &Value) -> bool {
    event["step"] == "shard"
        && event["accounts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["name"] == "management"))
}

#[test]
fn a_shard_or_mail_batch_that_never_ran_is_named_and_every_step_is_safe_to_retry() {
    let world = World::new();
    let state = "s3://kw-state/flow";
    // The shard holding the management account crashes every time, and so
    // does every mail batch.
    let (result, events) = workflow(&world, state, json!({ "now": NOW }), 2, &|e| {
        holds_management(e) || e["step"] == "deliver"
    });
    let err = result.expect_err("an incomplete run fails the execution (the alarm)");
    let summary: Value = serde_json::from_str(err.strip_prefix("incomplete: ").expect(&err))
        .expect("the run summary");
    let failed: Vec<&Value> = summary["failed_accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["error"]["code"] == "ShardNotFinished")
        .collect();
    let crashed = events.iter().find(|e| holds_management(e)).unwrap();
    let crashed_ids: Vec<&Value> = crashed["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["id"])
        .collect();
    assert_eq!(failed.len(), crashed_ids.len(), "{summary}");
    for f in &failed {
        assert!(crashed_ids.contains(&&f["account_id"]), "{f}");
        assert!(
            f["error"]["message"]
                .as_str()
                .unwrap()
                .contains("shard of the workflow did not finish"),
            "{f}"
        );
    }
    // No mail batch ran: every owner is named as not reached; the digest went out.
    let notes = summary["notifications"].as_array().unwrap();
    let owners: Vec<&Value> = notes.iter().filter(|n| n["kind"] == "owner").collect();
    assert!(!owners.is_empty());
    assert!(owners.iter().all(|n| n["outcome"] == "failed"
        && n["error"]
            .as_str()
            .unwrap()
            .contains("delivery batch of the workflow did not finish")));
    let mail = mail::sent(&world.moto);
    assert_eq!(mail.len(), 1, "only the digest was sent");
    assert_eq!(mail[0].to, vec!["security@example.com".to_owned()]);
    assert!(
        mail[0]
            .html
            .contains("delivery batch of the workflow did not finish"),
        "the digest names them"
    );
    assert!(
        crashed_ids
            .iter()
            .all(|id| mail[0].html.contains(id.as_str().unwrap())),
        "the digest names the accounts not scanned"
    );

    // Retries: each step again finds its file and does not act twice.
    let run = events.iter().find(|e| e["step"] == "finish").unwrap()["run"].clone();
    let shard = events
        .iter()
        .find(|e| e["step"] == "shard" && !holds_management(e))
        .unwrap();
    let again = world.step(state, shard).unwrap();
    assert!(again["accounts"].as_u64().unwrap() >= 1, "{again}");
    let sent_before = mail_count(&world);
    world
        .step(state, &json!({"step": "finish", "run": run}))
        .unwrap();
    let close = world.step(state, &json!({"step": "close", "run": run}));
    assert!(
        close.is_err_and(|e| e.starts_with("incomplete")),
        "still the same incomplete run"
    );
    assert_eq!(
        mail_count(&world),
        sent_before,
        "a retried finish or close sends nothing again"
    );

    // The next day's run tells the owners (nobody was recorded as told).
    let (result, _) = workflow(
        &world,
        state,
        json!({ "now": "2026-11-30T00:00:00Z" }),
        2,
        &|_| false,
    );
    assert!(
        result.is_ok() || result.as_ref().is_err_and(|e| e.starts_with("incomplete")),
        "{result:?}"
    );
    let day2 = mail::sent(&world.moto);
    let told: Vec<&String> = day2[sent_before..].iter().flat_map(|m| &m.to).collect();
    for owner in &owners {
        let who = owner["recipients"][0].as_str().unwrap().to_owned();
        assert!(
            told.contains(&&who),
            "{who}, not reached yesterday, is told today: {told:?}"
        );
    }
}

/// Issue 22 item 1: editing a mail batch between `finish` and `deliver`
/// made `deliver` send with any From, Reply-To and recipients. `deliver`
/// takes From and Reply-To from the settings again and refuses a message
/// addressed to anyone but its own recipient, or outside the allowed domains.
#[test]
fn deliver_rebuilds_the_sender_and_refuses_a_tampered_recipient() {
    let world = World::new();
    let state = "s3://kw-state/flow";
    let tamper = |event: &Value| {
        if event["step"] != "deliver" {
            return false;
        }
        let key = format!("flow/{}", event["batch"]["key"].as_str().unwrap());
        world.bucket("kw-state", async |store| {
            let (bytes, version) = store.load(&key).await.unwrap();
            let mut batch: Value = serde_json::from_slice(&bytes.unwrap()).unwrap();
            for (i, out) in batch.as_array_mut().unwrap().iter_mut().enumerate() {
                let recipient = out["recipient"].clone();
                let m = &mut out["message"]["Ok"];
                m["from"] = json!("attacker@evil.example");
                m["reply_to"] = json!(["attacker@evil.example"]);
                if i == 0 {
                    m["to"] = json!([recipient, "victim@outside.example"]);
                }
                if i == 1 {
                    out["recipient"] = json!("x@outside.example");
                    out["message"]["Ok"]["to"] = json!(["x@outside.example"]);
                }
            }
            store
                .save(&key, serde_json::to_vec(&batch).unwrap(), &version)
                .await
                .unwrap();
        });
        false
    };
    let before = mail_count(&world);
    let (result, _) = workflow(&world, state, json!({ "now": NOW }), 2, &tamper);
    let err = result.expect_err("refused messages make the run incomplete");
    let summary: Value =
        serde_json::from_str(err.strip_prefix("incomplete: ").expect(&err)).unwrap();
    let refused: Vec<&Value> = summary["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| {
            n["error"]
                .as_str()
                .is_some_and(|e| e.contains("does not verify"))
        })
        .collect();
    assert!(refused.len() >= 2, "{summary:#}");
    let mails = &mail::sent(&world.moto)[before..];
    assert!(!mails.is_empty());
    for m in mails {
        assert!(
            m.to.iter().all(|t| t.ends_with("@example.com")),
            "mailed outside the allowed domains: {:?}",
            m.to
        );
        let headers = m.raw_headers.to_ascii_lowercase();
        assert!(!headers.contains("evil.example"), "{}", m.raw_headers);
        assert!(
            headers.contains("from: keywarden@example.com")
                || headers.contains("<keywarden@example.com>"),
            "{}",
            m.raw_headers
        );
    }
}

#[test]
fn the_workflow_needs_its_files_in_s3_and_rejects_a_bad_event_by_name() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let err = world
        .step(
            dir.path().to_str().unwrap(),
            &json!({"step": "plan", "input": {}}),
        )
        .unwrap_err();
    assert!(err.contains("keeps its files in S3"), "{err}");
    let err = world
        .step(
            "s3://kw-state/flow",
            &json!({"step": "plan", "input": {"accounts": ["12"]}}),
        )
        .unwrap_err();
    assert!(err.contains("input.accounts"), "{err}");
    // Issue 22 item 7: a workflow run and any other delivering run exclude
    // each other: plan fails naming the lease's holder, and sends nothing.
    let dry = world
        .step(
            "s3://kw-state/flow",
            &json!({"step": "plan", "input": {"dry_run": true}}),
        )
        .unwrap();
    let org = dry["run"]["organization"].as_str().unwrap().to_owned();
    world.bucket("kw-state", async |store| {
        let lease = json!({"holder": "keywarden 0.1.0 (pid 4242 on ci-runner-7)",
                           "since": "2026-11-29T00:00:00Z", "expires": "2099-01-01T00:00:00Z"});
        store
            .save(
                &format!("flow/{org}/lease.json"),
                serde_json::to_vec(&lease).unwrap(),
                &Version::Absent,
            )
            .await
            .unwrap();
    });
    let err = world
        .step("s3://kw-state/flow", &json!({"step": "plan", "input": {}}))
        .unwrap_err();
    assert!(err.contains("pid 4242 on ci-runner-7"), "{err}");
    world.bucket("kw-state", async |store| {
        store
            .release_lease_if(&format!("flow/{org}"), |_| true)
            .await;
    });

    // Issue 22 item 3: whoever can start an execution cannot pick its clock.
    let err = world
        .step(
            "s3://kw-state/flow",
            &json!({"step": "plan", "input": {"now": "2030-01-01T00:00:00Z"}}),
        )
        .unwrap_err();
    assert!(
        err.contains("input.now") && err.contains("refused"),
        "{err}"
    );
    let err = world
        .step("s3://kw-state/flow", &json!({"step": "scan-everything"}))
        .unwrap_err();
    assert!(
        err.contains("workflow step's event") && err.contains("scan-everything"),
        "{err}"
    );
}

#[test]
fn the_definition_chains_every_step_and_reads_what_the_step_before_wrote() {
    let machine = definition(100, 8, 4);
    let mut order = Vec::new();
    let mut name = machine["StartAt"].as_str().unwrap().to_owned();
    loop {
        order.push(name.clone());
        let s = &machine["States"][&name];
        if s["End"] == json!(true) {
            break;
        }
        name = s["Next"].as_str().unwrap().to_owned();
    }
    assert_eq!(order, ["Plan", "Scan", "Finish", "Deliver", "Close"]);
    let states = &machine["States"];
    assert_eq!(
        states["Scan"]["ItemReader"]["Parameters"]["Key.$"],
        "$.manifest.Key"
    );
    assert_eq!(
        states["Deliver"]["ItemReader"]["Parameters"]["Key.$"],
        "$.mail.Key"
    );
    assert_eq!(states["Scan"]["ItemBatcher"]["MaxItemsPerBatch"], 100);
    assert_eq!(states["Scan"]["MaxConcurrency"], 8);
    assert_eq!(
        states["Scan"]["ItemProcessor"]["States"]["Shard"]["Parameters"]["Payload"]["shards"], 8,
        "each shard knows how many share the budgets"
    );
    assert_eq!(states["Deliver"]["MaxConcurrency"], 4);
    assert_eq!(
        states["Deliver"]["ItemSelector"]["senders"], 4,
        "each batch takes its share of the SES rate"
    );
    for map in ["Scan", "Deliver"] {
        assert_eq!(
            states[map]["ToleratedFailurePercentage"], 100,
            "{map}: a failed child is named by the next step, not fatal"
        );
    }
}
