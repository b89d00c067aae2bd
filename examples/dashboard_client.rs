//! A dashboard: prints the snapshot it gets on connecting, then every presence update, as
//! readable lines.
//!
//!     cargo run --example dashboard_client -- --token "$DASHBOARD_TOKEN"

mod common;

use clap::Parser;
use presence_router::wire::{Frame, MessageType, Value};

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
    let mut ws = common::connect(&args.url, &args.token, None).await?;
    loop {
        let bytes = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            bytes = common::next_binary(&mut ws) => bytes?,
        };
        let Some(bytes) = bytes else { return Ok(()) };
        match Frame::decode(&bytes) {
            Ok(frame) => show(&frame),
            Err(e) => println!("undecodable frame: {e}"),
        }
    }
}
