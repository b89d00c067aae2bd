//! Configuration: every setting read once, at the edge, into [`Config`].
//!
//! [`Args`] is what clap reads from flags and the environment, all as raw strings;
//! [`Config::from_args`] checks every value and reports all the bad ones together, each naming
//! its environment variable.

use crate::auth::{ClaimPath, ClaimRules, Verifier};
use crate::presence::{LivenessRule, Rules, DEFAULT_RETENTION};
use crate::ptt::Timers;
use clap::Args as ClapArgs;
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// The default of every setting that has one, as the text a user would write: `--help` shows
/// these, and a setting left out is parsed from them.
pub mod defaults {
    /// `PORT`.
    pub const PORT: &str = "3000";
    /// `HOST`.
    pub const HOST: &str = "0.0.0.0";
    /// `PRESENCE_ENABLED`.
    pub const PRESENCE_ENABLED: &str = "true";
    /// `PRESENCE_TTL`.
    pub const PRESENCE_TTL: &str = "60s";
    /// `PRESENCE_OFFLINE_DEBOUNCE`.
    pub const PRESENCE_OFFLINE_DEBOUNCE: &str = "5s";
    /// `PRESENCE_HEARTBEAT_MIN_INTERVAL`.
    pub const PRESENCE_HEARTBEAT_MIN_INTERVAL: &str = "25s";
    /// `PRESENCE_BULK_MAX_IDS`.
    pub const PRESENCE_BULK_MAX_IDS: &str = "100";
    /// `PRESENCE_PING_INTERVAL`.
    pub const PRESENCE_PING_INTERVAL: &str = "30s";
    /// `PRESENCE_PING_TIMEOUT`.
    pub const PRESENCE_PING_TIMEOUT: &str = "10s";
    /// `PRESENCE_MAX_FRAME_BYTES`.
    pub const PRESENCE_MAX_FRAME_BYTES: &str = "65536";
    /// `PRESENCE_MAX_BODY_BYTES`.
    pub const PRESENCE_MAX_BODY_BYTES: &str = "65536";
    /// `PRESENCE_DASHBOARD_QUEUE`.
    pub const PRESENCE_DASHBOARD_QUEUE: &str = "16384";
    /// `PRESENCE_MAX_CONNECTIONS`.
    pub const PRESENCE_MAX_CONNECTIONS: &str = "100000";
    /// `PRESENCE_MAX_CONNECTIONS_PER_USER`.
    pub const PRESENCE_MAX_CONNECTIONS_PER_USER: &str = "32";
    /// `PRESENCE_MAX_PENDING_CONNECTIONS`.
    pub const PRESENCE_MAX_PENDING_CONNECTIONS: &str = "1024";
    /// `PRESENCE_IDLE_TIMEOUT`.
    pub const PRESENCE_IDLE_TIMEOUT: &str = "60s";
    /// `PRESENCE_MAX_FRAMES_PER_SECOND`.
    pub const PRESENCE_MAX_FRAMES_PER_SECOND: &str = "200";
    /// `PRESENCE_MAX_BYTES_PER_SECOND`.
    pub const PRESENCE_MAX_BYTES_PER_SECOND: &str = "262144";
    /// `PRESENCE_BULK_RATE`.
    pub const PRESENCE_BULK_RATE: &str = "20";
    /// `PRESENCE_API_AUTH`.
    pub const PRESENCE_API_AUTH: &str = "jwt";
    /// `PRESENCE_LIVENESS`.
    pub const PRESENCE_LIVENESS: &str = "auto";
    /// `REDIS_KEY_PREFIX`.
    pub const REDIS_KEY_PREFIX: &str = "presence:";
    /// `JWT_JWKS_REFRESH`.
    pub const JWT_JWKS_REFRESH: &str = "5m";
    /// `JWT_ALLOW_WEAK_SECRET`.
    pub const JWT_ALLOW_WEAK_SECRET: &str = "false";
    /// `PRESENCE_REQUIRE_EXP`.
    pub const PRESENCE_REQUIRE_EXP: &str = "false";
    /// `JWT_JWKS_MIN_REFETCH`.
    pub const JWT_JWKS_MIN_REFETCH: &str = "10s";
    /// `JWT_ROLE_CLAIM`.
    pub const JWT_ROLE_CLAIM: &str = "role";
    /// `JWT_TENANT_CLAIM`.
    pub const JWT_TENANT_CLAIM: &str = "tenant";
    /// `JWT_GROUPS_CLAIM`.
    pub const JWT_GROUPS_CLAIM: &str = "channelIds";
    /// `MAXIMUM_IDLE_DURATION` (milliseconds, as VoicePing).
    pub const MAXIMUM_IDLE_DURATION: &str = "3000";
    /// `MAXIMUM_AUDIO_DURATION` (milliseconds, as VoicePing).
    pub const MAXIMUM_AUDIO_DURATION: &str = "90000";
    /// `GROUP_BUSY_TIMEOUT` (milliseconds, as VoicePing).
    pub const GROUP_BUSY_TIMEOUT: &str = "95000";
    /// `PTT_SINGLE_SESSION`.
    pub const PTT_SINGLE_SESSION: &str = "false";
    /// `LOG_FORMAT`.
    pub const LOG_FORMAT: &str = "text";
    /// `CORS_ALLOWED_ORIGINS`.
    pub const CORS_ALLOWED_ORIGINS: &str = "*";
}

