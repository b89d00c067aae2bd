use super::*;

const TIMERS: Timers = Timers {
    idle: 3_000,
    max_talk: 90_000,
    busy_timeout: 95_000,
};

fn floor(holder: &str, now: Millis) -> Floor {
    Floor::new(
        now,
        Arc::from(holder),
        Channel::Group,
        Arc::from("18"),
        now,
        &TIMERS,
    )
}

#[test]
fn another_user_is_busy_until_the_floor_idles() {
    let held = floor("alice", 1_000);
    assert_eq!(claim(Some(&held), &floor("bob", 2_000), 2_000), Claim::Busy);
    assert_eq!(claim(Some(&held), &floor("bob", 3_999), 3_999), Claim::Busy);
    assert_eq!(
        claim(Some(&held), &floor("bob", 4_000), 4_000),
        Claim::Granted
    );
    assert_eq!(claim(None, &floor("bob", 2_000), 2_000), Claim::Granted);
}

#[test]
fn the_holder_may_start_again() {
    let held = floor("alice", 1_000);
    assert_eq!(
        claim(Some(&held), &floor("alice", 1_500), 1_500),
        Claim::Granted
    );
}

#[test]
fn audio_keeps_the_floor_and_writes_it_at_most_every_refresh_interval() {
    let mut talk = Talk::new(floor("alice", 0));
    assert_eq!(talk.audio(20, &TIMERS), Audio::Forward(None));
    assert_eq!(talk.audio(749, &TIMERS), Audio::Forward(None));
    let Audio::Forward(Some(written)) = talk.audio(750, &TIMERS) else {
        panic!("a refresh is due after a quarter of the idle time");
    };
    assert_eq!(written.until, 3_750);
    assert_eq!(talk.audio(760, &TIMERS), Audio::Forward(None));
    // Audio every 20 ms for a minute keeps the floor.
    for now in (780..60_000).step_by(20) {
        assert!(
            matches!(talk.audio(now, &TIMERS), Audio::Forward(_)),
            "at {now}"
        );
    }
    assert!(claim(Some(&talk.floor), &floor("bob", 60_000), 60_000) == Claim::Busy);
}

#[test]
fn a_silent_talker_loses_the_floor_after_the_idle_duration() {
    let mut talk = Talk::new(floor("alice", 0));
    assert_eq!(
        talk.audio(2_999, &TIMERS),
        Audio::Forward(Some(talk.floor.refreshed(2_999, &TIMERS)))
    );
    assert_eq!(talk.audio(5_999 + 1, &TIMERS), Audio::Lost);
}

#[test]
fn a_talk_past_the_maximum_duration_ends() {
    let mut talk = Talk::new(floor("alice", 0));
    for now in (20..90_000).step_by(20) {
        assert!(
            matches!(talk.audio(now, &TIMERS), Audio::Forward(_)),
            "at {now}"
        );
    }
    assert_eq!(talk.audio(90_000, &TIMERS), Audio::TooLong);
    assert_eq!(talk.duration(90_000), 90_000);
}

#[test]
fn the_busy_timeout_bounds_any_floor() {
    let timers = Timers {
        max_talk: 200_000,
        ..TIMERS
    };
    let mut talk = Talk::new(floor("alice", 0));
    for now in (20..95_000).step_by(20) {
        talk.audio(now, &timers);
    }
    assert!(talk.floor.until <= 95_000);
    assert_eq!(talk.audio(95_000, &timers), Audio::Lost);
    assert_eq!(
        claim(Some(&talk.floor), &floor("bob", 95_000), 95_000),
        Claim::Granted
    );
}

#[test]
fn ids_as_voiceping_makes_them() {
    assert_eq!(
        recording_id(Channel::Group, "18", "1", 1_702_281_234_999, 432),
        "0_3_18_1_1702281234999_432ms.opus"
    );
    assert_eq!(
        text_id(Channel::Private, 17, "u2", "u1", 5),
        "1_17_u2_u1_5.txt"
    );
    assert_eq!(floor_key(Channel::Group, "18"), "g:18");
    assert_eq!(floor_key(Channel::Private, "u1"), "p:u1");
}
