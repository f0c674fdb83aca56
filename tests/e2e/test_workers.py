"""With plaid_sync preloaded, the workers do the jobs by themselves, and lose nothing
under crashes, shutdowns and an unreachable Plaid."""

import os
import signal
import time

import psycopg
import pytest

from conftest import USED_SECRETS, make_cluster, until
from test_sync import assert_matches_emulator

DB = "plaid"


@pytest.fixture(scope="module")
def wc(emulator):
    c = make_cluster("workers", emulator, **{
        "plaid_sync.database": f"'{DB}'",
        "plaid_sync.workers": 2,
        "plaid_sync.poll_interval": "'60s'",  # a job that starts quickly was woken, not polled
        "plaid_sync.retry_base_delay": "'20ms'",
        "plaid_sync.retry_max_delay": "'200ms'",
        "plaid_sync.max_attempts": 6,
        "plaid_sync.job_lease": "'30s'",
        "plaid_sync.request_timeout": "'5s'",
    })
    c.start()
    c.create_database(DB)
    yield c
    c.stop()


@pytest.fixture
def conn(wc):
    with wc.connect(DB) as c:
        yield c


def new_item(emulator, days=20, per_day=3):
    item = emulator("items", count=1, days=days, per_day=per_day)["items"][0]
    USED_SECRETS.add(item["access_token"])
    return item


def announce(conn, item):
    conn.execute("SELECT plaid_sync.plaid_notify_item_created(%s, %s)", (item["item_id"], item["access_token"]))


def status(conn, item_id):
    r = conn.execute("SELECT status FROM plaid_sync.items WHERE item_id = %s", (item_id,)).fetchone()
    return r and r[0]


def idle(conn):
    return conn.execute("SELECT count(*) = 0 FROM plaid_sync.inbox WHERE status IN ('pending', 'running')").fetchone()[0]


def workers(conn):
    return conn.execute("SELECT pid, datname, xact_start FROM pg_stat_activity WHERE backend_type = 'plaid_sync worker' ORDER BY pid").fetchall()


def set_conf(wc, **settings):
    with wc.connect() as c:
        for k, v in settings.items():
            if v is None:
                c.execute(f"ALTER SYSTEM RESET plaid_sync.{k}")
            else:
                c.execute(f"ALTER SYSTEM SET plaid_sync.{k} = '{v}'")
    wc.reload()


def test_workers_are_running_named_and_connected(conn):
    until(lambda: len(workers(conn)) == 2, what="two workers")
    assert {w[1] for w in workers(conn)} == {DB}


def test_a_notice_becomes_rows_with_no_manual_call_and_wakes_a_worker_at_once(emulator, conn):
    item = new_item(emulator)
    started = time.time()
    announce(conn, item)
    until(lambda: status(conn, item["item_id"]) == "healthy", what="the Item to sync")
    assert time.time() - started < 5, "the poll interval is 60 s: the worker was woken"
    assert_matches_emulator(emulator, conn, item["item_id"])


def test_one_commit_of_many_jobs_busies_every_worker(emulator, conn):
    """A commit wakes one idle worker, not all of them, and the jobs it committed run side by
    side: a worker keeps many in flight (before, each took one and woke the next)."""
    until(lambda: idle(conn), what="an idle queue")
    a, b = new_item(emulator), new_item(emulator)
    emulator("fault", endpoint="/accounts/get", kind="slow", delay_ms=2000, times=2)
    with conn.transaction():
        announce(conn, a)
        announce(conn, b)
    running = "SELECT count(*) FROM plaid_sync.inbox WHERE status = 'running'"
    until(lambda: conn.execute(running).fetchone()[0] == 2, timeout=1.5, every=0.02,
          what="both jobs running before the first slow call ends (the poll interval is 60 s)")
    until(lambda: status(conn, a["item_id"]) == status(conn, b["item_id"]) == "healthy", what="both syncs")


