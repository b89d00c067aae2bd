//! `protocol/openapi.json` against the real router: every status the document lists for every
//! route is provoked over real HTTP, each answer is checked against the documented schema,
//! headers and content type, and no answer may be undocumented; the router serves the
//! committed file byte for byte.

mod common;

use common::{token, token_with, Client, Router};
use presence_router::auth::Role;
use serde_json::{json, Value as Json};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DOCUMENT: &str = include_str!("../protocol/openapi.json");

/// The methods an OpenAPI path item may hold.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Keywords that only annotate a schema (nothing to check).
const ANNOTATIONS: [&str; 3] = ["description", "default", "title"];

/// A route, as the test names it: a path of the document (or `*` for a path not listed) and a
/// method (or `*` for the path's `x-other-methods`).
type Route = (&'static str, &'static str);

/// One answer: status, head (lower-case header names) and body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Json {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// Sends `head` and `body` as they are and reads the whole answer (the request asks the server
/// to close).
async fn send(addr: SocketAddr, head: &str, body: &[u8]) -> Reply {
    exchange(addr, head, body, false).await.0
}

/// Sends `head` and `body` and reads the answer: to the end, or (`upgrade`) only its head,
/// the socket then left open (and returned) for the WebSocket it became.
async fn exchange(addr: SocketAddr, head: &str, body: &[u8], upgrade: bool) -> (Reply, TcpStream) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let close = if upgrade { "" } else { "\r\nConnection: close" };
    let request = format!("{head}\r\nHost: {addr}{close}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    // The server may answer and close before reading a refused body.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let reading = async {
        let mut buf = [0u8; 8192];
        loop {
            let n = stream.read(&mut buf).await.expect("read");
            raw.extend_from_slice(&buf[..n]);
            if n == 0 || (upgrade && raw.windows(4).any(|w| w == b"\r\n\r\n")) {
                break;
            }
        }
    };
    // Longer than the router's 10 s body timeout, which the 408s wait out.
    tokio::time::timeout(Duration::from_secs(30), reading)
        .await
        .expect("answer in time");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head");
    let head = std::str::from_utf8(&raw[..split]).expect("UTF-8 head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .expect("status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    assert!(
        !headers.iter().any(|(k, _)| k == "transfer-encoding"),
        "answers have a Content-Length"
    );
    // After a 101, what follows the head is the WebSocket's.
    let body = match upgrade {
        true => Vec::new(),
        false => raw[split + 4..].to_vec(),
    };
    let reply = Reply {
        status: status.parse().expect("numeric status"),
        headers,
        body,
    };
    (reply, stream)
}

/// The document, and the (route, status) pairs the test has provoked.
struct Spec {
    doc: Json,
    seen: BTreeSet<(String, String, u16)>,
}

impl Spec {
    fn new() -> Spec {
        let doc: Json = serde_json::from_str(DOCUMENT).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        Spec {
            doc,
            seen: BTreeSet::new(),
        }
    }

