//! A dashboard: prints the snapshot it gets on connecting, then every presence update, as
//! readable lines.
//!
//!     cargo run --example dashboard_client -- --token "$DASHBOARD_TOKEN"

use clap::Parser;
use futures_util::StreamExt;
use presence_router::wire::{Frame, MessageType, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
struct Args {
    /// Router WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:3000/ws")]
    url: String,
    /// A dashboard token (`presence-router token --user U --role dashboard`).
    #[arg(long, env = "TOKEN")]
    token: String,
}

/// `hh:mm:ss.mmm` UTC of an epoch-milliseconds value.
fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        s / 3600 % 24,
        s / 60 % 60,
        s % 60,
        ms % 1000
    )
}

fn field<'a>(map: &'a Value<'a>, key: &str) -> String {
    match map.get(key) {
        Some(Value::Str(s)) => (*s).to_owned(),
        Some(v) => v
            .as_u64()
            .map_or_else(|| format!("{v:?}"), |n| n.to_string()),
        None => "-".to_owned(),
    }
}

fn user_line(user: &Value<'_>) -> String {
    let last_seen = user
        .get("lastSeen")
        .and_then(Value::as_u64)
        .map_or_else(|| "-".into(), clock);
    format!(
        "{:<20} {:<8} device {:<12} lastSeen {last_seen} v{}",
        field(user, "userId"),
        field(user, "status"),
        field(user, "deviceId"),
        field(user, "version"),
    )
}

fn show(frame: &Frame<'_>) {
    let Some(payload) = frame.payload_value() else {
        return;
    };
    match frame.message_type {
        MessageType::PRESENCE_SNAPSHOT => {
            println!("snapshot: {} online", field(&payload, "totalOnline"));
            if let Some(Value::Array(users)) = payload.get("users") {
                for user in users {
                    println!("  {}", user_line(user));
                }
            }
        }
        MessageType::PRESENCE_UPDATE => {
            let at = payload
                .get("timestamp")
                .and_then(Value::as_u64)
                .map_or_else(String::new, clock);
            println!("{at} {}", user_line(&payload));
        }
        MessageType::PRESENCE_ERROR => {
            println!(
                "error {}: {}",
                field(&payload, "code"),
                field(&payload, "message")
            );
        }
        other => println!("frame type {}", other.0),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut request = args.url.as_str().into_client_request()?;
    request
        .headers_mut()
        .insert("token", HeaderValue::from_str(&args.token)?);
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
    println!("connected to {}", args.url);
    loop {
        let message = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            message = ws.next() => message,
        };
        match message {
            Some(Ok(Message::Binary(bytes))) => match Frame::decode(&bytes) {
                Ok(frame) => show(&frame),
                Err(e) => println!("undecodable frame: {e}"),
            },
            Some(Ok(Message::Close(frame))) => {
                println!("closed by the router: {frame:?}");
                return Ok(());
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Ok(()),
        }
    }
}
