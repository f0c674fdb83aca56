"""Every job kind works on the workers' threads as well as in plaid_process_inbox;
a bug in a job fails that job and nothing else; a worker whose database has no extension
waits for it quietly. (The products, ITEM webhooks, refresh and removal run both ways in
their own modules.)"""

import time

import pytest

from conftest import make_cluster, until
from test_sync import TOKENS, announce, assert_matches_emulator, drain, requests_of


@pytest.mark.both_ways
def test_update_item_webhook_calls_plaid_with_the_new_url(emulator, su):
    item_id = announce(emulator, su, days=3)
    drain(su)
    su.execute("SELECT plaid_sync.plaid_update_item_webhook(%s, 'https://example.com/plaid/hook2')", (item_id,))
    drain(su)
    calls = requests_of(emulator, item_id, "/item/webhook/update")
    assert len(calls) == 1
    assert su.execute("SELECT webhook, status FROM plaid_sync.items WHERE item_id = %s",
                      (item_id,)).fetchone() == ("https://example.com/plaid/hook2", "healthy")
    assert su.execute("SELECT count(*) FROM plaid_sync.inbox WHERE status = 'failed'").fetchone()[0] == 0


def worker_pids(conn):
    return sorted(r[0] for r in conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'plaid_sync worker'"))


@pytest.mark.both_ways
def test_a_job_that_panics_fails_alone_and_is_logged_once(cluster, jobs_run_by, emulator, su):
    if jobs_run_by == "inbox":
        # In a caller's transaction a bug is that call's ERROR, and the job stays queued.
        su.execute("INSERT INTO plaid_sync.inbox (source, webhook_type, webhook_code, item_id) "
                   "VALUES ('backend', 'PLAID_SYNC_TEST', 'PANIC', 'item-panics')")
        with pytest.raises(Exception) as e:
            su.execute("SELECT plaid_sync.plaid_process_inbox(10)")
        assert "a job made to panic" in str(e.value)
        su.execute("DELETE FROM plaid_sync.inbox WHERE webhook_type = 'PLAID_SYNC_TEST'")
        return
    pids = worker_pids(su)
    assert len(pids) == 2
    log_from = len(cluster.log_text())
    job = su.execute("INSERT INTO plaid_sync.inbox (source, webhook_type, webhook_code, item_id) "
                     "VALUES ('backend', 'PLAID_SYNC_TEST', 'PANIC', 'item-panics') RETURNING id").fetchone()[0]
    item_id = announce(emulator, su, days=5)
    until(lambda: su.execute("SELECT status FROM plaid_sync.inbox WHERE id = %s", (job,)).fetchone()[0] == "failed",
          what="the panicking job to fail")
    drain(su)
    status, attempts, error = su.execute("SELECT status, attempts, last_error FROM plaid_sync.inbox WHERE id = %s",
                                         (job,)).fetchone()
    assert (status, attempts) == ("failed", 1)
    assert error == "internal error: a job made to panic", error
    assert "/" not in error and ".rs" not in error
    # The worker goes on: the other Item synced, and no worker was restarted.
    assert_matches_emulator(emulator, su, item_id)
    assert worker_pids(su) == pids
    log = cluster.log_text()[log_from:]
    assert log.count("a job made to panic") == 1, log
    assert f"job {job} (PLAID_SYNC_TEST/PANIC) failed: internal error: a job made to panic" in log
    assert "panicked at" not in log and ".rs:" not in log
    # Not a bug of the suite's: the workers' fixture checks for these after every test.
    su.execute("DELETE FROM plaid_sync.inbox WHERE id = %s", (job,))


@pytest.mark.slow
def test_workers_wait_quietly_for_the_extension(emulator):
    # The workers serve "postgres", which initdb made: a database without the extension.
    c = make_cluster("no_extension", emulator, **{
        "plaid_sync.database": "'postgres'", "plaid_sync.workers": 2, "plaid_sync.poll_interval": "'200ms'"})
    c.start()
    try:
        with c.connect("postgres") as conn:
            until(lambda: len(worker_pids(conn)) == 2, what="two workers")
            pids = worker_pids(conn)
            time.sleep(2)  # ten polls
            waiting = 'no plaid_sync extension in database "postgres": the workers wait for CREATE EXTENSION plaid_sync there'
            assert c.log_text().count(waiting) == 1, c.log_tail()
            conn.execute("CREATE EXTENSION plaid_sync")
            item_id = announce(emulator, conn, days=5)
            drain(conn)
            assert_matches_emulator(emulator, conn, item_id)
            assert "the workers run jobs" in c.log_text()
            # Dropped under running workers, then created again.
            conn.execute("DROP EXTENSION plaid_sync CASCADE")
            time.sleep(2)
            assert c.log_text().count(waiting) == 2, c.log_tail()
            conn.execute("CREATE EXTENSION plaid_sync")
            conn.execute("SELECT plaid_sync.plaid_notify_item_created(%s, %s)", (item_id, TOKENS[item_id]))
            drain(conn)
            assert_matches_emulator(emulator, conn, item_id)
            assert worker_pids(conn) == pids, "no worker exited"
        log = c.log_text()
        for bad in ("ERROR", "FATAL", "does not exist", "backtrace", "terminated by exit code"):
            assert bad not in log, (bad, log[-3000:])
    finally:
        c.stop()



def test_drop_extension_under_busy_workers_waits_for_their_transactions(emulator):
    """DROP EXTENSION locks the extension before its tables; each worker transaction takes a
    share of that lock first, so the DROP waits for it. Without that, a claim (inbox, then
    items) and the DROP (items, then inbox) deadlocked now and then, failing the DROP."""
    c = make_cluster("drop_busy", emulator, **{
        "plaid_sync.database": "'postgres'", "plaid_sync.workers": 2, "plaid_sync.poll_interval": "'10ms'",
        "deadlock_timeout": "'20ms'"})
    c.start()
    try:
        with c.connect("postgres") as conn:
            until(lambda: len(worker_pids(conn)) == 2, what="two workers")
            pids = worker_pids(conn)
            mid_drain = 0
            taken = lambda: conn.execute(
                "SELECT count(*) FILTER (WHERE status <> 'pending'), count(*) FROM plaid_sync.inbox "
                "WHERE webhook_type = 'PLAID_SYNC_TEST'").fetchone()
            for n in range(100):
                conn.execute("CREATE EXTENSION plaid_sync")
                items = [announce(emulator, conn, days=3) for _ in range(4)]
                # Jobs that cost a claim and a look at their Item each, thousands a second.
                conn.execute("INSERT INTO plaid_sync.inbox (source, webhook_type, webhook_code, item_id) "
                             "SELECT 'backend', 'PLAID_SYNC_TEST', 'NOOP', (%s::text[])[1 + g %% 4] "
                             "FROM generate_series(1, 400) g", (items,))
                # The DROP must meet the workers mid-drain: wait (however loaded the machine) for
                # their first claim of the round, then let them go on for a varying while.
                until(lambda: taken()[0] > 0, every=0.002, what="the workers' first claim of the round")
                time.sleep(0.005 * (n % 9))
                done, total = taken()
                mid_drain += done < total
                conn.execute("DROP EXTENSION plaid_sync CASCADE")  # no deadlock, however the steps fall
            assert mid_drain >= 50, f"the DROP met the workers mid-drain in only {mid_drain} of 100 rounds"
            conn.execute("CREATE EXTENSION plaid_sync")
            item_id = announce(emulator, conn, days=5)
            drain(conn)
            assert_matches_emulator(emulator, conn, item_id)
            assert worker_pids(conn) == pids, "no worker exited"
        assert "deadlock detected" not in c.log_text(), c.log_tail()
    finally:
        c.stop()
