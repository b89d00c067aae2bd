//! A short run of the `fuzz/` targets' entry points on a stable toolchain: valid inputs mutated
//! at random (bytes flipped, inserted, removed, repeated, cut), and random bytes. Nothing may
//! panic; each run prints how many inputs it tried.

mod common;

#[path = "../fuzz/targets.rs"]
mod targets;

use common::rng::Rng;
use presence_router::auth::{self, Role, Verifier};
use std::time::Instant;

/// Inputs made from valid ones, the same on every run.
struct Mutator(Rng);

impl Mutator {
    fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        // Bytes that matter to the formats come up often.
        const TELLING: &[u8] = b"\x00\x7f\x80\xc0\xc1\xd4\xd7\xd9\xdc\xde\xff{}[]\":,.%\r\n\\";
        match self.below(4) {
            0 => TELLING[self.below(TELLING.len())],
            _ => self.0.next() as u8,
        }
    }

    /// `seed` changed in a few places, or random bytes.
    fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        if self.below(10) == 0 {
            return (0..self.below(64)).map(|_| self.byte()).collect();
        }
        let mut input = seed.to_vec();
        for _ in 0..1 + self.below(4) {
            let at = self.below(input.len() + 1);
            match self.below(5) {
                0 if at < input.len() => input[at] = self.byte(),
                1 => input.insert(at, self.byte()),
                2 if at < input.len() => {
                    input.remove(at);
                }
                3 => input.truncate(at),
                _ => {
                    let end = (at + self.below(16)).min(input.len());
                    let copy = input[at..end].to_vec();
                    input.splice(at..at, copy);
                }
            }
        }
        input
    }
}

/// Runs `target` on `runs` inputs made from `seeds`; prints the rate.
fn smoke(name: &str, seeds: &[Vec<u8>], runs: usize, mut target: impl FnMut(&[u8])) {
    let mut rng = Mutator(Rng(0x9e37_79b9_7f4a_7c15));
    let started = Instant::now();
    for i in 0..runs {
        let input = rng.mutate(&seeds[i % seeds.len()]);
        target(&input);
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{name}: {runs} inputs in {seconds:.2} s ({:.0}/s), no panic",
        runs as f64 / seconds.max(1e-9)
    );
}

#[test]
fn the_frame_decoder_survives_mutated_frames() {
    let seeds = vec![
        common::heartbeat_frame("driver-1"),
        common::membership_frame(15, "driver-1", "18"),
        vec![
            0x95, 0x01, 0x03, 0xa1, 0x61, 0xa1, 0x62, 0xc4, 0x02, 0x00, 0x01,
        ],
    ];
    smoke("frame_decode", &seeds, 1_000_000, targets::frame_decode);
}

#[test]
fn the_token_verifier_survives_mutated_tokens() {
    let secret = common::SECRET.as_bytes();
    let verifier = Verifier::hmac(secret);
    let token = |claims: &[(&str, serde_json::Value)]| {
        let ttl = std::time::Duration::from_secs(3600);
        auth::mint_with(
            secret,
            "driver-1",
            Role::Mobile,
            ttl,
            auth::now_secs(),
            claims,
        )
        .expect("mint")
        .into_bytes()
    };
    let seeds = vec![
        token(&[]),
        token(&[
            ("tenant", "acme".into()),
            ("channelIds", serde_json::json!([18, "19"])),
        ]),
    ];
    smoke("token_verify", &seeds, 200_000, |input| {
        targets::token_verify(&verifier, input, auth::now_secs())
    });
}

#[test]
fn the_handshake_survives_mutated_requests() {
    let seeds = vec![
        b"token=abc&device_id=phone-1\nabc\nphone, other".to_vec(),
        b"device_id=Google_Pixel%202_google%2Fwalleye\n\xe2\x80\xae\n".to_vec(),
    ];
    smoke("handshake", &seeds, 300_000, targets::handshake);
}

#[test]
fn the_bulk_parser_survives_mutated_bodies() {
    let seeds = vec![
        br#"{"userIds":["driver-1",42,"driver-3"]}"#.to_vec(),
        br#"{"userIds":[1e308,-0,"\u0000",{"a":[]}]}"#.to_vec(),
    ];
    smoke("bulk_request", &seeds, 500_000, targets::bulk);
}
