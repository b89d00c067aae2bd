//! The `presence-router` binary: parse the configuration, then serve, or mint a token.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use presence_router::auth::{self, Identity, Role};
use presence_router::config::{parse_duration, Args, Config, ConfigError, MIN_SECRET_BYTES};
use presence_router::jwks::Jwks;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

/// Presence for push-to-talk fleets: handsets heartbeat over WebSocket, dashboards watch.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    args: Args,
    /// With no token key configured, generate a random secret and print ready-made tokens.
    #[arg(long, global = true)]
    dev: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mint a token signed with the configured JWT_SECRET (for development and curl).
    Token {
        /// The user id.
        #[arg(long)]
        user: String,
        /// mobile, web or dashboard.
        #[arg(long, default_value = "mobile")]
        role: String,
        /// How long the token is valid (e.g. 30m, 1h30m, 7d).
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Verify a token with the configured key and print who it is for, or why it is refused.
    Checktoken {
        /// The token (a JWT).
        token: String,
    },
}

/// Exit code of a configuration or usage error (as clap's own).
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if cli.args.jwt_secret.is_none() {
        cli.args.jwt_secret = std::env::var("SECRET_KEY").ok();
    }
    let result = match cli.command {
        Some(Command::Token { user, role, ttl }) => mint(&cli.args, &user, &role, &ttl),
        Some(Command::Checktoken { token }) => check_token(&cli.args, &token),
        None => serve(cli.args, cli.dev).map(|()| ExitCode::SUCCESS),
    };
    // Printed by hand: anyhow's Debug form adds a backtrace whenever RUST_BACKTRACE is set.
    result.unwrap_or_else(|error| {
        eprintln!("presence-router: {error:#}");
        if error.downcast_ref::<ConfigError>().is_some() {
            ExitCode::from(EXIT_CONFIG)
        } else {
            ExitCode::FAILURE
        }
    })
}

fn usage(line: String) -> anyhow::Error {
    ConfigError(vec![line]).into()
}

