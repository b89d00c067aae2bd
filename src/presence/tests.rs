//! The presence rules exercised directly: no sockets, no store, time passed by hand.

use super::*;

const TTL: Millis = 60_000;
const DEBOUNCE: Millis = 5_000;

fn core(debounce: Millis) -> Presence {
    Presence::new(Rules {
        ttl: TTL,
        offline_debounce: debounce,
        retention: DEFAULT_RETENTION,
    })
}

fn user(id: &str) -> Arc<str> {
    Arc::from(id)
}

fn device(id: &str) -> Option<Arc<str>> {
    Some(Arc::from(id))
}

fn status_of(effect: &Effect) -> Option<Status> {
    effect.updates.last().map(|u| u.status)
}

#[test]
fn connecting_makes_the_user_online_once() {
    let mut p = core(DEBOUNCE);
    let alice = user("alice");
    let first = p.connect(&alice, 1, device("phone"), &Audience::default(), 1_000);
    let update = first.updates.last().cloned().expect("online update");
    assert_eq!(update.status, Status::Online);
    assert_eq!(
        update.version, 1_000,
        "the first version is the time of the change"
    );
    assert_eq!(update.last_seen, 1_000);
    assert_eq!(update.device_id, device("phone"));
    assert_eq!(first.wake_at, Some(1_000 + TTL));
    assert_eq!(p.online_count(), 1);

    let second = p.connect(&alice, 2, device("tablet"), &Audience::default(), 2_000);
    assert_eq!(
        second.updates.last(),
        None,
        "a second device changes nothing visible"
    );
    assert_eq!(
        p.user("alice", 0).expect("known").device_id,
        device("tablet")
    );
}

#[test]
fn closing_goes_offline_only_after_the_debounce() {
    let mut p = core(DEBOUNCE);
    let alice = user("alice");
    let _ = p.connect(&alice, 1, device("phone"), &Audience::default(), 0);
    let closed = p.disconnect(&alice, 1, 10_000);
    assert_eq!(closed.updates.last(), None);
    assert_eq!(closed.wake_at, Some(10_000 + DEBOUNCE));

    assert_eq!(p.wake(&alice, 14_999).updates.last(), None, "not yet due");
    let offline = p
        .wake(&alice, 15_000)
        .updates
        .last()
        .cloned()
        .expect("offline update");
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
    let _ = p.connect(&alice, 1, device("phone"), &Audience::default(), 0);
    let _ = p.disconnect(&alice, 1, 10_000);
    let back = p.connect(&alice, 2, device("phone"), &Audience::default(), 12_000);
    assert_eq!(back.updates.last(), None);
    assert_eq!(
        p.wake(&alice, 15_000).updates.last(),
        None,
        "the old debounce deadline does nothing"
    );
    assert_eq!(
        p.user("alice", 0).expect("known").version,
        1,
        "one change, at 0 ms"
    );
}

#[test]
fn a_debounce_of_zero_goes_offline_at_once() {
    let mut p = core(0);
    let alice = user("alice");
    let _ = p.connect(&alice, 1, None, &Audience::default(), 0);
    let closed = p.disconnect(&alice, 1, 3_000);
    assert_eq!(status_of(&closed), Some(Status::Offline));
    assert_eq!(
        closed.updates.last().cloned().expect("update").last_seen,
        3_000
    );
}

#[test]
fn the_user_stays_online_until_the_last_device_leaves() {
    let mut p = core(0);
    let alice = user("alice");
    let _ = p.connect(&alice, 1, device("phone"), &Audience::default(), 0);
    let _ = p.connect(&alice, 2, device("tablet"), &Audience::default(), 0);
    assert_eq!(p.disconnect(&alice, 1, 1_000).updates.last(), None);
    assert_eq!(p.user("alice", 0).expect("known").status, Status::Online);
    assert_eq!(
        status_of(&p.disconnect(&alice, 2, 2_000)),
        Some(Status::Offline)
    );
}

#[test]
fn heartbeats_push_the_expiry_back() {
    let mut p = core(DEBOUNCE);
    let alice = user("alice");
    let first = p.connect(&alice, 1, None, &Audience::default(), 0);
    assert_eq!(first.wake_at, Some(TTL));
    let beat = p.heartbeat(&alice, 1, 30_000);
    assert_eq!(
        beat,
        Effect::default(),
        "a later deadline needs no new wake-up"
    );

    let early = p.wake(&alice, TTL);
    assert_eq!(
        early.updates.last(),
        None,
        "still online: the heartbeat moved the deadline"
    );
    assert_eq!(early.wake_at, Some(30_000 + TTL));
    let expired = p
        .wake(&alice, 30_000 + TTL)
        .updates
        .last()
        .cloned()
        .expect("expired");
    assert_eq!(expired.status, Status::Offline);
    assert_eq!(expired.last_seen, 30_000 + TTL);
}

