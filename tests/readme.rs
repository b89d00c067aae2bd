//! README.md, followed as a newcomer would: its commands run exactly as written (with only the
//! port chosen by the test), on the release build they ask for.

mod common;

use common::binary::Log;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// How long the first `cargo run --release` may take: a release build from a clean clone.
const BUILD_LIMIT: Duration = Duration::from_secs(20 * 60);

/// The most a lean release binary may weigh (with debug info it was 62 MB).
const MAX_BINARY_BYTES: u64 = 25 * 1024 * 1024;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).expect("README.md")
}

/// The indented code blocks of the section headed `## {title}`, each as its lines.
fn blocks(readme: &str, title: &str) -> Vec<Vec<String>> {
    let heading = format!("## {title}");
    let section: Vec<&str> = readme
        .lines()
        .skip_while(|l| l.trim_end() != heading)
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .collect();
    assert!(!section.is_empty(), "README.md has no section {heading:?}");
    let mut blocks = Vec::new();
    let mut current: Vec<String> = Vec::new();
    for line in section {
        match line.strip_prefix("    ") {
            Some(code) => current.push(code.to_owned()),
            None if line.trim().is_empty() && !current.is_empty() => {}
            None => {
                if !current.is_empty() {
                    blocks.push(std::mem::take(&mut current));
                }
            }
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    blocks
}

/// A command line without shell syntax, as its words.
fn words(line: &str) -> Vec<&str> {
    assert!(
        !line.contains(['$', '\'', '"', '|', '&', ';']),
        "not a plain command: {line}"
    );
    line.split_whitespace().collect()
}

/// Set by `cargo test` for the test itself, never in a newcomer's shell.
fn set_by_cargo_test(name: &str) -> bool {
    name == "CARGO"
        || name == "OUT_DIR"
        || [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_PRIMARY_",
            "CARGO_TARGET_TMPDIR",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// A command run in the repository, like a newcomer in a fresh clone, on a free port.
fn in_repo(program: &str, port: u16) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_test) {
            command.env_remove(name);
        }
    }
    command
        .current_dir(root())
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env_remove("RUST_LOG")
        .env_remove("JWT_SECRET");
    command
}

/// `script` run by bash, `set -e`, in the repository; what it printed.
fn bash(script: &str, port: u16, envs: &[(&str, &str)]) -> Output {
    let out = in_repo("bash", port)
        .arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .envs(envs.iter().copied())
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{script}\nfailed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Starts `command` (a router under `cargo run`) and waits until it listens.
fn until_listening(command: &mut Command) -> (Child, Log) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cargo runs");
    let mut log = Log::read(child.stderr.take().expect("piped"));
    if log
        .wait_for(BUILD_LIMIT, |l| l.contains("presence-router listening"))
        .is_none()
    {
        let _ = child.kill();
        panic!("the router did not start:\n{}", log.text());
    }
    (child, log)
}

/// SIGTERM, then the exit status: the router stops cleanly.
fn stop(mut child: Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "the router exited with {exit}");
}

/// A bulk reply with its `timestamp` and `lastSeen` values blanked, to compare with a sample.
fn shape(reply: &str) -> String {
    let mut out = String::new();
    let mut rest = reply.trim();
    while let Some(at) = ["\"timestamp\":", "\"lastSeen\":"]
        .iter()
        .filter_map(|key| rest.find(key).map(|i| i + key.len()))
        .min()
    {
        out.push_str(&rest[..at]);
        rest = rest[at..].trim_start_matches(|c: char| c.is_ascii_digit());
        out.push('N');
    }
    out.push_str(rest);
    out
}

/// The two commands are the ones CI runs, `cargo run` resolves to the router, `--dev` starts
/// it and its curl line answers; "Use it" works line by line and answers what it says; the
/// release binary is lean.
#[test]
fn a_newcomer_can_follow_the_readme() {
    let readme = readme();
    let two = blocks(&readme, "The two commands");
    assert_eq!(
        two,
        [["cargo run --release -- --dev"], ["cargo test --locked"]],
        "the two commands"
    );
    let ci = std::fs::read_to_string(root().join(".ci/run")).expect(".ci/run");
    assert_eq!(
        ci.lines().rev().find(|l| !l.trim().is_empty()),
        Some(two[1][0].as_str()),
        ".ci/run runs the README's test command"
    );

    // The first command, as its words: it builds and starts the router, which prints tokens
    // and a curl line for the port it listens on.
    let port = common::free_port();
    let run = words(&two[0][0]);
    let (mut dev, _log) = until_listening(in_repo(run[0], port).args(&run[1..]));
    let mut printed = String::new();
    {
        use std::io::BufRead;
        let mut stdout = std::io::BufReader::new(dev.stdout.take().expect("piped"));
        while !printed.contains("-d '") {
            assert!(
                stdout.read_line(&mut printed).expect("stdout") > 0,
                "{printed}"
            );
        }
    }
    let curl: String = printed
        .lines()
        .skip_while(|l| !l.starts_with("curl "))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(curl.contains(&format!("127.0.0.1:{port}/")), "{printed}");
    let reply = bash(&curl, port, &[]);
    let reply = String::from_utf8_lossy(&reply.stdout);
    assert!(
        reply.starts_with(r#"{"success":true,"users":[{"userId":"driver-1","status":"offline""#),
        "{reply}"
    );
    stop(dev);

    // "Use it": the exports, the router in the background, then the rest in one shell.
    let use_it = blocks(&readme, "Use it");
    let (script, answer) = (&use_it[0], &use_it[1]);
    let mut envs: Vec<(String, String)> = Vec::new();
    let mut rest = Vec::new();
    let mut background = None;
    for line in script {
        if let Some(assignment) = line.strip_prefix("export ") {
            for pair in assignment.split_whitespace() {
                let (k, v) = pair.split_once('=').expect("NAME=value");
                envs.push((k.to_owned(), v.to_owned()));
            }
        } else if let Some(command) = line.strip_suffix(" &") {
            background = Some(command.to_owned());
        } else {
            rest.push(line.replace("127.0.0.1:3000", &format!("127.0.0.1:{port}")));
        }
    }
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let background = background.expect("Use it starts the router in the background");
    let run = words(&background);
    let (router, _log) = until_listening(
        in_repo(run[0], port)
            .args(&run[1..])
            .envs(envs.iter().copied()),
    );
    let reply = bash(&rest.join("\n"), port, &envs);
    let reply = String::from_utf8_lossy(&reply.stdout);
    assert_eq!(shape(&reply), shape(&answer.join("")), "Use it's answer");

    // Its checktoken line, with the token of the script.
    let check = use_it
        .iter()
        .find(|b| b.iter().any(|l| l.contains("checktoken")))
        .expect("a checktoken example");
    let token_line = script
        .iter()
        .find(|l| l.starts_with("TOKEN=$("))
        .expect("the TOKEN line");
    let checked = bash(&format!("{token_line}\n{}", check.join("\n")), port, &envs);
    let checked = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.contains("user     dispatcher-1"), "{checked}");
    stop(router);

    let binary = root().join("target/release/presence-router");
    let bytes = std::fs::metadata(&binary).expect("release binary").len();
    assert!(
        bytes <= MAX_BINARY_BYTES,
        "the release binary is {bytes} bytes: debug info crept back in?"
    );
}
