//! The Step Functions workflow at scale (issue 24 item 7): the shipped
//! definition (`terraform/workflow.asl.json`, the module's defaults filled
//! in) interpreted as Step Functions runs it — tasks one after another,
//! Distributed Maps reading their items from the state bucket and running
//! `MaxConcurrency` children at once — each task the real binary
//! (`keywarden workflow --event -`), against the benchmark endpoint, which
//! serves the state bucket too. What is not local is modelled: each Lambda
//! invocation's start (`lambda_start`) and each state transition, a map
//! child's start included (`transition`). The interpreter covers what the
//! definition uses (Task with Parameters, ResultSelector, ResultPath `$` or
//! null, OutputPath; Map with ItemReader, ItemBatcher, ItemSelector); a
//! failed task fails the run (the bench expects none; Retry is not run).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use crate::server::Endpoint;

/// The bucket and prefix of the workflow's state (`state` setting).
pub const BUCKET: &str = "kw-bench-state";
pub const STATE: &str = "s3://kw-bench-state/keywarden";

/// How the workflow runs.
pub struct Driver {
    pub keywarden: PathBuf,
    /// The step's environment (the endpoint, credentials, settings).
    pub env: Vec<(String, String)>,
    pub endpoint: Arc<Endpoint>,
    pub lambda_start: Duration,
    pub transition: Duration,
    /// Where each step's log goes (BENCH_LOG_DIR), if kept.
    pub log_dir: Option<PathBuf>,
    pub steps: std::sync::atomic::AtomicU64,
    /// The run `plan` started (its `run` output).
    pub run: std::sync::Mutex<Option<Value>>,
    /// Steps that exited 3 (the run incomplete: accounts failed), by step.
    pub incomplete: std::sync::Mutex<Vec<String>>,
    /// When the execution started, and each invocation's step, start and
    /// end (seconds from it, the modelled start-up included).
    pub started: std::time::Instant,
    pub timeline: std::sync::Mutex<Vec<(String, f64, f64)>>,
}

/// Where a workflow day's time went, per kind of step.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Phase {
    pub step: String,
    pub invocations: usize,
    /// From the first invocation's start to the last one's end.
    pub first_start_s: f64,
    pub last_end_s: f64,
    /// The longest and the median invocation.
    pub longest_s: f64,
    pub median_s: f64,
}

impl Driver {
    /// The timeline summed up per kind of step, in the order they ran.
    pub fn phases(&self) -> Vec<Phase> {
        let timeline = self.timeline.lock().expect("not poisoned").clone();
        let mut order: Vec<String> = Vec::new();
        for (step, _, _) in &timeline {
            if !order.contains(step) {
                order.push(step.clone());
            }
        }
        order
            .into_iter()
            .map(|step| {
                let runs: Vec<&(String, f64, f64)> =
                    timeline.iter().filter(|t| t.0 == step).collect();
                let mut took: Vec<f64> = runs.iter().map(|t| t.2 - t.1).collect();
                took.sort_by(f64::total_cmp);
                Phase {
                    invocations: runs.len(),
                    first_start_s: runs.iter().map(|t| t.1).fold(f64::INFINITY, f64::min),
                    last_end_s: runs.iter().map(|t| t.2).fold(0.0, f64::max),
                    longest_s: took.last().copied().unwrap_or(0.0),
                    median_s: took.get(took.len() / 2).copied().unwrap_or(0.0),
                    step,
                }
            })
            .collect()
    }
}

/// The shipped definition with the module's variables filled in.
pub fn definition(accounts_per_batch: u32, scan: u32, mail: u32) -> anyhow::Result<Value> {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../terraform/workflow.asl.json"
    );
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("the workflow's definition, {file}"))?
        .replace(
            "${function_arn}",
            "arn:aws:lambda:us-east-1:100000000000:function:keywarden",
        )
        .replace("${accounts_per_batch}", &accounts_per_batch.to_string())
        .replace("${scan_concurrency}", &scan.to_string())
        .replace("${mail_concurrency}", &mail.to_string());
    if text.contains("${") {
        bail!("terraform/workflow.asl.json has a template variable the bench does not fill");
    }
    Ok(serde_json::from_str(&text)?)
}

/// `$`, `$.a.b` against `input`; `$$.Map.Item.Value` is the map item.
fn path(p: &str, input: &Value, item: Option<&Value>) -> anyhow::Result<Value> {
    if p == "$$.Map.Item.Value" {
        return item.cloned().context("$$.Map.Item.Value outside a map");
    }
    let rest = p.strip_prefix('$').with_context(|| format!("path {p}"))?;
    rest.split('.')
        .filter(|s| !s.is_empty())
        .try_fold(input.clone(), |v, k| {
            v.get(k)
                .cloned()
                .with_context(|| format!("States.Runtime: path {p} not found"))
        })
}

