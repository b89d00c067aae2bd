//! Token keys from an identity provider: a JWKS server of the test's own (loopback HTTP), the
//! router fetching it, a key rotation picked up on the first token of the new key, unknown key
//! ids rate-limited, the last good set kept while the provider is down, and the issuer,
//! audience and nested role claim checked as Keycloak issues them.

mod common;

use common::{bulk, http_raw, Client, Router, Seen};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use presence_router::auth;
use serde_json::{json, Value as Json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const ISSUER: &str = "https://idp.example/realms/fleet";
const MIN_REFETCH: Duration = Duration::from_secs(2);

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

/// A JWKS endpoint: answers every GET with the set it holds (503 while it holds none), and
/// counts the requests.
struct Provider {
    url: String,
    set: Arc<Mutex<Option<String>>>,
    fetches: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

impl Provider {
    async fn start(set: Option<Vec<u8>>) -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "http://{}/realms/fleet/protocol/openid-connect/certs",
            listener.local_addr().expect("addr")
        );
        let set = Arc::new(Mutex::new(set.map(|s| String::from_utf8(s).expect("utf8"))));
        let fetches = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (set, fetches) = (set.clone(), fetches.clone());
            async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let body = set.lock().expect("set").clone();
                    let reply = match body {
                        Some(body) => format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        ),
                        None => "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
                    };
                    let _ = socket.write_all(reply.as_bytes()).await;
                }
            }
        });
        Provider {
            url,
            set,
            fetches,
            _task: task,
        }
    }

    fn serve(&self, set: Option<Vec<u8>>) {
        *self.set.lock().expect("set") = set.map(|s| String::from_utf8(s).expect("utf8"));
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// A token as Keycloak issues it: issuer, audience, roles nested under `realm_access`.
fn keycloak_token(alg: Algorithm, kid: &str, claims: Json) -> String {
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&fixture("rsa_private.pem")),
        _ => EncodingKey::from_ec_pem(&fixture("ec_private.pem")),
    }
    .expect("key");
    let mut all = json!({
        "sub": "dispatcher-1",
        "iss": ISSUER,
        "aud": ["account", "presence"],
        "exp": auth::now_secs() + 600,
        "realm_access": {"roles": ["offline_access", "dashboard"]},
    });
    if let (Some(all), Json::Object(extra)) = (all.as_object_mut(), claims) {
        all.extend(extra);
    }
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    encode(&header, &all, &key).expect("sign")
}

async fn router(provider: &Provider) -> Router {
    let url = provider.url.clone();
    Router::start(move |a| {
        a.jwt_secret = None;
        a.jwt_jwks_url = Some(url);
        a.jwt_jwks_min_refetch = Some(format!("{}ms", MIN_REFETCH.as_millis()));
        a.jwt_issuer = Some(ISSUER.into());
        a.jwt_audience = Some("presence".into());
        a.jwt_role_claim = Some("realm_access.roles".into());
    })
    .await
}

/// The bulk API's status and refusal reason for `token`.
async fn asked_with(router: &Router, token: &str) -> (u16, Json) {
    let reply = bulk(router, Some(token), r#"{"userIds":["x"]}"#).await;
    (reply.status, reply.json()["reason"].clone())
}

#[tokio::test]
async fn keys_come_from_the_provider_and_follow_its_rotation() {
    let provider = Provider::start(Some(fixture("jwks.json"))).await;
    let router = router(&provider).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while http_raw(&router, "GET /ready HTTP/1.1", b"").await.status != 200 {
        assert!(tokio::time::Instant::now() < deadline, "keys never loaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(provider.fetches(), 1);

    // The role is read from realm_access.roles: a dashboard, which gets a snapshot.
    let rsa = keycloak_token(Algorithm::RS256, "test-rsa", json!({}));
    let mut dashboard = Client::connect(&router, &rsa, None).await;
    match dashboard.next().await {
        Seen::Frame(frame) => assert_eq!(frame[1], 32, "{frame}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(asked_with(&router, &rsa).await.0, 200);
    for (claims, reason) in [
        (
            json!({"iss": "https://elsewhere/realms/fleet"}),
            "token issuer is not accepted",
        ),
        (json!({"aud": "account"}), "token audience is not accepted"),
    ] {
        let token = keycloak_token(Algorithm::RS256, "test-rsa", claims);
        assert_eq!(asked_with(&router, &token).await, (401, json!(reason)));
    }

    // The provider rotates to a new key: its first token brings the new set in.
    provider.serve(Some(fixture("jwks_rotated.json")));
    tokio::time::sleep(MIN_REFETCH).await;
    let ec = keycloak_token(Algorithm::ES256, "test-ec", json!({}));
    assert_eq!(asked_with(&router, &ec).await.0, 200);
    assert_eq!(provider.fetches(), 2);
    // An unknown key id right after does not hit the provider again.
    let unknown = keycloak_token(Algorithm::ES256, "nobody", json!({}));
    assert_eq!(
        asked_with(&router, &unknown).await,
        (401, json!("unknown signing key"))
    );
    assert_eq!(provider.fetches(), 2);

    // The provider goes down: a fetch fails, and the last good set stays in use.
    provider.serve(None);
    tokio::time::sleep(MIN_REFETCH).await;
    assert_eq!(asked_with(&router, &unknown).await.0, 401);
    assert_eq!(provider.fetches(), 3);
    assert_eq!(asked_with(&router, &ec).await.0, 200);
    assert_eq!(
        http_raw(&router, "GET /ready HTTP/1.1", b"").await.status,
        200
    );
}

#[tokio::test]
async fn until_the_provider_answers_tokens_are_refused_and_ready_says_why() {
    let provider = Provider::start(None).await;
    let router = router(&provider).await;
    let token = keycloak_token(Algorithm::RS256, "test-rsa", json!({}));
    let (status, reason) = asked_with(&router, &token).await;
    assert_eq!(status, 401);
    assert!(
        reason.as_str().is_some_and(|r| r.contains("not loaded")),
        "{reason}"
    );
    let ready = http_raw(&router, "GET /ready HTTP/1.1", b"").await;
    assert_eq!(ready.status, 503);
    assert!(ready.body.contains("JWT_JWKS_URL"), "{}", ready.body);
    // It answers: the next token after the rate limit loads the keys.
    provider.serve(Some(fixture("jwks.json")));
    tokio::time::sleep(MIN_REFETCH).await;
    assert_eq!(asked_with(&router, &token).await.0, 200);
}

/// `openssl s_server -WWW`: a real TLS server handing out the files of `dir`; killed on drop.
struct HttpsFiles(std::process::Child);

impl Drop for HttpsFiles {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn keys_come_over_https_from_a_provider_with_a_private_ca() {
    let dir = std::env::temp_dir().join(format!("presence-jwks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    common::tls::make_certificates(&dir, "idp");
    std::fs::write(dir.join("certs.json"), fixture("jwks.json")).expect("write jwks");
    let port = common::free_port();
    let _server = HttpsFiles(
        std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-WWW", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-cert", "idp.crt", "-key", "idp.key"])
            .current_dir(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server starts"),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "s_server did not listen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The system's roots plus the test's CA, as an operator trusts a private CA.
    std::env::set_var("SSL_CERT_FILE", dir.join("ca.crt"));
    let url = format!("https://127.0.0.1:{port}/certs.json");
    let router = Router::start(move |a| {
        a.jwt_secret = None;
        a.jwt_jwks_url = Some(url);
    })
    .await;
    let token = keycloak_token(Algorithm::RS256, "test-rsa", json!({}));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while asked_with(&router, &token).await.0 != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "keys never came over HTTPS"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
