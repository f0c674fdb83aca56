use super::*;

#[test]
fn items_get_windows_of_their_own() {
    let s = zeroed();
    let now = 10_000_000_000_000;
    // Two keys that hash to the same slot, the first one busy: two windows.
    let a = item_window(&s, 5, now) as *const _;
    item_window(&s, 5, now).book(now, 15, 0);
    let b = item_window(&s, 5 + ITEM_SLOTS as u64, now) as *const _;
    assert_ne!(a, b);
    assert_eq!(item_window(&s, 5, now) as *const _, a);
    // Once a's last call is a minute old, its window may serve another key.
    let later = now + 61_000_000_000;
    let c = item_window(&s, 5 + 2 * ITEM_SLOTS as u64, later) as *const _;
    assert_eq!(c, a);
}

#[test]
fn shares_of_a_limit_admit_at_least_one_call() {
    assert_eq!(allowed(2_500, 1.0), 2_375);
    assert_eq!(allowed(50, 1.0), 48);
    assert_eq!(allowed(15, 1.0), 15);
    assert_eq!(allowed(2, 1.0), 2);
    assert_eq!(allowed(100, BULK_SHARE), 87);
    assert_eq!(allowed(15, 0.1), 1);
}

#[test]
fn a_first_sync_of_five_pages_waits_for_nothing_and_429s_cut_and_recover() {
    let pacer = SharedPacer {
        limits: ENDPOINTS.map(crate::plaid::limits::production),
    };
    use crate::plaid::Pacer;
    // Not preloaded: this process's own windows.
    let t0 = std::time::Instant::now();
    for _ in 0..5 {
        assert_eq!(
            pacer.reserve("/transactions/sync", Some("access-a")),
            Duration::ZERO
        );
    }
    assert!(t0.elapsed() < Duration::from_millis(100));
    let i = index("/accounts/get").unwrap();
    pacer.throttled("/accounts/get");
    pacer.throttled("/accounts/get"); // the same burst's
    assert!((pacer.factor(i, now_ns()) - 0.7).abs() < 1e-9);
    // The next call waits out the penalty.
    let wait = pacer.reserve("/accounts/get", None);
    assert!(wait > Duration::from_millis(900), "{wait:?}");
    // A clean minute later, 10% of the rate comes back.
    assert!((pacer.factor(i, now_ns() + 61_000_000_000) - 0.8).abs() < 1e-9);
}
