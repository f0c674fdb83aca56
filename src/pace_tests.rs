use super::*;

#[test]
fn gcra_allows_the_burst_then_paces() {
    let tat = AtomicU64::new(0);
    let (iv, tol) = gcra(100, SHARE); // 632 ms apart, a burst of 4 more
    let now = 1_000_000_000_000;
    let waits: Vec<u64> = (0..7).map(|_| book(&tat, now, iv, tol)).collect();
    assert!(waits[..5].iter().all(|&w| w == 0), "{waits:?}");
    assert_eq!(waits[5], iv);
    assert_eq!(waits[6], 2 * iv);
}

#[test]
fn items_get_buckets_of_their_own() {
    let s = Box::<PaceShm>::default();
    let now = 10_000_000_000_000;
    // Two keys that hash to the same slot, both busy: two buckets.
    let a = item_bucket(&s, 5, now) as *const _;
    book(item_bucket(&s, 5, now), now, 1_000_000_000, 0);
    let b = item_bucket(&s, 5 + ITEM_SLOTS as u64, now) as *const _;
    assert_ne!(a, b);
    assert_eq!(item_bucket(&s, 5, now) as *const _, a);
    // Once a's time has passed, its bucket may serve another key.
    let later = now + 2_000_000_000;
    let c = item_bucket(&s, 5 + 2 * ITEM_SLOTS as u64, later) as *const AtomicU64;
    assert_eq!(c, a);
}

#[test]
fn no_minute_sees_more_than_the_limit() {
    for limit in [2u32, 15, 50, 100, 2_500] {
        let tat = AtomicU64::new(0);
        let (iv, tol) = gcra(limit, SHARE);
        // Calls as fast as the limiter lets them: the times they go out.
        let mut times = Vec::new();
        let mut now = 5_000_000_000_000u64;
        for _ in 0..(limit * 3) {
            let at = now + book(&tat, now, iv, tol);
            times.push(at);
            now = at;
        }
        for (k, &t) in times.iter().enumerate() {
            let in_minute = times[k..]
                .iter()
                .take_while(|&&u| u < t + 60_000_000_000)
                .count();
            assert!(
                in_minute as u32 <= limit,
                "{limit}/min: {in_minute} in one minute"
            );
        }
    }
}