fn mint(args: &Args, user: &str, role: &str, ttl: &str) -> anyhow::Result<ExitCode> {
    let Some(secret) = &args.jwt_secret else {
        return Err(usage("JWT_SECRET: set it (or SECRET_KEY) to mint tokens; RS256/ES256 tokens come from whoever holds the private key".into()));
    };
    let role = Role::parse(role)
        .ok_or_else(|| usage(format!("--role: {role:?} is not mobile, web or dashboard")))?;
    let ttl = parse_duration(ttl).map_err(|why| usage(format!("--ttl: {why}")))?;
    println!(
        "{}",
        auth::mint(secret.as_bytes(), user, role, ttl, auth::now_secs())?
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints the identity `token` yields with the configured key (exit 0), or the reason it is
/// refused (exit 1).
fn check_token(args: &Args, token: &str) -> anyhow::Result<ExitCode> {
    let (verifier, jwks) = Config::verifier_from_args(args)?;
    let now = auth::now_secs();
    let checked = match jwks {
        // The identity provider's keys, fetched once.
        Some(source) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(Jwks::new(source, verifier).verify(token.trim(), now)),
        None => verifier.verify(token.trim(), now),
    };
    match checked {
        Ok(identity) => {
            print!("{}", describe(&identity, now));
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            eprintln!("refused: {why}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The identity as `checktoken` prints it, one field a line.
fn describe(identity: &Identity, now: u64) -> String {
    let groups = match &identity.groups {
        None => "- (no channelIds claim: not limited to groups)".to_owned(),
        Some(groups) if groups.is_empty() => "none (an empty channelIds claim)".to_owned(),
        Some(groups) => groups.join(", "),
    };
    let expires = match identity.expires_at {
        None => "never (no exp claim)".to_owned(),
        Some(at) => format!(
            "{} (in {})",
            utc(at),
            compact(Duration::from_secs(at.saturating_sub(now)))
        ),
    };
    format!(
        "valid token\nuser     {}\nrole     {}\ntenant   {}\ngroups   {groups}\nexpires  {expires}\n",
        identity.user_id,
        identity.role.as_str(),
        identity.tenant.as_deref().unwrap_or("-"),
    )
}

/// `2026-12-01T21:05:09Z` for seconds since the epoch (the civil calendar of Howard Hinnant's
/// `civil_from_days`).
fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// `1d 2h 3m 4s`, leaving out the zero parts (`0s` for nothing).
fn compact(d: Duration) -> String {
    let secs = d.as_secs();
    let parts = [
        (secs / 86_400, "d"),
        (secs / 3600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    let text: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if text.is_empty() {
        "0s".to_owned()
    } else {
        text.join(" ")
    }
}

fn serve(args: Args, dev: bool) -> anyhow::Result<()> {
    // Checked before logging starts, so that a bad setting is one clean message.
    let no_key = args.jwt_secret.is_none()
        && args.jwt_public_key_file.is_none()
        && args.jwt_jwks_file.is_none()
        && args.jwt_jwks_url.is_none();
    let dev_secret = (dev && no_key).then(random_secret).transpose()?;
    let config = Config::from_args(&args, dev_secret.as_deref().map(str::as_bytes))?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Its report of a failed write is an eprintln!, which panics once stderr is closed.
        .log_internal_errors(false);
    if config.log_json {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
    if config
        .secret
        .as_ref()
        .is_some_and(|s| s.len() < MIN_SECRET_BYTES)
    {
        warn!("JWT_SECRET is shorter than {MIN_SECRET_BYTES} bytes (allowed by JWT_ALLOW_WEAK_SECRET): tokens can be forged by whoever guesses it from one token");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = listen(config.listen)
            .with_context(|| format!("PORT/HOST: cannot listen on {}", config.listen))?;
        let local = listener.local_addr()?;
        // Bound before the start is logged: whoever waits for that line finds both ports open.
        let admin = match config.admin_listen {
            Some(addr) => {
                let admin = listen(addr)
                    .with_context(|| format!("ADMIN_PORT/HOST: cannot listen on {addr}"))?;
                info!(address = %admin.local_addr()?, "admin routes (/health, /ready, /metrics) open");
                Some(admin)
            }
            None => None,
        };
        if let Some(secret) = &dev_secret {
            print_dev_help(secret, local.port())?;
        }
        let shutdown = CancellationToken::new();
        stop_on_signal(shutdown.clone())?;
        let store = if config.redis_url.is_some() {
            "redis"
        } else {
            "memory"
        };
        info!(address = %local, store, "presence-router listening");
        presence_router::serve_with_admin(listener, admin, config, shutdown).await?;
        info!("stopped");
        Ok(())
    })
}

/// Pending connections the kernel may queue (it caps this at `net.core.somaxconn`): thousands of
/// handsets reconnecting at once after a network outage should not be dropped at the door.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

fn random_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("cannot generate a dev secret: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn print_dev_help(secret: &str, port: u16) -> anyhow::Result<()> {
    let day = Duration::from_secs(24 * 3600);
    let now = auth::now_secs();
    let mobile = auth::mint(secret.as_bytes(), "driver-1", Role::Mobile, day, now)?;
    let dashboard = auth::mint(secret.as_bytes(), "dispatcher-1", Role::Dashboard, day, now)?;
    println!(
        "--dev: no token key configured, using a random secret for this run only:\n\
         JWT_SECRET={secret}\n\n\
         mobile token (user driver-1, 24h):\n{mobile}\n\n\
         dashboard token (user dispatcher-1, 24h):\n{dashboard}\n\n\
         WebSocket: ws://127.0.0.1:{port}/ws (token in the `token` header, `?token=` or the first subprotocol)\n\
         bulk status:\ncurl -s -X POST http://127.0.0.1:{port}/api/presence/status \\\n  \
         -H 'Authorization: Bearer {dashboard}' -H 'Content-Type: application/json' \\\n  \
         -d '{{\"userIds\":[\"driver-1\",\"driver-2\"]}}'\n"
    );
    Ok(())
}

/// Cancels `shutdown` on SIGTERM or SIGINT. The handlers are installed before this returns, so
/// a signal that arrives as soon as the router says it is listening is not lost.
fn stop_on_signal(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        info!("signal received, closing connections");
        shutdown.cancel();
    });
    Ok(())
}
