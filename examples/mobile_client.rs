//! A handset: connects with its token and device id, sends HEARTBEAT frames at an interval and
//! prints what it sends and what it gets.
//!
//!     cargo run --example mobile_client -- --token "$MOBILE_TOKEN" --device phone-1 --interval 20s

mod common;

use clap::Parser;
use futures_util::SinkExt;
use presence_router::config::parse_duration;
use presence_router::wire::{decode_value, Encoder};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
struct Args {
    /// Router WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:3000/ws")]
    url: String,
    /// A mobile token (`presence-router token --user U`).
    #[arg(long, env = "TOKEN")]
    token: String,
    /// This handset's device id.
    #[arg(long, default_value = "phone-1")]
    device: String,
    /// Time between heartbeats.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    interval: Duration,
    /// Stop after this many heartbeats (default: until the connection ends or ctrl-c).
    #[arg(long)]
    count: Option<u64>,
}

fn heartbeat() -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut e = Encoder::default();
    e.array(5).uint(0).uint(30).str("me").uint(0);
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
    let mut ws = common::connect(&args.url, &args.token, Some(&args.device)).await?;
    let mut ticker = tokio::time::interval(args.interval);
    let mut sent = 0u64;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = ticker.tick(), if args.count.is_none_or(|n| sent < n) => {
                ws.send(Message::Binary(heartbeat().into())).await?;
                sent += 1;
                println!("sent HEARTBEAT #{sent}");
            }
            bytes = common::next_binary(&mut ws) => match bytes? {
                Some(bytes) => match decode_value(&bytes) {
                    Ok(value) => println!("got {value:?}"),
                    Err(e) => println!("got undecodable bytes: {e}"),
                },
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