#[test]
fn silence_expires_a_user_whose_socket_is_open_and_a_heartbeat_brings_them_back() {
    let mut p = core(DEBOUNCE);
    let alice = user("alice");
    let _ = p.connect(&alice, 1, None, &Audience::default(), 0);
    assert_eq!(status_of(&p.wake(&alice, TTL)), Some(Status::Offline));
    let back = p.heartbeat(&alice, 1, TTL + 5_000);
    let update = back.updates.last().cloned().expect("online again");
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
    let _ = p.connect(&alice, 1, None, &Audience::default(), 0);
    assert_eq!(p.heartbeat(&alice, 9, 1_000), Effect::default());
    assert_eq!(p.disconnect(&alice, 9, 1_000), Effect::default());
}

#[test]
fn versions_strictly_increase_through_every_kind_of_change() {
    let mut p = core(DEBOUNCE);
    let alice = user("alice");
    let mut versions = Vec::new();
    let mut note = |e: Effect| versions.extend(e.updates.iter().map(|u| u.version));
    note(p.connect(&alice, 1, None, &Audience::default(), 0));
    note(p.wake(&alice, TTL));
    note(p.heartbeat(&alice, 1, TTL + 1));
    note(p.disconnect(&alice, 1, TTL + 2));
    note(p.wake(&alice, TTL + 2 + DEBOUNCE));
    note(p.connect(&alice, 2, None, &Audience::default(), TTL + 10_000));
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
            .connect(&alice, 1, None, &Audience::default(), t)
            .updates
            .last()
            .cloned()
            .expect("online")
            .version;
        last = last.max(
            before
                .disconnect(&alice, 1, t)
                .updates
                .last()
                .cloned()
                .expect("offline")
                .version,
        );
    }
    let mut after = core(0);
    let back = after
        .connect(&alice, 1, None, &Audience::default(), 1_010)
        .updates
        .last()
        .cloned()
        .expect("online");
    assert!(back.version > last, "{} after {last}", back.version);
    assert_eq!(next_version(7, 3), 8);
    assert_eq!(next_version(7, 30), 30);
}

#[test]
fn the_earliest_deadline_wins_and_only_one_wake_up_is_pending() {
    let mut p = core(DEBOUNCE);
    let alice = user("alice");
    let _ = p.connect(&alice, 1, None, &Audience::default(), 0);
    let closed = p.disconnect(&alice, 1, TTL - 1_000);
    assert_eq!(
        closed.wake_at, None,
        "the TTL wake-up at 60 s comes first already"
    );
    let expired = p
        .wake(&alice, TTL)
        .updates
        .last()
        .cloned()
        .expect("offline");
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
    let _ = p.connect(&alice, 1, device("a"), &Audience::default(), 0);
    let _ = p.connect(&bob, 2, None, &Audience::default(), 0);
    let _ = p.disconnect(&bob, 2, 1);
    let online = p.online_users();
    assert_eq!(online.len(), 1);
    assert_eq!(online[0].user_id, alice);
    assert_eq!(p.user("bob", 0).expect("known").status, Status::Offline);
    assert_eq!(p.user("carol", 0), None);
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
    let _ = p.connect(&alice, 1, device("phone"), &Audience::default(), 0);
    let _ = p.connect(&alice, 2, device("tablet"), &Audience::default(), 5_000);
    let _ = p.heartbeat(&alice, 1, 3_000);
    assert_eq!(
        p.user("alice", 0).expect("known").device_id,
        device("tablet")
    );
}

/// A device that went silent (its deadline passed, socket still open) does not keep its user
/// online once the other device leaves: the debounce runs as if it were gone.
#[test]
fn a_silent_device_does_not_hold_the_user_online_when_the_other_leaves() {
    let mut p = core(DEBOUNCE);
    let alice = user("alice");
    let _ = p.connect(&alice, 1, device("phone"), &Audience::default(), 0);
    let _ = p.connect(&alice, 2, device("tablet"), &Audience::default(), 0);
    let _ = p.heartbeat(&alice, 2, TTL - 1_000);
    let left = p.disconnect(&alice, 2, TTL + 1_000);
    assert_eq!(left.updates.last(), None, "the debounce runs");
    let offline = p
        .wake(&alice, TTL + 1_000 + DEBOUNCE)
        .updates
        .pop()
        .expect("offline after the debounce");
    assert_eq!(offline.last_seen, TTL + 1_000);
}