    /// `value`, or what its `$ref` (`#/...`) names, followed to the end.
    fn resolve<'a>(&'a self, mut value: &'a Json) -> &'a Json {
        while let Some(pointer) = value.get("$ref").and_then(Json::as_str) {
            let pointer = pointer.strip_prefix('#').expect("a local $ref");
            value = self
                .doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("$ref {pointer} names nothing"));
        }
        value
    }

    /// The path item of `path` (`*`: the paths not listed).
    fn path_item(&self, path: &str) -> &Json {
        let item = match path {
            "*" => &self.doc["x-unlisted-paths"],
            p => &self.doc["paths"][p],
        };
        assert!(item.is_object(), "{path} is not documented");
        self.resolve(item)
    }

    /// Every (path, method, status) the document lists.
    fn documented(&self) -> BTreeSet<(String, String, u16)> {
        let mut all = BTreeSet::new();
        let paths = self.doc["paths"].as_object().expect("paths");
        let items = paths.keys().map(String::as_str).chain(["*"]);
        for path in items {
            let item = self.path_item(path);
            for method in METHODS.iter().copied().chain(["*"]) {
                let key = if method == "*" {
                    "x-other-methods"
                } else {
                    method
                };
                let Some(responses) = item.get(key).map(|o| &o["responses"]) else {
                    continue;
                };
                for status in responses.as_object().expect("responses").keys() {
                    let status = status.parse().expect("a numeric status");
                    all.insert((path.to_owned(), method.to_owned(), status));
                }
            }
        }
        all
    }

    /// Checks `reply` against what the document says `route` answers with its status, and
    /// records the pair.
    fn check(&mut self, route: Route, reply: &Reply) -> Json {
        self.check_from(route, reply, Some("*"))
    }

    /// As [`Spec::check`], for an answer whose `Access-Control-Allow-Origin` is `cors` (a
    /// router with `CORS_ALLOWED_ORIGINS`).
    fn check_from(&mut self, route: Route, reply: &Reply, cors: Option<&str>) -> Json {
        let (path, method) = route;
        let what = format!("{method} {path} {}", reply.status);
        let item = self.path_item(path);
        let operation = match method {
            "*" => &item["x-other-methods"],
            m => &item[m],
        };
        let response = operation["responses"]
            .get(reply.status.to_string())
            .unwrap_or_else(|| {
                let body = String::from_utf8_lossy(&reply.body);
                panic!("{what} is not documented: {body}")
            });
        let response = self.resolve(response).clone();
        assert_eq!(
            reply.header("access-control-allow-origin"),
            cors,
            "{what}: CORS"
        );
        for (name, header) in response["headers"].as_object().into_iter().flatten() {
            let header = self.resolve(header);
            match reply.header(name) {
                Some(value) => self
                    .validate(&header["schema"], &json!(value), &format!("{what} {name}"))
                    .unwrap_or_else(|e| panic!("{e}")),
                None => assert!(header["required"] != true, "{what}: no {name} header"),
            }
        }
        let mut body = Json::Null;
        match response["content"].as_object() {
            None => assert!(reply.body.is_empty(), "{what}: a body not documented"),
            Some(content) => {
                let media = reply.header("content-type").expect("a Content-Type");
                let media = media.split(';').next().unwrap_or_default().trim();
                let schema = &content
                    .get(media)
                    .unwrap_or_else(|| panic!("{what}: {media} is not documented"))["schema"];
                body = match media {
                    "application/json" => serde_json::from_slice(&reply.body)
                        .unwrap_or_else(|e| panic!("{what}: not JSON: {e}")),
                    _ => Json::String(String::from_utf8(reply.body.clone()).expect("UTF-8")),
                };
                self.validate(schema, &body, &what)
                    .unwrap_or_else(|e| panic!("{e}\nin {body}"));
            }
        }
        let seen = (path.to_owned(), method.to_owned(), reply.status);
        self.seen.insert(seen);
        body
    }

    /// Sends `head` and `body` to `addr`, requires `status`, and checks the answer as `route`'s.
    async fn answers(
        &mut self,
        addr: SocketAddr,
        route: Route,
        (head, body): (&str, &[u8]),
        status: u16,
    ) -> Json {
        let reply = send(addr, head, body).await;
        assert_eq!(
            reply.status,
            status,
            "{head}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        self.check(route, &reply)
    }

    /// `value` against `schema`, in the subset of JSON Schema the document uses (any other
    /// keyword fails, so the document cannot say what this test does not check).
    fn validate(&self, schema: &Json, value: &Json, at: &str) -> Result<(), String> {
        let fail = |why: String| Err(format!("{at}: {why}"));
        let Some(keywords) = schema.as_object() else {
            return fail(format!("not a schema: {schema}"));
        };
        for (keyword, arg) in keywords {
            match keyword.as_str() {
                "$ref" => self.validate(self.resolve(schema), value, at)?,
                "type" => {
                    let types: Vec<&str> = match arg {
                        Json::Array(list) => list.iter().filter_map(Json::as_str).collect(),
                        one => vec![one.as_str().unwrap_or_default()],
                    };
                    if !types.iter().any(|t| type_is(t, value)) {
                        return fail(format!("{value} is not of type {arg}"));
                    }
                }
                "enum" if !arg.as_array().is_some_and(|a| a.contains(value)) => {
                    return fail(format!("{value} is not one of {arg}"))
                }
                "const" if arg != value => return fail(format!("{value} is not {arg}")),
                "properties" => {
                    for (name, property) in arg.as_object().into_iter().flatten() {
                        if let Some(v) = value.get(name).filter(|_| value.is_object()) {
                            self.validate(property, v, &format!("{at}.{name}"))?;
                        }
                    }
                }
                "required" => {
                    for name in arg.as_array().into_iter().flatten() {
                        let name = name.as_str().unwrap_or_default();
                        if value.is_object() && value.get(name).is_none() {
                            return fail(format!("no {name}"));
                        }
                    }
                }
                "additionalProperties" => {
                    assert_eq!(arg, &json!(false), "{at}: only `false` is checked");
                    let known = &schema["properties"];
                    for name in value.as_object().into_iter().flatten().map(|(k, _)| k) {
                        if known.get(name).is_none() {
                            return fail(format!("{name} is not documented"));
                        }
                    }
                }
                "items" => {
                    for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                        self.validate(arg, item, &format!("{at}[{i}]"))?;
                    }
                }
                "oneOf" | "anyOf" => {
                    let list = arg.as_array().expect("a list of schemas");
                    let passed = list
                        .iter()
                        .filter(|s| self.validate(s, value, at).is_ok())
                        .count();
                    let ok = match keyword.as_str() {
                        "oneOf" => passed == 1,
                        _ => passed >= 1,
                    };
                    if !ok {
                        return fail(format!("{value}: {passed} of {keyword} {arg} match"));
                    }
                }
                "minimum" | "maximum" | "minLength" | "maxLength" | "maxItems" => {
                    let limit = arg.as_f64().expect("a numeric limit");
                    let n = match (keyword.as_str(), value) {
                        ("minLength" | "maxLength", Json::String(s)) => s.chars().count() as f64,
                        ("maxItems", Json::Array(a)) => a.len() as f64,
                        ("minimum" | "maximum", Json::Number(n)) => n.as_f64().unwrap_or(0.0),
                        _ => continue,
                    };
                    let ok = match keyword.as_str() {
                        "minimum" | "minLength" => n >= limit,
                        _ => n <= limit,
                    };
                    if !ok {
                        return fail(format!("{value} breaks {keyword} {arg}"));
                    }
                }
                "pattern" => {
                    let (Some(pattern), Some(text)) = (arg.as_str(), value.as_str()) else {
                        continue;
                    };
                    if !matches_pattern(pattern, text) {
                        return fail(format!("{value} does not match {pattern}"));
                    }
                }
                k if ANNOTATIONS.contains(&k) => {}
                "enum" | "const" => {}
                other => panic!("{at}: the test does not check the keyword {other}"),
            }
        }
        Ok(())
    }
}