def test_no_transaction_is_open_while_plaid_is_called(emulator, conn):
    item = new_item(emulator)
    emulator("fault", endpoint="/accounts/get", kind="slow", delay_ms=3000, times=1)
    announce(conn, item)
    # The worker making the call (the other one may be busy with its own maintenance).
    running = "SELECT locked_by FROM plaid_sync.inbox WHERE item_id = %s AND status = 'running'"
    until(lambda: conn.execute(running, (item["item_id"],)).fetchone(), what="the job to be claimed")
    pid = conn.execute(running, (item["item_id"],)).fetchone()[0]
    until(lambda: emulator("requests")["requests"][-1]["path"] == "/accounts/get", what="the slow call")
    # The worker's main thread still runs short steps of its own meanwhile (a claim every
    # 200 ms while busy, worker 0's maintenance), each in a transaction that commits at once;
    # what must never be seen is a transaction held across the call, which would be as old
    # as the call by the later samples.
    ages = []
    for _ in range(20):
        ages += [r[0] for r in conn.execute(
            "SELECT extract(epoch FROM clock_timestamp() - xact_start) FROM pg_stat_activity WHERE pid = %s", (pid,))]
        time.sleep(0.05)
    assert len(ages) == 20, ages
    assert all(a is None or a < 0.25 for a in ages), f"the worker held a transaction open during a Plaid call: {ages}"
    assert sum(a is None for a in ages) >= 15, ages  # mostly no transaction at all
    until(lambda: status(conn, item["item_id"]) == "healthy", what="the sync")



def test_a_claim_skips_the_jobs_of_an_item_in_flight_on_any_worker(emulator, conn):
    """The Items with a job in flight are in shared memory (src/busy_items.rs): while one
    Item's Plaid call hangs, no worker claims its pile of jobs only to give them back, and
    another Item's job runs meanwhile."""
    until(lambda: idle(conn), what="an idle queue")
    x, y = new_item(emulator, days=3), new_item(emulator, days=3)
    announce(conn, x)
    announce(conn, y)
    until(lambda: status(conn, x["item_id"]) == status(conn, y["item_id"]) == "healthy", what="both syncs")
    emulator("fault", endpoint="/transactions/sync", kind="slow", delay_ms=4000, times=1)
    w = emulator("webhook", item_id=x["item_id"], webhook_type="TRANSACTIONS", webhook_code="SYNC_UPDATES_AVAILABLE")
    conn.execute("SELECT plaid_sync.plaid_receive_webhook(%s, %s)", (w["body"], w["plaid_verification"]))
    until(lambda: emulator("requests")["requests"][-1]["path"] == "/transactions/sync", what="the slow call")
    noop = ("INSERT INTO plaid_sync.inbox (source, webhook_type, webhook_code, item_id) "
            "SELECT 'backend', 'PLAID_SYNC_TEST', 'NOOP', %s FROM generate_series(1, %s) RETURNING id, run_after")
    with conn.transaction():  # one commit, which wakes a worker
        pile = dict(conn.execute(noop, (x["item_id"], 50)).fetchall())
        other = conn.execute(noop, (y["item_id"], 1)).fetchone()[0]
    until(lambda: conn.execute("SELECT status FROM plaid_sync.inbox WHERE id = %s", (other,)).fetchone()[0] == "done",
          timeout=2, every=0.02, what="the other Item's job, while the call hangs")
    time.sleep(0.5)  # both workers look again meanwhile (a commit, 200 ms while busy)
    now = dict(conn.execute("SELECT id, run_after FROM plaid_sync.inbox WHERE id = ANY(%s) "
                            "AND status = 'pending' AND attempts = 0", (list(pile),)).fetchall())
    assert now == pile, "a job of the Item in flight was claimed and given back"
    assert conn.execute("SELECT count(*) FROM plaid_sync.inbox WHERE item_id = %s AND status = 'running'",
                        (x["item_id"],)).fetchone()[0] == 1
    until(lambda: idle(conn), what="the pile, once the call ends")
    assert conn.execute("SELECT count(*) FROM plaid_sync.inbox WHERE id = ANY(%s) AND status = 'done'",
                        (list(pile),)).fetchone()[0] == 50

