"""From an inbox row to the rows it produces, through plaid_process_inbox(), against
the local Plaid emulator."""

import hashlib
import time
from decimal import Decimal

import pytest

from conftest import SECRET, USED_SECRETS


def served_by_workers(conn) -> bool:
    return conn.execute("SELECT current_setting('plaid_sync.workers')::int > 0 "
                        "AND current_setting('plaid_sync.database') = current_database()").fetchone()[0]


def drain(conn, rounds=50):
    """Runs due jobs until none is left (retries are due after a few ms here); returns how
    many ran. In the workers' database, waits while the workers run them instead."""
    if served_by_workers(conn):
        return wait_for_workers(conn)
    total = 0
    for _ in range(rounds):
        n = conn.execute("SELECT plaid_sync.plaid_process_inbox(100)").fetchone()[0]
        total += n
        if n == 0:
            if conn.execute("SELECT count(*) FROM plaid_sync.inbox WHERE status = 'pending'").fetchone()[0] == 0:
                return total
            time.sleep(0.06)
    return total


def wait_for_workers(conn, timeout=60):
    """Until no job is running or due within the next half second, seen twice; returns how
    many jobs finished meanwhile. Rows due later (a 429's pause, a webhook waiting for its
    Item) are left, as the plaid_process_inbox drain leaves them."""
    assert not conn.info.transaction_status, "the workers cannot see an open transaction's rows"
    started = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    busy = ("SELECT count(*) FROM plaid_sync.inbox WHERE status = 'running' "
            "OR (status = 'pending' AND run_after <= clock_timestamp() + interval '0.5 s')")
    deadline = time.time() + timeout
    quiet = 0
    while quiet < 2:
        assert time.time() < deadline, "the workers did not finish their jobs"
        time.sleep(0.05)
        quiet = quiet + 1 if conn.execute(busy).fetchone()[0] == 0 else 0
    return conn.execute("SELECT count(*) FROM plaid_sync.inbox WHERE finished_at >= %s", (started,)).fetchone()[0]


TOKENS = {}


def requests_of(emulator, item_id, path="/transactions/sync"):
    """The emulator's request log, for one Item (the log is shared by the whole session)."""
    h = hashlib.sha256(TOKENS[item_id].encode()).hexdigest()[:12]
    return [r for r in emulator("requests")["requests"] if r["path"] == path and r["access_token_hash"] == h]


def announce(emulator, su, days=60, per_day=3):
    item = emulator("items", count=1, days=days, per_day=per_day)["items"][0]
    USED_SECRETS.add(item["access_token"])
    TOKENS[item["item_id"]] = item["access_token"]
    su.execute("SELECT plaid_sync.plaid_notify_item_created(%s, %s)", (item["item_id"], item["access_token"]))
    return item["item_id"]


def assert_matches_emulator(emulator, su, item_id):
    truth = emulator("state", item_id=item_id)["transactions"]
    rows = {r[0]: r for r in su.execute(
        "SELECT transaction_id, amount::text, pending, pending_transaction_id, merchant_name "
        "FROM plaid_sync.live_transactions WHERE item_id = %s", (item_id,))}
    assert set(rows) == set(truth)
    for tid, t in truth.items():
        assert Decimal(rows[tid][1]) == Decimal(str(t["amount"]["__num__"] if isinstance(t["amount"], dict) else t["amount"]))
        assert rows[tid][2] == t["pending"]
        assert rows[tid][3] == t["pending_transaction_id"]
        assert rows[tid][4] == t["merchant_name"]


def webhook(emulator, su, item_id, code="SYNC_UPDATES_AVAILABLE", webhook_type="TRANSACTIONS", **fields):
    w = emulator("webhook", item_id=item_id, webhook_type=webhook_type, webhook_code=code, fields=fields)
    return su.execute("SELECT plaid_sync.plaid_receive_webhook(%s, %s)", (w["body"], w["plaid_verification"])).fetchone()[0]


