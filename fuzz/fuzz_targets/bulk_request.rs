//! Any bulk status body: parsed or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use presence_router::server::bulk_request;

fuzz_target!(|data: &[u8]| {
    let _ = bulk_request(data, 100);
});