fn type_is(name: &str, value: &Json) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        other => panic!("unknown type {other}"),
    }
}

/// Whether `text` matches `pattern`, an anchored `^...$` made of literal characters and
/// `[a-b]` ranges, each optionally followed by `*` or `+` (the only regular expressions the document
/// holds).
fn matches_pattern(pattern: &str, text: &str) -> bool {
    let inner = pattern
        .strip_prefix('^')
        .and_then(|p| p.strip_suffix('$'))
        .expect("an anchored pattern");
    // Atoms: (low, high, repeated).
    let mut atoms = Vec::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        let (low, high) = match c {
            '[' => {
                let range: String = chars.by_ref().take_while(|&c| c != ']').collect();
                let range: Vec<char> = range.chars().collect();
                assert!(range.len() == 3 && range[1] == '-', "only [a-b] ranges");
                (range[0], range[2])
            }
            '\\' | '.' | '*' | '+' | '?' | '(' | '|' | '{' => {
                panic!("{pattern}: {c} not supported")
            }
            c => (c, c),
        };
        if chars.next_if_eq(&'+').is_some() {
            atoms.push((low, high, false));
            atoms.push((low, high, true));
        } else {
            atoms.push((low, high, chars.next_if_eq(&'*').is_some()));
        }
    }
    fn matches(atoms: &[(char, char, bool)], text: &[char]) -> bool {
        let Some(&(low, high, repeated)) = atoms.first() else {
            return text.is_empty();
        };
        let fits = |c: &char| (low..=high).contains(c);
        match repeated {
            false => text.first().is_some_and(fits) && matches(&atoms[1..], &text[1..]),
            true => {
                matches(&atoms[1..], text)
                    || (text.first().is_some_and(fits) && matches(atoms, &text[1..]))
            }
        }
    }
    matches(&atoms, &text.chars().collect::<Vec<_>>())
}