@pytest.mark.both_ways
def test_first_sync_of_an_item(emulator, su):
    item_id = announce(emulator, su, days=400, per_day=4)  # 1,600 transactions: 4 pages
    drain(su)
    status, inst, cursor = su.execute(
        "SELECT status, institution_name, transactions_cursor FROM plaid_sync.items WHERE item_id = %s", (item_id,)).fetchone()
    assert (status, inst) == ("healthy", "First Platypus Bank") and cursor
    assert su.execute("SELECT count(*) FROM plaid_sync.accounts WHERE item_id = %s", (item_id,)).fetchone()[0] == 3
    assert su.execute("SELECT count(*) FROM plaid_sync.balance_snapshots WHERE item_id = %s", (item_id,)).fetchone()[0] == 3
    run = su.execute("SELECT pages, added, outcome, cardinality(request_ids) FROM plaid_sync.sync_runs WHERE item_id = %s", (item_id,)).fetchone()
    assert run[0] >= 3 and run[2] == "ok" and run[3] == run[0]
    assert_matches_emulator(emulator, su, item_id)
    assert su.execute("SELECT count(*) FROM plaid_sync.sync_pages").fetchone()[0] == 0
    h = su.execute("SELECT status, pending_jobs, last_sync_outcome FROM plaid_sync.item_health WHERE item_id = %s", (item_id,)).fetchone()
    assert h == ("healthy", 0, "ok")


def counters(su):
    return dict(su.execute("SELECT counter, value FROM plaid_sync.plaid_counters()").fetchall())


@pytest.mark.both_ways
def test_a_job_decrypts_its_token_once_however_many_calls_it_makes(emulator, su):
    before = counters(su)
    item_id = announce(emulator, su, days=500, per_day=5)  # 2,500 transactions: 5 pages
    drain(su)
    after = counters(su)
    jobs, calls, decrypts = (after[k] - before[k] for k in ("jobs_finished", "plaid_calls", "tokens_decrypted"))
    pages = su.execute("SELECT pages FROM plaid_sync.sync_runs WHERE item_id = %s AND product = 'transactions'",
                       (item_id,)).fetchone()[0]
    assert pages >= 5 and calls >= pages + 2, (pages, calls)  # /item/get, /accounts/get besides the pages
    # Each job that called Plaid decrypted once: never once per call.
    assert 1 <= decrypts <= jobs < calls, (jobs, calls, decrypts)


@pytest.mark.both_ways
def test_incremental_sync_modified_removed_and_pending_to_posted(emulator, su):
    item_id = announce(emulator, su, days=30)
    # Generated Items have a pending transaction only most of the time: make sure of one.
    emulator("add_transactions", item_id=item_id, transactions=[{"amount": "12.34", "pending": True}])
    drain(su)
    webhook(emulator, su, item_id)
    drain(su)
    pending = next(t for t in emulator("state", item_id=item_id)["transactions"].values() if t["pending"])
    posted = emulator("post_pending", item_id=item_id, transaction_id=pending["transaction_id"])["transaction_id"]
    emulator("advance", item_id=item_id, days=5)
    before = su.execute("SELECT transactions_cursor FROM plaid_sync.items WHERE item_id = %s", (item_id,)).fetchone()[0]
    webhook(emulator, su, item_id)
    drain(su)
    assert_matches_emulator(emulator, su, item_id)
    # The pending row stays, marked removed; the posted row points at it.
    row = su.execute("SELECT removed_at IS NOT NULL FROM plaid_sync.transactions WHERE transaction_id = %s", (pending["transaction_id"],)).fetchone()
    assert row == (True,)
    assert su.execute("SELECT pending_transaction_id FROM plaid_sync.live_transactions WHERE transaction_id = %s", (posted,)).fetchone()[0] == pending["transaction_id"]
    # The incremental sync started from the stored cursor.
    syncs = requests_of(emulator, item_id)
    assert before in [r["cursor"] for r in syncs]
    assert all(r["plaid_version"] == "2020-09-14" and r["count"] == 500 for r in syncs)
    assert su.execute("SELECT count(*) FROM plaid_sync.transactions WHERE removed_at IS NOT NULL AND item_id = %s", (item_id,)).fetchone()[0] >= 1


def test_amounts_are_exact(emulator, su):
    item_id = announce(emulator, su, days=1, per_day=1)
    drain(su)
    amounts = ["0.1", "-0.07", "1234567.89", "100000000.01", "12.345", "0.123456789012345678901234567890"]
    ids = emulator("add_transactions", item_id=item_id, transactions=[{"amount": a} for a in amounts])["transaction_ids"]
    webhook(emulator, su, item_id)
    drain(su)
    got = dict(su.execute("SELECT transaction_id, amount::text FROM plaid_sync.transactions WHERE transaction_id = ANY(%s)", (ids,)))
    assert [got[i] for i in ids] == amounts


