use super::*;

fn window<const C: usize>() -> Box<Window<C>> {
    // As in shared memory: all zeros.
    unsafe { Box::<Window<C>>::new_zeroed().assume_init() }
}

const T0: u64 = 5_000_000_000_000;

#[test]
fn a_burst_up_to_the_limit_goes_at_once_then_the_minute_decides() {
    let w = window::<16>();
    let times: Vec<u64> = (0..7).map(|_| w.book(T0, 5, 0).0).collect();
    assert!(times[..5].iter().all(|&t| t == T0), "{times:?}");
    assert_eq!(times[5], T0 + MINUTE_NS + MARGIN_NS);
    assert_eq!(times[6], T0 + MINUTE_NS + MARGIN_NS);
    // A hold (after a 429) delays even a call the window would let through.
    let v = window::<16>();
    assert_eq!(v.book(T0, 5, T0 + 7).0, T0 + 7);
}

#[test]
fn limits_above_the_log_are_split_into_shorter_windows() {
    assert_eq!(shape(50, 16), (12, 15_000_000_000));
    assert_eq!(shape(16, 16), (16, MINUTE_NS));
    assert_eq!(shape(20_000, 4096), (4000, 12_000_000_000));
    assert_eq!(shape(0, 16), (1, MINUTE_NS));
}

fn check<const C: usize>(limit: u32, gaps: impl Fn(usize) -> u64) {
    let w = window::<C>();
    let mut at = T0;
    let mut times = Vec::new();
    for k in 0..(limit as usize * 3) {
        let (t, _) = w.book(at, limit, 0);
        assert!(t >= at);
        times.push(t);
        at = t + gaps(k);
    }
    // Plaid counts the calls it received in the 60 s before each one.
    for (k, &t) in times.iter().enumerate() {
        let seen = times[..=k].iter().filter(|&&u| u + MINUTE_NS > t).count();
        assert!(seen as u32 <= limit, "{limit}/min: {seen} in one minute");
    }
    // And lets through all the limit allows: three minutes' worth of calls go out within two
    // minutes (and the caller's own gaps) of the first.
    let took = times.last().unwrap() - times[0];
    let idle: u64 = (0..times.len()).map(&gaps).sum();
    assert!(
        took <= 2 * (MINUTE_NS + MARGIN_NS) + idle,
        "{limit}/min took {took}"
    );
}

#[test]
fn no_minute_sees_more_than_the_limit_and_none_is_wasted() {
    for limit in [1u32, 2, 15, 16] {
        check::<16>(limit, |_| 0);
        check::<16>(limit, |k| (k as u64 % 7) * 300_000_000);
    }
    for limit in [50u32, 2_500, 4_096] {
        check::<4096>(limit, |_| 0);
        check::<4096>(limit, |k| (k as u64 % 3) * 1_000_000);
    }
}

#[test]
fn a_limit_larger_than_the_log_still_holds_every_minute() {
    let w = window::<16>();
    let mut times = Vec::new();
    for _ in 0..150 {
        times.push(w.book(T0, 50, 0).0);
    }
    for (k, &t) in times.iter().enumerate() {
        let seen = times[..=k].iter().filter(|&&u| u + MINUTE_NS > t).count();
        assert!(seen <= 50, "{seen} in one minute");
    }
}

#[test]
fn a_settled_call_counts_from_when_it_went() {
    let w = window::<16>();
    let (_, slot) = w.book(T0, 1, 0);
    w.settle(slot, T0 + 10_000_000_000);
    // The next call waits a minute from when the first one really went.
    assert_eq!(
        w.book(T0, 1, 0).0,
        T0 + 10_000_000_000 + MINUTE_NS + MARGIN_NS
    );
    assert!(!w.idle(T0 + MINUTE_NS));
    assert!(w.idle(T0 + 10_000_000_000 + 3 * MINUTE_NS));
}

#[test]
fn a_lock_left_held_by_a_process_that_exited_is_taken_over() {
    let w = window::<16>();
    w.lock.store(1, Relaxed); // as a worker that exited mid-booking leaves it
    assert_eq!(w.book(T0, 5, 0).0, T0);
    assert_eq!(w.lock.load(Relaxed), 0);
}