/// `Authorization: Bearer <t>`, as a header line.
fn bearer(t: &str) -> String {
    format!("\r\nAuthorization: Bearer {t}")
}

/// A request with a JSON body and, when given, a token.
fn with_body(method: &str, path: &str, auth: Option<&str>, body: &str) -> String {
    let auth = auth.map(bearer).unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}{auth}",
        body.len()
    )
}

/// A GET with, when given, a token.
fn get(path: &str, auth: Option<&str>) -> String {
    let auth = auth.map(bearer).unwrap_or_default();
    format!("GET {path} HTTP/1.1{auth}")
}

/// An upgrade request on `path` with `extra` header lines.
fn upgrade(method: &str, path: &str, extra: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=={extra}"
    )
}

const BULK: Route = ("/api/presence/status", "post");
const USER: Route = ("/api/presence/{userId}", "get");
const GROUP: Route = ("/api/presence", "get");
const ME: Route = ("/api/presence/me", "put");

#[test]
fn the_pattern_subset_works() {
    assert!(matches_pattern("^[1-9][0-9]*$", "10"));
    assert!(!matches_pattern("^[1-9][0-9]*$", "0"));
    assert!(!matches_pattern("^[1-9][0-9]*$", "1 "));
    assert!(matches_pattern("^a [0-9]* s$", "a  s"));
    assert!(matches_pattern("^a [0-9]+ s$", "a 12 s"));
    assert!(!matches_pattern("^a [0-9]+ s$", "a  s"));
}

