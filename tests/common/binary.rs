//! The real `presence-router` binary, started the way an operator would.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr, Command, Stdio};

/// The binary with an empty environment but for `RUST_LOG=info`.
pub fn router() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_presence-router"));
    command.env_clear().env("RUST_LOG", "info");
    command
}

/// Starts the binary on a free loopback port and returns it with the address it logged
/// (`address=IP:PORT`) and the rest of its log.
pub fn serve(command: &mut Command) -> (Child, String, BufReader<ChildStderr>) {
    let mut child = command
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let Some(stderr) = child.stderr.take() else {
        let _ = child.wait();
        panic!("stderr was piped");
    };
    let mut stderr = BufReader::new(stderr);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).expect("read log") > 0,
            "exited before listening"
        );
        if let Some(rest) = line.split("address=").nth(1) {
            let addr = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            return (child, addr, stderr);
        }
    }
}
