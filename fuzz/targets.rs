//! What each fuzz target runs on one input, shared by the cargo-fuzz targets (`fuzz_targets/`)
//! and the stable smoke run of the test suite (`tests/fuzz_smoke.rs`). None may panic.

use presence_router::auth::Verifier;
use presence_router::server::{bulk_request, check_device_id, credentials};
use presence_router::wire::Frame;

/// Any bytes as one WebSocket message.
pub fn frame_decode(data: &[u8]) {
    if let Ok(frame) = Frame::decode(data) {
        let _ = frame.payload_value();
    }
}

/// Any text as a token, against `verifier`.
pub fn token_verify(verifier: &Verifier, data: &[u8], now: u64) {
    let _ = verifier.verify(&String::from_utf8_lossy(data), now);
}

/// Any upgrade request: the first line is the query, the others header values (each under
/// every name a credential is read from).
pub fn handshake(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let query = parts.next().unwrap_or_default();
    let mut request = hyper::Request::builder().uri(format!("/ws?{query}"));
    for value in parts {
        for name in ["token", "device_id", "sec-websocket-protocol"] {
            request = request.header(name, value);
        }
    }
    if let Ok(request) = request.body(()) {
        if let Some(device) = credentials(&request).device_id {
            let _ = check_device_id(&device);
        }
    }
}

/// Any bulk status body.
pub fn bulk(data: &[u8]) {
    let _ = bulk_request(data, 100);
}
