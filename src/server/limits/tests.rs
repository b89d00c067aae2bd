use super::*;

fn at(start: Instant, ms: u64) -> Instant {
    start + Duration::from_millis(ms)
}

#[test]
fn a_bucket_lends_its_burst_then_its_rate() {
    let t = Instant::now();
    let mut bucket = TokenBucket::new(10.0, 20.0, t);
    assert!((0..20).all(|_| bucket.take(1.0, t)));
    assert!(!bucket.take(1.0, t));
    assert_eq!(bucket.wait_for(1.0, t), Duration::from_millis(100));
    assert!(bucket.take(1.0, at(t, 100)));
    assert!(!bucket.take(1.0, at(t, 150)));
}

#[test]
fn talk_at_its_real_rate_passes_and_a_flood_is_throttled_then_closed() {
    let t = Instant::now();
    let mut limits = InboundLimits::new(200, 256 * 1024, 65_536, t);
    // Opus audio: 50 frames/s of ~200 bytes, for a minute.
    for i in 0..3_000 {
        assert_eq!(
            limits.message(200, at(t, i * 20)),
            Verdict::Pass,
            "frame {i}"
        );
    }
    // Then 10,000 frames/s: throttled at once, closed once over for the flood allowance.
    let flood = at(t, 60_000);
    let mut verdicts =
        (0..100_000u64).map(|i| limits.message(50, flood + Duration::from_micros(i * 100)));
    assert!(verdicts.any(|v| matches!(v, Verdict::Throttle(_))));
    assert!(verdicts.any(|v| v == Verdict::Close));
}

#[test]
fn big_messages_count_by_their_bytes() {
    let t = Instant::now();
    let mut limits = InboundLimits::new(200, 1_000, 100, t);
    assert_eq!(
        limits.message(2_000, t),
        Verdict::Pass,
        "the burst is 2,000 bytes"
    );
    assert_eq!(
        limits.message(1_000, t),
        Verdict::Throttle(Duration::from_secs(1))
    );
}

#[test]
fn each_bulk_token_has_its_own_rate_and_says_when_to_come_back() {
    let t = Instant::now();
    let mut limits = BulkLimits::new(5);
    assert!((0..10).all(|_| limits.request("alice", t).is_ok()));
    assert_eq!(limits.request("alice", t), Err(Duration::from_millis(200)));
    assert!(
        limits.request("bob", t).is_ok(),
        "another token is not slowed"
    );
    assert!(limits.request("alice", at(t, 200)).is_ok());
}

#[test]
fn bulk_callers_with_nothing_owed_are_forgotten_to_make_room() {
    let t = Instant::now();
    let mut limits = BulkLimits::new(1);
    for i in 0..MAX_BULK_CALLERS {
        assert!(limits.request(&format!("caller-{i}"), t).is_ok());
    }
    // Ten seconds on, every bucket is full again: a new caller makes room.
    assert!(limits.request("newcomer", at(t, 10_000)).is_ok());
    assert_eq!(limits.callers.len(), 1);
}

#[test]
fn the_largest_message_accepted_always_fits_the_burst() {
    let t = Instant::now();
    let mut limits = InboundLimits::new(200, 16_384, 65_536, t);
    assert_eq!(limits.message(65_536, t), Verdict::Pass);
    // Slowly, one every six seconds: well within 16 KiB/s on average, never closed.
    for i in 1..5 {
        assert_ne!(limits.message(40_000, at(t, i * 6_000)), Verdict::Close);
    }
}

#[test]
fn a_second_within_the_limits_ends_a_flood() {
    let t = Instant::now();
    let mut limits = InboundLimits::new(100, 1_000_000, 1_000, t);
    // A burst over the limit, then a legal rate for a long while, then a brief overshoot.
    assert!((0..201).any(|_| matches!(limits.message(10, t), Verdict::Throttle(_))));
    for i in 1..=600 {
        assert_eq!(
            limits.message(10, at(t, 1_000 + i * 10)),
            Verdict::Pass,
            "{i}"
        );
    }
    let later = at(t, 7_100);
    assert_ne!(limits.message(10, later), Verdict::Close);
}
