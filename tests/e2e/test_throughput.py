"""Many Plaid calls in flight per worker, Plaid's rate limits paced across processes,
fresh work ahead of a migration backlog, and webhooks for unannounced Items that cannot
stall the queue. One worker with a few slots, so each property shows on a small scale."""

import os
import signal
import time

import psycopg
import pytest

from conftest import USED_SECRETS, make_cluster, until

# Floods, pacing at the limit and 429s: minutes of wall time, left out of `scripts/test --quick`.
pytestmark = pytest.mark.slow

DB = "e2e_throughput"
SLOTS = 6


@pytest.fixture(scope="module")
def tc(emulator):
    c = make_cluster("throughput", emulator, **{
        "plaid_sync.database": f"'{DB}'",
        "plaid_sync.workers": 1,
        "plaid_sync.calls_in_flight": SLOTS,
        "plaid_sync.poll_interval": "'60s'",
        "plaid_sync.done_retention": "'2s'",
        "plaid_sync.retry_base_delay": "'20ms'",
        "plaid_sync.retry_max_delay": "'200ms'",
        "plaid_sync.max_attempts": 3,
    })
    c.start()
    c.create_database(DB)
    yield c
    c.stop()


@pytest.fixture
def conn(tc, emulator):
    with tc.connect(DB) as c:
        yield c
    emulator("config", latency_ms=0)
    emulator("rate_limits", limits={})
    emulator("clear_faults")


def items(emulator, n, days=5):
    out = emulator("items", count=n, days=days, per_day=2)["items"]
    for it in out:
        USED_SECRETS.add(it["access_token"])
    return out


def announce(conn, its):
    for it in its:
        conn.execute("SELECT plaid_sync.plaid_notify_item_created(%s, %s)", (it["item_id"], it["access_token"]))


def healthy(conn, its):
    ids = [it["item_id"] for it in its]
    return conn.execute("SELECT count(*) = %s FROM plaid_sync.items WHERE item_id = ANY(%s) AND status = 'healthy'",
                        (len(ids), ids)).fetchone()[0]


def queue_idle(conn):
    return conn.execute("SELECT count(*) = 0 FROM plaid_sync.inbox WHERE status IN ('pending', 'running') "
                        "AND run_after <= now()").fetchone()[0]


def worker_pid(conn):
    return conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'plaid_sync worker'").fetchone()


def test_one_worker_keeps_its_slots_busy_and_reuses_connections(emulator, conn):
    until(lambda: queue_idle(conn), what="an idle queue")
    emulator("config", latency_ms=300)
    before = emulator("rate_limit_stats")["connections_opened"]
    its = items(emulator, 24)
    t0 = time.time()
    announce(conn, its)
    peak = 0
    while not healthy(conn, its):
        assert time.time() - t0 < 60, "the migration stalled"
        peak = max(peak, conn.execute("SELECT sum(in_flight) FROM plaid_sync.plaid_rate_status()").fetchone()[0])
        time.sleep(0.05)
    elapsed = time.time() - t0
    # 24 Items x 3 calls x 300 ms is 21.6 s one call at a time; in flight, a fraction of it.
    assert peak >= SLOTS - 2, peak
    assert elapsed < 21.6 / 2, elapsed
    opened = emulator("rate_limit_stats")["connections_opened"] - before
    assert opened <= SLOTS + 2, f"{opened} connections for {24 * 3} calls: the keep-alive pool is not reused"