/// Every documented (route, status) is provoked and matches its schema; nothing undocumented
/// is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_answer_is_real_and_matches_its_schema() {
    let mut spec = Spec::new();
    let router = Router::start(|_| {}).await;
    let web = token("ops", Role::Web);
    let web = web.as_str();

    // The 408s wait out the router's 10 s body timeout meanwhile.
    let slow = [BULK, ME].map(|(path, method)| {
        let head = with_body(
            &method.to_uppercase(),
            path,
            Some(&token(&format!("slow-{method}"), Role::Mobile)),
            "{\"userIds\":[]}",
        );
        let addr = router.addr;
        tokio::spawn(async move { ((path, method), send(addr, &head, b"{").await) })
    });

    // Two handsets online in group 18; one states its availability.
    let in_18 = json!({"channelIds": ["18"]});
    let mut phones = Vec::new();
    for user in ["driver-1", "driver-2"] {
        let t = token_with(user, Role::Mobile, in_18.clone());
        let mut phone = Client::connect(&router, &t, Some("phone-1")).await;
        phone.heartbeat(user).await;
        phones.push(phone);
    }
    let driver = token_with("driver-1", Role::Mobile, in_18.clone());
    let d = driver.as_str();
    loop {
        let page = send(router.addr, &get("/api/presence?group=18", Some(web)), b"").await;
        if page.json()["users"]
            .as_array()
            .is_some_and(|u| u.len() == 2)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stated = r#"{"availability":"away","statusText":"at lunch"}"#;
    spec.validate(
        &json!({"$ref": "#/components/schemas/AvailabilityRequest"}),
        &serde_json::from_str(stated).expect("JSON"),
        "request",
    )
    .expect("the request is as documented");
    let me = |auth: Option<&str>, body: &str| with_body("PUT", "/api/presence/me", auth, body);
    let reply = send(router.addr, &me(Some(d), stated), stated.as_bytes()).await;
    assert_eq!(spec.check(ME, &reply)["statusText"], "at lunch");
    let cleared = r#"{"availability":"busy","statusText":null}"#;
    let reply = send(router.addr, &me(Some(d), cleared), cleared.as_bytes()).await;
    assert_eq!(spec.check(ME, &reply)["statusText"], Json::Null);
    let reply = send(router.addr, &me(Some(d), stated), stated.as_bytes()).await;
    spec.check(ME, &reply);

    // Bulk: online with availability, a number echoed, an unknown user.
    let asked = r#"{"userIds":["driver-1",42,"ghost"]}"#;
    spec.validate(
        &json!({"$ref": "#/components/schemas/BulkRequest"}),
        &serde_json::from_str(asked).expect("JSON"),
        "request",
    )
    .expect("the request is as documented");
    let post = |auth: Option<&str>, body: &str| with_body("POST", BULK.0, auth, body);
    let reply = send(router.addr, &post(Some(web), asked), asked.as_bytes()).await;
    let users = spec.check(BULK, &reply)["users"].clone();
    assert_eq!(users[0]["availability"], "away");
    assert_eq!(users[0]["deviceId"], "phone-1");
    assert_eq!(users[1]["userId"], 42);
    for (auth, body, status) in [
        (Some(web), "{not json".to_owned(), 400),
        (Some(web), r#"{"userIds":[{}]}"#.to_owned(), 400),
        (
            Some(web),
            json!({"userIds": (0..101).collect::<Vec<_>>()}).to_string(),
            400,
        ),
        (None, r#"{"userIds":[]}"#.to_owned(), 401),
        (Some("not-a-jwt"), r#"{"userIds":[]}"#.to_owned(), 401),
        (Some(web), "x".repeat(70_000), 413),
    ] {
        let head = post(auth, &body);
        spec.answers(router.addr, BULK, (&head, body.as_bytes()), status)
            .await;
    }

    // One user, a group's pages.
    for (head, status) in [
        (get("/api/presence/driver-1", Some(web)), 200),
        (get("/api/presence/ghost%20one", Some(web)), 200),
        (get("/api/presence/%ZZ", Some(web)), 400),
        (
            get(&format!("/api/presence/{}", "x".repeat(257)), Some(web)),
            400,
        ),
        (get("/api/presence/driver-1", None), 401),
    ] {
        spec.answers(router.addr, USER, (&head, b""), status).await;
    }
    let first = send(
        router.addr,
        &get("/api/presence?group=18&limit=1", Some(web)),
        b"",
    )
    .await;
    let first = spec.check(GROUP, &first);
    assert_eq!(first["next"], "driver-1");
    let path = "/api/presence?group=18&limit=1&after=driver-1";
    let last = send(router.addr, &get(path, Some(web)), b"").await;
    assert_eq!(spec.check(GROUP, &last)["next"], Json::Null);
    for (path, auth, status) in [
        ("/api/presence?group=nobody-sees", Some(web), 200),
        ("/api/presence?limit=5", Some(web), 400),
        ("/api/presence?group=18&limit=0", Some(web), 400),
        ("/api/presence?group=18&colour=red", Some(web), 400),
        ("/api/presence?group=%FF", Some(web), 400),
        ("/api/presence?group=18", None, 401),
    ] {
        spec.answers(router.addr, GROUP, (&get(path, auth), b""), status)
            .await;
    }

    // Availability refusals.
    let offline = token("nobody", Role::Mobile);
    for (auth, body, status) in [
        (Some(d), "{not json".to_owned(), 400),
        (Some(d), r#"{"availability":"asleep"}"#.to_owned(), 400),
        (
            Some(d),
            r#"{"availability":"away","statusText":1}"#.to_owned(),
            400,
        ),
        (
            Some(&driver),
            json!({"availability": "away", "statusText": "x".repeat(141)}).to_string(),
            400,
        ),
        (None, stated.to_owned(), 401),
        (Some(&offline), stated.to_owned(), 409),
        (Some(d), "x".repeat(70_000), 413),
    ] {
        let head = me(auth, &body);
        spec.answers(router.addr, ME, (&head, body.as_bytes()), status)
            .await;
    }

    // Health, readiness, metrics, this document.
    for (path, route) in [
        ("/health", ("/health", "get")),
        ("/ready", ("/ready", "get")),
        ("/metrics", ("/metrics", "get")),
        ("/api/openapi.json", ("/api/openapi.json", "get")),
        ("/dashboard", ("/dashboard", "get")),
    ] {
        let reply = send(router.addr, &get(path, None), b"").await;
        assert_eq!(reply.status, 200, "{path}");
        spec.check(route, &reply);
    }
    let served = send(router.addr, &get("/api/openapi.json", None), b"").await;
    assert_eq!(
        served.body,
        DOCUMENT.as_bytes(),
        "the committed file, byte for byte"
    );
    assert_eq!(served.header("content-type"), Some("application/json"));

    // Preflight on every path, listed or not; another method on each; an unlisted path.
    for (path, documented) in [
        ("/api/presence/status", "/api/presence/status"),
        ("/api/presence/driver-1", "/api/presence/{userId}"),
        ("/api/presence", "/api/presence"),
        ("/api/presence/me", "/api/presence/me"),
        ("/ws", "/ws"),
        ("/", "/"),
        ("/health", "/health"),
        ("/ready", "/ready"),
        ("/metrics", "/metrics"),
        ("/api/openapi.json", "/api/openapi.json"),
        ("/dashboard", "/dashboard"),
        ("/nowhere", "*"),
    ] {
        for origin in ["", "\r\nOrigin: https://dispatch.example"] {
            let head = format!("OPTIONS {path} HTTP/1.1{origin}");
            let reply = send(router.addr, &head, b"").await;
            spec.check((documented, "options"), &reply);
        }
        let wrong = match documented {
            "/api/presence/status" => ["GET", "PUT"],
            "/api/presence/me" => ["DELETE", "POST"],
            _ => ["POST", "PATCH"],
        };
        for method in wrong {
            let head = format!("{method} {path} HTTP/1.1\r\nContent-Length: 0");
            let reply = send(router.addr, &head, b"").await;
            spec.check((documented, "*"), &reply);
        }
        // A HEAD answer has no body to check: its status only.
        let head = send(router.addr, &format!("HEAD {path} HTTP/1.1"), b"").await;
        let expected = if documented == "*" { 404 } else { 405 };
        assert_eq!(head.status, expected, "HEAD {path}");
    }

    // The WebSocket routes, on a router of 2 sockets, 1 per user.
    for path in ["/ws", "/"] {
        let small = Router::start(|a| {
            a.presence_max_connections = Some("2".into());
            a.presence_max_connections_per_user = Some("1".into());
        })
        .await;
        let route = (path, "get");
        let as_user = |u: &str| format!("\r\ntoken: {}", token(u, Role::Mobile));
        let mut held = Vec::new();
        for (head, status) in [
            (upgrade("GET", path, &as_user("a")), 101),
            (upgrade("GET", path, &as_user("a")), 429),
            (
                upgrade(
                    "GET",
                    &format!("{path}?token={}", token("b", Role::Mobile)),
                    "",
                ),
                101,
            ),
            (upgrade("GET", path, &as_user("c")), 503),
            (upgrade("GET", path, ""), 401),
            (upgrade("GET", path, "\r\ntoken: not-a-jwt"), 401),
            (
                upgrade(
                    "GET",
                    path,
                    &format!("{}\r\ndevice_id: {}", as_user("d"), "x".repeat(300)),
                ),
                400,
            ),
            (
                "GET {path} HTTP/1.1\r\nUpgrade: websocket".replace("{path}", path),
                400,
            ),
            (get(path, None), 426),
        ] {
            let (reply, socket) = exchange(small.addr, &head, b"", status == 101).await;
            assert_eq!(
                reply.status,
                status,
                "{head}: {}",
                String::from_utf8_lossy(&reply.body)
            );
            spec.check(route, &reply);
            held.push(socket);
        }
        let reply = send(small.addr, &upgrade("POST", path, ""), b"").await;
        assert_eq!(reply.status, 400);
        spec.check((route.0, "*"), &reply);
        small.stop().await;
        // A browser page of an origin the router does not list.
        let strict = Router::start(|a| {
            a.cors_allowed_origins = Some("https://dispatch.example.com".into());
        })
        .await;
        let head = upgrade(
            "GET",
            path,
            &format!("{}\r\nOrigin: https://evil.example", as_user("e")),
        );
        let reply = send(strict.addr, &head, b"").await;
        assert_eq!(reply.status, 403, "{head}");
        spec.check_from(route, &reply, None);
        strict.stop().await;
    }

    // 429 on a router of 1 request a second (a burst of 2).
    let limited = Router::start(|a| a.presence_bulk_rate = Some("1".into())).await;
    for (route, head, body) in [
        (
            BULK,
            post(Some(&token("r1", Role::Web)), "{\"userIds\":[]}"),
            "{\"userIds\":[]}",
        ),
        (
            USER,
            get("/api/presence/x", Some(&token("r2", Role::Web))),
            "",
        ),
        (
            GROUP,
            get("/api/presence?group=18", Some(&token("r3", Role::Web))),
            "",
        ),
        (ME, me(Some(&token("r4", Role::Mobile)), stated), stated),
    ] {
        let mut reply = send(limited.addr, &head, body.as_bytes()).await;
        for _ in 0..10 {
            if reply.status == 429 {
                break;
            }
            reply = send(limited.addr, &head, body.as_bytes()).await;
        }
        assert_eq!(reply.status, 429, "{head}");
        spec.check(route, &reply);
    }
    limited.stop().await;

    // 503 with presence disabled.
    let disabled = Router::start(|a| a.presence_enabled = Some("false".into())).await;
    for (route, head, body) in [
        (
            BULK,
            post(Some(web), "{\"userIds\":[]}"),
            "{\"userIds\":[]}",
        ),
        (USER, get("/api/presence/x", Some(web)), ""),
        (GROUP, get("/api/presence?group=18", Some(web)), ""),
        (ME, me(Some(d), stated), stated),
    ] {
        spec.answers(disabled.addr, route, (&head, body.as_bytes()), 503)
            .await;
    }
    disabled.stop().await;

    // Without API auth the read routes need no token.
    let open = Router::start(|a| a.presence_api_auth = Some("none".into())).await;
    let reply = send(
        open.addr,
        &post(None, "{\"userIds\":[7]}"),
        b"{\"userIds\":[7]}",
    )
    .await;
    assert_eq!(reply.status, 200);
    spec.check(BULK, &reply);
    for (route, path) in [(USER, "/api/presence/x"), (GROUP, "/api/presence?group=18")] {
        let reply = send(open.addr, &get(path, None), b"").await;
        assert_eq!(reply.status, 200, "{path}");
        spec.check(route, &reply);
    }
    let reply = send(open.addr, &me(None, stated), stated.as_bytes()).await;
    assert_eq!(
        reply.status, 401,
        "PUT /api/presence/me always needs a token"
    );
    open.stop().await;

    // Not ready (and degraded) while the identity provider has not answered.
    let port = common::free_port();
    let waiting = Router::start(move |a| {
        a.jwt_secret = None;
        a.jwt_jwks_url = Some(format!("http://127.0.0.1:{port}/jwks"));
    })
    .await;
    let reply = send(waiting.addr, &get("/ready", None), b"").await;
    assert_eq!(reply.status, 503);
    spec.check(("/ready", "get"), &reply);
    let reply = send(waiting.addr, &get("/health", None), b"").await;
    assert_eq!(spec.check(("/health", "get"), &reply)["status"], "degraded");
    waiting.stop().await;

    for waiting in slow {
        let (route, reply) = waiting.await.expect("slow request");
        assert_eq!(reply.status, 408, "{route:?}");
        spec.check(route, &reply);
    }
    drop(phones);
    router.stop().await;

    // Both ways: nothing documented left unprovoked (and check() refused anything undocumented).
    let missing: Vec<_> = spec.documented().difference(&spec.seen).cloned().collect();
    assert!(
        missing.is_empty(),
        "documented but never provoked: {missing:?}"
    );
    let extra: Vec<_> = spec.seen.difference(&spec.documented()).cloned().collect();
    assert!(extra.is_empty(), "provoked but not documented: {extra:?}");
    println!("covered: {:?}", spec.seen);
}