/// Raw settings, one per environment variable (each also a `--flag`).
#[derive(Debug, Clone, Default, ClapArgs)]
pub struct Args {
    /// TCP port for HTTP and WebSocket.
    #[arg(long, env = "PORT", default_value = defaults::PORT)]
    pub port: Option<String>,
    /// Address to bind: an IP address or a host name (resolved at start).
    #[arg(long, env = "HOST", default_value = defaults::HOST)]
    pub host: Option<String>,
    /// Track presence at all (true/false).
    #[arg(long, env = "PRESENCE_ENABLED", default_value = defaults::PRESENCE_ENABLED)]
    pub presence_enabled: Option<String>,
    /// How long a user stays online after a connect or heartbeat write (bare number = seconds).
    #[arg(long, env = "PRESENCE_TTL", default_value = defaults::PRESENCE_TTL)]
    pub presence_ttl: Option<String>,
    /// How long after the last device leaves a user is reported offline (0 = at once).
    #[arg(long, env = "PRESENCE_OFFLINE_DEBOUNCE", default_value = defaults::PRESENCE_OFFLINE_DEBOUNCE)]
    pub presence_offline_debounce: Option<String>,
    /// Heartbeats closer than this per device cause no store write.
    #[arg(long, env = "PRESENCE_HEARTBEAT_MIN_INTERVAL", default_value = defaults::PRESENCE_HEARTBEAT_MIN_INTERVAL)]
    pub presence_heartbeat_min_interval: Option<String>,
    /// Most user ids in one bulk status request.
    #[arg(long, env = "PRESENCE_BULK_MAX_IDS", default_value = defaults::PRESENCE_BULK_MAX_IDS)]
    pub presence_bulk_max_ids: Option<String>,
    /// How often the router pings each connection.
    #[arg(long, env = "PRESENCE_PING_INTERVAL", default_value = defaults::PRESENCE_PING_INTERVAL)]
    pub presence_ping_interval: Option<String>,
    /// How long a connection may leave a ping (or a write) unanswered before it is closed.
    #[arg(long, env = "PRESENCE_PING_TIMEOUT", default_value = defaults::PRESENCE_PING_TIMEOUT)]
    pub presence_ping_timeout: Option<String>,
    /// Largest WebSocket message accepted, in bytes.
    #[arg(long, env = "PRESENCE_MAX_FRAME_BYTES", default_value = defaults::PRESENCE_MAX_FRAME_BYTES)]
    pub presence_max_frame_bytes: Option<String>,
    /// Largest HTTP request body accepted, in bytes.
    #[arg(long, env = "PRESENCE_MAX_BODY_BYTES", default_value = defaults::PRESENCE_MAX_BODY_BYTES)]
    pub presence_max_body_bytes: Option<String>,
    /// How many updates a dashboard may fall behind before it is closed with 1013.
    #[arg(long, env = "PRESENCE_DASHBOARD_QUEUE", default_value = defaults::PRESENCE_DASHBOARD_QUEUE)]
    pub presence_dashboard_queue: Option<String>,
    /// Most WebSocket connections at once; more are refused with 503.
    #[arg(long, env = "PRESENCE_MAX_CONNECTIONS", default_value = defaults::PRESENCE_MAX_CONNECTIONS)]
    pub presence_max_connections: Option<String>,
    /// Most WebSocket connections of one user at once; more are refused with 429.
    #[arg(long, env = "PRESENCE_MAX_CONNECTIONS_PER_USER", default_value = defaults::PRESENCE_MAX_CONNECTIONS_PER_USER)]
    pub presence_max_connections_per_user: Option<String>,
    /// Most sockets at once that are not (yet) WebSockets: HTTP requests, upgrades under way,
    /// idle or slow clients; more are closed at once.
    #[arg(long, env = "PRESENCE_MAX_PENDING_CONNECTIONS", default_value = defaults::PRESENCE_MAX_PENDING_CONNECTIONS)]
    pub presence_max_pending_connections: Option<String>,
    /// A socket on which no byte moves either way this long is closed (a WebSocket stays busy
    /// through its pings: it must exceed PRESENCE_PING_INTERVAL + PRESENCE_PING_TIMEOUT).
    #[arg(long, env = "PRESENCE_IDLE_TIMEOUT", default_value = defaults::PRESENCE_IDLE_TIMEOUT)]
    pub presence_idle_timeout: Option<String>,
    /// Messages per second one WebSocket may send (twice that in a burst); more are slowed
    /// down, and a connection over it for 5 s is closed with 1008.
    #[arg(long, env = "PRESENCE_MAX_FRAMES_PER_SECOND", default_value = defaults::PRESENCE_MAX_FRAMES_PER_SECOND)]
    pub presence_max_frames_per_second: Option<String>,
    /// Bytes per second one WebSocket may send (twice that in a burst), as for frames.
    #[arg(long, env = "PRESENCE_MAX_BYTES_PER_SECOND", default_value = defaults::PRESENCE_MAX_BYTES_PER_SECOND)]
    pub presence_max_bytes_per_second: Option<String>,
    /// Presence API requests per second per token (twice that in a burst); more get 429.
    #[arg(long, env = "PRESENCE_BULK_RATE", default_value = defaults::PRESENCE_BULK_RATE)]
    pub presence_bulk_rate: Option<String>,
    /// Redis URL (`redis://[:password@]host:port[/db]`, `rediss://` for TLS): use the Redis store.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Redis host (127.0.0.1 when only the port or password is set).
    #[arg(long, env = "REDIS_HOST")]
    pub redis_host: Option<String>,
    /// Redis port (6379 when only the host or password is set).
    #[arg(long, env = "REDIS_PORT")]
    pub redis_port: Option<String>,
    /// Redis password.
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,
    /// Prefix of every Redis key and channel (two deployments can share a database).
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = defaults::REDIS_KEY_PREFIX)]
    pub redis_key_prefix: Option<String>,
    /// HMAC secret for HS256/384/512 tokens (alias SECRET_KEY).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM file with the RSA or EC P-256 public key for RS256/ES256 tokens.
    #[arg(long, env = "JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<String>,
    /// JWKS file with the public keys for RS256/ES256 tokens.
    #[arg(long, env = "JWT_JWKS_FILE")]
    pub jwt_jwks_file: Option<String>,
    /// URL (https:// or http://) of an identity provider's JWKS, fetched at start, every
    /// JWT_JWKS_REFRESH and on an unknown key id (at most every JWT_JWKS_MIN_REFETCH); the last
    /// good set is kept while the provider is down.
    #[arg(long, env = "JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,
    /// How long a JWKS fetched from JWT_JWKS_URL is used before it is fetched again.
    #[arg(long, env = "JWT_JWKS_REFRESH", default_value = defaults::JWT_JWKS_REFRESH)]
    pub jwt_jwks_refresh: Option<String>,
    /// The soonest a token with an unknown key id fetches JWT_JWKS_URL again after the last
    /// fetch.
    #[arg(long, env = "JWT_JWKS_MIN_REFETCH", default_value = defaults::JWT_JWKS_MIN_REFETCH)]
    pub jwt_jwks_min_refetch: Option<String>,
    /// Accept a JWT_SECRET shorter than 32 bytes (an existing VoicePing deployment's, say): a
    /// short HMAC secret can be guessed offline from any token it signed.
    #[arg(long, env = "JWT_ALLOW_WEAK_SECRET", default_value = defaults::JWT_ALLOW_WEAK_SECRET)]
    pub jwt_allow_weak_secret: Option<String>,
    /// Refuse tokens without `exp` (true/false).
    #[arg(long, env = "PRESENCE_REQUIRE_EXP", default_value = defaults::PRESENCE_REQUIRE_EXP)]
    pub presence_require_exp: Option<String>,
    /// Refuse tokens whose `exp` is further ahead than this (e.g. 30d), when set.
    #[arg(long, env = "PRESENCE_MAX_TOKEN_AGE")]
    pub presence_max_token_age: Option<String>,
    /// The `iss` every token must carry, when set.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// An `aud` every token must list, when set.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Where the role is in the claims, as a dotted path (e.g. realm_access.roles; an array's
    /// first known role counts).
    #[arg(long, env = "JWT_ROLE_CLAIM", default_value = defaults::JWT_ROLE_CLAIM)]
    pub jwt_role_claim: Option<String>,
    /// Where the tenant is in the claims, as a dotted path.
    #[arg(long, env = "JWT_TENANT_CLAIM", default_value = defaults::JWT_TENANT_CLAIM)]
    pub jwt_tenant_claim: Option<String>,
    /// Where the groups are in the claims, as a dotted path.
    #[arg(long, env = "JWT_GROUPS_CLAIM", default_value = defaults::JWT_GROUPS_CLAIM)]
    pub jwt_groups_claim: Option<String>,
    /// `auto`: a mobile connection that has never sent a HEARTBEAT is kept online by its pongs
    /// and push-to-talk frames (VoicePing's SDK sends no HEARTBEAT); `heartbeat`: only
    /// HEARTBEATs keep anyone online.
    #[arg(long, env = "PRESENCE_LIVENESS", default_value = defaults::PRESENCE_LIVENESS)]
    pub presence_liveness: Option<String>,
    /// `jwt` (default): the bulk API needs a Bearer token; `none`: it is open.
    #[arg(long, env = "PRESENCE_API_AUTH", default_value = defaults::PRESENCE_API_AUTH)]
    pub presence_api_auth: Option<String>,
    /// A group's floor with no START or AUDIO for this long frees itself (a bare number is
    /// milliseconds, as in VoicePing).
    #[arg(long, env = "MAXIMUM_IDLE_DURATION", default_value = defaults::MAXIMUM_IDLE_DURATION)]
    pub maximum_idle_duration: Option<String>,
    /// A talk this long after its START is ended as by a STOP (milliseconds).
    #[arg(long, env = "MAXIMUM_AUDIO_DURATION", default_value = defaults::MAXIMUM_AUDIO_DURATION)]
    pub maximum_audio_duration: Option<String>,
    /// A floor is free this long after its START, whatever happens (milliseconds).
    #[arg(long, env = "GROUP_BUSY_TIMEOUT", default_value = defaults::GROUP_BUSY_TIMEOUT)]
    pub group_busy_timeout: Option<String>,
    /// `*` (default): any web page may call the API and open WebSockets; or a comma-separated
    /// list of origins (`https://dispatch.example.com`): only those, and a browser's WebSocket
    /// from any other page is refused with 403.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", default_value = defaults::CORS_ALLOWED_ORIGINS)]
    pub cors_allowed_origins: Option<String>,
    /// A second port, on `HOST`, that serves `/health`, `/ready` and `/metrics` instead of the
    /// public one (which then answers 404 for them); unset: the public port serves them.
    #[arg(long, env = "ADMIN_PORT")]
    pub admin_port: Option<String>,
    /// `text` (default): one readable line per event; `json`: one JSON object per line, with
    /// the connection's span fields (conn_id, user_id, device_id, role).
    #[arg(long, env = "LOG_FORMAT", default_value = defaults::LOG_FORMAT)]
    pub log_format: Option<String>,
    /// VoicePing's LOGIN_DUPLICATED rule: a new connection closes the user's older ones
    /// (true/false).
    #[arg(long, env = "PTT_SINGLE_SESSION", default_value = defaults::PTT_SINGLE_SESSION)]
    pub ptt_single_session: Option<String>,
}

