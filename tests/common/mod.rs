//! Helpers shared by the socket tests: a router on a free loopback port, WebSocket clients that
//! speak the frame format, raw HTTP requests. One helper per behaviour.
#![allow(dead_code)] // Each test binary uses its own subset.

pub mod binary;
pub mod chromium;
pub mod node;
pub mod redis_server;
pub mod rng;
pub mod strict;
pub mod system;
pub mod tls;
pub mod view;

#[allow(unused_imports)] // Each test binary uses its own subset.
pub use redis_server::{free_port, redis_server, RedisServer};

use futures_util::{SinkExt, StreamExt};
use presence_router::auth::{self, Role};
use presence_router::config::{Args, Config};
use serde_json::{json, Value as Json};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// The HMAC secret every test router uses.
/// A presence API rate per user that tests polling the API never reach.
pub const UNLIMITED_BULK_RATE: &str = "1000000";

pub const SECRET: &str = "test-secret-for-presence-router-of-32-bytes";

/// How long a test waits for something that should happen before failing.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A router serving on 127.0.0.1 with its own memory store; stopped on drop.
pub struct Router {
    pub addr: SocketAddr,
    /// The admin port (`ADMIN_PORT`), when the router has one.
    pub admin: Option<SocketAddr>,
    pub shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Router {
    /// A router with the default settings but for `tweak`, and a presence API rate no test
    /// that polls it reaches (the rate limit's own tests set theirs).
    pub async fn start(tweak: impl FnOnce(&mut Args)) -> Router {
        let mut args = Args {
            jwt_secret: Some(SECRET.into()),
            presence_bulk_rate: Some(UNLIMITED_BULK_RATE.into()),
            ..Args::default()
        };
        tweak(&mut args);
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let config = Config::from_args(&args, None).expect("valid test config");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        // With ADMIN_PORT (any value: a free port is taken), the operator's routes on their own.
        let admin = match config.admin_listen {
            Some(_) => Some(
                TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind loopback"),
            ),
            None => None,
        };
        let admin_addr = admin.as_ref().map(|a| a.local_addr().expect("local addr"));
        let shutdown = CancellationToken::new();
        let serving = presence_router::serve_with_admin(listener, admin, config, shutdown.clone());
        let task = tokio::spawn(async move { serving.await.expect("router runs") });
        let router = Router {
            addr,
            admin: admin_addr,
            shutdown,
            task: Some(task),
        };
        // Answered only once the store is ready and the router accepts.
        let health = http_at(admin_addr.unwrap_or(addr), "GET /health HTTP/1.1", b"").await;
        assert_eq!(health.status, 200);
        router
    }

    /// A router on `redis`, with the default settings but for `tweak`.
    pub async fn on_redis(redis: &RedisServer, tweak: impl FnOnce(&mut Args)) -> Router {
        let url = redis.url();
        Router::start(|a| {
            a.redis_url = Some(url);
            tweak(a);
        })
        .await
    }

    /// Stops the router and waits until it has closed every connection.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("router stops")
                .expect("router task");
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The real router binary on a free loopback port, killed (SIGKILL) on drop.
pub struct RouterProcess {
    pub addr: String,
    pub child: std::process::Child,
    pub log: binary::Log,
}

impl RouterProcess {
    /// Starts the binary with the test secret and `envs`, and waits until it listens.
    pub fn start(envs: &[(&str, &str)]) -> RouterProcess {
        let mut command = binary::router();
        command
            .env("JWT_SECRET", SECRET)
            .env("PRESENCE_BULK_RATE", UNLIMITED_BULK_RATE)
            .envs(envs.iter().copied());
        let (child, addr, log) = binary::serve(&mut command);
        RouterProcess { addr, child, log }
    }

    /// The same on loopback `port` (to start a router again where a killed one served).
    pub fn start_on(port: u16, envs: &[(&str, &str)]) -> RouterProcess {
        let port = port.to_string();
        let mut all = vec![("PORT", port.as_str())];
        all.extend_from_slice(envs);
        RouterProcess::start(&all)
    }

    /// A client of `user` with `role` (and device `phone`), its token in the query.
    pub async fn client(&self, user: &str, role: Role) -> Client {
        let request = format!(
            "{}?token={}&device_id=phone",
            self.ws_url(),
            token(user, role)
        );
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("upgrade accepted");
        Client { ws }
    }

    /// Kills it without any shutdown: its sockets vanish, nothing is cleaned up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A token for `user` with `role`, valid for an hour.
pub fn token(user: &str, role: Role) -> String {
    auth::mint(
        SECRET.as_bytes(),
        user,
        role,
        Duration::from_secs(3600),
        auth::now_secs(),
    )
    .expect("mint")
}

/// A token for `user` with `role` and the extra claims of `claims` (an object: `tenant`,
/// `channelIds`…), valid for an hour.
pub fn token_with(user: &str, role: Role, claims: Json) -> String {
    let mut all = json!({
        "userId": user,
        "role": role.as_str(),
        "exp": auth::now_secs() + 3600,
    });
    if let (Some(all), Json::Object(extra)) = (all.as_object_mut(), claims) {
        all.extend(extra);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &all,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

/// `[0, type, user, group]`: USER_ADD (15) or USER_REMOVE (16) as a handset sends it.
pub fn membership_frame(message_type: u64, user: &str, group: &str) -> Vec<u8> {
    let mut e = presence_router::wire::Encoder::default();
    e.array(4).uint(0).uint(message_type).str(user).str(group);
    e.into_bytes()
}

/// Two tests of one scenario, an `async fn(&Router, &Router)` given the routers to use: on one
/// router with the embedded store (both arguments the same router), and on two routers sharing
/// a redis-server of the test's own. `$tweak` sets up every router.
#[macro_export]
macro_rules! on_both_stores {
    ($scenario:ident, $tweak:expr, $one:ident, $two:ident) => {
        #[tokio::test]
        async fn $one() {
            let router = $crate::common::Router::start($tweak).await;
            $scenario(&router, &router).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $two() {
            let redis = $crate::common::RedisServer::start(&[]);
            let a = $crate::common::Router::on_redis(&redis, $tweak).await;
            let b = $crate::common::Router::on_redis(&redis, $tweak).await;
            $scenario(&a, &b).await;
        }
    };
}

/// Handsets that close go offline at once (no debounce): a `tweak` for [`Router::start`].
pub fn no_debounce(args: &mut Args) {
    args.presence_offline_debounce = Some("0".into());
}

/// A WebSocket client of the router.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What a client saw next.
#[derive(Debug)]
pub enum Seen {
    Frame(Json),
    Closed(Option<u16>),
}

impl Client {
    /// Connects with the token in the `token` header and an optional device id header.
    pub async fn connect(router: &Router, token: &str, device: Option<&str>) -> Client {
        Client::connect_to(&router.ws_url(), token, device).await
    }

    /// Connects to the WebSocket at `url` as [`Client::connect`] does.
    pub async fn connect_to(url: &str, token: &str, device: Option<&str>) -> Client {
        let mut request = url.into_client_request().expect("request");
        request
            .headers_mut()
            .insert("token", HeaderValue::from_str(token).expect("header"));
        if let Some(device) = device {
            request
                .headers_mut()
                .insert("device_id", HeaderValue::from_str(device).expect("header"));
        }
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("upgrade accepted");
        Client { ws }
    }

    /// A mobile of `user` on `device`.
    pub async fn mobile(router: &Router, user: &str, device: &str) -> Client {
        Client::connect(router, &token(user, Role::Mobile), Some(device)).await
    }

    /// A dashboard of `user`; returns it with the snapshot payload it got on connecting.
    pub async fn dashboard(router: &Router, user: &str) -> (Client, Json) {
        let mut client = Client::connect(router, &token(user, Role::Dashboard), None).await;
        let snapshot = client.next_frame().await;
        assert_eq!(
            snapshot[1], 32,
            "first frame is PRESENCE_SNAPSHOT: {snapshot}"
        );
        assert_eq!(
            snapshot[3],
            json!(user),
            "snapshot addressed to the dashboard user"
        );
        (client, snapshot[4].clone())
    }

    /// A dashboard whose socket has a tiny receive window and that reads nothing until the test
    /// starts reading it: the router's writes to it back up quickly.
    pub async fn stalled_dashboard(router: &Router, user: &str) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .set_recv_buffer_size(4096)
            .expect("small receive buffer");
        let stream = socket.connect(router.addr).await.expect("connect");
        let mut request = router.ws_url().into_client_request().expect("request");
        let token = token(user, Role::Dashboard);
        request
            .headers_mut()
            .insert("token", HeaderValue::from_str(&token).expect("header"));
        let (ws, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
            .await
            .expect("upgrade accepted");
        Client { ws }
    }

    /// Sends a binary message, reporting failure instead of failing the test.
    pub async fn ws_send_raw(
        &mut self,
        bytes: Vec<u8>,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        self.ws.send(Message::Binary(bytes.into())).await
    }

    pub async fn send(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .expect("send");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send text");
    }

    /// Sends `[0, 30, user, 0, {type: "heartbeat", timestamp}]`.
    pub async fn heartbeat(&mut self, user: &str) {
        self.send(heartbeat_frame(user)).await;
    }

    /// The next frame or close, failing the test after [`PATIENCE`].
    pub async fn next(&mut self) -> Seen {
        self.next_within(PATIENCE)
            .await
            .expect("something arrives in time")
    }

    /// The next frame or close within `limit`, or `None`. Every frame is read by the strict
    /// reader, so no test passes on a frame an Android handset could not read.
    pub async fn next_within(&mut self, limit: Duration) -> Option<Seen> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let message = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            match message {
                Some(Ok(Message::Binary(bytes))) => {
                    return Some(Seen::Frame(strict::decode(&bytes).unwrap_or_else(|e| {
                        panic!("a strict reader refuses the router's frame {bytes:02x?}: {e}")
                    })))
                }
                Some(Ok(Message::Close(frame))) => {
                    return Some(Seen::Closed(frame.map(|f| u16::from(f.code))))
                }
                Some(Ok(Message::Text(text))) => panic!("router sent text: {text}"),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Some(Seen::Closed(None)),
            }
        }
    }

    /// The next frame, failing the test on a close.
    pub async fn next_frame(&mut self) -> Json {
        match self.next().await {
            Seen::Frame(frame) => frame,
            Seen::Closed(code) => panic!("closed ({code:?}) while a frame was expected"),
        }
    }

    /// The payload of the next frame, which must be a PRESENCE_UPDATE.
    pub async fn next_update(&mut self) -> Json {
        let frame = self.next_frame().await;
        assert_eq!(frame[1], 31, "expected PRESENCE_UPDATE, got {frame}");
        assert_eq!(frame[3], "broadcast");
        frame[4].clone()
    }

    /// Waits for the close and returns its code, skipping frames sent before it.
    pub async fn closed_with(&mut self) -> Option<u16> {
        loop {
            if let Seen::Closed(code) = self.next().await {
                return code;
            }
        }
    }

    /// Asserts that nothing arrives for `window`.
    pub async fn quiet_for(&mut self, window: Duration) {
        if let Some(seen) = self.next_within(window).await {
            panic!("expected nothing, got {seen:?}");
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        while let Some(Ok(_)) = self.ws.next().await {}
    }
}

/// `[0, 30, user, 0, {type: "heartbeat", timestamp}]` as notepack encodes it.
pub fn heartbeat_frame(user: &str) -> Vec<u8> {
    let mut e = presence_router::wire::Encoder::default();
    e.array(5).uint(0).uint(30).str(user).uint(0);
    e.map(2)
        .str("type")
        .str("heartbeat")
        .str("timestamp")
        .uint(1_702_281_234_567);
    e.into_bytes()
}

/// A close code as a number.
pub fn code(code: CloseCode) -> u16 {
    u16::from(code)
}

/// A raw HTTP/1.1 response.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl HttpReply {
    pub fn json(&self) -> Json {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Sends `head` (request line and headers, without the blank line) and `body` as they are,
/// and reads the whole response (the request asks the server to close).
pub async fn http_raw(router: &Router, head: &str, body: &[u8]) -> HttpReply {
    http_at(router.addr, head, body).await
}

/// [`http_raw`] to the router at `addr` (an admin port, say).
pub async fn http_at(addr: SocketAddr, head: &str, body: &[u8]) -> HttpReply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("{head}\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write head");
    // The server may answer and close before reading a refused body.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (status, head, body) = binary::split_reply(&text);
    HttpReply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// `POST /api/presence/status` with `body` and, when given, a Bearer token.
pub async fn bulk(router: &Router, bearer: Option<&str>, body: &str) -> HttpReply {
    let auth = bearer
        .map(|t| format!("\r\nAuthorization: Bearer {t}"))
        .unwrap_or_default();
    let head = format!(
        "POST /api/presence/status HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}{auth}",
        body.len()
    );
    http_raw(router, &head, body.as_bytes()).await
}

/// What the bulk API answers of one user, asked with a web token.
pub async fn bulk_user(router: &Router, user: &str) -> Json {
    let reply = bulk(
        router,
        Some(&token("ops", Role::Web)),
        &json!({ "userIds": [user] }).to_string(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["users"][0].clone()
}

/// Asks the bulk API for one user's status string.
pub async fn status_of(router: &Router, user: &str) -> String {
    bulk_user(router, user).await["status"]
        .as_str()
        .expect("status")
        .to_owned()
}
