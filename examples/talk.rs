//! A push-to-talk handset: takes the floor of a group (or talks to one user), sends a few seconds
//! of audio frames as an Opus encoder would (one every 20 ms), lets go, and prints every frame it
//! sends and gets. With `--listen` it only listens.
//!
//!     cargo run --example talk -- --token "$MOBILE_TOKEN" --group 18 --seconds 3
//!     cargo run --example talk -- --token "$OTHER_TOKEN" --group 18 --listen

mod common;

use clap::Parser;
use futures_util::SinkExt;
use presence_router::wire::Encoder;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    login: common::Login,
    /// This handset's device id.
    #[arg(long, default_value = "talk-1")]
    device: String,
    /// The group to talk in (joined first, with USER_ADD).
    #[arg(long, conflicts_with = "to")]
    group: Option<String>,
    /// The user to talk to, privately.
    #[arg(long)]
    to: Option<String>,
    /// Seconds of audio to send.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Only listen (until ctrl-c), after joining the group.
    #[arg(long)]
    listen: bool,
}

/// One Opus frame's worth of time, and of bytes (60 bytes: a 24 kbit/s voice stream).
const FRAME_TIME: Duration = Duration::from_millis(20);
const FRAME_BYTES: usize = 60;

/// `[channel, type, from, to(, payload)]`, as notepack encodes it.
fn frame(channel: u64, message_type: u64, from: &str, to: &str, payload: Payload) -> Vec<u8> {
    let mut e = Encoder::default();
    let with_payload = !matches!(payload, Payload::None);
    e.array(4 + usize::from(with_payload))
        .uint(channel)
        .uint(message_type)
        .str(from)
        .str(to);
    match payload {
        Payload::None => {}
        Payload::Time(ms) => {
            e.uint(ms);
        }
        Payload::Audio(bytes) => {
            e.bin(bytes);
        }
    }
    e.into_bytes()
}

enum Payload<'a> {
    None,
    Time(u64),
    Audio(&'a [u8]),
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let user = common::claimed(&args.login.token).user;
    let (channel, to) = match (&args.group, &args.to) {
        (Some(group), _) => (0, group.clone()),
        (None, Some(peer)) => (1, peer.clone()),
        (None, None) => anyhow::bail!("say where to talk: --group G or --to USER"),
    };
    let mut ws = common::connect(&args.login.url, &args.login.token, Some(&args.device)).await?;
    let send = |bytes: Vec<u8>, quiet: bool| {
        if !quiet {
            common::report("sent", &bytes);
        }
        Message::Binary(bytes.into())
    };
    if channel == 0 {
        ws.send(send(frame(0, 15, &user, &to, Payload::None), false))
            .await?;
    }
    let mut script = Vec::new();
    if !args.listen {
        script.push(frame(channel, 1, &user, &to, Payload::Time(now_ms())));
        let audio = [0u8; FRAME_BYTES];
        let frames = args.seconds * 1000 / FRAME_TIME.as_millis() as u64;
        script.extend((0..frames).map(|_| frame(channel, 3, &user, &to, Payload::Audio(&audio))));
        script.push(frame(channel, 2, &user, &to, Payload::None));
    }
    let total = script.len();
    let mut script = script.into_iter().enumerate();
    let mut ticker = tokio::time::interval(FRAME_TIME);
    let mut done = false;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = ticker.tick(), if !done => match script.next() {
                // Audio frames are counted, not printed: 50 a second.
                Some((n, bytes)) => {
                    let quiet = n > 0 && n + 1 < total;
                    ws.send(send(bytes, quiet)).await?;
                    if quiet && n % 50 == 0 {
                        println!("sent {n} AUDIO frames");
                    }
                }
                None => done = !args.listen,
            },
            bytes = common::next_binary(&mut ws) => match bytes? {
                Some(bytes) => common::report("got", &bytes),
                None => return Ok(()),
            },
            // Once the STOP is acknowledged, a moment for late frames, then done.
            _ = tokio::time::sleep(Duration::from_secs(1)), if done => break,
        }
    }
    ws.close(None).await?;
    Ok(())
}
