//! Any upgrade request headers and query: credentials read, device id checked, never a panic.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::handshake(data));