def test_sighup_reloads_the_api_url(wc, emulator, conn):
    item = new_item(emulator)
    set_conf(wc, api_url="http://127.0.0.1:9", max_attempts=1000, retry_max_delay="200ms")
    try:
        announce(conn, item)
        until(lambda: "network error" in (conn.execute(
            "SELECT coalesce(last_error, '') FROM plaid_sync.inbox WHERE item_id = %s", (item["item_id"],)).fetchone()[0]),
            what="a failed attempt against the wrong URL")
        assert status(conn, item["item_id"]) == "pending"
    finally:
        set_conf(wc, api_url=emulator.url, max_attempts=None, retry_max_delay=None)
    until(lambda: status(conn, item["item_id"]) == "healthy", what="the sync after the reload")


def test_sigterm_stops_a_worker_promptly_during_a_plaid_call_and_it_comes_back(emulator, conn):
    item = new_item(emulator)
    emulator("fault", endpoint="/item/get", kind="slow", delay_ms=60000, times=1)
    announce(conn, item)
    until(lambda: conn.execute("SELECT locked_by FROM plaid_sync.inbox WHERE item_id = %s AND status = 'running'", (item["item_id"],)).fetchone(), what="a worker on the job")
    time.sleep(0.5)  # the call is in flight
    pid = conn.execute("SELECT locked_by FROM plaid_sync.inbox WHERE item_id = %s", (item["item_id"],)).fetchone()[0]
    t0 = time.time()
    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    until(lambda: pid not in [w[0] for w in workers(conn)], timeout=5, what="the worker to stop")
    assert time.time() - t0 < 3
    until(lambda: len(workers(conn)) == 2, timeout=15, what="the worker to be restarted")
    until(lambda: status(conn, item["item_id"]) == "healthy", timeout=30, what="the abandoned job to run again")


def test_webhooks_coalesce_into_few_syncs_per_item(emulator, conn):
    items = [new_item(emulator, days=10) for _ in range(10)]
    for it in items:
        announce(conn, it)
    until(lambda: all(status(conn, it["item_id"]) == "healthy" for it in items), timeout=60, what="10 Items")
    until(lambda: idle(conn), what="idle")
    mark = conn.execute("SELECT coalesce(max(id), 0) FROM plaid_sync.sync_runs").fetchone()[0]
    for it in items:
        emulator("advance", item_id=it["item_id"], days=2)
    hooks = [emulator("webhook", item_id=it["item_id"]) for it in items for _ in range(100)]
    with conn.cursor() as cur:
        cur.executemany("SELECT plaid_sync.plaid_receive_webhook(%s, %s)", [(h["body"], h["plaid_verification"]) for h in hooks])
    until(lambda: idle(conn), timeout=120, what="1,000 webhooks to be handled")
    per_item = dict(conn.execute("SELECT item_id, count(*) FROM plaid_sync.sync_runs WHERE id > %s GROUP BY 1", (mark,)).fetchall())
    assert set(per_item) == {it["item_id"] for it in items}
    assert max(per_item.values()) <= 5, per_item
    # One job per Item at a time: no two syncs of one Item overlap.
    overlaps = conn.execute("""SELECT count(*) FROM plaid_sync.sync_runs a JOIN plaid_sync.sync_runs b
                                 ON a.item_id = b.item_id AND a.id < b.id
                                AND tstzrange(a.started_at, a.finished_at) && tstzrange(b.started_at, b.finished_at)""").fetchone()[0]
    assert overlaps == 0
    done = conn.execute("SELECT count(*) FROM plaid_sync.inbox WHERE source = 'plaid' AND status = 'done'").fetchone()[0]
    assert done >= 1000
    for it in items:
        assert_matches_emulator(emulator, conn, it["item_id"])


