//! Any upgrade request headers and query: credentials read, device id checked, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use presence_router::server::{check_device_id, credentials};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let query = parts.next().unwrap_or_default();
    let mut request = http::Request::builder().uri(format!("/ws?{query}"));
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
});
