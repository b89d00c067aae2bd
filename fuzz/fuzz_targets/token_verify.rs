//! Any text as a token: verified or refused, never a panic.
#![no_main]

#[path = "../targets.rs"]
mod targets;

use presence_router::auth::Verifier;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let verifier = Verifier::hmac(b"a-fuzzing-secret-of-at-least-32-bytes");
    targets::token_verify(&verifier, data, 1_800_000_000);
});
