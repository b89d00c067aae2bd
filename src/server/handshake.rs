//! The WebSocket upgrade: header checks and where the token and device id come from.

use hyper::header::{
    HeaderMap, HeaderValue, CONNECTION, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::{Method, Request};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Longest device id accepted, in bytes: the VoicePing Android SDK's ids
/// (`{MANUFACTURER}_{MODEL}_{FINGERPRINT}_{BOOTLOADER}_{DISPLAY}_{HOST}`) run to 150–250.
pub const MAX_DEVICE_ID_BYTES: usize = 256;

/// Why a device id is refused at the upgrade; shown to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadDeviceId {
    /// Over [`MAX_DEVICE_ID_BYTES`].
    TooLong,
    /// Holds a control character or a bidirectional override: it would corrupt a dashboard's
    /// display or a log line. (Markup is fine: escaping for display is the page's job.)
    Unsafe,
}

impl BadDeviceId {
    /// The refusal's JSON `error`.
    pub fn message(self) -> &'static str {
        match self {
            BadDeviceId::TooLong => "device id longer than 256 bytes",
            BadDeviceId::Unsafe => "device id with a control character or a bidirectional override",
        }
    }
}

/// Checks a device id as a handset sent it: accepted unchanged, or refused.
pub fn check_device_id(id: &str) -> Result<(), BadDeviceId> {
    if id.len() > MAX_DEVICE_ID_BYTES {
        return Err(BadDeviceId::TooLong);
    }
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    match id.chars().any(unsafe_char) {
        true => Err(BadDeviceId::Unsafe),
        false => Ok(()),
    }
}

/// What the client presented to identify itself.
#[derive(Debug, Default)]
pub struct Credentials {
    /// The JWT, from a header, the first subprotocol or the query.
    pub token: Option<String>,
    /// The device id, from a header, the second subprotocol or the query.
    pub device_id: Option<String>,
    /// The first offered subprotocol, to be echoed back.
    pub echo_protocol: Option<HeaderValue>,
}

/// Whether the request asks to become a WebSocket.
pub fn wants_upgrade<B>(req: &Request<B>) -> bool {
    header_has_token(req.headers(), UPGRADE.as_str(), "websocket")
}

/// Checks the upgrade headers and returns the `Sec-WebSocket-Accept` value.
pub fn accept_key<B>(req: &Request<B>) -> Result<String, &'static str> {
    let headers = req.headers();
    if req.method() != Method::GET {
        return Err("WebSocket upgrade must use GET");
    }
    if !header_has_token(headers, CONNECTION.as_str(), "upgrade") {
        return Err("missing Connection: Upgrade");
    }
    if headers
        .get(SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err("Sec-WebSocket-Version must be 13");
    }
    let key = headers
        .get(SEC_WEBSOCKET_KEY)
        .ok_or("missing Sec-WebSocket-Key")?;
    Ok(derive_accept_key(key.as_bytes()))
}

/// Collects the token, device id and subprotocol from headers, subprotocols and query, in that
/// order of preference.
pub fn credentials<B>(req: &Request<B>) -> Credentials {
    let headers = req.headers();
    let header = |names: &[&str]| {
        names.iter().find_map(|name| {
            headers
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        })
    };
    let protocols: Vec<String> = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    let query = |name: &str| {
        req.uri().query().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, v)| k == name && !v.is_empty())
                .map(|(_, v)| v.into_owned())
        })
    };
    Credentials {
        token: header(&["token", "voicepingtoken"])
            .or_else(|| protocols.first().cloned())
            .or_else(|| query("token")),
        device_id: header(&["device_id", "deviceid"])
            .or_else(|| protocols.get(1).cloned())
            .or_else(|| query("device_id")),
        echo_protocol: protocols
            .first()
            .and_then(|p| HeaderValue::from_str(p).ok()),
    }
}

/// Whether a comma-separated header holds `token`, ignoring case.
fn header_has_token(headers: &HeaderMap, name: &str, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}