def test_a_webhook_for_an_unannounced_item_waits_for_it(emulator, conn):
    item = new_item(emulator)
    h = emulator("webhook", item_id=item["item_id"])
    qid = conn.execute("SELECT plaid_sync.plaid_receive_webhook(%s, %s)", (h["body"], h["plaid_verification"])).fetchone()[0]
    time.sleep(1.5)
    assert conn.execute("SELECT status, attempts FROM plaid_sync.inbox WHERE id = %s", (qid,)).fetchone() == ("pending", 0)
    announce(conn, item)
    until(lambda: conn.execute("SELECT status FROM plaid_sync.inbox WHERE id = %s", (qid,)).fetchone()[0] == "done", what="the webhook to run")
    assert conn.execute("SELECT verification FROM plaid_sync.inbox WHERE id = %s", (qid,)).fetchone()[0].startswith("verified")
    until(lambda: status(conn, item["item_id"]) == "healthy", what="the Item")


@pytest.mark.slow
def test_kill_9_in_the_middle_of_a_multi_page_sync(wc, emulator, conn):
    # 13 pages: the first four are staged when the fourth would pass the 2 MiB a run holds.
    item = new_item(emulator, days=1600, per_day=4)
    emulator("fault", endpoint="/transactions/sync", kind="slow", page=6, delay_ms=4000, times=1)
    announce(conn, item)
    until(lambda: conn.execute("SELECT count(*) FROM plaid_sync.sync_pages").fetchone()[0] >= 4, what="pages 1-4 staged")
    pid = conn.execute("SELECT locked_by FROM plaid_sync.inbox WHERE item_id = %s", (item["item_id"],)).fetchone()[0]
    os.kill(pid, signal.SIGKILL)  # the postmaster restarts every process
    time.sleep(1)

    def reconnect_status():
        try:
            with wc.connect(DB) as c:
                return status(c, item["item_id"]) == "healthy"
        except psycopg.OperationalError:
            return False
    until(reconnect_status, timeout=60, what="the sync to complete after the crash")
    with wc.connect(DB) as c:
        assert_matches_emulator(emulator, c, item["item_id"])
        runs = c.execute("SELECT outcome FROM plaid_sync.sync_runs WHERE item_id = %s ORDER BY id", (item["item_id"],)).fetchall()
        assert runs[-1] == ("ok",) and ("failed",) in runs  # the abandoned run is closed
        assert c.execute("SELECT count(*) FROM plaid_sync.sync_pages").fetchone()[0] == 0


@pytest.mark.slow
def test_plaid_down_for_30_seconds(wc, emulator, conn):
    items = [new_item(emulator, days=5) for _ in range(5)]
    set_conf(wc, max_attempts=50, retry_base_delay="500ms", retry_max_delay="4s")
    emulator.stop()
    try:
        for it in items:
            announce(conn, it)
        time.sleep(30)
        assert all(status(conn, it["item_id"]) == "pending" for it in items)
        errors = conn.execute("SELECT last_error FROM plaid_sync.inbox WHERE item_id = ANY(%s)", ([it["item_id"] for it in items],)).fetchall()
        assert all("network error" in e[0] for e in errors), errors
    finally:
        emulator.start()
    try:
        until(lambda: all(status(conn, it["item_id"]) == "healthy" for it in items), timeout=60, what="recovery")
    finally:
        set_conf(wc, max_attempts=None, retry_base_delay=None, retry_max_delay=None)
    for it in items:
        assert_matches_emulator(emulator, conn, it["item_id"])


@pytest.mark.slow
def test_fast_shutdown_in_the_middle_of_load(wc, emulator):
    emulator("config", latency_ms=100)
    items = [new_item(emulator, days=30) for _ in range(20)]
    try:
        with wc.connect(DB) as c:
            for it in items:
                announce(c, it)
        time.sleep(1.5)
        wc.stop("fast")
        wc.start()
        with wc.connect(DB) as c:
            until(lambda: all(status(c, it["item_id"]) == "healthy" for it in items), timeout=120, what="all Items after the restart")
            until(lambda: idle(c), what="idle")
            for it in items:
                assert_matches_emulator(emulator, c, it["item_id"])
            ids = [it["item_id"] for it in items]
            # Nothing done twice: one CREATED job each, one snapshot per account.
            assert c.execute("SELECT count(*) FROM plaid_sync.inbox WHERE item_id = ANY(%s) AND webhook_code = 'CREATED' AND status = 'done'", (ids,)).fetchone()[0] == 20
            assert c.execute("SELECT count(*) FROM plaid_sync.balance_snapshots WHERE item_id = ANY(%s)", (ids,)).fetchone()[0] == \
                c.execute("SELECT count(*) FROM plaid_sync.accounts WHERE item_id = ANY(%s)", (ids,)).fetchone()[0]
    finally:
        emulator("config", latency_ms=0)


