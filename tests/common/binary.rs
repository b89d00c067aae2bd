//! The real `presence-router` binary, started the way an operator would, and its log.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The binary with an empty environment but for `RUST_LOG=info`.
pub fn router() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_presence-router"));
    command.env_clear().env("RUST_LOG", "info");
    command
}

/// A process's stderr, line by line, read by a thread of its own (so the process never blocks
/// on a full pipe).
pub struct Log {
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Log {
    /// Starts reading `stream`.
    pub fn read(stream: impl Read + Send + 'static) -> Log {
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Log {
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line from now on that `wanted` accepts, waiting at most `limit`; `None` when
    /// none came in time or the process closed its stderr.
    pub fn wait_for(&mut self, limit: Duration, wanted: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if wanted(&line) {
                        return Some(line);
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Every line read so far, and whatever has arrived meanwhile.
    pub fn text(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }
}

/// How long the binary may take to start listening.
const START_LIMIT: Duration = Duration::from_secs(30);

/// Starts the binary on a free loopback port (or the `PORT` `command` sets) and returns it with
/// the address it logged (`address=IP:PORT`, or its JSON form) and its log (which still holds
/// the lines before that one).
pub fn serve(command: &mut Command) -> (Child, String, Log) {
    // On a free port unless the caller chose one (a restart on the same port).
    if !command.get_envs().any(|(name, _)| name == "PORT") {
        command.env("PORT", "0");
    }
    let mut child = command
        .env("HOST", "127.0.0.1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let Some(stderr) = child.stderr.take() else {
        let _ = child.kill();
        panic!("stderr was piped");
    };
    let mut log = Log::read(stderr);
    // `address=IP:PORT` in text logs, `"address":"IP:PORT"` in JSON ones (LOG_FORMAT=json).
    let Some(line) = log.wait_for(START_LIMIT, |l| l.contains("listening")) else {
        let _ = child.kill();
        panic!("the router did not listen:\n{}", log.text());
    };
    let addr = line
        .split("address=")
        .nth(1)
        .or_else(|| line.split("\"address\":\"").nth(1))
        .and_then(|rest| rest.split([' ', '"']).next())
        .unwrap_or_default()
        .to_owned();
    (child, addr, log)
}

/// A blocking `GET path` to `addr`: the status and the body.
pub fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read reply");
    let (status, _, body) = split_reply(&reply);
    (status, body.to_owned())
}

/// A whole HTTP response as its status, head and body.
pub fn split_reply(reply: &str) -> (u16, &str, &str) {
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((reply, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    (status, head, body)
}

/// Asks `GET path` until its status is `status`, for at most `limit`; the last reply.
pub fn get_until(addr: &str, path: &str, status: u16, limit: Duration) -> (u16, String) {
    let deadline = Instant::now() + limit;
    loop {
        let reply = get(addr, path);
        if reply.0 == status || Instant::now() >= deadline {
            return reply;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
