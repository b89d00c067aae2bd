//! The deployment files in `deploy/` as a user would use them: the systemd unit passes
//! `systemd-analyze verify` without a warning and its settings file starts the router; the
//! nginx example passes `nginx -t` and carries handsets and dashboards to two routers sharing
//! a Redis (Debian's nginx, installed when missing).

mod common;

use common::{free_port, token, Client, RedisServer, RouterProcess, SECRET};
use presence_router::auth::Role;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(deploy(file)).unwrap_or_else(|e| panic!("deploy/{file}: {e}"))
}

/// A directory of the test's own, emptied first.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("presence-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The settings of `deploy/presence-router.env`, as `(variable, value)` pairs.
fn env_file() -> Vec<(String, String)> {
    read("presence-router.env")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("VARIABLE=value");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn the_systemd_unit_verifies_and_its_settings_start_the_router() {
    common::system::debian_package("systemd-analyze", "--version", "systemd", "the unit's test");
    let dir = scratch("unit");
    let env = dir.join("env");
    std::fs::write(&env, read("presence-router.env")).expect("env file");
    // The unit as shipped, but for where this build's binary and its settings file are.
    let unit: String = read("presence-router.service")
        .lines()
        .map(|line| match line.split_once('=') {
            Some(("ExecStart", _)) => {
                format!("ExecStart={}", env!("CARGO_BIN_EXE_presence-router"))
            }
            Some(("EnvironmentFile", _)) => format!("EnvironmentFile={}", env.display()),
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.join("presence-router.service");
    std::fs::write(&path, unit).expect("unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze");
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && warnings.trim().is_empty(),
        "systemd-analyze verify: {warnings}"
    );

    // Its settings start the router, with a real secret and a Redis of the test's own.
    let redis = RedisServer::start(&[]);
    let url = redis.url();
    let settings: Vec<(String, String)> = env_file()
        .into_iter()
        .filter(|(k, _)| !matches!(k.as_str(), "HOST" | "PORT"))
        .map(|(k, v)| match k.as_str() {
            "JWT_SECRET" => (k, SECRET.to_owned()),
            "REDIS_URL" => (k, url.clone()),
            _ => (k, v),
        })
        .collect();
    let envs: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let router = RouterProcess::start(&envs);
    let (status, health) = common::binary::get(&router.addr, "/health");
    assert_eq!(status, 200);
    assert!(health.contains("\"store\":\"redis\""), "{health}");
}

/// nginx with the example's server block, listening on `port`, its upstreams at `routers`.
struct Nginx {
    child: Child,
}

impl Nginx {
    /// Writes a main configuration around the example into `dir`; returns its path.
    fn configure(dir: &Path, port: u16, routers: [u16; 2]) -> PathBuf {
        let site = read("nginx/presence-router.conf")
            .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
            .replace("127.0.0.1:3001", &format!("127.0.0.1:{}", routers[0]))
            .replace("127.0.0.1:3002", &format!("127.0.0.1:{}", routers[1]));
        std::fs::write(dir.join("presence-router.conf"), site).expect("site");
        let d = dir.display();
        let main = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               include {d}/presence-router.conf;\n}}\n"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, main).expect("nginx.conf");
        path
    }

    fn start(config: &Path) -> Nginx {
        let child = Command::new("nginx")
            .arg("-c")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        Nginx { child }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nginx_example_checks_and_carries_talk_and_presence_to_two_routers() {
    common::system::debian_package("nginx", "-v", "nginx", "the nginx example's test");
    let redis = RedisServer::start(&[]);
    let url = redis.url();
    let envs = [
        ("REDIS_URL", url.as_str()),
        ("PRESENCE_OFFLINE_DEBOUNCE", "0"),
    ];
    let routers = [RouterProcess::start(&envs), RouterProcess::start(&envs)];
    let ports = routers.each_ref().map(|r| {
        r.addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .expect("port")
    });
    let dir = scratch("nginx");
    let port = free_port();
    let config = Nginx::configure(&dir, port, ports);
    let check = Command::new("nginx")
        .arg("-t")
        .arg("-c")
        .arg(&config)
        .output()
        .expect("nginx -t");
    assert!(
        check.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let _nginx = Nginx::start(&config);
    let front = format!("127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + common::PATIENCE;
    while tokio::net::TcpStream::connect(&front).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "nginx never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _) = tokio::task::block_in_place(|| common::binary::get(&front, "/health"));
    assert_eq!(status, 200, "/health through nginx");
    // Through nginx: a dashboard, then two handsets in one group, whichever router each lands on.
    let ws = format!("ws://{front}/ws");
    let mut dashboard = Client::connect_to(&ws, &token("dispatcher", Role::Dashboard), None).await;
    assert_eq!(dashboard.next_frame().await[1], 32);
    let talker_token = common::token_with(
        "driver-1",
        Role::Mobile,
        serde_json::json!({"channelIds": ["7"]}),
    );
    let listener_token = common::token_with(
        "driver-2",
        Role::Mobile,
        serde_json::json!({"channelIds": ["7"]}),
    );
    let mut talker = Client::connect_to(&ws, &talker_token, Some("phone-1")).await;
    let mut listener = Client::connect_to(&ws, &listener_token, Some("phone-2")).await;
    let mut online = std::collections::BTreeSet::new();
    while online.len() < 2 {
        online.insert(
            dashboard.next_update().await["userId"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    for (client, user) in [(&mut talker, "driver-1"), (&mut listener, "driver-2")] {
        client
            .send(presence_router::wire::encode_talk(
                0,
                presence_router::wire::MessageType::CONNECTION_TEST,
                &[
                    presence_router::wire::Field::Str(user),
                    presence_router::wire::Field::Uint(0),
                    presence_router::wire::Field::Str("ready"),
                ],
            ))
            .await;
        assert_eq!(client.next_frame().await[1], 26);
    }
    let start = presence_router::wire::encode_talk(
        0,
        presence_router::wire::MessageType::START,
        &[
            presence_router::wire::Field::Str("driver-1"),
            presence_router::wire::Field::Str("7"),
            presence_router::wire::Field::Uint(1_702_281_234_567),
        ],
    );
    talker.send(start).await;
    assert_eq!(talker.next_frame().await[1], 6, "the floor, through nginx");
    assert_eq!(
        listener.next_frame().await[1],
        1,
        "the START, on whichever router"
    );
    talker.close().await;
    // The dashboard saw driver-1 on the air, and then leave.
    let mut seen = Vec::new();
    while !seen.contains(&(31, "offline".to_owned())) {
        let frame = dashboard.next_frame().await;
        let kind = frame[1].as_u64().expect("type");
        let what = match kind {
            31 => frame[4]["status"].as_str().unwrap_or_default().to_owned(),
            35 => frame[4]["onAir"].to_string(),
            _ => panic!("unexpected {frame}"),
        };
        seen.push((kind, what));
    }
    assert!(seen.contains(&(35, "true".to_owned())), "{seen:?}");
}