/// Every checked setting the router runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Whether presence is tracked.
    pub presence_enabled: bool,
    /// TTL and debounce.
    pub rules: Rules,
    /// See [`Args::presence_heartbeat_min_interval`].
    pub heartbeat_min_interval: Duration,
    /// See [`Args::presence_bulk_max_ids`].
    pub bulk_max_ids: usize,
    /// See [`Args::presence_ping_interval`].
    pub ping_interval: Duration,
    /// See [`Args::presence_ping_timeout`].
    pub ping_timeout: Duration,
    /// See [`Args::presence_max_frame_bytes`].
    pub max_frame_bytes: usize,
    /// See [`Args::presence_max_body_bytes`].
    pub max_body_bytes: usize,
    /// See [`Args::presence_dashboard_queue`].
    pub dashboard_queue: usize,
    /// See [`Args::presence_max_connections`].
    pub max_connections: usize,
    /// See [`Args::presence_max_connections_per_user`].
    pub max_connections_per_user: usize,
    /// See [`Args::presence_max_pending_connections`].
    pub max_pending_connections: usize,
    /// See [`Args::presence_idle_timeout`].
    pub idle_timeout: Duration,
    /// See [`Args::presence_max_frames_per_second`].
    pub max_frames_per_second: u32,
    /// See [`Args::presence_max_bytes_per_second`].
    pub max_bytes_per_second: u32,
    /// See [`Args::presence_bulk_rate`].
    pub bulk_rate: u32,
    /// Whether the bulk API needs a token.
    pub api_auth: bool,
    /// See [`Args::presence_liveness`].
    pub liveness: LivenessRule,
    /// `MAXIMUM_IDLE_DURATION`, `MAXIMUM_AUDIO_DURATION`, `GROUP_BUSY_TIMEOUT`.
    pub ptt_timers: Timers,
    /// See [`Args::ptt_single_session`].
    pub ptt_single_session: bool,
    /// Logs as JSON lines (`LOG_FORMAT=json`).
    pub log_json: bool,
    /// Which web origins may use the router from a browser.
    pub cors_origins: Origins,
    /// Where `/health`, `/ready` and `/metrics` are served instead of `listen`, when set.
    pub admin_listen: Option<SocketAddr>,
    /// Checks tokens.
    pub verifier: Verifier,
    /// Where the verifier's keys come from, when an identity provider serves them.
    pub jwks: Option<JwksSource>,
    /// The HMAC secret, when tokens are HMAC-signed (lets `token` mint).
    pub secret: Option<Vec<u8>>,
    /// Where the Redis store is; `None` runs on the embedded store.
    pub redis_url: Option<String>,
    /// See [`Args::redis_key_prefix`].
    pub redis_key_prefix: String,
}

/// An identity provider's JWKS: where, and how long a fetched set is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSource {
    /// `http://` or `https://`.
    pub url: String,
    /// See [`Args::jwt_jwks_refresh`].
    pub refresh: Duration,
    /// See [`Args::jwt_jwks_min_refetch`].
    pub min_refetch: Duration,
}