/// A heartbeat written after its connection's leave (a late write) changes nothing.
#[test]
fn a_late_heartbeat_after_the_leave_changes_nothing() {
    let mut p = core(0);
    let alice = user("alice");
    let _ = p.connect(&alice, 1, None, &Audience::default(), 0);
    let _ = p.disconnect(&alice, 1, 1_000);
    assert_eq!(p.heartbeat(&alice, 1, 900).updates, vec![]);
    assert_eq!(
        p.user("alice", 1_100).expect("known").status,
        Status::Offline
    );
}

/// An expiry a store's timers have not processed yet is settled first, whatever the timers'
/// lag: offline at the TTL, then online again with the heartbeat.
#[test]
fn an_unprocessed_expiry_is_settled_before_a_return() {
    let mut p = core(DEBOUNCE);
    let alice = user("alice");
    let _ = p.connect(&alice, 1, None, &Audience::default(), 0);
    assert_eq!(p.user("alice", TTL).expect("known").status, Status::Offline);
    let back = p.heartbeat(&alice, 1, TTL + 50);
    let statuses: Vec<(Status, Millis)> = back
        .updates
        .iter()
        .map(|u| (u.status, u.last_seen))
        .collect();
    assert_eq!(
        statuses,
        [(Status::Offline, TTL), (Status::Online, TTL + 50)]
    );
}

/// An offline user is forgotten once the retention has passed, so memory stays bounded.
#[test]
fn an_offline_user_is_forgotten_after_the_retention() {
    let mut p = core(0);
    let alice = user("alice");
    let _ = p.connect(&alice, 1, None, &Audience::default(), 0);
    let _ = p.disconnect(&alice, 1, 1_000);
    assert_eq!(
        p.wake(&alice, TTL).wake_at,
        None,
        "no wake-up is kept for an offline user"
    );
    assert_eq!(p.forget(1_000 + DEFAULT_RETENTION - 1), 0);
    assert!(
        p.user("alice", TTL).is_some(),
        "remembered for its lastSeen"
    );
    assert_eq!(p.forget(1_000 + DEFAULT_RETENTION), 1);
    assert_eq!(p.user("alice", 1_000 + DEFAULT_RETENTION), None);
    assert_eq!(p.known_count(), 0);
}

/// A record survives its trip through the Redis store's JSON unchanged.
#[test]
fn a_record_round_trips_through_json() {
    let rules = Rules {
        ttl: TTL,
        offline_debounce: DEBOUNCE,
        retention: DEFAULT_RETENTION,
    };
    let alice = user("alice");
    let mut record = Record::default();
    let key = ConnKey { router: 7, conn: 3 };
    let mut updates = Vec::new();
    record.connect(
        &rules,
        &alice,
        key,
        device("phone"),
        &Audience::default(),
        1_000,
        &mut updates,
    );
    record.disconnect(&rules, &alice, key, 2_000, &mut updates);
    let json = serde_json::to_string(&record).expect("json");
    assert_eq!(
        serde_json::from_str::<Record>(&json).expect("parse"),
        record
    );
}

/// A connection on a router that died keeps its user online only until its own deadline, not
/// until the last write of another device that has since left.
#[test]
fn a_dead_routers_connection_holds_the_user_only_until_its_deadline() {
    let mut p = core(DEBOUNCE);
    let alice = user("alice");
    let _ = p.connect(&alice, 1, device("phone"), &Audience::default(), 0);
    let _ = p.connect(&alice, 2, device("tablet"), &Audience::default(), 30_000);
    let _ = p.heartbeat(&alice, 2, 50_000);
    let left = p.disconnect(&alice, 2, 55_000);
    assert_eq!(left.updates.last(), None, "connection 1 still counts");
    let offline = p
        .wake(&alice, TTL)
        .updates
        .pop()
        .expect("offline at its deadline");
    assert_eq!(offline.last_seen, TTL);
}

/// Connecting the same connection again (a restore, a replayed write) never moves its deadline
/// back, so another device leaving does not take the user offline early.
#[test]
fn a_replayed_connect_does_not_move_a_deadline_back() {
    let rules = Rules {
        ttl: TTL,
        offline_debounce: 0,
        retention: DEFAULT_RETENTION,
    };
    let alice = user("alice");
    let (phone, tablet) = (
        ConnKey { router: 1, conn: 1 },
        ConnKey { router: 1, conn: 2 },
    );
    let mut record = Record::default();
    let mut updates = Vec::new();
    let none = Audience::default();
    for (conn, at) in [(phone, 50_000), (tablet, 50_000), (phone, 0)] {
        record.connect(&rules, &alice, conn, None, &none, at, &mut updates);
    }
    record.disconnect(&rules, &alice, tablet, 70_000, &mut updates);
    assert_eq!(record.status(), Status::Online, "{updates:?}");
}

