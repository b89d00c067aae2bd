//! Node.js scripts of `protocol/`: the locked npm packages installed once per test run (`npm ci`
//! when `protocol/node_modules` is missing or stale) and a way to run a script with a deadline.

use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

/// Longest `npm ci` may take.
const NPM_LIMIT: Duration = Duration::from_secs(300);

pub fn protocol_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol")
}

/// Runs `command` to its end (no stdin), killing it after `limit`.
pub fn output_within(command: &mut Command, limit: Duration) -> std::io::Result<Output> {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id().to_string();
    let (done, finished) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || {
        if let Err(RecvTimeoutError::Timeout) = finished.recv_timeout(limit) {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    });
    let output = child.wait_with_output();
    let _ = done.send(());
    let _ = watchdog.join();
    output
}

/// Whether every package in the lockfile is installed at its locked version.
fn installed(dir: &Path) -> bool {
    let read = |path: PathBuf| -> Option<Json> {
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
    };
    let Some(lock) = read(dir.join("package-lock.json")) else {
        return false;
    };
    let Some(packages) = lock["packages"].as_object() else {
        return false;
    };
    packages
        .iter()
        .filter(|(path, _)| path.starts_with("node_modules/"))
        .all(|(path, locked)| {
            read(dir.join(path).join("package.json"))
                .is_some_and(|installed| installed["version"] == locked["version"])
        })
}

/// Installs the locked npm packages once per test run; fails with a readable reason.
pub fn npm_packages() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let dir = protocol_dir();
        if installed(&dir) {
            return Ok(());
        }
        let out = output_within(
            Command::new("npm")
                .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
                .current_dir(&dir),
            NPM_LIMIT,
        )
        .map_err(|e| {
            format!(
                "cannot run npm ({e}): this test needs Node.js 18+ and npm on PATH \
                 (Debian: apt-get install nodejs npm) to install protocol/package-lock.json"
            )
        })?;
        if !out.status.success() || !installed(&dir) {
            return Err(format!(
                "`npm ci` in {} failed ({}):\n{}",
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    });
    if let Err(why) = ready {
        panic!("{why}");
    }
}

/// What a script printed, one JSON object per line and step, with everything to show when a
/// step is missing or wrong.
pub struct Steps {
    /// The lines, in order.
    pub lines: Vec<Json>,
    /// The script's and the router's output.
    pub context: String,
}

impl Steps {
    /// The line of `step`; fails with the context.
    pub fn step(&self, step: &str) -> &Json {
        self.lines
            .iter()
            .find(|line| line["step"] == step)
            .unwrap_or_else(|| panic!("no step {step:?}\n{}", self.context))
    }
}
