//! The presence rules exercised directly: no sockets, no store, time passed by hand.

use super::*;

const TTL: Millis = 60_000;
const DEBOUNCE: Millis = 5_000;

fn core(debounce: Millis) -> Presence {
    Presence::new(Rules {
        ttl: TTL,
        offline_debounce: debounce,
    })
}

fn user(id: &str) -> Arc<str> {
    Arc::from(id)
}

fn device(id: &str) -> Option<Arc<str>> {
    Some(Arc::from(id))
}

fn status_of(effect: &Effect) -> Option<Status> {
    effect.update.as_ref().map(|u| u.status)
}

#[test]
fn connecting_makes_the_user_online_once() {
    let mut p = core(DEBOUNCE);
    let alice = user("alice");
    let first = p.connect(&alice, 1, device("phone"), 1_000);
    let update = first.update.expect("online update");
    assert_eq!(update.status, Status::Online);
    assert_eq!(
        update.version, 1_000,
        "the first version is the time of the change"
    );
    assert_eq!(update.last_seen, 1_000);
    assert_eq!(update.device_id, device("phone"));
    assert_eq!(first.wake_at, Some(1_000 + TTL));
    assert_eq!(p.online_count(), 1);

    let second = p.connect(&alice, 2, device("tablet"), 2_000);
    assert_eq!(
        second.update, None,
        "a second device changes nothing visible"
    );
    assert_eq!(p.user("alice").expect("known").device_id, device("tablet"));
}

#[test]
fn closing_goes_offline_only_after_the_debounce() {
    let mut p = core(DEBOUNCE);
    let alice = user("alice");
    let _ = p.connect(&alice, 1, device("phone"), 0);
    let closed = p.disconnect(&alice, 1, 10_000);
    assert_eq!(closed.update, None);
    assert_eq!(closed.wake_at, Some(10_000 + DEBOUNCE));

    assert_eq!(p.wake(&alice, 14_999).update, None, "not yet due");
    let offline = p.wake(&alice, 15_000).update.expect("offline update");
    assert_eq!(offline.status, Status::Offline);
    assert_eq!(offline.version, 15_000);
    assert_eq!(
        offline.last_seen, 10_000,
        "lastSeen is when the device left"
    );
    assert_eq!(p.online_count(), 0);
}

#[test]
fn reconnecting_inside_the_debounce_produces_no_update() {
    let mut p = core(DEBOUNCE);
    let alice = user("alice");
    let _ = p.connect(&alice, 1, device("phone"), 0);
    let _ = p.disconnect(&alice, 1, 10_000);
    let back = p.connect(&alice, 2, device("phone"), 12_000);
    assert_eq!(back.update, None);
    assert_eq!(
        p.wake(&alice, 15_000).update,
        None,
        "the old debounce deadline does nothing"
    );
    assert_eq!(
        p.user("alice").expect("known").version,
        1,
        "one change, at 0 ms"
    );
}

#[test]
fn a_debounce_of_zero_goes_offline_at_once() {
    let mut p = core(0);
    let alice = user("alice");
    let _ = p.connect(&alice, 1, None, 0);
    let closed = p.disconnect(&alice, 1, 3_000);
    assert_eq!(status_of(&closed), Some(Status::Offline));
    assert_eq!(closed.update.expect("update").last_seen, 3_000);
}

#[test]
fn the_user_stays_online_until_the_last_device_leaves() {
    let mut p = core(0);
    let alice = user("alice");
    let _ = p.connect(&alice, 1, device("phone"), 0);
    let _ = p.connect(&alice, 2, device("tablet"), 0);
    assert_eq!(p.disconnect(&alice, 1, 1_000).update, None);
    assert_eq!(p.user("alice").expect("known").status, Status::Online);
    assert_eq!(
        status_of(&p.disconnect(&alice, 2, 2_000)),
        Some(Status::Offline)
    );
}

#[test]
fn heartbeats_push_the_expiry_back() {
    let mut p = core(DEBOUNCE);
    let alice = user("alice");
    let first = p.connect(&alice, 1, None, 0);
    assert_eq!(first.wake_at, Some(TTL));
    let beat = p.heartbeat(&alice, 1, 30_000);
    assert_eq!(
        beat,
        Effect::default(),
        "a later deadline needs no new wake-up"
    );

    let early = p.wake(&alice, TTL);
    assert_eq!(
        early.update, None,
        "still online: the heartbeat moved the deadline"
    );
    assert_eq!(early.wake_at, Some(30_000 + TTL));
    let expired = p.wake(&alice, 30_000 + TTL).update.expect("expired");
    assert_eq!(expired.status, Status::Offline);
    assert_eq!(expired.last_seen, 30_000 + TTL);
}

#[test]
fn silence_expires_a_user_whose_socket_is_open_and_a_heartbeat_brings_them_back() {
    let mut p = core(DEBOUNCE);
    let alice = user("alice");
    let _ = p.connect(&alice, 1, None, 0);
    assert_eq!(status_of(&p.wake(&alice, TTL)), Some(Status::Offline));
    let back = p.heartbeat(&alice, 1, TTL + 5_000);
    let update = back.update.expect("online again");
    assert_eq!(
        (update.status, update.version),
        (Status::Online, TTL + 5_000)
    );
    assert_eq!(back.wake_at, Some(2 * TTL + 5_000));
    assert_eq!(
        p.disconnect(&alice, 1, TTL + 6_000).wake_at,
        Some(TTL + 6_000 + DEBOUNCE)
    );
}

