//! A dashboard: prints the snapshot it gets on connecting, then every presence update and who
//! goes on and off the air, one readable line each (times in UTC).
//!
//!     cargo run --example dashboard_client -- --token "$DASHBOARD_TOKEN"

mod common;

use clap::Parser;
use presence_router::wire::{Frame, MessageType, Value};

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    login: common::Login,
}

/// `hh:mm:ss.mmm` (UTC) of an epoch-milliseconds value.
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

/// A map field as text: strings bare, `-` when absent.
fn field(map: &Value<'_>, key: &str) -> String {
    match map.get(key) {
        Some(Value::Str(s)) => (*s).to_owned(),
        Some(v) => common::render(v),
        None => "-".to_owned(),
    }
}

fn time_field(map: &Value<'_>, key: &str) -> String {
    map.get(key)
        .and_then(Value::as_u64)
        .map_or_else(|| "-".into(), clock)
}

/// `driver-1 online  device phone-1  lastSeen 10:20:30.001  v1`, and what they are talking in
/// when they are on the air.
fn user_line(user: &Value<'_>) -> String {
    let on_air = user
        .get("onAir")
        .map_or_else(String::new, |talk| format!("  ON AIR {}", talk_place(talk)));
    format!(
        "{} {}  device {}  lastSeen {}  v{}{on_air}",
        field(user, "userId"),
        field(user, "status"),
        field(user, "deviceId"),
        time_field(user, "lastSeen"),
        field(user, "version"),
    )
}

/// `in group 18` or `to driver-2`.
fn talk_place(talk: &Value<'_>) -> String {
    match talk.get("channelType").and_then(Value::as_u64) {
        Some(0) => format!("in group {}", field(talk, "to")),
        _ => format!("to {}", field(talk, "to")),
    }
}

/// `driver-1 ON AIR in group 18` / `driver-1 off air (was in group 18)`
fn activity_line(activity: &Value<'_>) -> String {
    match activity.get("onAir") {
        Some(Value::Bool(true)) => format!(
            "{} ON AIR {}",
            field(activity, "userId"),
            talk_place(activity)
        ),
        _ => format!(
            "{} off air (was {})",
            field(activity, "userId"),
            talk_place(activity)
        ),
    }
}

fn show(frame: &Frame<'_>) {
    let Some(payload) = frame.payload_value() else {
        println!(
            "{} without a payload",
            common::type_name(frame.message_type)
        );
        return;
    };
    let at = time_field(&payload, "timestamp");
    match frame.message_type {
        MessageType::PRESENCE_SNAPSHOT => {
            println!("[{at}] snapshot: {} online", field(&payload, "totalOnline"));
            if let Some(Value::Array(users)) = payload.get("users") {
                for user in users {
                    println!("  {}", user_line(user));
                }
            }
        }
        MessageType::PRESENCE_UPDATE => println!("[{at}] {}", user_line(&payload)),
        MessageType::PRESENCE_ACTIVITY => println!("[{at}] {}", activity_line(&payload)),
        MessageType::PRESENCE_ERROR => println!(
            "error {}: {}",
            field(&payload, "code"),
            field(&payload, "message")
        ),
        other => println!("{} {}", common::type_name(other), common::render(&payload)),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut ws = common::connect(&args.login.url, &args.login.token, None).await?;
    let me = common::claimed(&args.login.token);
    println!("watching as {} (times are UTC); ctrl-c to stop", me.user);
    if !matches!(me.role.as_str(), "web" | "dashboard") {
        println!(
            "note: this token's role is {}: the router sends presence only to web and dashboard",
            me.role
        );
    }
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
