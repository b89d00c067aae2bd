//! Configuration: every setting read once, at the edge, into [`Config`].
//!
//! [`Args`] is what clap reads from flags and the environment, all as raw strings;
//! [`Config::from_args`] checks every value and reports all the bad ones together, each naming
//! its environment variable.

use crate::auth::Verifier;
use crate::presence::Rules;
use clap::Args as ClapArgs;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Raw settings, one per environment variable (each also a `--flag`).
#[derive(Debug, Clone, Default, ClapArgs)]
pub struct Args {
    /// TCP port for HTTP and WebSocket.
    #[arg(long, env = "PORT")]
    pub port: Option<String>,
    /// Address to bind.
    #[arg(long, env = "HOST")]
    pub host: Option<String>,
    /// Track presence at all (true/false).
    #[arg(long, env = "PRESENCE_ENABLED")]
    pub presence_enabled: Option<String>,
    /// How long a user stays online after a connect or heartbeat write (bare number = seconds).
    #[arg(long, env = "PRESENCE_TTL")]
    pub presence_ttl: Option<String>,
    /// How long after the last device leaves a user is reported offline (0 = at once).
    #[arg(long, env = "PRESENCE_OFFLINE_DEBOUNCE")]
    pub presence_offline_debounce: Option<String>,
    /// Heartbeats closer than this per device cause no store write.
    #[arg(long, env = "PRESENCE_HEARTBEAT_MIN_INTERVAL")]
    pub presence_heartbeat_min_interval: Option<String>,
    /// Most user ids in one bulk status request.
    #[arg(long, env = "PRESENCE_BULK_MAX_IDS")]
    pub presence_bulk_max_ids: Option<String>,
    /// How often the router pings each connection.
    #[arg(long, env = "PRESENCE_PING_INTERVAL")]
    pub presence_ping_interval: Option<String>,
    /// How long a connection may leave a ping (or a write) unanswered before it is closed.
    #[arg(long, env = "PRESENCE_PING_TIMEOUT")]
    pub presence_ping_timeout: Option<String>,
    /// Largest WebSocket message accepted, in bytes.
    #[arg(long, env = "PRESENCE_MAX_FRAME_BYTES")]
    pub presence_max_frame_bytes: Option<String>,
    /// Largest HTTP request body accepted, in bytes.
    #[arg(long, env = "PRESENCE_MAX_BODY_BYTES")]
    pub presence_max_body_bytes: Option<String>,
    /// How many updates a dashboard may fall behind before it is closed with 1013.
    #[arg(long, env = "PRESENCE_DASHBOARD_QUEUE")]
    pub presence_dashboard_queue: Option<String>,
    /// Most WebSocket connections at once; more are refused with 503.
    #[arg(long, env = "PRESENCE_MAX_CONNECTIONS")]
    pub presence_max_connections: Option<String>,
    /// Redis URL (`redis://[:password@]host:port[/db]`): use the Redis store.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Redis host.
    #[arg(long, env = "REDIS_HOST")]
    pub redis_host: Option<String>,
    /// Redis port.
    #[arg(long, env = "REDIS_PORT")]
    pub redis_port: Option<String>,
    /// Redis password.
    #[arg(long, env = "REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,
    /// HMAC secret for HS256/384/512 tokens (alias SECRET_KEY).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM file with the RSA or EC P-256 public key for RS256/ES256 tokens.
    #[arg(long, env = "JWT_PUBLIC_KEY_FILE")]
    pub jwt_public_key_file: Option<String>,
    /// JWKS file with the public keys for RS256/ES256 tokens.
    #[arg(long, env = "JWT_JWKS_FILE")]
    pub jwt_jwks_file: Option<String>,
    /// `jwt` (default): the bulk API needs a Bearer token; `none`: it is open.
    #[arg(long, env = "PRESENCE_API_AUTH")]
    pub presence_api_auth: Option<String>,
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
    /// Whether the bulk API needs a token.
    pub api_auth: bool,
    /// Checks tokens.
    pub verifier: Verifier,
    /// The HMAC secret, when tokens are HMAC-signed (lets `token` mint).
    pub secret: Option<Vec<u8>>,
    /// Where the Redis store is; `None` runs on the embedded store.
    pub redis_url: Option<String>,
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

/// Parses `500ms`, `5s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (use 500ms, 5s, 2m, 1h or seconds)"))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "{text:?} has an unknown unit {other:?} (use ms, s, m or h)"
            ))
        }
    };
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("{text:?} is out of range"))
}

/// Collects parse errors so that all of them are reported at once.
struct Checker(Vec<String>);

impl Checker {
    fn get<T>(
        &mut self,
        var: &str,
        raw: &Option<String>,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        match raw.as_deref() {
            None => default,
            Some(text) => parse(text).unwrap_or_else(|why| {
                self.0.push(format!("{var}: {why}"));
                default
            }),
        }
    }

    fn fail(&mut self, line: String) {
        self.0.push(line);
    }
}

