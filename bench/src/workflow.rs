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
    pub timeline: std::sync::Mutex<Vec<Invocation>>,
}

/// One step's invocation: when, and its process's peak RSS.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub step: String,
    pub from: f64,
    pub to: f64,
    pub rss_mib: f64,
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
    /// The largest peak RSS of one invocation (what `memory_size` must hold).
    pub peak_rss_mib: f64,
}

impl Driver {
    /// The timeline summed up per kind of step, in the order they ran.
    pub fn phases(&self) -> Vec<Phase> {
        let timeline = self.timeline.lock().expect("not poisoned").clone();
        let mut order: Vec<String> = Vec::new();
        for i in &timeline {
            if !order.contains(&i.step) {
                order.push(i.step.clone());
            }
        }
        order
            .into_iter()
            .map(|step| {
                let runs: Vec<&Invocation> = timeline.iter().filter(|t| t.step == step).collect();
                let mut took: Vec<f64> = runs.iter().map(|t| t.to - t.from).collect();
                took.sort_by(f64::total_cmp);
                Phase {
                    invocations: runs.len(),
                    first_start_s: runs.iter().map(|t| t.from).fold(f64::INFINITY, f64::min),
                    last_end_s: runs.iter().map(|t| t.to).fold(0.0, f64::max),
                    peak_rss_mib: runs.iter().map(|t| t.rss_mib).fold(0.0, f64::max),
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
        let (result, rss_mib) = match self.invoke_inner(payload).await {
            Ok((v, rss)) => (Ok(v), rss),
            Err(e) => (Err(e), 0.0),
        };
        let to = self.started.elapsed().as_secs_f64();
        self.timeline
            .lock()
            .expect("not poisoned")
            .push(Invocation {
                step,
                from,
                to,
                rss_mib,
            });
        result
    }

    /// The step's JSON output and its process's peak RSS (MiB: each step is
    /// its own Lambda, so its own memory). The peak is GNU time's (`%M`):
    /// a child forked from the bench itself would report at least the
    /// bench's own peak (the kernel carries the forking process's high-water
    /// mark through exec), and the bench holds the whole state bucket.
    async fn invoke_inner(&self, payload: Value) -> anyhow::Result<(Value, f64)> {
        tokio::time::sleep(self.lambda_start).await;
        let n = self
            .steps
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let step = payload["step"].as_str().unwrap_or("?").to_owned();
        let log = match &self.log_dir {
            Some(dir) => dir.join(format!("step-{n:05}-{step}.log")),
            None => std::env::temp_dir().join(format!(
                "keywarden-bench-step-{}-{n}.log",
                std::process::id()
            )),
        };
        let rss_file = log.with_extension("rss");
        let mut cmd = if std::path::Path::new(GNU_TIME).exists() {
            let mut c = std::process::Command::new(GNU_TIME);
            c.args(["-f", "%M", "-o"])
                .arg(&rss_file)
                .arg(&self.keywarden);
            c
        } else {
            std::process::Command::new(&self.keywarden)
        };
        cmd.args(["workflow", "--event", "-"])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("KEYWARDEN_STATE", STATE)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log)?);
        let event = payload.to_string();
        let (code, stdout) = tokio::task::spawn_blocking(move || run_step(cmd, &event))
            .await
            .context("the step's waiter")??;
        let stderr = std::fs::read_to_string(&log).unwrap_or_default();
        // GNU time's last line is the peak in KiB (a line before it says
        // how the command exited, when it did not exit 0).
        let rss_mib = std::fs::read_to_string(&rss_file)
            .ok()
            .and_then(|t| t.lines().last()?.trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0);
        let _ = std::fs::remove_file(&rss_file);
        if self.log_dir.is_none() {
            let _ = std::fs::remove_file(&log);
        }
        match code {
            // 3: the run is incomplete (accounts failed): the state machine
            // sees a failed task (the alarm); the bench goes on, and says so.
            c @ (0 | 3) => {
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
                Ok((v, rss_mib))
            }
            code => bail!("step {step} failed ({code}): {stdout} {stderr}"),
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

/// Where GNU time is (Debian's `time` package); without it no step's
/// peak RSS is measured (NaN).
const GNU_TIME: &str = "/usr/bin/time";

/// Runs one step's process to its end: its exit code and stdout.
fn run_step(mut cmd: std::process::Command, event: &str) -> anyhow::Result<(i32, String)> {
    use std::io::{Read, Write};
    let mut child = cmd.spawn().context("run keywarden workflow")?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(event.as_bytes())?;
    drop(stdin);
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .context("stdout")?
        .read_to_string(&mut stdout)?;
    let status = child.wait()?;
    Ok((status.code().unwrap_or(-1), stdout))
}
