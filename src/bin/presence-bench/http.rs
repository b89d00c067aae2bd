//! A minimal HTTP/1.1 keep-alive client: the bulk API load and reading `/metrics`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One keep-alive connection.
pub struct Http {
    stream: BufReader<TcpStream>,
    host: String,
}

impl Http {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Http> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Http {
            stream: BufReader::new(stream),
            host: addr.to_string(),
        })
    }

    /// Sends one request and returns the status and body.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &str,
        body: &str,
    ) -> anyhow::Result<(u16, String)> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n{headers}\r\n",
            self.host,
            body.len()
        );
        let stream = self.stream.get_mut();
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0usize;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                anyhow::bail!("connection closed");
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).await?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// The value of a counter in a router's `/metrics`.
pub async fn metric(addr: SocketAddr, name: &str) -> Option<u64> {
    let mut http = Http::connect(addr).await.ok()?;
    let (_, body) = http.request("GET", "/metrics", "", "").await.ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Posts `body` to the bulk API from `concurrency` connections until `duration` has passed;
/// returns every request's latency (failed requests are not counted).
pub async fn bulk_load(
    addr: SocketAddr,
    token: &str,
    body: String,
    concurrency: usize,
    duration: Duration,
) -> Vec<Duration> {
    let deadline = Instant::now() + duration;
    let headers = format!("Authorization: Bearer {token}\r\nContent-Type: application/json\r\n");
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (headers, body) = (headers.clone(), body.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let Ok(mut http) = Http::connect(addr).await else {
                return latencies;
            };
            while Instant::now() < deadline {
                let start = Instant::now();
                match http
                    .request("POST", "/api/presence/status", &headers, &body)
                    .await
                {
                    Ok((200, _)) => latencies.push(start.elapsed()),
                    _ => break,
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap_or_default());
    }
    all
}
