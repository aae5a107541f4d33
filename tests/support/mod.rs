//! Test harness: a real moto server (tools/moto_server.py) on a free
//! loopback port, the org seeder, and the real `keywarden` binary.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

pub const NOW: &str = "2026-11-29T00:00:00Z";

/// The repository root (this file is included by the bench crate too).
fn root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if here.join("tools/moto_server.py").exists() {
        here
    } else {
        here.parent().map(PathBuf::from).unwrap_or(here)
    }
}

/// The virtualenv's Python (KEYWARDEN_PYTHON overrides it).
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("KEYWARDEN_PYTHON") {
        return PathBuf::from(p);
    }
    let p = root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/test (it creates the virtualenv with moto) or set KEYWARDEN_PYTHON",
        p.display()
    );
    p
}

/// A moto server for one test; killed on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// With these environment variables for moto (e.g.
    /// `MOTO_IAM_LOAD_MANAGED_POLICIES=true`: AWS's managed policies exist).
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(python())
            .arg(root().join("tools/moto_server.py"))
            .envs(env.iter().copied())
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tools/moto_server.py");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the port line");
        let port = line
            .trim()
            .strip_prefix("KEYWARDEN_MOTO_PORT=")
            .unwrap_or_else(|| panic!("moto launcher said {line:?}"))
            .to_owned();
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Seeds an org from a spec (see tools/seed_org.py) relative to NOW.
    pub fn seed(&self, spec: &Value) -> Seeded {
        let mut child = Command::new(python())
            .arg(root().join("tools/seed_org.py"))
            .args(["--endpoint", &self.endpoint, "--now", NOW])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the seeder");
        serde_json::to_writer(child.stdin.take().expect("stdin"), spec).expect("write spec");
        let out = child.wait_with_output().expect("seeder finished");
        assert!(
            out.status.success(),
            "seeder failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Seeded(serde_json::from_slice(&out.stdout).expect("seeder output is JSON"))
    }

    /// POSTs to one of the launcher's /_keywarden/ hooks.
    pub fn hook(&self, path: &str, body: &Value) {
        let status = Command::new(python())
            .args([
                "-c",
                "import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method='POST', headers={'Content-Type': 'application/json'})).read()",
                &format!("{}{path}", self.endpoint),
                &body.to_string(),
            ])
            .status()
            .expect("run the hook");
        assert!(status.success(), "hook {path} failed");
    }

    /// moto's recorded state (`GET /moto-api/data.json`).
    pub fn data(&self) -> Value {
        let out = Command::new(python())
            .args([
                "-c",
                "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())",
                &format!("{}/moto-api/data.json", self.endpoint),
            ])
            .output()
            .expect("fetch moto data");
        serde_json::from_slice(&out.stdout).expect("moto data is JSON")
    }

    /// The keywarden binary, pointed at this server with the given credentials.
    pub fn keywarden(&self, creds: (&str, &str)) -> Command {
        let mut cmd = Command::new(keywarden_bin());
        isolate(&mut cmd);
        cmd.env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", creds.0)
            .env("AWS_SECRET_ACCESS_KEY", creds.1);
        cmd
    }
}

/// The keywarden binary: cargo's for this package's tests, else the one
/// next to the running test (other workspace members' tests).
pub fn keywarden_bin() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_keywarden") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()
            .ok()
            .and_then(|t| t.parent()?.parent().map(|d| d.join("keywarden")))
            .expect("the test binary lives in target/<profile>/deps"),
    }
}

/// A keywarden command with no ambient AWS or keywarden configuration.
pub fn isolate(cmd: &mut Command) {
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("KEYWARDEN_") {
            cmd.env_remove(k);
        }
    }
    // The CLI keeps its ledger under XDG_STATE_HOME by default: each command
    // gets a fresh one unless the test passes --state or --no-state.
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let state = std::env::temp_dir().join(format!(
        "keywarden-test-state-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    cmd.env("XDG_STATE_HOME", state);
    cmd.env("AWS_CONFIG_FILE", "/nonexistent/keywarden-test")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/keywarden-test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true");
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the seeder created.
pub struct Seeded(pub Value);

impl Seeded {
    pub fn account(&self, name: &str) -> String {
        self.0["accounts"][name]
            .as_str()
            .unwrap_or_else(|| panic!("no account {name}"))
            .to_owned()
    }
    pub fn key(&self, account: &str, user: &str, index: usize) -> String {
        self.0["keys"][format!("{account}/{user}/{index}")]
            .as_str()
            .unwrap_or_else(|| panic!("no key {account}/{user}/{index}"))
            .to_owned()
    }
    pub fn ou(&self, path: &str) -> String {
        self.0["ous"][path]
            .as_str()
            .unwrap_or_else(|| panic!("no OU {path}"))
            .to_owned()
    }
    /// Account id → the spec's account name.
    pub fn names(&self) -> std::collections::BTreeMap<String, String> {
        self.0["accounts"]
            .as_object()
            .expect("accounts map")
            .iter()
            .map(|(name, id)| (id.as_str().expect("an account id").to_owned(), name.clone()))
            .collect()
    }
    pub fn scanner(&self) -> (String, String) {
        let s = &self.0["scanner"];
        (
            s["access_key_id"]
                .as_str()
                .expect("scanner user seeded")
                .to_owned(),
            s["secret_access_key"]
                .as_str()
                .expect("scanner user seeded")
                .to_owned(),
        )
    }
}

/// Runs a command; returns (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run keywarden");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

impl Moto {
    /// GETs one of the launcher's /_keywarden/ hooks.
    pub fn hook_get(&self, path: &str) -> Value {
        let out = Command::new(python())
            .args([
                "-c",
                "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())",
                &format!("{}{path}", self.endpoint),
            ])
            .output()
            .expect("run the hook");
        serde_json::from_slice(&out.stdout).expect("hook answers JSON")
    }
}
