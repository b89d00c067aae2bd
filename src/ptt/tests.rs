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
    assert_eq!(claim(Some(&held), &floor("bob", 4_749), 4_749), Claim::Busy);
    assert_eq!(
        claim(Some(&held), &floor("bob", 4_750), 4_750),
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
    assert_eq!(talk.floor.until, 3_750, "idle and a refresh interval");
    assert_eq!(talk.audio(20, &TIMERS), Audio::Forward(None));
    assert_eq!(talk.audio(750, &TIMERS), Audio::Forward(None));
    let Audio::Forward(Some(written)) = talk.audio(751, &TIMERS) else {
        panic!("a refresh is due once the floor would free itself within the idle time");
    };
    assert_eq!(written.until, 4_501);
    assert_eq!(talk.audio(760, &TIMERS), Audio::Forward(None));
    assert_eq!(talk.audio(1_501, &TIMERS), Audio::Forward(None));
    assert!(matches!(
        talk.audio(1_502, &TIMERS),
        Audio::Forward(Some(_))
    ));
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
fn a_silent_talker_keeps_the_floor_for_the_idle_duration_and_not_much_longer() {
    // Whenever the last audio came, the floor is held at least `idle` after it, and at most
    // `idle` plus a refresh interval.
    for last in [0, 20, 700, 750, 751, 1_000, 2_999] {
        let mut talk = Talk::new(floor("alice", 0));
        for now in (0..=last).step_by(20).chain([last]) {
            assert!(matches!(talk.audio(now, &TIMERS), Audio::Forward(_)));
        }
        let until = talk.floor.until;
        assert!(
            until >= last + 3_000 && until <= last + 3_750,
            "last {last}: until {until}"
        );
        assert_eq!(talk.audio(until, &TIMERS), Audio::Lost);
    }
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
    assert_eq!(floor("u1", 7).key(), "g:18");
    let private = Floor::new(
        9,
        Arc::from("u1"),
        Channel::Private,
        Arc::from("u2"),
        7,
        &TIMERS,
    );
    assert_eq!(private.key(), "p:u1:9");
}
