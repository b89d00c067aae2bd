//! Any bytes a client sends as one WebSocket message: decoded or refused, never a panic.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::frame_decode(data));