@pytest.mark.slow
def test_retention_and_self_healing(wc, emulator, conn):
    item = new_item(emulator, days=5)
    announce(conn, item)
    until(lambda: status(conn, item["item_id"]) == "healthy", what="the Item")
    conn.execute("""INSERT INTO plaid_sync.inbox (source, webhook_type, webhook_code, item_id, status, finished_at, last_error)
                    VALUES ('backend', 'ITEM', 'UPDATED', %s, 'failed', now() - interval '1 day', 'kept')""", (item["item_id"],))
    emulator("advance", item_id=item["item_id"], days=3)  # and no webhook at all
    set_conf(wc, done_retention="1s", resync_interval="3s")
    try:
        until(lambda: conn.execute("SELECT count(*) FROM plaid_sync.sync_runs WHERE item_id = %s AND trigger = 'TRANSACTIONS/SYNC_UPDATES_AVAILABLE'", (item["item_id"],)).fetchone()[0] >= 1,
              timeout=40, what="a resync without a webhook")
        until(lambda: idle(conn), what="idle")
        assert_matches_emulator(emulator, conn, item["item_id"])
        until(lambda: conn.execute("SELECT count(*) FROM plaid_sync.inbox WHERE status = 'done' AND finished_at < now() - interval '5 seconds'").fetchone()[0] == 0,
              timeout=40, what="old done rows to be deleted")
        assert conn.execute("SELECT count(*) FROM plaid_sync.inbox WHERE status = 'failed' AND last_error = 'kept'").fetchone()[0] == 1
    finally:
        set_conf(wc, done_retention=None, resync_interval=None)


def test_an_item_without_transactions_is_reread_on_the_scheduled_resync(wc, emulator, conn):
    """An Item linked for Auth only has no sync to mark it synced: the scheduled resync still
    reads its Item and accounts (balances) again, and never calls /transactions/sync."""
    from test_consent import ACCOUNTS, ITEM_GET, SYNC, calls_for
    from test_products import announce_with
    auth = announce_with(emulator, conn, ["auth"], days=5)
    until(lambda: idle(conn) and status(conn, auth) == "healthy", what="the Item read")
    first = conn.execute("SELECT last_synced_at FROM plaid_sync.items WHERE item_id = %s", (auth,)).fetchone()[0]
    assert first is not None, "reading the Item and its accounts is its sync"
    before = calls_for(emulator, auth)
    set_conf(wc, resync_interval="2s")
    try:
        until(lambda: calls_for(emulator, auth).get(ACCOUNTS, 0) >= before[ACCOUNTS] + 2, timeout=40,
              what="two scheduled re-reads of an Item without Transactions")
        until(lambda: idle(conn), what="idle")
    finally:
        set_conf(wc, resync_interval=None)
    after = calls_for(emulator, auth)
    assert SYNC not in after and after[ITEM_GET] >= before[ITEM_GET] + 2, after
    last, health = conn.execute("SELECT i.last_synced_at, h.status FROM plaid_sync.items i "
                                "JOIN plaid_sync.item_health h USING (item_id) WHERE item_id = %s", (auth,)).fetchone()
    assert last > first and health == "healthy"
    assert conn.execute("SELECT count(*) FROM plaid_sync.inbox WHERE item_id = %s AND status = 'failed'",
                        (auth,)).fetchone()[0] == 0