def test_sigterm_with_every_slot_busy_stops_the_worker_within_a_second(tc, emulator, conn):
    until(lambda: queue_idle(conn), what="an idle queue")
    # The backlog may take three quarters of the slots; fresh work (an update of Items that
    # synced before) takes the rest.
    synced = items(emulator, SLOTS - SLOTS * 3 // 4)
    announce(conn, synced)
    until(lambda: healthy(conn, synced), what="the first syncs")
    emulator("config", latency_ms={"/accounts/get": 60_000})
    its = items(emulator, SLOTS * 3 // 4)
    announce(conn, its)
    for it in synced:
        conn.execute("SELECT plaid_sync.plaid_notify_item_updated(%s)", (it["item_id"],))
    its += synced
    until(lambda: conn.execute("SELECT sum(in_flight) FROM plaid_sync.plaid_rate_status()").fetchone()[0] == SLOTS,
          what="every slot in a Plaid call")
    (pid,) = worker_pid(conn)
    with open(f"/proc/{pid}/status") as f:
        rss_kb = int(next(line.split()[1] for line in f if line.startswith("RssAnon:")))
    assert rss_kb < 100 * 1024, f"worker private memory {rss_kb} kB with every slot busy"
    t0 = time.time()
    os.kill(pid, signal.SIGTERM)
    until(lambda: (worker_pid(conn) or (None,))[0] != pid, timeout=1.0, every=0.01, what="the worker to stop")
    assert time.time() - t0 < 1.0
    emulator("config", latency_ms=0)
    # Restarted after 2 s, the new worker takes the abandoned jobs (their process is gone).
    until(lambda: healthy(conn, its), timeout=30, what="the abandoned jobs to be taken again")


def test_rate_limits_setting_is_checked(tc):
    with tc.connect() as c:
        with pytest.raises(psycopg.errors.InvalidParameterValue) as e:
            c.execute("ALTER SYSTEM SET plaid_sync.rate_limits = '/transactions/sync=lots/1'")
        assert "calls per minute" in (e.value.diag.message_detail or "")
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            c.execute("ALTER SYSTEM SET plaid_sync.rate_limits = '/no/such/endpoint=1/1'")
        c.execute("ALTER SYSTEM SET plaid_sync.rate_limits = '/transactions/sync=120/50'")
        c.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)
    with tc.connect(DB) as c:
        row = c.execute("SELECT per_client_limit, per_item_limit FROM plaid_sync.plaid_rate_status() "
                        "WHERE endpoint = '/transactions/sync'").fetchone()
        assert row == (120, 50)
        assert c.execute("SELECT per_client_limit FROM plaid_sync.plaid_rate_status() "
                         "WHERE endpoint = '/accounts/get'").fetchone()[0] == 15000  # only the entry named


def test_the_limiter_stays_under_plaids_limit(tc, emulator, conn):
    """The emulator enforces 120 syncs a minute per client; the setting (previous test) says the
    same: the worker and plaid_process_inbox together stay under it, with no failed job."""
    until(lambda: queue_idle(conn), what="an idle queue")
    emulator("rate_limits", limits={"/transactions/sync": [120, 50]})
    its = items(emulator, 30, days=1)
    t0 = time.time()
    announce(conn, its)
    with tc.connect(DB) as other:  # a backend running jobs too, paced by the same limiter
        while not healthy(conn, its):
            assert time.time() - t0 < 60
            other.execute("SELECT plaid_sync.plaid_process_inbox(1)")
            time.sleep(0.1)
    stats = emulator("rate_limit_stats")
    assert stats["throttled"] <= 3, stats
    assert conn.execute("SELECT count(*) FROM plaid_sync.inbox WHERE status = 'failed'").fetchone()[0] == 0


def test_a_429_slows_the_endpoint_and_never_fails_a_job(tc, emulator, conn):
    """Plaid's limit here is below the one configured: 429s come, the endpoint slows down, and
    every job still ends done."""
    until(lambda: queue_idle(conn), what="an idle queue")
    emulator("rate_limits", limits={"/transactions/sync": [20, 50]})
    its = items(emulator, 26, days=1)
    announce(conn, its)
    until(lambda: emulator("rate_limit_stats")["throttled"] > 0, what="a 429")
    share = conn.execute("SELECT rate_share FROM plaid_sync.plaid_rate_status() "
                         "WHERE endpoint = '/transactions/sync'").fetchone()[0]
    assert share < 1.0
    assert conn.execute("SELECT throttled_last_hour > 0 FROM plaid_sync.sync_progress").fetchone()[0]
    emulator("rate_limits", limits={})
    # The burst that met the 429s still counts in the last minute's window, so the rest wait
    # for it to pass, as they would have to at Plaid.
    until(lambda: healthy(conn, its), timeout=120, what="the throttled jobs to finish")
    assert conn.execute("SELECT count(*) FROM plaid_sync.inbox WHERE status = 'failed'").fetchone()[0] == 0
    with tc.connect() as c:
        c.execute("ALTER SYSTEM RESET plaid_sync.rate_limits")
        c.execute("SELECT pg_reload_conf()")


def test_a_first_sync_of_five_pages_goes_at_once_under_plaids_own_limits(tc, emulator, conn):
    """Plaid counts each Item's calls per minute (50 syncs): the five pages of a first sync are
    five of them, so they go back to back, with Plaid's own limits enforced and no 429."""
    until(lambda: queue_idle(conn), what="an idle queue")
    emulator("rate_limits", limits={"/transactions/sync": [2500, 50], "/accounts/get": [15000, 15]})
    throttled = emulator("rate_limit_stats")["throttled"]
    (it,) = emulator("items", count=1, days=600, per_day=4)["items"]  # 2,400 transactions
    USED_SECRETS.add(it["access_token"])
    announce(conn, [it])
    until(lambda: healthy(conn, [it]), timeout=30, what="the first sync")
    at = [r["at"] for r in emulator("requests")["requests"]
          if r["item_id"] == it["item_id"] and r["path"] == "/transactions/sync"]
    assert len(at) == 5, at
    # A pacer smoothing 50 a minute with a burst of 2 spaced the last three 1.26 s apart.
    assert at[-1] - at[0] < 1.5, [round(t - at[0], 2) for t in at]
    assert emulator("rate_limit_stats")["throttled"] == throttled


def test_fresh_webhooks_go_ahead_of_a_backlog(tc, emulator, conn):
    until(lambda: queue_idle(conn), what="an idle queue")
    (synced,) = items(emulator, 1)
    announce(conn, [synced])
    until(lambda: healthy(conn, [synced]), what="the first Item's sync")
    emulator("config", latency_ms=400)
    backlog = items(emulator, 40, days=1)
    announce(conn, backlog)
    until(lambda: conn.execute("SELECT backlog_jobs_due > 20 FROM plaid_sync.sync_progress").fetchone()[0],
          what="a backlog")
    emulator("advance", item_id=synced["item_id"], days=1, per_day=3)
    w = emulator("webhook", item_id=synced["item_id"])
    t0 = time.time()
    wid = conn.execute("SELECT plaid_sync.plaid_receive_webhook(%s, %s)", (w["body"], w["plaid_verification"])).fetchone()[0]
    until(lambda: conn.execute("SELECT status = 'done' FROM plaid_sync.inbox WHERE id = %s", (wid,)).fetchone()[0],
          timeout=20, every=0.02, what="the fresh webhook")
    took = time.time() - t0
    left = conn.execute("SELECT count(*) FROM plaid_sync.inbox WHERE lane = 1 AND status IN ('pending', 'running')").fetchone()[0]
    assert left >= 20, f"the webhook waited for the backlog ({left} left)"
    assert took < 3.0, took
    progress = conn.execute("SELECT items_announced, items_never_synced, items_synced, backlog_eta IS NOT NULL "
                            "FROM plaid_sync.sync_progress").fetchone()
    assert progress[1] > 0 and progress[0] == progress[1] + progress[2] and progress[3]
    emulator("config", latency_ms=0)
    until(lambda: healthy(conn, backlog), timeout=60, what="the backlog")


def test_webhooks_for_unannounced_items_are_checked_first_then_sleep_until_announced(tc, emulator, conn):
    until(lambda: queue_idle(conn), what="an idle queue")
    (it,) = items(emulator, 1)
    forged = emulator("webhook", item_id=it["item_id"], forge="wrong_key")
    genuine = emulator("webhook", item_id=it["item_id"])
    fid = conn.execute("SELECT plaid_sync.plaid_receive_webhook(%s, %s)", (forged["body"], forged["plaid_verification"])).fetchone()[0]
    gid = conn.execute("SELECT plaid_sync.plaid_receive_webhook(%s, %s)", (genuine["body"], genuine["plaid_verification"])).fetchone()[0]
    # The forged one is rejected at once, with its reason, though its Item is unknown.
    until(lambda: conn.execute("SELECT status FROM plaid_sync.inbox WHERE id = %s", (fid,)).fetchone()[0] == "rejected",
          timeout=3, what="the forged webhook rejected")
    # The genuine one is verified, then sleeps: due at the end of the grace, not polled.
    until(lambda: conn.execute("SELECT verification LIKE 'verified%%' FROM plaid_sync.inbox WHERE id = %s",
                               (gid,)).fetchone()[0], timeout=3, what="the genuine one verified")
    time.sleep(1.5)
    row = conn.execute("SELECT status, attempts, run_after > now() + interval '30 minutes' FROM plaid_sync.inbox "
                       "WHERE id = %s", (gid,)).fetchone()
    assert row == ("pending", 0, True), row
    # Announcing the Item wakes it.
    t0 = time.time()
    announce(conn, [it])
    until(lambda: conn.execute("SELECT status FROM plaid_sync.inbox WHERE id = %s", (gid,)).fetchone()[0] == "done",
          timeout=5, every=0.02, what="the woken webhook")
    assert time.time() - t0 < 5
    # Rejected rows expire like done ones (done_retention is 2 s here).
    until(lambda: conn.execute("SELECT count(*) = 0 FROM plaid_sync.inbox WHERE id = %s", (fid,)).fetchone()[0],
          timeout=20, what="the rejected row to expire")


def test_one_items_pile_of_jobs_does_not_starve_another(tc, emulator, conn):
    """With one slot, an Item with twenty queued jobs and another with one: the other one runs
    second, not after the pile."""
    until(lambda: queue_idle(conn), what="an idle queue")
    with tc.connect() as c:
        c.execute("ALTER SYSTEM SET plaid_sync.calls_in_flight = 1")
        c.execute("SELECT pg_reload_conf()")
    time.sleep(0.5)
    try:
        x, y = items(emulator, 2)
        announce(conn, [x, y])
        until(lambda: healthy(conn, [x, y]), what="both Items synced")
        pile = [emulator("webhook", item_id=x["item_id"], webhook_type="ITEM", webhook_code="WEBHOOK_UPDATE_ACKNOWLEDGED",
                         fields={"new_webhook_url": f"https://example.com/{n}"}) for n in range(20)]
        other = emulator("webhook", item_id=y["item_id"], webhook_type="ITEM", webhook_code="WEBHOOK_UPDATE_ACKNOWLEDGED",
                         fields={"new_webhook_url": "https://example.com/y"})
        with conn.transaction():  # one commit: the same run_after for all, x's pile first by id
            ids = [conn.execute("SELECT plaid_sync.plaid_receive_webhook(%s, %s)", (w["body"], w["plaid_verification"])).fetchone()[0]
                   for w in pile + [other]]
        until(lambda: queue_idle(conn), what="the jobs")
        order = [r[0] for r in conn.execute("SELECT id FROM plaid_sync.inbox WHERE id = ANY(%s) ORDER BY finished_at, id", (ids,))]
        assert order.index(ids[-1]) <= 2, f"the other Item's job ran {order.index(ids[-1]) + 1}th of {len(ids)}"
    finally:
        with tc.connect() as c:
            c.execute("ALTER SYSTEM RESET plaid_sync.calls_in_flight")
            c.execute("SELECT pg_reload_conf()")
