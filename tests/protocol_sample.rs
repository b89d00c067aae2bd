//! The sample dashboard of `protocol/PROTOCOL.md`, run in Node as written (with a stand-in
//! socket), so that the code client authors copy keeps doing the right thing.

use std::process::Command;

/// The `js` block after `marker` in PROTOCOL.md, without its `import` lines.
fn sample(marker: &str) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/PROTOCOL.md"))
        .expect("PROTOCOL.md");
    let after = doc.split_once(marker).expect("the sample's heading").1;
    let code = after
        .split_once("```js\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a js block")
        .0;
    code.lines()
        .filter(|l| !l.starts_with("import "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A snapshot, first or resync, replaces the whole view; an update applies only when its
/// version is above the one held.
#[test]
fn the_sample_dashboard_replaces_its_view_with_each_snapshot() {
    let script = format!(
        r#"
class WebSocket {{ constructor() {{ globalThis.socket = this; }} }}
const decode = (frame) => frame;
const TOKEN = 'token';
{}
const frame = (type, payload) => ({{ data: [0, type, 0, 'dispatcher-1', payload] }});
socket.onmessage(frame(32, {{ users: [{{ userId: 'a', status: 'online', version: 3 }}, {{ userId: 'b', status: 'online', version: 1 }}] }}));
socket.onmessage(frame(31, {{ userId: 'a', status: 'offline', version: 2 }}));
socket.onmessage(frame(32, {{ users: [{{ userId: 'a', status: 'online', version: 5 }}] }}));
socket.onmessage(frame(31, {{ userId: 'c', status: 'online', version: 1 }}));
socket.onmessage(frame(31, {{ userId: 'a', status: 'offline', version: 6 }}));
console.log(JSON.stringify([...users.entries()].map(([id, u]) => [id, u.status, u.version])));
"#,
        sample("A dashboard in a browser")
    );
    let out = Command::new("node")
        .arg("-e")
        .arg(&script)
        .output()
        .expect("node runs (the interop test needs it too)");
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"[["a","offline",6],["c","online",1]]"#
    );
}