def test_mutation_on_page_three_restarts_from_the_first_cursor(emulator, su):
    emulator("fault", endpoint="/transactions/sync", kind="mutation", page=3, times=1)
    item_id = announce(emulator, su, days=400, per_day=4)
    drain(su)
    syncs = requests_of(emulator, item_id)
    # Pages 1, 2, (3 fails), then 1 again with the loop's first cursor (none: first sync).
    assert [r["cursor"] is None for r in syncs[:4]] == [True, False, False, True]
    run = su.execute("SELECT restarts, outcome FROM plaid_sync.sync_runs WHERE item_id = %s", (item_id,)).fetchone()
    assert run == (1, "ok")
    assert_matches_emulator(emulator, su, item_id)


@pytest.mark.both_ways
def test_backfill_marks_rows_that_disappeared(emulator, su):
    item_id = announce(emulator, su, days=10)
    drain(su)
    su.execute("""INSERT INTO plaid_sync.transactions (transaction_id, item_id, account_id, amount, data)
                  VALUES ('ghost-txn', %s, 'acc', 1, '{}')""", (item_id,))
    su.execute("SELECT plaid_sync.plaid_request_backfill(%s)", (item_id,))
    drain(su)
    assert su.execute("SELECT removed_at IS NOT NULL FROM plaid_sync.transactions WHERE transaction_id = 'ghost-txn'").fetchone()[0]
    assert su.execute("SELECT trigger FROM plaid_sync.sync_runs WHERE item_id = %s ORDER BY id DESC LIMIT 1", (item_id,)).fetchone()[0] == "backfill"
    assert_matches_emulator(emulator, su, item_id)


@pytest.mark.both_ways
def test_login_required_pauses_until_updated(emulator, su):
    item_id = announce(emulator, su, days=5)
    drain(su)
    emulator("break_login", item_id=item_id)
    webhook(emulator, su, item_id)
    drain(su)
    assert su.execute("SELECT status, error->>'error_code' FROM plaid_sync.items WHERE item_id = %s", (item_id,)).fetchone() == ("login_required", "ITEM_LOGIN_REQUIRED")
    n_calls = len(requests_of(emulator, item_id, "/transactions/sync"))
    webhook(emulator, su, item_id)
    drain(su)
    assert len(requests_of(emulator, item_id, "/transactions/sync")) == n_calls, "a paused Item makes no Plaid call"
    emulator("repair_login", item_id=item_id)
    su.execute("SELECT plaid_sync.plaid_notify_item_updated(%s)", (item_id,))
    drain(su)
    assert su.execute("SELECT status FROM plaid_sync.items WHERE item_id = %s", (item_id,)).fetchone()[0] == "healthy"


@pytest.mark.both_ways
@pytest.mark.parametrize("code,fields,status", [
    ("ERROR", {"error": {"error_type": "ITEM_ERROR", "error_code": "ITEM_LOGIN_REQUIRED", "error_message": "x", "display_message": None, "status": 400}}, "login_required"),
    ("PENDING_EXPIRATION", {"consent_expiration_time": "2026-12-01T00:00:00Z"}, "pending_expiration"),
    ("PENDING_DISCONNECT", {"reason": "INSTITUTION_MIGRATION", "disconnect_time": "2026-12-01T00:00:00Z"}, "pending_disconnect"),
    ("USER_PERMISSION_REVOKED", {"error": {"error_type": "ITEM_ERROR", "error_code": "USER_PERMISSION_REVOKED", "error_message": "x", "display_message": None, "status": 400}}, "revoked"),
    ("NEW_ACCOUNTS_AVAILABLE", {"error": None}, "healthy"),
    ("WEBHOOK_UPDATE_ACKNOWLEDGED", {"new_webhook_url": "https://example.com/new", "error": None}, "healthy"),
])
def test_item_webhooks_move_the_state(emulator, su, code, fields, status):
    item_id = announce(emulator, su, days=2)
    drain(su)
    webhook(emulator, su, item_id, code=code, webhook_type="ITEM", **fields)
    drain(su)
    assert su.execute("SELECT status FROM plaid_sync.items WHERE item_id = %s", (item_id,)).fetchone()[0] == status
    if code == "WEBHOOK_UPDATE_ACKNOWLEDGED":
        assert su.execute("SELECT webhook FROM plaid_sync.items WHERE item_id = %s", (item_id,)).fetchone()[0] == "https://example.com/new"
    if code in ("ERROR", "PENDING_DISCONNECT"):  # LOGIN_REPAIRED brings it back and syncs
        webhook(emulator, su, item_id, code="LOGIN_REPAIRED", webhook_type="ITEM")
        drain(su)
        assert su.execute("SELECT status FROM plaid_sync.items WHERE item_id = %s", (item_id,)).fetchone()[0] == "healthy"