/// Every bad setting found, one line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration:")?;
        for line in &self.0 {
            write!(f, "\n  {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Parses a duration: a bare number of seconds (`60`, `0.5`), or one or more numbers each with
/// a unit `ms`, `s`, `m`, `h` or `d` (`500ms`, `5s`, `1h30m`, `7d`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let parsed = parse_any_duration(text)?;
    if parsed > MAX_DURATION {
        return Err(format!("{text:?} is longer than ten years"));
    }
    Ok(parsed)
}

/// The longest duration a setting takes (longer ones would overflow the clock's arithmetic).
const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

fn parse_any_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || format!("{text:?} is not a duration (use 500ms, 5s, 2m, 1h30m, 7d or seconds)");
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return seconds_to_duration(seconds).ok_or_else(|| format!("{text:?} is out of range"));
    }
    let mut seconds = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        let units = tail
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(units);
        let value: f64 = number.parse().map_err(|_| bad())?;
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "" => return Err(bad()),
            other => {
                return Err(format!(
                    "{text:?} has an unknown unit {other:?} (use ms, s, m, h or d)"
                ))
            }
        };
        seconds += value * scale;
        rest = tail.trim_start();
    }
    seconds_to_duration(seconds).ok_or_else(|| format!("{text:?} is out of range"))
}

fn seconds_to_duration(seconds: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(seconds).ok()
}

/// Collects parse errors so that all of them are reported at once.
struct Checker(Vec<String>);

impl Checker {
    /// Parses `raw`, or `default` when the setting is absent. A bad value is recorded and the
    /// default stands in for it, so that later checks do not report its consequences.
    fn get<T: Default>(
        &mut self,
        var: &str,
        raw: &Option<String>,
        default: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> T {
        parse(raw.as_deref().unwrap_or(default)).unwrap_or_else(|why| {
            self.0.push(format!("{var}: {why}"));
            parse(default).unwrap_or_default()
        })
    }

    fn fail(&mut self, line: String) {
        self.0.push(line);
    }
}

fn number<T: std::str::FromStr>(what: &'static str) -> impl Fn(&str) -> Result<T, String> {
    move |text| {
        text.trim()
            .parse()
            .map_err(|_| format!("{text:?} is not {what}"))
    }
}

/// Which web origins may use the router from a browser (`CORS_ALLOWED_ORIGINS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Origins {
    /// Any (`*`).
    #[default]
    Any,
    /// Only these, each `scheme://host[:port]`.
    Listed(Vec<String>),
}

impl Origins {
    /// `*`, or origins separated by commas.
    pub fn parse(text: &str) -> Result<Origins, String> {
        if text.trim() == "*" {
            return Ok(Origins::Any);
        }
        let origins: Vec<String> = text
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        match origins
            .iter()
            .find(|o| !(o.starts_with("http://") || o.starts_with("https://")))
        {
            _ if origins.is_empty() => Err("lists no origin: use * for any".into()),
            Some(bad) => Err(format!(
                "{bad:?} is not an origin like https://dispatch.example.com"
            )),
            None => Ok(Origins::Listed(origins)),
        }
    }

    /// Whether a request from `origin` (its `Origin` header, if readable) is allowed.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        match self {
            Origins::Any => true,
            Origins::Listed(listed) => {
                origin.is_some_and(|o| listed.iter().any(|l| l.eq_ignore_ascii_case(o)))
            }
        }
    }
}

/// A VoicePing timer: a bare number is milliseconds; units as for every duration. Never zero.
fn parse_millis(text: &str) -> Result<Duration, String> {
    let parsed = match text.trim().parse::<u64>() {
        Ok(ms) => Duration::from_millis(ms),
        Err(_) => parse_duration(text)?,
    };
    if parsed.is_zero() || parsed > MAX_DURATION {
        return Err(format!("{text:?} is not between 1 ms and ten years"));
    }
    Ok(parsed)
}

fn positive(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{text:?} is not a positive whole number")),
    }
}