/// A payload template: `"k.$"` keys are paths, the rest literal.
fn resolve(template: &Value, input: &Value, item: Option<&Value>) -> anyhow::Result<Value> {
    Ok(match template {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                match k.strip_suffix(".$") {
                    Some(name) => {
                        let p = v.as_str().context("a path")?;
                        out.insert(name.to_owned(), path(p, input, item)?);
                    }
                    None => {
                        out.insert(k.clone(), resolve(v, input, item)?);
                    }
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

impl Driver {
    /// One Lambda invocation: the binary with the payload on stdin.
    async fn invoke(&self, payload: Value) -> anyhow::Result<Value> {
        let from = self.started.elapsed().as_secs_f64();
        let step = payload["step"].as_str().unwrap_or("?").to_owned();
        let result = self.invoke_inner(payload).await;
        let to = self.started.elapsed().as_secs_f64();
        self.timeline
            .lock()
            .expect("not poisoned")
            .push((step, from, to));
        result
    }

    async fn invoke_inner(&self, payload: Value) -> anyhow::Result<Value> {
        tokio::time::sleep(self.lambda_start).await;
        let n = self
            .steps
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let step = payload["step"].as_str().unwrap_or("?").to_owned();
        let stderr = match &self.log_dir {
            Some(dir) => std::fs::File::create(dir.join(format!("step-{n:05}-{step}.log")))?.into(),
            None => std::process::Stdio::piped(),
        };
        let mut child = tokio::process::Command::new(&self.keywarden)
            .args(["workflow", "--event", "-"])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("KEYWARDEN_STATE", STATE)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("run keywarden workflow")?;
        let mut stdin = child.stdin.take().context("stdin")?;
        stdin.write_all(payload.to_string().as_bytes()).await?;
        drop(stdin);
        let out = child.wait_with_output().await?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        match out.status.code() {
            // 3: the run is incomplete (accounts failed): the state machine
            // sees a failed task (the alarm); the bench goes on, and says so.
            Some(c @ (0 | 3)) => {
                let v: Value = serde_json::from_str(&stdout)
                    .with_context(|| format!("step {step} printed no JSON: {stdout}"))?;
                if c == 3 {
                    self.incomplete
                        .lock()
                        .expect("not poisoned")
                        .push(step.clone());
                }
                if step == "plan" {
                    *self.run.lock().expect("not poisoned") = Some(v["run"].clone());
                }
                Ok(v)
            }
            code => bail!(
                "step {step} failed ({code:?}): {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    /// One execution of `machine` on `input`.
    pub fn execute(
        self: &Arc<Self>,
        machine: Value,
        input: Value,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<Value>> + Send>> {
        let me = self.clone();
        Box::pin(async move {
            let states = &machine["States"];
            let mut name = machine["StartAt"].as_str().context("StartAt")?.to_owned();
            let mut input = input;
            loop {
                let state = states[&name].clone();
                tokio::time::sleep(me.transition).await;
                let output = match state["Type"].as_str() {
                    Some("Task") => me.task(&name, &state, &input).await?,
                    Some("Map") => {
                        me.map(&name, &state, &input).await?;
                        if state["ResultPath"] != Value::Null {
                            bail!("{name}: only ResultPath null is interpreted");
                        }
                        input.clone()
                    }
                    other => bail!("{name}: state type {other:?} is not interpreted"),
                };
                if state["End"] == json!(true) {
                    return Ok(output);
                }
                name = state["Next"].as_str().context("Next or End")?.to_owned();
                input = output;
            }
        })
    }

    async fn task(&self, name: &str, state: &Value, input: &Value) -> anyhow::Result<Value> {
        if state["Resource"] != "arn:aws:states:::lambda:invoke" {
            bail!("{name}: only lambda:invoke tasks are interpreted");
        }
        let params = resolve(&state["Parameters"], input, None)?;
        let payload = params.get("Payload").cloned().context("Payload")?;
        let result = json!({ "Payload": self.invoke(payload).await? });
        let result = match state.get("ResultSelector") {
            Some(sel) => resolve(sel, &result, None)?,
            None => result,
        };
        let output = match state.get("ResultPath") {
            None => result,
            Some(Value::String(p)) if p == "$" => result,
            Some(Value::Null) => input.clone(),
            Some(other) => bail!("{name}: ResultPath {other} is not interpreted"),
        };
        match state.get("OutputPath") {
            Some(Value::String(p)) => path(p, &output, None),
            _ => Ok(output),
        }
    }

    async fn map(self: &Arc<Self>, name: &str, state: &Value, input: &Value) -> anyhow::Result<()> {
        let reader = &state["ItemReader"];
        if reader["Resource"] != "arn:aws:states:::s3:getObject" {
            bail!("{name}: only an s3:getObject ItemReader is interpreted");
        }
        let at = resolve(&reader["Parameters"], input, None)?;
        let (bucket, key) = (
            at["Bucket"].as_str().context("Bucket")?,
            at["Key"].as_str().context("Key")?,
        );
        let bytes = self
            .endpoint
            .object(bucket, key)
            .with_context(|| format!("{name}: s3://{bucket}/{key} is not there"))?;
        let items: Vec<Value> = serde_json::from_slice(&bytes)?;
        let children: Vec<Value> = match state.get("ItemBatcher") {
            Some(b) => {
                let size = b["MaxItemsPerBatch"].as_u64().context("MaxItemsPerBatch")? as usize;
                let batch_input = resolve(&b["BatchInput"], input, None)?;
                items
                    .chunks(size)
                    .map(|c| json!({ "Items": c, "BatchInput": batch_input }))
                    .collect()
            }
            None => items
                .iter()
                .map(|item| match state.get("ItemSelector") {
                    Some(sel) => resolve(sel, input, Some(item)),
                    None => Ok(item.clone()),
                })
                .collect::<anyhow::Result<_>>()?,
        };
        let at_once = state["MaxConcurrency"].as_u64().unwrap_or(1).max(1) as usize;
        let slots = Arc::new(tokio::sync::Semaphore::new(at_once));
        let mut running = tokio::task::JoinSet::new();
        for child in children {
            let slot = slots.clone().acquire_owned().await?;
            let processor = state["ItemProcessor"].clone();
            let me = self.clone();
            running.spawn(async move {
                let r = me.execute(processor, child).await;
                drop(slot);
                r
            });
        }
        let mut failed = Vec::new();
        while let Some(done) = running.join_next().await {
            if let Err(e) = done? {
                failed.push(e.to_string());
            }
        }
        if !failed.is_empty() {
            bail!(
                "{name}: {} children failed, first: {}",
                failed.len(),
                failed[0]
            );
        }
        Ok(())
    }
}