def test_transient_faults_are_retried_then_failed_and_requeued(emulator, su):
    emulator("fault", endpoint="/transactions/sync", kind="http500", times=2)
    item_id = announce(emulator, su, days=3)
    drain(su)
    assert su.execute("SELECT status, attempts FROM plaid_sync.inbox WHERE item_id = %s", (item_id,)).fetchone() == ("done", 3)
    # Plaid's rate limit: never a failed attempt; the job comes back later.
    emulator("fault", endpoint="/transactions/sync", kind="rate_limit", times=100)
    webhook(emulator, su, item_id)
    drain(su, rounds=5)
    status, attempts, err, later = su.execute(
        "SELECT status, attempts, last_error, run_after > now() FROM plaid_sync.inbox WHERE item_id = %s ORDER BY id DESC LIMIT 1",
        (item_id,)).fetchone()
    assert (status, attempts, later) == ("pending", 0, True) and "429" in err and "TRANSACTIONS_SYNC_LIMIT" in err
    su.execute("UPDATE plaid_sync.inbox SET status = 'done' WHERE item_id = %s AND status = 'pending'", (item_id,))
    emulator("clear_faults")
    emulator("fault", endpoint="/transactions/sync", kind="http500", times=100)
    webhook(emulator, su, item_id)
    drain(su)
    status, err = su.execute("SELECT status, last_error FROM plaid_sync.inbox WHERE item_id = %s ORDER BY id DESC LIMIT 1", (item_id,)).fetchone()
    assert status == "failed" and "500" in err and "gave up after 4 attempts" in err
    emulator("clear_faults")
    assert su.execute("SELECT plaid_sync.plaid_retry_failed(%s)", (item_id,)).fetchone()[0] == 1
    drain(su)
    assert su.execute("SELECT status FROM plaid_sync.inbox WHERE item_id = %s ORDER BY id DESC LIMIT 1", (item_id,)).fetchone()[0] == "done"


def test_slow_and_truncated_responses_are_transient(cluster, emulator, su):
    emulator("fault", endpoint="/item/get", kind="truncated", times=1)
    item_id = announce(emulator, su, days=2)
    drain(su)
    assert su.execute("SELECT status, attempts FROM plaid_sync.inbox WHERE item_id = %s", (item_id,)).fetchone() == ("done", 2)


@pytest.mark.both_ways
def test_forged_webhooks_are_rejected_and_change_nothing(emulator, su):
    item_id = announce(emulator, su, days=2)
    drain(su)
    w = emulator("webhook", item_id=item_id, webhook_type="ITEM", webhook_code="USER_PERMISSION_REVOKED", fields={})
    altered = w["body"].replace('"sandbox"', '"sandbox" ')
    su.execute("SELECT plaid_sync.plaid_receive_webhook(%s, %s)", (altered, w["plaid_verification"]))
    su.execute("SELECT plaid_sync.plaid_receive_webhook(%s, NULL)", (w["body"],))
    drain(su)
    rows = su.execute("SELECT status, last_error FROM plaid_sync.inbox WHERE source = 'plaid' ORDER BY id").fetchall()
    assert [r[0] for r in rows] == ["rejected", "rejected"]
    assert "request_body_sha256" in rows[0][1] and "Plaid-Verification" in rows[1][1]
    assert su.execute("SELECT status FROM plaid_sync.items WHERE item_id = %s", (item_id,)).fetchone()[0] == "healthy"


def test_secret_and_tokens_appear_in_no_table(emulator, su):
    announce(emulator, su, days=5)
    drain(su)
    for table in ["items", "inbox", "sync_runs", "accounts", "transactions", "institutions"]:
        text = " ".join(str(r) for r in su.execute(f"SELECT x::text FROM plaid_sync.{table} x"))
        for s in USED_SECRETS:
            assert s not in text, f"a secret in plaid_sync.{table}"
        assert SECRET not in text