fn boolean(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("{text:?} is not true or false")),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Config {
    /// Checks every raw setting. `dev_secret` is used when no key is configured (`--dev`);
    /// without it, a missing key is an error.
    pub fn from_args(args: &Args, dev_secret: Option<&[u8]>) -> Result<Config, ConfigError> {
        let mut c = Checker(Vec::new());
        let port = c.get("PORT", &args.port, defaults::PORT, number("a port number"));
        let host = c.get("HOST", &args.host, defaults::HOST, |t| {
            Ok(t.trim().to_owned())
        });
        let presence_enabled = c.get(
            "PRESENCE_ENABLED",
            &args.presence_enabled,
            defaults::PRESENCE_ENABLED,
            boolean,
        );
        let ttl = c.get(
            "PRESENCE_TTL",
            &args.presence_ttl,
            defaults::PRESENCE_TTL,
            parse_duration,
        );
        let debounce = c.get(
            "PRESENCE_OFFLINE_DEBOUNCE",
            &args.presence_offline_debounce,
            defaults::PRESENCE_OFFLINE_DEBOUNCE,
            parse_duration,
        );
        let min_interval = c.get(
            "PRESENCE_HEARTBEAT_MIN_INTERVAL",
            &args.presence_heartbeat_min_interval,
            defaults::PRESENCE_HEARTBEAT_MIN_INTERVAL,
            parse_duration,
        );
        let bulk_max_ids = c.get(
            "PRESENCE_BULK_MAX_IDS",
            &args.presence_bulk_max_ids,
            defaults::PRESENCE_BULK_MAX_IDS,
            positive,
        );
        let ping_interval = c.get(
            "PRESENCE_PING_INTERVAL",
            &args.presence_ping_interval,
            defaults::PRESENCE_PING_INTERVAL,
            parse_duration,
        );
        let ping_timeout = c.get(
            "PRESENCE_PING_TIMEOUT",
            &args.presence_ping_timeout,
            defaults::PRESENCE_PING_TIMEOUT,
            parse_duration,
        );
        let max_frame_bytes = c.get(
            "PRESENCE_MAX_FRAME_BYTES",
            &args.presence_max_frame_bytes,
            defaults::PRESENCE_MAX_FRAME_BYTES,
            positive,
        );
        let max_body_bytes = c.get(
            "PRESENCE_MAX_BODY_BYTES",
            &args.presence_max_body_bytes,
            defaults::PRESENCE_MAX_BODY_BYTES,
            positive,
        );
        let dashboard_queue = c.get(
            "PRESENCE_DASHBOARD_QUEUE",
            &args.presence_dashboard_queue,
            defaults::PRESENCE_DASHBOARD_QUEUE,
            positive,
        );
        let max_connections = c.get(
            "PRESENCE_MAX_CONNECTIONS",
            &args.presence_max_connections,
            defaults::PRESENCE_MAX_CONNECTIONS,
            positive,
        );
        let max_connections_per_user = c.get(
            "PRESENCE_MAX_CONNECTIONS_PER_USER",
            &args.presence_max_connections_per_user,
            defaults::PRESENCE_MAX_CONNECTIONS_PER_USER,
            positive,
        );
        let max_pending_connections = c.get(
            "PRESENCE_MAX_PENDING_CONNECTIONS",
            &args.presence_max_pending_connections,
            defaults::PRESENCE_MAX_PENDING_CONNECTIONS,
            positive,
        );
        let rate = |c: &mut Checker, var: &str, value: &Option<String>, default: &str| {
            c.get(var, value, default, |text| {
                positive(text)
                    .and_then(|n| u32::try_from(n).map_err(|_| format!("{n} is out of range")))
            })
        };
        let max_frames_per_second = rate(
            &mut c,
            "PRESENCE_MAX_FRAMES_PER_SECOND",
            &args.presence_max_frames_per_second,
            defaults::PRESENCE_MAX_FRAMES_PER_SECOND,
        );
        let max_bytes_per_second = rate(
            &mut c,
            "PRESENCE_MAX_BYTES_PER_SECOND",
            &args.presence_max_bytes_per_second,
            defaults::PRESENCE_MAX_BYTES_PER_SECOND,
        );
        let bulk_rate = rate(
            &mut c,
            "PRESENCE_BULK_RATE",
            &args.presence_bulk_rate,
            defaults::PRESENCE_BULK_RATE,
        );
        let idle_timeout = c.get(
            "PRESENCE_IDLE_TIMEOUT",
            &args.presence_idle_timeout,
            defaults::PRESENCE_IDLE_TIMEOUT,
            parse_duration,
        );
        let api_auth = c.get(
            "PRESENCE_API_AUTH",
            &args.presence_api_auth,
            defaults::PRESENCE_API_AUTH,
            |text| match text.trim() {
                "jwt" => Ok(true),
                "none" => Ok(false),
                other => Err(format!("{other:?} is not jwt or none")),
            },
        );
        let liveness = c.get(
            "PRESENCE_LIVENESS",
            &args.presence_liveness,
            defaults::PRESENCE_LIVENESS,
            |text| match text.trim() {
                "auto" => Ok(LivenessRule::Auto),
                "heartbeat" => Ok(LivenessRule::Heartbeat),
                other => Err(format!("{other:?} is not auto or heartbeat")),
            },
        );
        let ptt_millis = |c: &mut Checker, var: &str, value: &Option<String>, default: &str| {
            millis(c.get(var, value, default, parse_millis))
        };
        let ptt_timers = Timers {
            idle: ptt_millis(
                &mut c,
                "MAXIMUM_IDLE_DURATION",
                &args.maximum_idle_duration,
                defaults::MAXIMUM_IDLE_DURATION,
            ),
            max_talk: ptt_millis(
                &mut c,
                "MAXIMUM_AUDIO_DURATION",
                &args.maximum_audio_duration,
                defaults::MAXIMUM_AUDIO_DURATION,
            ),
            busy_timeout: ptt_millis(
                &mut c,
                "GROUP_BUSY_TIMEOUT",
                &args.group_busy_timeout,
                defaults::GROUP_BUSY_TIMEOUT,
            ),
        };
        if ptt_timers.max_talk > ptt_timers.busy_timeout {
            c.fail(format!(
                "MAXIMUM_AUDIO_DURATION: {} ms must not exceed GROUP_BUSY_TIMEOUT ({} ms): a talk would lose its floor before it is stopped",
                ptt_timers.max_talk, ptt_timers.busy_timeout
            ));
        }
        let ptt_single_session = c.get(
            "PTT_SINGLE_SESSION",
            &args.ptt_single_session,
            defaults::PTT_SINGLE_SESSION,
            boolean,
        );
        let log_json = c.get(
            "LOG_FORMAT",
            &args.log_format,
            defaults::LOG_FORMAT,
            |text| match text.trim() {
                "text" => Ok(false),
                "json" => Ok(true),
                other => Err(format!("{other:?} is not text or json")),
            },
        );
        let cors_origins = c.get(
            "CORS_ALLOWED_ORIGINS",
            &args.cors_allowed_origins,
            defaults::CORS_ALLOWED_ORIGINS,
            Origins::parse,
        );
        let listen = listen_address(&mut c, &host, port);
        let admin_listen = args.admin_port.as_ref().map(|text| {
            let admin: u16 = c.get(
                "ADMIN_PORT",
                &Some(text.clone()),
                "0",
                number("a port number"),
            );
            if admin == port && admin != 0 {
                c.fail(format!(
                    "ADMIN_PORT: {admin} is PORT too: give the admin routes a port of their own"
                ));
            }
            SocketAddr::new(listen.ip(), admin)
        });
        let redis_key_prefix = c.get(
            "REDIS_KEY_PREFIX",
            &args.redis_key_prefix,
            defaults::REDIS_KEY_PREFIX,
            |text| match text {
                "" => Err("must not be empty".to_owned()),
                t if t.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                    Err(format!("{t:?} has spaces or control characters"))
                }
                t => Ok(t.to_owned()),
            },
        );

        if ttl.is_zero() {
            c.fail("PRESENCE_TTL: must be more than 0".into());
        }
        if min_interval >= ttl {
            c.fail(format!(
                "PRESENCE_HEARTBEAT_MIN_INTERVAL: {min_interval:?} must be below PRESENCE_TTL ({ttl:?})"
            ));
        }
        for (var, d) in [
            ("PRESENCE_PING_INTERVAL", ping_interval),
            ("PRESENCE_PING_TIMEOUT", ping_timeout),
        ] {
            if d.is_zero() {
                c.fail(format!("{var}: must be more than 0"));
            }
        }
        if idle_timeout <= ping_interval + ping_timeout {
            c.fail(format!(
                "PRESENCE_IDLE_TIMEOUT: {idle_timeout:?} must exceed PRESENCE_PING_INTERVAL + PRESENCE_PING_TIMEOUT ({:?}): an idle WebSocket moves only through its pings",
                ping_interval + ping_timeout
            ));
        }
        let redis_url = redis_url(&mut c, args);
        let (verifier, secret) = keys(&mut c, args, dev_secret);
        let jwks = jwks_source(&mut c, args);
        match (c.0.is_empty(), verifier) {
            (true, Some(verifier)) => Ok(Config {
                listen,
                presence_enabled,
                rules: Rules {
                    ttl: millis(ttl),
                    offline_debounce: millis(debounce),
                    retention: DEFAULT_RETENTION,
                },
                heartbeat_min_interval: min_interval,
                bulk_max_ids,
                ping_interval,
                ping_timeout,
                max_frame_bytes,
                max_body_bytes,
                dashboard_queue,
                max_connections,
                max_connections_per_user,
                max_pending_connections,
                idle_timeout,
                max_frames_per_second,
                max_bytes_per_second,
                bulk_rate,
                api_auth,
                liveness,
                ptt_timers,
                ptt_single_session,
                log_json,
                cors_origins,
                admin_listen,
                verifier,
                jwks,
                secret,
                redis_url,
                redis_key_prefix,
            }),
            _ => Err(ConfigError(c.0)),
        }
    }
}