fn number<T: std::str::FromStr>(what: &'static str) -> impl FnOnce(&str) -> Result<T, String> {
    move |text| {
        text.trim()
            .parse()
            .map_err(|_| format!("{text:?} is not {what}"))
    }
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
        let port = c.get("PORT", &args.port, 3000u16, number("a port number"));
        let host = c.get(
            "HOST",
            &args.host,
            IpAddr::from([0, 0, 0, 0]),
            number("an IP address"),
        );
        let presence_enabled = c.get("PRESENCE_ENABLED", &args.presence_enabled, true, boolean);
        let ttl = c.get(
            "PRESENCE_TTL",
            &args.presence_ttl,
            Duration::from_secs(60),
            parse_duration,
        );
        let debounce = c.get(
            "PRESENCE_OFFLINE_DEBOUNCE",
            &args.presence_offline_debounce,
            Duration::from_secs(5),
            parse_duration,
        );
        let min_interval = c.get(
            "PRESENCE_HEARTBEAT_MIN_INTERVAL",
            &args.presence_heartbeat_min_interval,
            Duration::from_secs(25),
            parse_duration,
        );
        let bulk_max_ids = c.get(
            "PRESENCE_BULK_MAX_IDS",
            &args.presence_bulk_max_ids,
            100,
            positive,
        );
        let ping_interval = c.get(
            "PRESENCE_PING_INTERVAL",
            &args.presence_ping_interval,
            Duration::from_secs(30),
            parse_duration,
        );
        let ping_timeout = c.get(
            "PRESENCE_PING_TIMEOUT",
            &args.presence_ping_timeout,
            Duration::from_secs(10),
            parse_duration,
        );
        let max_frame_bytes = c.get(
            "PRESENCE_MAX_FRAME_BYTES",
            &args.presence_max_frame_bytes,
            64 * 1024,
            positive,
        );
        let max_body_bytes = c.get(
            "PRESENCE_MAX_BODY_BYTES",
            &args.presence_max_body_bytes,
            64 * 1024,
            positive,
        );
        let dashboard_queue = c.get(
            "PRESENCE_DASHBOARD_QUEUE",
            &args.presence_dashboard_queue,
            16_384,
            positive,
        );
        let max_connections = c.get(
            "PRESENCE_MAX_CONNECTIONS",
            &args.presence_max_connections,
            100_000,
            positive,
        );
        let api_auth = c.get(
            "PRESENCE_API_AUTH",
            &args.presence_api_auth,
            true,
            |text| match text.trim() {
                "jwt" => Ok(true),
                "none" => Ok(false),
                other => Err(format!("{other:?} is not jwt or none")),
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
        let redis_url = redis_url(&mut c, args);
        let (verifier, secret) = keys(&mut c, args, dev_secret);
        match (c.0.is_empty(), verifier) {
            (true, Some(verifier)) => Ok(Config {
                listen: SocketAddr::new(host, port),
                presence_enabled,
                rules: Rules {
                    ttl: millis(ttl),
                    offline_debounce: millis(debounce),
                },
                heartbeat_min_interval: min_interval,
                bulk_max_ids,
                ping_interval,
                ping_timeout,
                max_frame_bytes,
                max_body_bytes,
                dashboard_queue,
                max_connections,
                api_auth,
                verifier,
                secret,
                redis_url,
            }),
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
            let port = c.get("REDIS_PORT", port, 6379u16, number("a port number"));
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
    match fred::prelude::Config::from_url(&url) {
        Ok(_) => Some(url),
        Err(e) => {
            c.fail(format!("{var}: not a usable Redis URL: {e}"));
            None
        }
    }
}

/// Loads the one configured token key.
fn keys(
    c: &mut Checker,
    args: &Args,
    dev_secret: Option<&[u8]>,
) -> (Option<Verifier>, Option<Vec<u8>>) {
    let configured = [
        &args.jwt_secret,
        &args.jwt_public_key_file,
        &args.jwt_jwks_file,
    ]
    .iter()
    .filter(|v| v.is_some())
    .count();
    if configured > 1 {
        c.fail("JWT_SECRET, JWT_PUBLIC_KEY_FILE, JWT_JWKS_FILE: set only one; it pins the token algorithm".into());
        return (None, None);
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
            c.fail("JWT_SECRET: no token key configured: set JWT_SECRET, JWT_PUBLIC_KEY_FILE or JWT_JWKS_FILE, or run with --dev".into());
            (None, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(f: impl FnOnce(&mut Args)) -> Args {
        let mut a = Args {
            jwt_secret: Some("s3cret".into()),
            ..Args::default()
        };
        f(&mut a);
        a
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
    fn defaults_follow_the_design() {
        let config = Config::from_args(&args(|_| {}), None).expect("valid");
        assert_eq!(config.listen.port(), 3000);
        assert_eq!(
            config.rules,
            Rules {
                ttl: 60_000,
                offline_debounce: 5_000
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