def test_a_concurrent_reader_never_sees_a_partial_sync(cluster, emulator, su, db):
    """While a slow multi-page sync runs, another session sees either nothing or everything."""
    import threading
    emulator("config", latency_ms=150)
    try:
        item_id = announce(emulator, su, days=400, per_day=4)
        done = threading.Event()
        seen = set()

        def read():
            with cluster.connect(db) as r:
                while not done.is_set():
                    seen.add(r.execute(
                        "SELECT (SELECT count(*) FROM plaid_sync.transactions WHERE item_id = %s), "
                        "(SELECT transactions_cursor IS NOT NULL FROM plaid_sync.items WHERE item_id = %s)",
                        (item_id, item_id)).fetchone())
                    time.sleep(0.02)

        t = threading.Thread(target=read)
        t.start()
        drain(su)
        time.sleep(0.1)
        done.set()
        t.join()
    finally:
        emulator("config", latency_ms=0)
    total = su.execute("SELECT count(*) FROM plaid_sync.transactions WHERE item_id = %s", (item_id,)).fetchone()[0]
    assert total >= 1500
    assert seen <= {(0, False), (total, True)}, f"a reader saw a partial state: {sorted(seen)[:5]}"
    assert (0, False) in seen


@pytest.mark.both_ways
def test_user_account_revoked_marks_one_account(emulator, su):
    item_id = announce(emulator, su, days=2)
    drain(su)
    acc = su.execute("SELECT account_id FROM plaid_sync.accounts WHERE item_id = %s ORDER BY account_id LIMIT 1", (item_id,)).fetchone()[0]
    webhook(emulator, su, item_id, code="USER_ACCOUNT_REVOKED", webhook_type="ITEM", account_id=acc)
    drain(su)
    assert su.execute("SELECT count(*) FROM plaid_sync.accounts WHERE item_id = %s AND removed_at IS NOT NULL", (item_id,)).fetchone()[0] == 1
    assert su.execute("SELECT status FROM plaid_sync.items WHERE item_id = %s", (item_id,)).fetchone()[0] == "healthy"


def test_a_response_slower_than_the_timeout_is_retried(cluster, emulator, su):
    with cluster.connect() as c:
        c.execute("ALTER SYSTEM SET plaid_sync.request_timeout = '700ms'")
    cluster.reload()
    try:
        emulator("fault", endpoint="/accounts/get", kind="slow", delay_ms=2500, times=1)
        with cluster.connect(su.info.dbname) as s:
            item_id = announce(emulator, s, days=2)
            started = time.time()
            drain(s)
            assert time.time() - started < 10
            status, attempts, err = s.execute("SELECT status, attempts, last_error FROM plaid_sync.inbox WHERE item_id = %s", (item_id,)).fetchone()
            assert (status, attempts) == ("done", 2)
    finally:
        with cluster.connect() as c:
            c.execute("ALTER SYSTEM RESET plaid_sync.request_timeout")
        cluster.reload()


def test_readme_step_4_announces_and_points_existing_items_in_one_statement(emulator, su):
    """README "Integrating with Plaid", step 4, exactly as written there."""
    su.execute("CREATE SCHEMA app")
    su.execute("CREATE TABLE app.plaid_items (item_id text PRIMARY KEY, access_token text NOT NULL)")
    items = emulator("items", count=3, days=2, per_day=2)["items"]
    for it in items:
        USED_SECRETS.add(it["access_token"])
        su.execute("INSERT INTO app.plaid_items VALUES (%s, %s)", (it["item_id"], it["access_token"]))
    su.execute("""SELECT plaid_sync.plaid_notify_item_created(item_id, access_token),
                         plaid_sync.plaid_update_item_webhook(item_id, 'https://api.example.com/plaid/webhook')
                    FROM app.plaid_items""")
    drain(su)
    rows = su.execute("SELECT status, webhook FROM plaid_sync.items").fetchall()
    assert rows == [("healthy", "https://api.example.com/plaid/webhook")] * 3
    assert su.execute("SELECT count(*) FROM plaid_sync.inbox WHERE status <> 'done'").fetchone()[0] == 0