/// `HOST` and `PORT` as one address: an IP address as it is, a host name resolved (its first IPv4
/// address, else its first address).
fn listen_address(c: &mut Checker, host: &str, port: u16) -> SocketAddr {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return SocketAddr::new(ip, port);
    }
    let unspecified = SocketAddr::new(IpAddr::from([0, 0, 0, 0]), port);
    if host.is_empty() {
        c.fail("HOST: must not be empty".into());
        return unspecified;
    }
    match (host, port).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            match addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()) {
                Some(addr) => *addr,
                None => {
                    c.fail(format!("HOST: {host:?} resolves to no address"));
                    unspecified
                }
            }
        }
        Err(e) => {
            c.fail(format!(
                "HOST: {host:?} is not an IP address and cannot be resolved: {e}"
            ));
            unspecified
        }
    }
}

/// The URL schemes the Redis store can use.
const REDIS_SCHEMES: [&str; 2] = ["redis", "rediss"];

impl Config {
    /// Only the token key (and where it is fetched from, for `JWT_JWKS_URL`), for commands that
    /// check tokens without serving.
    pub fn verifier_from_args(args: &Args) -> Result<(Verifier, Option<JwksSource>), ConfigError> {
        let mut c = Checker(Vec::new());
        let (verifier, _) = keys(&mut c, args, None);
        let jwks = jwks_source(&mut c, args);
        match verifier {
            Some(verifier) if c.0.is_empty() => Ok((verifier, jwks)),
            _ => Err(ConfigError(c.0)),
        }
    }
}

/// The Redis URL from `REDIS_URL`, or built from `REDIS_HOST`/`REDIS_PORT`/`REDIS_PASSWORD`.
fn redis_url(c: &mut Checker, args: &Args) -> Option<String> {
    let (var, url) = match (
        &args.redis_url,
        &args.redis_host,
        &args.redis_port,
        &args.redis_password,
    ) {
        (Some(url), ..) => ("REDIS_URL", url.clone()),
        (None, None, None, None) => return None,
        (None, host, port, password) => {
            let port: u16 = c.get("REDIS_PORT", port, "6379", number("a port number"));
            let host = host.as_deref().unwrap_or("127.0.0.1");
            let auth = password
                .as_deref()
                .map(|p| {
                    format!(
                        ":{}@",
                        form_urlencoded::byte_serialize(p.as_bytes()).collect::<String>()
                    )
                })
                .unwrap_or_default();
            ("REDIS_HOST", format!("redis://{auth}{host}:{port}"))
        }
    };
    let scheme = url.split_once("://").map(|(scheme, _)| scheme);
    if !scheme.is_some_and(|s| REDIS_SCHEMES.contains(&s)) {
        c.fail(format!(
            "{var}: {:?} is not a Redis URL: use redis://[:password@]host:port[/db], or rediss:// for TLS",
            crate::store::redacted_url(&url)
        ));
        return None;
    }
    match fred::prelude::Config::from_url(&url) {
        Ok(_) => Some(url),
        Err(e) => {
            c.fail(format!(
                "{var}: {:?} is not a usable Redis URL: {}",
                crate::store::redacted_url(&url),
                e.details()
            ));
            None
        }
    }
}

/// `JWT_JWKS_URL` and its refresh interval, when set.
fn jwks_source(c: &mut Checker, args: &Args) -> Option<JwksSource> {
    let refresh = c.get(
        "JWT_JWKS_REFRESH",
        &args.jwt_jwks_refresh,
        defaults::JWT_JWKS_REFRESH,
        parse_duration,
    );
    let min_refetch = c.get(
        "JWT_JWKS_MIN_REFETCH",
        &args.jwt_jwks_min_refetch,
        defaults::JWT_JWKS_MIN_REFETCH,
        parse_duration,
    );
    let url = args.jwt_jwks_url.as_ref()?;
    if !(url.starts_with("https://") || url.starts_with("http://"))
        || url.parse::<hyper::Uri>().is_err()
    {
        c.fail(format!(
            "JWT_JWKS_URL: {url:?} is not an https:// or http:// URL"
        ));
        return None;
    }
    if refresh < Duration::from_secs(10) {
        c.fail("JWT_JWKS_REFRESH: must be at least 10s".into());
    }
    if min_refetch < Duration::from_secs(1) {
        c.fail("JWT_JWKS_MIN_REFETCH: must be at least 1s (every unknown key id would reach the identity provider)".into());
    }
    Some(JwksSource {
        url: url.clone(),
        refresh,
        min_refetch,
    })
}

/// The shortest HMAC secret accepted without `JWT_ALLOW_WEAK_SECRET`.
pub const MIN_SECRET_BYTES: usize = 32;

/// Where the claims are and what they must say, from `JWT_ISSUER`, `JWT_AUDIENCE`, the
/// `JWT_*_CLAIM` paths, `PRESENCE_REQUIRE_EXP` and `PRESENCE_MAX_TOKEN_AGE`.
fn claim_rules(c: &mut Checker, args: &Args) -> ClaimRules {
    let mut rules = ClaimRules {
        require_exp: c.get(
            "PRESENCE_REQUIRE_EXP",
            &args.presence_require_exp,
            defaults::PRESENCE_REQUIRE_EXP,
            boolean,
        ),
        ..ClaimRules::default()
    };
    if let Some(age) = &args.presence_max_token_age {
        match parse_duration(age) {
            // A token without `exp` would outlive any age: the cap asks for one.
            Ok(age) if !age.is_zero() => {
                rules.max_lifetime = Some(age.as_secs().max(1));
                rules.require_exp = true;
            }
            Ok(_) => c.fail("PRESENCE_MAX_TOKEN_AGE: must be more than 0".into()),
            Err(why) => c.fail(format!("PRESENCE_MAX_TOKEN_AGE: {why}")),
        }
    }
    for (var, value, path) in [
        ("JWT_ROLE_CLAIM", &args.jwt_role_claim, &mut rules.role),
        (
            "JWT_TENANT_CLAIM",
            &args.jwt_tenant_claim,
            &mut rules.tenant,
        ),
        (
            "JWT_GROUPS_CLAIM",
            &args.jwt_groups_claim,
            &mut rules.groups,
        ),
    ] {
        if let Some(text) = value {
            match ClaimPath::parse(text.trim()) {
                Some(parsed) => *path = parsed,
                None => c.fail(format!(
                    "{var}: {text:?} is not a claim path (keys joined by dots)"
                )),
            }
        }
    }
    let non_empty = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
    rules.issuer = non_empty(&args.jwt_issuer);
    rules.audience = non_empty(&args.jwt_audience);
    rules
}

