//! A redis-server of the test's own: started on a free loopback port, killed on drop. Shared by
//! the integration tests (through `common`) and the Redis store's unit tests (by path).

use std::time::Duration;

/// Loopback only, nothing persisted: the arguments every test's redis-server runs with.
pub const LOOPBACK_NOTHING_KEPT: &[&str] =
    &["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];

/// How long a redis-server may take to come up.
const START_PATIENCE: Duration = Duration::from_secs(10);

/// A redis-server of the test's own on a free loopback port, killed on drop.
pub struct RedisServer {
    pub port: u16,
    args: Vec<String>,
    child: Option<std::process::Child>,
}

impl RedisServer {
    /// Starts one with no persistence and `extra` arguments (e.g. `--notify-keyspace-events Kg`).
    pub fn start(extra: &[&str]) -> RedisServer {
        RedisServer::start_on(free_port(), extra)
    }

    /// The same on `port`.
    pub fn start_on(port: u16, extra: &[&str]) -> RedisServer {
        let port_text = port.to_string();
        let mut args: Vec<String> = ["--port", port_text.as_str()]
            .iter()
            .chain(LOOPBACK_NOTHING_KEPT)
            .map(|s| (*s).to_owned())
            .collect();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut server = RedisServer {
            port,
            args,
            child: None,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (no shutdown, nothing saved).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts it on the same port, empty, and waits until it answers.
    pub fn restart(&mut self) {
        off_runtime(|| self.start_again());
    }

    fn start_again(&mut self) {
        self.stop();
        let child = std::process::Command::new(redis_server())
            .args(&self.args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + START_PATIENCE;
        // With `--requirepass`, a refused PING also says it is up.
        let up =
            |reply: Option<String>| reply.is_some_and(|r| r == "PONG" || r.starts_with("-NOAUTH"));
        while !up(self.command(&["PING"])) {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not come up"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs one command and returns its reply flattened to text (`None` when unreachable).
    pub fn command(&self, args: &[&str]) -> Option<String> {
        off_runtime(|| command_on(self.port, args))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs blocking work (a process to wait for, a socket to read) so that it never stalls a
/// router the test runs in-process: moved off the runtime's worker when there is a
/// multi-threaded runtime. A single-threaded runtime would stall: those tests must not use it.
fn off_runtime<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        Ok(_) => panic!("the test's redis-server is driven with blocking calls: run this test on a multi_thread runtime"),
        Err(_) => work(),
    }
}

/// A loopback port nothing listens on (free when asked).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The redis-server binary, installed from the distribution when missing and possible.
pub fn redis_server() -> &'static str {
    static FOUND: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    FOUND.get_or_init(|| {
        super::system::debian_package(
            "redis-server",
            "--version",
            "redis-server",
            "the Redis tests",
        )
    });
    "redis-server"
}

/// Runs one command on the Redis at `port` and returns its reply flattened to text (`None` when
/// unreachable).
pub fn command_on(port: u16, args: &[&str]) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).ok()?;
    stream.write_all(b"*1\r\n$4\r\nQUIT\r\n").ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let reply = reply.strip_suffix("+OK\r\n").unwrap_or(&reply);
    let lines: Vec<&str> = reply
        .lines()
        .filter(|l| !l.starts_with('*') && !l.starts_with('$'))
        .map(|l| l.trim_start_matches(['+', ':']))
        .collect();
    Some(lines.join(" "))
}
