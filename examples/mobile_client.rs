//! A handset: connects with its token and device id in headers, sends a HEARTBEAT frame every
//! `--interval` and prints each frame it sends and gets.
//!
//!     cargo run --example mobile_client -- --token "$MOBILE_TOKEN" --device phone-1 --interval 20s

mod common;

use clap::Parser;
use futures_util::SinkExt;
use presence_router::config::parse_duration;
use presence_router::wire::Encoder;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    login: common::Login,
    /// This handset's device id.
    #[arg(long, default_value = "phone-1")]
    device: String,
    /// Time between heartbeats (keep it below the router's PRESENCE_TTL, 60s by default).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    interval: Duration,
    /// Stop after this many heartbeats (default: until the connection ends or ctrl-c).
    #[arg(long)]
    count: Option<u64>,
}

/// `[0, 30, user, 0, {type: "heartbeat", timestamp: now}]`, as notepack encodes it.
fn heartbeat(user: &str) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut e = Encoder::default();
    e.array(5).uint(0).uint(30).str(user).uint(0);
    e.map(2)
        .str("type")
        .str("heartbeat")
        .str("timestamp")
        .uint(now);
    e.into_bytes()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The router takes the user from the verified token; the frame's fromId is informative.
    let me = common::claimed(&args.login.token);
    let user = me.user;
    let mut ws = common::connect(&args.login.url, &args.login.token, Some(&args.device)).await?;
    println!(
        "handset of {user} on device {}, a heartbeat every {:?}",
        args.device, args.interval
    );
    if me.role != "mobile" {
        println!(
            "note: this token's role is {}: the router refuses its heartbeats (403)",
            me.role
        );
    }
    let mut ticker = tokio::time::interval(args.interval);
    let mut sent = 0u64;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = ticker.tick(), if args.count.is_none_or(|n| sent < n) => {
                let frame = heartbeat(&user);
                ws.send(Message::Binary(frame.clone().into())).await?;
                sent += 1;
                common::report(&format!("sent #{sent}"), &frame);
            }
            bytes = common::next_binary(&mut ws) => match bytes? {
                Some(bytes) => common::report("got", &bytes),
                None => return Ok(()),
            },
        }
        if args.count.is_some_and(|n| sent >= n) {
            break;
        }
    }
    ws.close(None).await?;
    println!("closed after {sent} heartbeats");
    Ok(())
}
