//! What the example clients need: connecting with a token, reading binary messages, and
//! showing MessagePack values as readable text.
#![allow(dead_code)] // Each example uses its own subset.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use presence_router::wire::{MessageType, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client's WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects to `url` with the token (and device id) in headers, as handsets do. A refusal is
/// reported with the router's reason (`{"error":"Unauthorized","reason":"token expired"}`).
pub async fn connect(url: &str, token: &str, device: Option<&str>) -> anyhow::Result<Ws> {
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("token", HeaderValue::from_str(token)?);
    if let Some(device) = device {
        request
            .headers_mut()
            .insert("device_id", HeaderValue::from_str(device)?);
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => {
            println!("connected to {url}");
            Ok(ws)
        }
        Err(WsError::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            anyhow::bail!(
                "the router refused the connection: {} {}",
                response.status(),
                String::from_utf8_lossy(body)
            )
        }
        Err(e) => Err(anyhow::anyhow!("cannot connect to {url}: {e}")),
    }
}

/// The next binary message, or `None` once the router has closed (its close frame is printed).
/// Cancel-safe.
pub async fn next_binary(ws: &mut Ws) -> anyhow::Result<Option<Bytes>> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(bytes))) => return Ok(Some(bytes)),
            Some(Ok(Message::Close(frame))) => {
                match frame {
                    Some(f) => println!("closed by the router: {} {}", u16::from(f.code), f.reason),
                    None => println!("closed by the router"),
                }
                return Ok(None);
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Ok(None),
        }
    }
}

/// What a token claims: its user id and role (read, not verified: the router does that).
pub struct Claimed {
    /// The first of `uid`, `user_id`, `userId`, `sub`, `id`, as the router picks it.
    pub user: String,
    /// The `role` claim (`mobile` when absent, as for the router).
    pub role: String,
}

/// Where an example connects and as whom: its first two flags.
#[derive(clap::Args)]
pub struct Login {
    /// Router WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:3000/ws")]
    pub url: String,
    /// A token (`presence-router token --user U [--role dashboard]`).
    #[arg(long, env = "TOKEN")]
    pub token: String,
}

/// Reads the claims of `token`; unreadable parts come out as `unknown`.
pub fn claimed(token: &str) -> Claimed {
    let claims: serde_json::Value = token
        .split('.')
        .nth(1)
        .and_then(|payload| URL_SAFE_NO_PAD.decode(payload).ok())
        .and_then(|json| serde_json::from_slice(&json).ok())
        .unwrap_or_default();
    let user = ["uid", "user_id", "userId", "sub", "id"]
        .iter()
        .find_map(|claim| match claims.get(*claim)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| "unknown".into());
    let role = match claims.get("role") {
        None | Some(serde_json::Value::Null) => "mobile".into(),
        Some(role) => role.as_str().unwrap_or("unknown").to_owned(),
    };
    Claimed { user, role }
}

/// The protocol's name for a message type.
pub fn type_name(message_type: MessageType) -> String {
    match message_type {
        MessageType::HEARTBEAT => "HEARTBEAT".into(),
        MessageType::PRESENCE_UPDATE => "PRESENCE_UPDATE".into(),
        MessageType::PRESENCE_SNAPSHOT => "PRESENCE_SNAPSHOT".into(),
        MessageType::PRESENCE_ERROR => "PRESENCE_ERROR".into(),
        MessageType::PRESENCE_ACTIVITY => "PRESENCE_ACTIVITY".into(),
        MessageType::START => "START".into(),
        MessageType::STOP => "STOP".into(),
        MessageType::AUDIO => "AUDIO".into(),
        MessageType::START_ACK => "START_ACK".into(),
        MessageType::STOP_ACK => "STOP_ACK".into(),
        MessageType::START_FAILED => "START_FAILED".into(),
        MessageType::LOGIN_DUPLICATED => "LOGIN_DUPLICATED".into(),
        MessageType::TEXT => "TEXT".into(),
        MessageType::TEXT_ACK => "TEXT_ACK".into(),
        MessageType::UNAUTHORIZED_GROUP => "UNAUTHORIZED_GROUP".into(),
        MessageType::USER_ADD => "USER_ADD".into(),
        MessageType::USER_REMOVE => "USER_REMOVE".into(),
        MessageType::CONNECTION_ACK => "CONNECTION_ACK".into(),
        MessageType(n) => format!("message type {n}"),
    }
}

/// A MessagePack value as compact, JavaScript-like text.
pub fn render(value: &Value<'_>) -> String {
    match value {
        Value::Nil => "null".into(),
        Value::Undefined => "undefined".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Str(s) => format!("{s:?}"),
        Value::Bin(b) => format!("<{} bytes>", b.len()),
        Value::Timestamp(ms) => format!("Date({ms})"),
        Value::Ext(kind, data) => format!("<ext {kind}, {} bytes>", data.len()),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(render).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Map(entries) => {
            let entries: Vec<String> = entries
                .iter()
                .map(|(k, v)| {
                    let key = k.as_str().map_or_else(|| render(k), str::to_owned);
                    format!("{key}: {}", render(v))
                })
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
    }
}

/// Prints `{verb} {TYPE} {content} ({n} bytes)` for one frame sent or received.
pub fn report(verb: &str, bytes: &[u8]) {
    match presence_router::wire::Frame::decode(bytes) {
        Ok(frame) => {
            let content = presence_router::wire::decode_value(bytes)
                .map_or_else(|e| e.to_string(), |v| render(&v));
            println!(
                "{verb} {} {content} ({} bytes)",
                type_name(frame.message_type),
                bytes.len()
            );
        }
        Err(e) => println!("{verb} a message that is not a frame: {e}"),
    }
}