#[test]
fn a_heartbeat_from_an_unknown_connection_changes_nothing() {
    let mut p = core(DEBOUNCE);
    let alice = user("alice");
    assert_eq!(p.heartbeat(&alice, 9, 0), Effect::default());
    let _ = p.connect(&alice, 1, None, 0);
    assert_eq!(p.heartbeat(&alice, 9, 1_000), Effect::default());
    assert_eq!(p.disconnect(&alice, 9, 1_000), Effect::default());
}

#[test]
fn versions_strictly_increase_through_every_kind_of_change() {
    let mut p = core(DEBOUNCE);
    let alice = user("alice");
    let mut versions = Vec::new();
    let mut note = |e: Effect| versions.extend(e.update.map(|u| u.version));
    note(p.connect(&alice, 1, None, 0));
    note(p.wake(&alice, TTL));
    note(p.heartbeat(&alice, 1, TTL + 1));
    note(p.disconnect(&alice, 1, TTL + 2));
    note(p.wake(&alice, TTL + 2 + DEBOUNCE));
    note(p.connect(&alice, 2, None, TTL + 10_000));
    assert_eq!(
        versions,
        vec![1, TTL, TTL + 1, TTL + 2 + DEBOUNCE, TTL + 10_000],
        "one above the last, or the time of the change when later"
    );
}

/// A store that forgot everything (a restart, an emptied Redis) gives a returning user a
/// version above every one they had, so dashboards keeping the highest version apply it.
#[test]
fn versions_stay_above_those_of_a_forgotten_past() {
    let mut before = core(0);
    let alice = user("alice");
    let mut last = 0;
    for i in 0..5 {
        let t = 1_000 + i;
        last = before
            .connect(&alice, 1, None, t)
            .update
            .expect("online")
            .version;
        last = last.max(
            before
                .disconnect(&alice, 1, t)
                .update
                .expect("offline")
                .version,
        );
    }
    let mut after = core(0);
    let back = after
        .connect(&alice, 1, None, 1_010)
        .update
        .expect("online");
    assert!(back.version > last, "{} after {last}", back.version);
    assert_eq!(next_version(7, 3), 8);
    assert_eq!(next_version(7, 30), 30);
}

#[test]
fn the_earliest_deadline_wins_and_only_one_wake_up_is_pending() {
    let mut p = core(DEBOUNCE);
    let alice = user("alice");
    let _ = p.connect(&alice, 1, None, 0);
    let closed = p.disconnect(&alice, 1, TTL - 1_000);
    assert_eq!(
        closed.wake_at, None,
        "the TTL wake-up at 60 s comes first already"
    );
    let expired = p.wake(&alice, TTL).update.expect("offline");
    assert_eq!(
        expired.last_seen, TTL,
        "expiry came before the debounce ended"
    );
    assert_eq!(p.wake(&alice, TTL - 1_000 + DEBOUNCE), Effect::default());
}

#[test]
fn the_snapshot_lists_exactly_the_online_users() {
    let mut p = core(0);
    let (alice, bob) = (user("alice"), user("bob"));
    let _ = p.connect(&alice, 1, device("a"), 0);
    let _ = p.connect(&bob, 2, None, 0);
    let _ = p.disconnect(&bob, 2, 1);
    let online = p.online_users();
    assert_eq!(online.len(), 1);
    assert_eq!(online[0].user_id, alice);
    assert_eq!(p.user("bob").expect("known").status, Status::Offline);
    assert_eq!(p.user("carol"), None);
}

#[test]
fn the_gate_writes_at_most_once_per_interval_and_flushes_the_held_heartbeat() {
    let mut gate = HeartbeatGate::new(25_000, TTL, 0);
    assert_eq!(
        gate.heartbeat(10_000),
        None,
        "too soon after the connect write"
    );
    assert_eq!(gate.flush_at(), Some(25_000));
    assert_eq!(gate.flush(24_999), None);
    assert_eq!(
        gate.flush(25_000),
        Some(10_000),
        "written with its own time"
    );
    assert_eq!(gate.flush_at(), None);
    assert_eq!(gate.heartbeat(40_000), None);
    assert_eq!(gate.heartbeat(50_000), Some(50_000));
    assert_eq!(gate.flush_at(), None);
}

#[test]
fn the_gate_never_holds_a_heartbeat_past_the_ttl_of_the_last_write() {
    // An interval above half the TTL: a held heartbeat written at 40 s carries `at` 1 s, so the
    // TTL runs out at 61 s, before the next write would be allowed (80 s).
    let mut gate = HeartbeatGate::new(40_000, TTL, 0);
    assert_eq!(gate.heartbeat(1_000), None);
    assert_eq!(gate.flush(40_000), Some(1_000));
    assert_eq!(
        gate.heartbeat(62_000),
        Some(62_000),
        "written at once: the user had expired"
    );
}

#[test]
fn a_late_written_heartbeat_does_not_take_over_the_device() {
    let mut p = core(DEBOUNCE);
    let alice = user("alice");
    let _ = p.connect(&alice, 1, device("phone"), 0);
    let _ = p.connect(&alice, 2, device("tablet"), 5_000);
    let _ = p.heartbeat(&alice, 1, 3_000);
    assert_eq!(p.user("alice").expect("known").device_id, device("tablet"));
}
