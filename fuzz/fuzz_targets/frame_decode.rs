//! Any bytes a client sends as one WebSocket message: decoded or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use presence_router::wire::Frame;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = Frame::decode(data) {
        let _ = frame.payload_value();
    }
});