fn group(id: &str) -> GroupChange {
    GroupChange::Join(Arc::from(id))
}

#[test]
fn a_group_change_of_an_online_user_is_an_update_that_says_who_saw_them_before() {
    let mut p = core(0);
    let alice = user("alice");
    let _ = p.connect(&alice, 1, None, &Audience::default(), 1_000);
    let joined = p.regroup(&alice, &group("18"), 2_000);
    let [update] = &joined.updates[..] else {
        panic!("one update: {joined:?}")
    };
    assert_eq!(update.status, Status::Online);
    assert_eq!(update.version, 2_000);
    assert_eq!(update.audience.groups, [Arc::from("18")]);
    assert_eq!(update.before.as_deref(), Some(&Audience::default()));
    // Joining again changes nothing.
    assert!(p.regroup(&alice, &group("18"), 3_000).updates.is_empty());
    let left = p.regroup(&alice, &GroupChange::Leave(Arc::from("18")), 4_000);
    assert_eq!(left.updates[0].audience.groups, Vec::<Arc<str>>::new());
    assert_eq!(p.online_count(), 1);
}

#[test]
fn membership_outlives_connections_and_a_new_tenant_starts_afresh() {
    let mut p = core(0);
    let alice = user("alice");
    assert!(p.regroup(&alice, &group("18"), 500).updates.is_empty());
    let tokens = Audience {
        tenant: None,
        groups: vec![Arc::from("19")],
    };
    let online = p.connect(&alice, 1, None, &tokens, 1_000);
    assert_eq!(
        online.updates[0].audience.groups,
        [Arc::from("18"), Arc::from("19")]
    );
    let _ = p.disconnect(&alice, 1, 2_000);
    let elsewhere = Audience {
        tenant: Some(Arc::from("acme")),
        groups: vec![Arc::from("acme:7")],
    };
    let moved = p.connect(&alice, 2, None, &elsewhere, 3_000);
    assert_eq!(*moved.updates[0].audience, elsewhere);
    assert!(moved.updates[0].before.is_some());
}

#[test]
fn availability_is_kept_while_online_and_cleared_when_offline() {
    let mut p = core(0);
    let alice = user("alice");
    let away = Stated::parse("away", Some("at lunch")).expect("valid");
    assert!(
        p.state(&alice, &away, 500).updates.is_empty(),
        "offline: ignored"
    );
    let _ = p.connect(&alice, 1, None, &Audience::default(), 1_000);
    let stated = p.state(&alice, &away, 2_000);
    assert_eq!(*stated.updates[0].stated, away);
    assert!(
        p.state(&alice, &away, 2_500).updates.is_empty(),
        "no change"
    );
    let offline = p.disconnect(&alice, 1, 3_000);
    assert_eq!(*offline.updates[0].stated, Stated::default());
    let back = p.connect(&alice, 2, None, &Audience::default(), 4_000);
    assert_eq!(*back.updates[0].stated, Stated::default());
}

#[test]
fn statements_outside_the_rules_are_refused() {
    assert_eq!(
        Stated::parse("asleep", None),
        Err(StatedError::Availability)
    );
    assert_eq!(
        Stated::parse("busy", Some(&"x".repeat(141))),
        Err(StatedError::StatusText)
    );
    assert_eq!(
        Stated::parse("busy", Some("a\nb")),
        Err(StatedError::StatusText)
    );
    let long = "é".repeat(140);
    assert_eq!(
        Stated::parse("dnd", Some(&long)).map(|s| s.status_text),
        Ok(Some(Arc::from(long.as_str())))
    );
    assert_eq!(
        Stated::parse("available", Some("")).map(|s| s.status_text),
        Ok(None)
    );
}

#[test]
fn pongs_and_talk_keep_a_handset_online_until_it_speaks_heartbeat() {
    let mut auto = LifeSigns::new(LivenessRule::Auto);
    assert!(
        auto.other(),
        "a handset that never heartbeats lives by its pongs and frames"
    );
    assert!(auto.heartbeat());
    assert!(!auto.other(), "once it heartbeats, only heartbeats count");
    let strict = LifeSigns::new(LivenessRule::Heartbeat);
    assert!(!strict.other());
}