/// Loads the one configured token key source, with the claim rules.
fn keys(
    c: &mut Checker,
    args: &Args,
    dev_secret: Option<&[u8]>,
) -> (Option<Verifier>, Option<Vec<u8>>) {
    let rules = claim_rules(c, args);
    let (verifier, secret) = key_source(c, args, dev_secret);
    (verifier.map(|v| v.with_rules(rules)), secret)
}

fn key_source(
    c: &mut Checker,
    args: &Args,
    dev_secret: Option<&[u8]>,
) -> (Option<Verifier>, Option<Vec<u8>>) {
    let configured = [
        &args.jwt_secret,
        &args.jwt_public_key_file,
        &args.jwt_jwks_file,
        &args.jwt_jwks_url,
    ]
    .iter()
    .filter(|v| v.is_some())
    .count();
    if configured > 1 {
        c.fail("JWT_SECRET, JWT_PUBLIC_KEY_FILE, JWT_JWKS_FILE, JWT_JWKS_URL: set only one; it pins the token algorithm".into());
        return (None, None);
    }
    if args.jwt_jwks_url.is_some() {
        return (Some(Verifier::awaiting_jwks()), None);
    }
    let read = |c: &mut Checker, var: &str, path: &str| {
        std::fs::read(path)
            .map_err(|e| c.fail(format!("{var}: cannot read {path:?}: {e}")))
            .ok()
    };
    if let Some(secret) = &args.jwt_secret {
        if secret.is_empty() {
            c.fail("JWT_SECRET: must not be empty".into());
            return (None, None);
        }
        let weak_allowed = c.get(
            "JWT_ALLOW_WEAK_SECRET",
            &args.jwt_allow_weak_secret,
            defaults::JWT_ALLOW_WEAK_SECRET,
            boolean,
        );
        if secret.len() < MIN_SECRET_BYTES && !weak_allowed {
            c.fail(format!(
                "JWT_SECRET: {} bytes is too short: an HMAC secret under {MIN_SECRET_BYTES} bytes can be guessed offline from any token it signed, and whoever guesses it signs tokens for anyone. Use {MIN_SECRET_BYTES} random bytes or more (openssl rand -base64 32), or set JWT_ALLOW_WEAK_SECRET=true to keep this one (an existing VoicePing secret, say)",
                secret.len()
            ));
            return (None, None);
        }
        return (
            Some(Verifier::hmac(secret.as_bytes())),
            Some(secret.as_bytes().to_vec()),
        );
    }
    if let Some(path) = &args.jwt_public_key_file {
        let verifier = read(c, "JWT_PUBLIC_KEY_FILE", path).and_then(|pem| {
            Verifier::public_key_pem(&pem)
                .map_err(|e| c.fail(format!("JWT_PUBLIC_KEY_FILE: {path:?}: {e}")))
                .ok()
        });
        return (verifier, None);
    }
    if let Some(path) = &args.jwt_jwks_file {
        let verifier = read(c, "JWT_JWKS_FILE", path).and_then(|json| {
            Verifier::jwks(&String::from_utf8_lossy(&json))
                .map_err(|e| c.fail(format!("JWT_JWKS_FILE: {path:?}: {e}")))
                .ok()
        });
        return (verifier, None);
    }
    match dev_secret {
        Some(secret) => (Some(Verifier::hmac(secret)), Some(secret.to_vec())),
        None => {
            c.fail("JWT_SECRET: no token key configured: set JWT_SECRET, JWT_PUBLIC_KEY_FILE, JWT_JWKS_FILE or JWT_JWKS_URL, or run with --dev".into());
            (None, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(f: impl FnOnce(&mut Args)) -> Args {
        let mut a = Args {
            jwt_secret: Some("a-secret-of-at-least-thirty-two-bytes".into()),
            ..Args::default()
        };
        f(&mut a);
        a
    }

    #[test]
    fn a_short_hmac_secret_stops_the_start_unless_allowed() {
        let weak = args(|a| a.jwt_secret = Some("change-me".into()));
        let err = Config::from_args(&weak, None).expect_err("refused");
        assert!(
            err.0[0].starts_with("JWT_SECRET: 9 bytes is too short")
                && err.0[0].contains("JWT_ALLOW_WEAK_SECRET=true"),
            "{err}"
        );
        let allowed = args(|a| {
            a.jwt_secret = Some("change-me".into());
            a.jwt_allow_weak_secret = Some("true".into());
        });
        assert!(Config::from_args(&allowed, None).is_ok());
    }

    #[test]
    fn allowed_origins_are_star_or_a_list_of_origins() {
        assert_eq!(Origins::parse("*"), Ok(Origins::Any));
        let listed = Origins::parse("https://a.example, http://b.example:8080/").expect("list");
        assert!(listed.allows(Some("https://a.example")));
        assert!(listed.allows(Some("http://b.example:8080")));
        assert!(!listed.allows(Some("https://c.example")) && !listed.allows(None));
        let bad = args(|a| a.cors_allowed_origins = Some("dispatch.example.com".into()));
        let err = Config::from_args(&bad, None).expect_err("refused");
        assert!(err.0[0].starts_with("CORS_ALLOWED_ORIGINS:"), "{err}");
    }

    #[test]
    fn voicepings_timers_are_milliseconds_and_must_agree() {
        let config = Config::from_args(&args(|_| {}), None).expect("defaults");
        assert_eq!(
            config.ptt_timers,
            Timers {
                idle: 3_000,
                max_talk: 90_000,
                busy_timeout: 95_000
            }
        );
        let set = args(|a| {
            a.maximum_idle_duration = Some("2500".into());
            a.maximum_audio_duration = Some("1m".into());
        });
        let config = Config::from_args(&set, None).expect("valid");
        assert_eq!(
            (config.ptt_timers.idle, config.ptt_timers.max_talk),
            (2_500, 60_000)
        );
        let bad = args(|a| {
            a.maximum_idle_duration = Some("0".into());
            a.maximum_audio_duration = Some("100000".into());
        });
        let err = Config::from_args(&bad, None).expect_err("refused");
        assert!(
            err.0
                .iter()
                .any(|e| e.starts_with("MAXIMUM_IDLE_DURATION:")),
            "{err}"
        );
        assert!(
            err.0
                .iter()
                .any(|e| e.starts_with("MAXIMUM_AUDIO_DURATION:")),
            "{err}"
        );
    }

    #[test]
    fn tokens_without_exp_or_living_too_long_can_be_refused() {
        let strict = args(|a| {
            a.presence_require_exp = Some("true".into());
            a.presence_max_token_age = Some("1d".into());
        });
        let config = Config::from_args(&strict, None).expect("valid");
        let secret = b"a-secret-of-at-least-thirty-two-bytes";
        let now = 1_800_000_000;
        let sign = |claims: serde_json::Value| {
            jsonwebtoken::encode(
                &jsonwebtoken::Header::default(),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(secret),
            )
            .expect("sign")
        };
        let verify = |claims| config.verifier.verify(&sign(claims), now);
        assert_eq!(
            verify(serde_json::json!({"uid": "a"})),
            Err(crate::auth::AuthError::NoExpiry)
        );
        assert_eq!(
            verify(serde_json::json!({"uid": "a", "exp": now + 2 * 86_400})),
            Err(crate::auth::AuthError::TooLongLived)
        );
        assert!(verify(serde_json::json!({"uid": "a", "exp": now + 3_600})).is_ok());
    }

    #[test]
    fn durations_take_units_and_bare_seconds() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn durations_take_compound_values_and_days() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2s500ms"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        for bad in ["1h30", "h", "1hh", "1h-30m", "1w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    /// `--help` shows the defaults, and they are what a setting left out is parsed from.
    #[test]
    fn every_default_parses() {
        let c = Config::from_args(&args(|_| {}), None).expect("valid");
        let shown = Config::from_args(
            &args(|a| {
                a.port = Some(defaults::PORT.into());
                a.presence_ttl = Some(defaults::PRESENCE_TTL.into());
                a.presence_dashboard_queue = Some(defaults::PRESENCE_DASHBOARD_QUEUE.into());
            }),
            None,
        )
        .expect("valid");
        assert_eq!(c.listen, shown.listen);
        assert_eq!(c.rules, shown.rules);
        assert_eq!(c.dashboard_queue, 16_384);
        assert_eq!(c.max_connections, 100_000);
    }

    #[test]
    fn host_takes_an_address_or_a_name() {
        let named = Config::from_args(&args(|a| a.host = Some("localhost".into())), None)
            .expect("localhost resolves");
        assert!(named.listen.ip().is_loopback(), "{}", named.listen);
        let v6 = Config::from_args(&args(|a| a.host = Some("::1".into())), None).expect("valid");
        assert_eq!(v6.listen.to_string(), "[::1]:3000");
        let err = Config::from_args(
            &args(|a| a.host = Some("no-such-host.invalid".into())),
            None,
        )
        .expect_err("unresolvable");
        assert!(err.to_string().contains("HOST"), "{err}");
    }

    #[test]
    fn a_bad_value_does_not_cascade_into_other_errors() {
        let err = Config::from_args(&args(|a| a.presence_ttl = Some("soon".into())), None)
            .expect_err("invalid");
        assert_eq!(err.0.len(), 1, "{err}");
    }

    #[test]
    fn redis_urls_need_a_redis_scheme_and_errors_hide_the_password() {
        for good in [
            "redis://127.0.0.1:6379",
            "rediss://:pw@cache.example.com:6380/1",
        ] {
            let config = Config::from_args(&args(|a| a.redis_url = Some(good.into())), None);
            assert!(config.is_ok(), "{good}: {config:?}");
        }
        for bad in [
            "http://:hunter2@127.0.0.1:6379",
            "127.0.0.1:6379",
            "redis://:hunter2@127.0.0.1:notaport",
        ] {
            let err = Config::from_args(&args(|a| a.redis_url = Some(bad.into())), None)
                .expect_err(bad)
                .to_string();
            assert!(err.contains("REDIS_URL"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn defaults_follow_the_design() {
        let config = Config::from_args(&args(|_| {}), None).expect("valid");
        assert_eq!(config.listen.port(), 3000);
        assert_eq!(
            config.rules,
            Rules {
                ttl: 60_000,
                offline_debounce: 5_000,
                retention: DEFAULT_RETENTION,
            }
        );
        assert_eq!(config.heartbeat_min_interval, Duration::from_secs(25));
        assert_eq!(config.bulk_max_ids, 100);
        assert_eq!(config.max_frame_bytes, 65_536);
        assert!(config.api_auth && config.presence_enabled);
    }

    #[test]
    fn every_bad_value_is_reported_by_its_variable() {
        let err = Config::from_args(
            &args(|a| {
                a.port = Some("http".into());
                a.presence_ttl = Some("soon".into());
                a.presence_bulk_max_ids = Some("0".into());
            }),
            None,
        )
        .expect_err("invalid");
        let text = err.to_string();
        for var in ["PORT", "PRESENCE_TTL", "PRESENCE_BULK_MAX_IDS"] {
            assert!(text.contains(var), "{var} missing from {text}");
        }
    }

    #[test]
    fn the_heartbeat_interval_must_be_below_the_ttl() {
        let err = Config::from_args(
            &args(|a| {
                a.presence_ttl = Some("20".into());
            }),
            None,
        )
        .expect_err("25 s is not below 20 s");
        assert!(err.to_string().contains("PRESENCE_HEARTBEAT_MIN_INTERVAL"));
    }

    #[test]
    fn no_key_refuses_to_start_unless_dev() {
        let no_key = Args::default();
        let err = Config::from_args(&no_key, None).expect_err("no key");
        assert!(err.to_string().contains("--dev"));
        assert!(Config::from_args(&no_key, Some(b"random")).is_ok());
    }

    #[test]
    fn redis_is_chosen_by_url_or_by_host_and_port() {
        assert_eq!(
            Config::from_args(&args(|_| {}), None)
                .expect("valid")
                .redis_url,
            None
        );
        let by_url = args(|a| a.redis_url = Some("redis://127.0.0.1:6380/2".into()));
        assert_eq!(
            Config::from_args(&by_url, None)
                .expect("valid")
                .redis_url
                .as_deref(),
            Some("redis://127.0.0.1:6380/2")
        );
        let by_parts = args(|a| {
            a.redis_host = Some("10.1.2.3".into());
            a.redis_password = Some("p@ss".into());
        });
        assert_eq!(
            Config::from_args(&by_parts, None)
                .expect("valid")
                .redis_url
                .as_deref(),
            Some("redis://:p%40ss@10.1.2.3:6379")
        );
        let bad = args(|a| a.redis_port = Some("redis".into()));
        assert!(Config::from_args(&bad, None)
            .expect_err("bad port")
            .to_string()
            .contains("REDIS_PORT"));
    }

    #[test]
    fn only_one_key_may_be_configured() {
        let err = Config::from_args(&args(|a| a.jwt_jwks_file = Some("x.json".into())), None)
            .expect_err("two keys");
        assert!(err.to_string().contains("set only one"));
    }
}
