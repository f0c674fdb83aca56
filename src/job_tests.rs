use super::*;

/// Job code (src/sync/, and the HTTP client it calls) runs on job threads: it reads
/// settings from its `JobSettings`, and names `gucs` or `pg_sys` only inside a database
/// step (`db(…)`), which runs on the main thread. The runtime guard in `gucs` and the
/// end-to-end suite under running workers catch what this cannot see.
#[test]
fn job_code_reads_no_setting_outside_a_database_step() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/src/");
    let mut checked = 0;
    for dir in ["sync", "plaid"] {
        for entry in std::fs::read_dir(format!("{root}{dir}")).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap();
                if (code.contains("gucs::") || code.contains("pg_sys::")) && !code.contains("db(") {
                    panic!("{}:{}: {line}", path.display(), n + 1);
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 10);
}

#[test]
fn internal_errors_name_no_paths() {
    assert_eq!(
        internal_error(
            "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/pgrx-pg-sys-0.18.1/src/submodules/thread_check.rs:42:9: postgres FFI may not be called from multiple threads."
        ),
        "internal error: postgres FFI may not be called from multiple threads."
    );
    assert_eq!(
        internal_error(
            "index out of bounds: the len is 0 but the index is 3 at src/sync/x.rs:10:5\nstack"
        ),
        "internal error: index out of bounds: the len is 0 but the index is 3"
    );
    assert_eq!(
        internal_error(""),
        "internal error (a panic without a message)"
    );
    assert_eq!(
        internal_error("called `Option::unwrap()` on a `None` value"),
        "internal error: called `Option::unwrap()` on a `None` value"
    );
}

#[test]
fn backoff_doubles_and_is_capped() {
    let mut rng = rand::thread_rng();
    for _ in 0..100 {
        let d1 = backoff_ms(1, 1_000, 600_000, &mut rng);
        assert!((500..=1_000).contains(&d1));
        let d3 = backoff_ms(3, 1_000, 600_000, &mut rng);
        assert!((2_000..=4_000).contains(&d3));
        let d30 = backoff_ms(30, 1_000, 600_000, &mut rng);
        assert!((300_000..=600_000).contains(&d30));
    }
}

#[test]
fn each_outcome_is_recorded_as_its_disposition_says() {
    let p = RetryPolicy {
        max_attempts: 3,
        base_ms: 1_000,
        max_ms: 60_000,
    };
    let mut rng = rand::thread_rng();
    let mut d = |o: Outcome, attempts| o.disposition(attempts, &p, &mut rng);
    let done = d(Outcome::Done(None), 1);
    assert_eq!(
        (done.status, done.due, done.undo_attempt, done.error),
        ("done", Due::Keep, 0, None)
    );
    let retry = d(Outcome::Retry("Plaid down".into()), 2);
    assert_eq!(retry.status, "pending");
    assert!(matches!(retry.due, Due::In(ms) if (1_000..=2_000).contains(&ms)));
    let gave_up = d(Outcome::Retry("Plaid down".into()), 3);
    assert_eq!(
        (gave_up.status, gave_up.error.as_deref()),
        ("failed", Some("Plaid down (gave up after 3 attempts)"))
    );
    let throttled = d(Outcome::Throttled("429".into()), 3);
    assert_eq!((throttled.status, throttled.undo_attempt), ("pending", 1));
    assert!(matches!(throttled.due, Due::In(ms) if (5_000..15_000).contains(&ms)));
    assert_eq!(d(Outcome::Wait("w".into()), 1).due, Due::GraceEnd);
    assert_eq!(d(Outcome::Rejected("forged".into()), 1).status, "rejected");
    assert_eq!(
        d(Outcome::Internal("internal error: x".into()), 1).status,
        "failed"
    );
    assert_eq!(
        d(Outcome::ItemPaused("login".into()), 1).error.as_deref(),
        Some("Item paused: login")
    );
}
