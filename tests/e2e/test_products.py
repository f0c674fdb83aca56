"""What plaid_sync tells the application (change notices) and the paid calls it
makes only when asked (on-demand refresh within its budgets)."""

import contextlib
import json
import time

import psycopg
import pytest

from conftest import USED_SECRETS, until
from harness import PG_BIN
from test_sync import TOKENS, announce, drain, requests_of, webhook


@contextlib.contextmanager
def settings(cluster, **kv):
    """Server settings changed with ALTER SYSTEM for the block, then reset."""
    with cluster.connect() as c:
        for k, v in kv.items():
            c.execute(f"ALTER SYSTEM SET plaid_sync.{k} = {v}")
    cluster.reload()
    try:
        yield
    finally:
        with cluster.connect() as c:
            for k in kv:
                c.execute(f"ALTER SYSTEM RESET plaid_sync.{k}")
        cluster.reload()


def listen(cluster, db):
    conn = psycopg.connect(cluster.dsn(db), autocommit=True)
    conn.execute("LISTEN plaid_sync")
    return conn


def received(conn, n, timeout=5.0, kind="sync"):
    """The first n notices of one type (a sync's, or an Item's event) within the timeout."""
    out = []
    deadline = time.time() + timeout
    while len(out) < n and deadline - time.time() > 0:
        for note in conn.notifies(timeout=deadline - time.time(), stop_after=1):
            payload = json.loads(note.payload)
            if note.channel == "plaid_sync" and payload.get("type") == kind:
                out.append(payload)
    return out


@pytest.mark.both_ways
def test_each_applied_sync_notifies_at_commit_without_a_token(cluster, db, emulator, su):
    su.autocommit = True
    app = listen(cluster, db)
    try:
        item_id = announce(emulator, su, days=10, per_day=2)
        drain(su)
        first = received(app, 1)
        run = su.execute("SELECT id, added, modified, removed FROM plaid_sync.sync_runs WHERE item_id = %s "
                         "AND outcome = 'ok' ORDER BY id DESC LIMIT 1", (item_id,)).fetchone()
        assert first == [{"type": "sync", "item_id": item_id, "product": "transactions", "sync_run_id": run[0],
                          "added": run[1], "modified": run[2], "removed": run[3]}]
        assert run[1] == 20
        assert TOKENS[item_id] not in json.dumps(first)

        # An incremental sync: the notice counts what changed.
        emulator("advance", item_id=item_id, days=1, per_day=4)
        webhook(emulator, su, item_id)
        drain(su)
        second = received(app, 1)
        run = su.execute("SELECT id, added, modified, removed FROM plaid_sync.sync_runs WHERE item_id = %s "
                         "AND outcome = 'ok' ORDER BY id DESC LIMIT 1", (item_id,)).fetchone()
        assert second == [{"type": "sync", "item_id": item_id, "product": "transactions", "sync_run_id": run[0],
                           "added": run[1], "modified": run[2], "removed": run[3]}]
        assert run[1] >= 4
    finally:
        app.close()


def test_a_sync_rolled_back_sends_no_notice(cluster, db, emulator, su):
    su.autocommit = True
    app = listen(cluster, db)
    try:
        announce(emulator, su, days=3, per_day=1)
        su.autocommit = False
        assert su.execute("SELECT plaid_sync.plaid_process_inbox(100)").fetchone()[0] >= 1
        assert su.execute("SELECT count(*) FROM plaid_sync.sync_runs WHERE outcome = 'ok'").fetchone()[0] == 1
        assert received(app, 1, timeout=0.5) == []  # not before commit
        su.rollback()
        assert received(app, 1, timeout=1.0) == []  # and never after a rollback
        su.autocommit = True
        drain(su)
        assert [n["product"] for n in received(app, 1)] == ["transactions"]
    finally:
        app.close()


@pytest.mark.both_ways
def test_an_items_events_go_out_on_the_channel_when_they_commit(cluster, db, emulator, su):
    su.autocommit = True
    app = listen(cluster, db)

    def event(**kw):
        return {"type": "item", "item_id": item_id, **kw}

    def status(frm, to, error_code=None, expires=None):
        return event(event="status", **{"from": frm, "to": to}, error_code=error_code, consent_expiration_time=expires)

    try:
        item_id = announce(emulator, su, days=3, per_day=1)
        drain(su)
        assert received(app, 1, kind="item") == [status("pending", "healthy")]
        login = {"error_type": "ITEM_ERROR", "error_code": "ITEM_LOGIN_REQUIRED", "error_message": "x",
                 "display_message": None, "status": 400}
        webhook(emulator, su, item_id, code="ERROR", webhook_type="ITEM", error=login)
        drain(su)
        assert received(app, 1, kind="item") == [status("healthy", "login_required", "ITEM_LOGIN_REQUIRED")]
        webhook(emulator, su, item_id, code="LOGIN_REPAIRED", webhook_type="ITEM")
        drain(su)
        assert received(app, 1, kind="item") == [status("login_required", "healthy")]
        webhook(emulator, su, item_id, code="PENDING_EXPIRATION", webhook_type="ITEM",
                consent_expiration_time="2026-12-01T00:00:00Z")
        drain(su)
        [got] = received(app, 1, kind="item")
        assert got["to"] == "pending_expiration" and got["consent_expiration_time"].startswith("2026-12-01T00:00:00")
        webhook(emulator, su, item_id, code="NEW_ACCOUNTS_AVAILABLE", webhook_type="ITEM", error=None)
        drain(su)
        assert received(app, 1, kind="item") == [event(event="new_accounts_available")]
        # A sync's own update of the Item sends no Item event.
        emulator("advance", item_id=item_id, days=1, per_day=2)
        webhook(emulator, su, item_id)
        drain(su)
        assert [n["type"] for n in received(app, 1)] == ["sync"] and received(app, 1, timeout=0.5, kind="item") == []
        # Removed, then purged; a rolled-back removal sends nothing.
        with su.transaction():
            su.execute("SELECT plaid_sync.plaid_remove_item(%s)", (item_id,))
            assert received(app, 1, timeout=0.3, kind="item") == []
            raise psycopg.Rollback()
        assert received(app, 1, timeout=0.5, kind="item") == []
        su.execute("SELECT plaid_sync.plaid_remove_item(%s)", (item_id,))
        assert received(app, 1, kind="item") == [status("pending_expiration", "removed")]
        su.execute("SELECT plaid_sync.plaid_purge_item(%s)", (item_id,))
        assert received(app, 1, kind="item") == [event(event="purged")]
        assert TOKENS[item_id] not in json.dumps(got)
    finally:
        app.close()


def billed(emulator, item_id=None):
    b = emulator("calls")["billed"]
    return sum(v for k, v in b.items() if item_id is None or k.startswith(item_id + " "))


@pytest.mark.both_ways
def test_no_paid_call_is_ever_made_implicitly(emulator, su):
    before = billed(emulator)
    products_before = emulator("calls")["products"]
    item_id = announce(emulator, su, days=10, per_day=2)
    drain(su)
    emulator("advance", item_id=item_id, days=2, per_day=2)
    webhook(emulator, su, item_id)
    su.execute("SELECT plaid_sync.plaid_request_backfill(%s)", (item_id,))
    su.execute("SELECT plaid_sync.plaid_notify_item_updated(%s)", (item_id,))
    drain(su)
    assert billed(emulator, item_id) == 0
    assert billed(emulator) == before
    # Nor any call of a product the Item does not have.
    assert emulator("calls")["products"] == products_before


@pytest.mark.workers_only
def test_refresh_is_queued_within_budget_and_then_refused(cluster, emulator, su):
    su.autocommit = True
    item_id = announce(emulator, su, days=5, per_day=1)
    drain(su)
    # Plaid's 2 refreshes a minute per Item would pace the second call by 30 s: lifted here,
    # where the budget is what is tested.
    with settings(cluster, refreshes_per_item_per_day=2, rate_limits="'/transactions/refresh=100/100'"):
        refresh = "SELECT plaid_sync.plaid_refresh_transactions(%s)"
        # Asked twice while the first waits (one transaction: running workers would start the
        # first at once): one job, one paid call.
        with su.transaction():
            first = su.execute(refresh, (item_id,)).fetchone()[0]
            assert su.execute(refresh, (item_id,)).fetchone()[0] == first
        drain(su)
        second = su.execute(refresh, (item_id,)).fetchone()[0]
        assert second != first
        drain(su)
        with pytest.raises(psycopg.Error) as e:
            su.execute(refresh, (item_id,))
        assert e.value.sqlstate == "53400"
        assert "plaid_sync.refreshes_per_item_per_day (2)" in str(e.value)
        # The refusal changed nothing.
        assert su.execute("SELECT count(*) FROM plaid_sync.paid_calls WHERE item_id = %s", (item_id,)).fetchone()[0] == 2
        assert su.execute("SELECT count(*) FROM plaid_sync.inbox WHERE item_id = %s AND webhook_code = 'REFRESH'",
                          (item_id,)).fetchone()[0] == 2
        assert billed(emulator, item_id) == 2
        rows = su.execute("SELECT inbox_id, outcome, request_id IS NOT NULL, called_at IS NOT NULL FROM plaid_sync.paid_calls "
                          "WHERE item_id = %s ORDER BY id", (item_id,)).fetchall()
        assert rows == [(first, "ok", True, True), (second, "ok", True, True)]
        # Two refreshes are never folded into each other or into a sync.
        assert su.execute("SELECT count(*) FROM plaid_sync.inbox WHERE item_id = %s AND webhook_code = 'REFRESH' "
                          "AND last_error LIKE 'coalesced%%'", (item_id,)).fetchone()[0] == 0

        # The server-wide budget refuses too, whatever the Item.
        other = announce(emulator, su, days=1, per_day=1)
        drain(su)
    with settings(cluster, refreshes_per_day=2):
        with pytest.raises(psycopg.Error) as e:
            su.execute("SELECT plaid_sync.plaid_refresh_transactions(%s)", (other,))
        assert e.value.sqlstate == "53400" and "plaid_sync.refreshes_per_day (2)" in str(e.value)
        assert su.execute("SELECT count(*) FROM plaid_sync.paid_calls WHERE item_id = %s", (other,)).fetchone()[0] == 0


@pytest.mark.workers_only
def test_a_refresh_plaid_refused_is_retried_and_one_it_may_have_billed_is_not(cluster, emulator, su):
    """Plaid bills a refresh it answered 200: a 500 is retried (nothing was billed), but a call
    that timed out may have been billed by a Plaid that answered late, so it is never made again."""
    su.autocommit = True
    item_id = announce(emulator, su, days=2, per_day=1)
    drain(su)
    refresh = "SELECT plaid_sync.plaid_refresh_transactions(%s)"
    calls = lambda: len(requests_of(emulator, item_id, "/transactions/refresh"))  # noqa: E731
    with settings(cluster, rate_limits="'/transactions/refresh=100/100'", retry_base_delay="'10ms'"):
        emulator("fault", endpoint="/transactions/refresh", kind="http500", times=1)
        job = su.execute(refresh, (item_id,)).fetchone()[0]
        drain(su)
        assert (calls(), billed(emulator, item_id)) == (2, 1)
        assert su.execute("SELECT outcome FROM plaid_sync.paid_calls WHERE inbox_id = %s", (job,)).fetchone()[0] == "ok"
        emulator("clear_faults")
    # Plaid allows 2 refreshes a minute per Item: the third call of this minute is let through.
    with settings(cluster, request_timeout="'1s'", retry_base_delay="'10ms'", rate_limits="'/transactions/refresh=100/100'"):
        emulator("fault", endpoint="/transactions/refresh", kind="slow", delay_ms=2500, times=1)
        job = su.execute(refresh, (item_id,)).fetchone()[0]
        drain(su)
        time.sleep(2)  # the late answer lands (and is billed) after the client gave up
        assert calls() == 3 and billed(emulator, item_id) == 2, "one call, billed, never repeated"
        status, note = su.execute("SELECT status, last_error FROM plaid_sync.inbox WHERE id = %s", (job,)).fetchone()
        assert status == "done" and note.startswith("skipped: this paid call was started once already"), note
        emulator("clear_faults")


@pytest.mark.parametrize("arg, message", [
    (None, "item_id"),
    ("", "item_id"),
    ("no-such-item", "no Item no-such-item"),
])
def test_refresh_refuses_bad_input(su, arg, message):
    with pytest.raises(psycopg.Error) as e:
        su.execute("SELECT plaid_sync.plaid_refresh_transactions(%s)", (arg,))
    assert e.value.sqlstate == "22023" and message in str(e.value)
    su.rollback()
    assert su.execute("SELECT count(*) FROM plaid_sync.paid_calls").fetchone()[0] == 0


def test_refresh_without_workers_is_refused(emulator, su):
    """Only a worker makes a paid call (booked and marked in transactions of its own): on a
    server without workers for this database the request would wait forever, so it is refused."""
    item_id = announce(emulator, su, days=1, per_day=1)
    drain(su)
    su.commit()
    with pytest.raises(psycopg.Error) as e:
        su.execute("SELECT plaid_sync.plaid_refresh_transactions(%s)", (item_id,))
    assert e.value.sqlstate == "55000" and "plaid_sync.workers is 0" in str(e.value)
    su.rollback()
    assert su.execute("SELECT count(*) FROM plaid_sync.paid_calls").fetchone()[0] == 0
    assert su.execute("SELECT count(*) FROM plaid_sync.inbox WHERE webhook_code = 'REFRESH'").fetchone()[0] == 0


@pytest.mark.both_ways
def test_refresh_of_a_paused_item_is_refused(emulator, su):
    item_id = announce(emulator, su, days=1, per_day=1)
    drain(su)
    emulator("break_login", item_id=item_id)
    emulator("advance", item_id=item_id, days=1, per_day=1)
    webhook(emulator, su, item_id)
    drain(su)
    with pytest.raises(psycopg.Error) as e:
        su.execute("SELECT plaid_sync.plaid_refresh_transactions(%s)", (item_id,))
    assert e.value.sqlstate == "22023" and "login_required" in str(e.value)
    emulator("repair_login", item_id=item_id)


# --- recurring streams ------------------------------------------------------------------------

RECURRING = "/transactions/recurring/get"


def announce_with(emulator, su, products, consented=None, days=10, per_day=2, setup=None):
    """An Item whose /item/get lists `products` (and `consented`), announced. `setup(item_id)`
    arranges Plaid's answers first: running workers start on the Item as soon as it is announced."""
    item = emulator("items", count=1, days=days, per_day=per_day)["items"][0]
    emulator("products", item_id=item["item_id"], products=products, consented=consented or products)
    if setup:
        setup(item["item_id"])
    USED_SECRETS.add(item["access_token"])
    TOKENS[item["item_id"]] = item["access_token"]
    su.execute("SELECT plaid_sync.plaid_notify_item_created(%s, %s)", (item["item_id"], item["access_token"]))
    return item["item_id"]


def streams(su, item_id):
    return {r[0]: r[1:] for r in su.execute(
        "SELECT stream_id, direction, average_amount::text, last_amount::text, status, is_active, "
        "transaction_ids, removed_at IS NOT NULL, data -> 'stream_id' = to_jsonb(stream_id) "
        "FROM plaid_sync.recurring_streams WHERE item_id = %s", (item_id,))}


def product_state(su, item_id, product):
    return su.execute("SELECT state, last_error ->> 'error_code', last_synced_at IS NOT NULL "
                      "FROM plaid_sync.item_products WHERE item_id = %s AND product = %s",
                      (item_id, product)).fetchone()


@pytest.mark.both_ways
def test_recurring_streams_are_read_once_history_is_complete_exactly(cluster, db, emulator, su):
    su.autocommit = True
    app = listen(cluster, db)
    try:
        item_id = announce_with(emulator, su, ["transactions", "recurring_transactions"])
        drain(su)
        # The emulator's own objects: their numbers are still exact text ({"__num__": …}).
        truth = {sid: dict(s, direction=d) for sid, (d, s) in emulator.world.items[item_id].streams.items()}
        rows = streams(su, item_id)
        assert set(rows) == set(truth)
        for sid, s in truth.items():
            direction, avg, last, status, active, tids, removed, same = rows[sid]
            assert direction == s["direction"]
            assert avg == s["average_amount"]["amount"]["__num__"]   # exact digits, no float
            assert last == s["last_amount"]["amount"]["__num__"]
            assert (status, active, tids, removed, same) == (s["status"], s["is_active"], s["transaction_ids"], False, True)
        assert "-98765432109876.54" in {r[1] for r in rows.values()}
        # A tombstoned, inactive stream is data, not a deletion.
        assert ("TOMBSTONED", False) in {(r[3], r[4]) for r in rows.values()}
        assert product_state(su, item_id, "recurring_transactions") == ("ok", None, True)
        assert product_state(su, item_id, "transactions") == ("ok", None, True)
        health = su.execute("SELECT products FROM plaid_sync.item_health WHERE item_id = %s", (item_id,)).fetchone()[0]
        assert health["recurring_transactions"]["state"] == "ok"
        run = su.execute("SELECT id, added, modified, removed, outcome FROM plaid_sync.sync_runs "
                         "WHERE item_id = %s AND product = 'recurring_transactions'", (item_id,)).fetchall()
        assert len(run) == 1 and run[0][1:] == (3, 0, 0, "ok")
        got = received(app, 2)
        assert {"type": "sync", "item_id": item_id, "product": "recurring_transactions", "sync_run_id": run[0][0],
                "added": 3, "modified": 0, "removed": 0} in got
    finally:
        app.close()


@pytest.mark.both_ways
def test_recurring_update_webhook_applies_the_new_snapshot(emulator, su):
    item_id = announce_with(emulator, su, ["transactions", "recurring_transactions"])
    drain(su)
    ids = list(streams(su, item_id))
    gone, changed = ids[0], ids[1]
    emulator("recurring", item_id=item_id, remove=[gone], modify={changed: {"average_amount": "12345.6789"}}, add=1)
    webhook(emulator, su, item_id, code="RECURRING_TRANSACTIONS_UPDATE",
            account_ids=[a for a in {r[0] for r in su.execute("SELECT account_id FROM plaid_sync.accounts WHERE item_id = %s", (item_id,))}])
    drain(su)
    rows = streams(su, item_id)
    assert len(rows) == 4
    assert rows[gone][6] is True                       # removed_at set, row kept
    assert rows[changed][1] == "12345.6789" and rows[changed][6] is False
    assert sum(1 for r in rows.values() if not r[6]) == 3
    run = su.execute("SELECT added, modified, removed FROM plaid_sync.sync_runs WHERE item_id = %s "
                     "AND product = 'recurring_transactions' ORDER BY id DESC LIMIT 1", (item_id,)).fetchone()
    assert run == (1, 1, 1)
    # The same snapshot again changes nothing.
    webhook(emulator, su, item_id, code="RECURRING_TRANSACTIONS_UPDATE", account_ids=[])
    drain(su)
    run = su.execute("SELECT added, modified, removed FROM plaid_sync.sync_runs WHERE item_id = %s "
                     "AND product = 'recurring_transactions' ORDER BY id DESC LIMIT 1", (item_id,)).fetchone()
    assert run == (0, 0, 0)


@pytest.mark.both_ways
def test_an_item_without_the_product_is_never_called_for_it(emulator, su):
    item_id = announce(emulator, su, days=5, per_day=1)
    drain(su)
    qid = webhook(emulator, su, item_id, code="RECURRING_TRANSACTIONS_UPDATE", account_ids=[])
    drain(su)
    status, note = su.execute("SELECT status, last_error FROM plaid_sync.inbox WHERE id = %s", (qid,)).fetchone()
    assert status == "done" and note.startswith("ignored: the Item does not have recurring_transactions")
    assert requests_of(emulator, item_id, RECURRING) == []
    assert su.execute("SELECT count(*) FROM plaid_sync.recurring_streams").fetchone()[0] == 0


@pytest.mark.both_ways
def test_a_consented_product_is_added_only_when_the_setting_allows(cluster, emulator, su):
    item_id = announce_with(emulator, su, ["transactions"], consented=["transactions", "recurring_transactions"])
    drain(su)
    assert product_state(su, item_id, "recurring_transactions") == ("pending", None, False)
    assert requests_of(emulator, item_id, RECURRING) == []
    with settings(cluster, add_consented_products="on"):
        webhook(emulator, su, item_id, code="RECURRING_TRANSACTIONS_UPDATE", account_ids=[])
        drain(su)
    assert len(requests_of(emulator, item_id, RECURRING)) == 1
    assert product_state(su, item_id, "recurring_transactions") == ("ok", None, True)
    assert len(streams(su, item_id)) == 3


@pytest.mark.both_ways
def test_products_not_supported_is_recorded_and_never_pauses_transactions(emulator, su):
    item_id = announce_with(emulator, su, ["transactions", "recurring_transactions"],
                            days=3, per_day=1, setup=lambda i: emulator(
                                "product_error", item_id=i, product="recurring_transactions", code="PRODUCTS_NOT_SUPPORTED"))
    drain(su)
    assert product_state(su, item_id, "recurring_transactions") == ("unsupported", "PRODUCTS_NOT_SUPPORTED", False)
    assert su.execute("SELECT status FROM plaid_sync.items WHERE item_id = %s", (item_id,)).fetchone()[0] == "healthy"
    calls = len(requests_of(emulator, item_id, RECURRING))
    assert calls == 1
    # Transactions go on syncing; the ruled-out product is not called again.
    emulator("advance", item_id=item_id, days=1, per_day=3)
    webhook(emulator, su, item_id)
    webhook(emulator, su, item_id, code="RECURRING_TRANSACTIONS_UPDATE", account_ids=[])
    drain(su)
    assert len(requests_of(emulator, item_id, RECURRING)) == calls
    assert su.execute("SELECT count(*) FROM plaid_sync.sync_runs WHERE item_id = %s AND product = 'transactions' "
                      "AND outcome = 'ok'", (item_id,)).fetchone()[0] == 2
    assert su.execute("SELECT failed_jobs, status FROM plaid_sync.item_health WHERE item_id = %s",
                      (item_id,)).fetchone() == (0, "healthy")
    # Link update mode tries it again.
    emulator("product_error", item_id=item_id, product="recurring_transactions", code=None)
    su.execute("SELECT plaid_sync.plaid_notify_item_updated(%s)", (item_id,))
    webhook(emulator, su, item_id, code="RECURRING_TRANSACTIONS_UPDATE", account_ids=[])
    drain(su)
    assert product_state(su, item_id, "recurring_transactions") == ("ok", None, True)


@pytest.mark.both_ways
def test_product_tables_survive_dump_and_restore(cluster, inbox_cluster, emulator, su, db, jobs_run_by):
    su.autocommit = True
    item_id = announce_with(emulator, su, ["transactions", "recurring_transactions", "liabilities", "investments"],
                            days=3, per_day=1)
    drain(su)
    if jobs_run_by == "workers":
        su.execute("SELECT plaid_sync.plaid_refresh_transactions(%s)", (item_id,))
        drain(su)
    else:  # only workers make paid calls: a booked call, as one would stand
        su.execute("INSERT INTO plaid_sync.paid_calls (item_id, endpoint, inbox_id, called_at, outcome) "
                   "VALUES (%s, '/transactions/refresh', 1, now(), 'ok')", (item_id,))
    query = {t: f"SELECT to_jsonb(t) FROM plaid_sync.{t} t ORDER BY to_jsonb(t)::text" for t in
             ("recurring_streams", "item_products", "paid_calls", "liabilities", "securities", "holdings",
              "investment_transactions")}
    before = {t: [r[0] for r in su.execute(q)] for t, q in query.items()}
    assert all(before.values())
    dump = cluster.run([f"{PG_BIN}/pg_dump", "-h", cluster.sock, "-p", str(cluster.port), "-U", "postgres",
                        "-Fc", "-f", f"{cluster.root}/{db}.dump", db])
    assert dump.returncode == 0
    # Restored on the server without workers (one whose workers serve a database takes the
    # extension only there).
    target = inbox_cluster
    copy = target.create_database(db + "_r", extension=False)
    try:
        r = target.run([f"{PG_BIN}/pg_restore", "-h", target.sock, "-p", str(target.port), "-U", "postgres",
                        "-d", copy, f"{cluster.root}/{db}.dump"], check=False)
        assert r.returncode == 0, r.stderr
        with target.connect(copy) as c:
            after = {t: [row[0] for row in c.execute(q)] for t, q in query.items()}
        assert after == before
    finally:
        with target.connect() as c:
            c.execute(f'DROP DATABASE IF EXISTS "{copy}" WITH (FORCE)')


# --- liabilities ------------------------------------------------------------------------------

def liabilities(su, item_id):
    return {(r[0], r[1]): r[2:] for r in su.execute(
        "SELECT account_id, kind, last_statement_balance::text, minimum_payment_amount::text, "
        "interest_rate_percentage::text, next_monthly_payment::text, past_due_amount::text, "
        "current_balance::text, jsonb_array_length(aprs), next_payment_due_date::text, removed_at IS NOT NULL "
        "FROM plaid_sync.liabilities WHERE item_id = %s", (item_id,))}


def liabilities_run(su, item_id):
    return su.execute("SELECT added, modified, removed, outcome FROM plaid_sync.sync_runs WHERE item_id = %s "
                      "AND product = 'liabilities' ORDER BY id DESC LIMIT 1", (item_id,)).fetchone()


@pytest.mark.both_ways
def test_liabilities_are_read_on_first_sync_and_on_their_webhook_exactly(emulator, su):
    item_id = announce_with(emulator, su, ["transactions", "liabilities"], days=3, per_day=1)
    drain(su)
    truth = emulator("liabilities", item_id=item_id)["liabilities"]
    (card, obj), = truth.items()
    current = su.execute("SELECT data -> 'balances' ->> 'current' FROM plaid_sync.accounts WHERE account_id = %s",
                         (card,)).fetchone()[0]
    rows = liabilities(su, item_id)
    assert rows == {(card, "credit"): ("12345678901234.56", "20", "12.5", None, None, current, 3, "2026-11-28", False)}
    assert liabilities_run(su, item_id) == (1, 0, 0, "ok")
    assert product_state(su, item_id, "liabilities") == ("ok", None, True)

    student = emulator("liabilities", item_id=item_id, add="student")["account_id"]
    mortgage = emulator("liabilities", item_id=item_id, add="mortgage",
                        modify={card: {"minimum_payment_amount": "35.10"}})["account_id"]
    webhook(emulator, su, item_id, code="DEFAULT_UPDATE", webhook_type="LIABILITIES", error=None,
            account_ids_with_new_liabilities=[student, mortgage],
            account_ids_with_updated_liabilities={card: ["minimum_payment_amount"]})
    drain(su)
    rows = liabilities(su, item_id)
    assert rows[(card, "credit")][1] == "35.10"
    assert rows[(student, "student")][:4] == ("1708.77", "25", "5.25", None)
    assert rows[(mortgage, "mortgage")][1:5] == (None, "3.99", "3141.54", "2304")
    assert liabilities_run(su, item_id) == (2, 1, 0, "ok")
    data = su.execute("SELECT data -> 'property_address' ->> 'city' FROM plaid_sync.liabilities WHERE account_id = %s",
                      (mortgage,)).fetchone()[0]
    assert data == "Malakoff"

    emulator("liabilities", item_id=item_id, remove=[student])
    webhook(emulator, su, item_id, code="DEFAULT_UPDATE", webhook_type="LIABILITIES", error=None,
            account_ids_with_new_liabilities=[], account_ids_with_updated_liabilities={})
    drain(su)
    rows = liabilities(su, item_id)
    assert rows[(student, "student")][-1] is True and rows[(card, "credit")][-1] is False
    assert liabilities_run(su, item_id) == (0, 0, 1, "ok")


@pytest.mark.both_ways
def test_no_liability_accounts_keeps_the_rows_and_the_item_syncing(emulator, su):
    item_id = announce_with(emulator, su, ["transactions", "liabilities"], days=3, per_day=1)
    drain(su)
    assert len(liabilities(su, item_id)) == 1
    emulator("product_error", item_id=item_id, product="liabilities", code="NO_LIABILITY_ACCOUNTS")
    qid = webhook(emulator, su, item_id, code="DEFAULT_UPDATE", webhook_type="LIABILITIES", error=None,
                  account_ids_with_new_liabilities=[], account_ids_with_updated_liabilities={})
    drain(su)
    assert product_state(su, item_id, "liabilities") == ("no_accounts", "NO_LIABILITY_ACCOUNTS", True)
    assert su.execute("SELECT status FROM plaid_sync.inbox WHERE id = %s", (qid,)).fetchone()[0] == "done"
    rows = liabilities(su, item_id)
    assert len(rows) == 1 and all(r[-1] is False for r in rows.values())   # kept, not removed
    emulator("advance", item_id=item_id, days=1, per_day=2)
    webhook(emulator, su, item_id)
    drain(su)
    assert su.execute("SELECT status FROM plaid_sync.items WHERE item_id = %s", (item_id,)).fetchone()[0] == "healthy"
    assert su.execute("SELECT count(*) FROM plaid_sync.sync_runs WHERE item_id = %s AND product = 'transactions' "
                      "AND outcome = 'ok'", (item_id,)).fetchone()[0] == 2


# --- investments ------------------------------------------------------------------------------

def holdings(su, item_id):
    return {r[0]: r[1:] for r in su.execute(
        "SELECT h.security_id, h.quantity::text, h.institution_price::text, h.institution_value::text, "
        "h.cost_basis::text, h.removed_at IS NOT NULL, s.ticker_symbol FROM plaid_sync.holdings h "
        "JOIN plaid_sync.securities s USING (security_id) WHERE h.item_id = %s", (item_id,))}


def investment_transactions(su, item_id):
    return {r[0]: r[1:] for r in su.execute(
        "SELECT investment_transaction_id, quantity::text, amount::text, price::text, fees::text, type, "
        "removed_at IS NOT NULL FROM plaid_sync.investment_transactions WHERE item_id = %s", (item_id,))}


def num(v):
    return None if v is None else v["__num__"]


def investments_webhook(emulator, su, item_id, code="DEFAULT_UPDATE", **counts):
    fields = {"error": None, "new_investments_transactions": 0} | counts
    return webhook(emulator, su, item_id, code=code, webhook_type="INVESTMENTS_TRANSACTIONS", **fields)


@pytest.mark.both_ways
def test_investments_first_read_keeps_every_decimal(emulator, su):
    item_id = announce_with(emulator, su, ["transactions", "investments"], days=3, per_day=1)
    drain(su)
    truth = emulator.world.items[item_id].investments   # numbers still exact text
    rows = holdings(su, item_id)
    assert len(rows) == 3
    for h in truth["holdings"].values():
        q, p, v, c, removed, _ = rows[h["security_id"]]
        assert (q, p, v, c, removed) == (num(h["quantity"]), num(h["institution_price"]),
                                         num(h["institution_value"]), num(h["cost_basis"]), False)
    assert {r[0] for r in rows.values()} == {"12345.67", "47.74104242992852", "-10"}
    assert None in {r[5] for r in rows.values()}            # a security without a ticker is kept
    assert su.execute("SELECT count(*) FROM plaid_sync.securities WHERE close_price::text = '27.530000001'").fetchone()[0] == 1
    txns = investment_transactions(su, item_id)
    assert len(txns) == 4                                   # the first read covers 24 months
    for t in truth["transactions"]:
        assert txns[t["investment_transaction_id"]] == (num(t["quantity"]), num(t["amount"]), num(t["price"]),
                                                        num(t["fees"]), t["type"], False)
    runs = su.execute("SELECT trigger, added, outcome FROM plaid_sync.sync_runs WHERE item_id = %s "
                      "AND product = 'investments' ORDER BY id", (item_id,)).fetchall()
    assert sorted(runs) == [("HOLDINGS/DEFAULT_UPDATE", 3, "ok"), ("INVESTMENTS_TRANSACTIONS/HISTORICAL_UPDATE", 4, "ok")]
    assert product_state(su, item_id, "investments") == ("ok", None, True)


@pytest.mark.both_ways
def test_cancelled_investment_transactions_are_found_by_their_absence(emulator, su):
    item_id = announce_with(emulator, su, ["transactions", "investments"], days=3, per_day=1)
    drain(su)
    truth = emulator("investments", item_id=item_id)["transactions"]
    by_age = sorted(truth, key=lambda t: t["date"])        # oldest first: 400, 45, 20, 3 days ago
    old, recent = by_age[0]["investment_transaction_id"], by_age[2]["investment_transaction_id"]
    added = emulator("investments", item_id=item_id, cancel=[old, recent], add=[{"days_ago": 1}])["transactions"]
    new = [t["investment_transaction_id"] for t in added if t["investment_transaction_id"] not in {x["investment_transaction_id"] for x in truth}]
    # A DEFAULT_UPDATE without cancellations reads 90 days: the recent one is gone, the old
    # one is outside the window and stays.
    investments_webhook(emulator, su, item_id, new_investments_transactions=1, cancelled_investments_transactions=0)
    drain(su)
    txns = investment_transactions(su, item_id)
    assert txns[recent][-1] is True and txns[old][-1] is False and txns[new[0]][-1] is False
    # Cancellations reported (in the older spelling): the whole 24 months are read again.
    investments_webhook(emulator, su, item_id, canceled_investments_transactions=1)
    drain(su)
    assert investment_transactions(su, item_id)[old][-1] is True
    run = su.execute("SELECT added, modified, removed FROM plaid_sync.sync_runs WHERE item_id = %s "
                     "AND product = 'investments' ORDER BY id DESC LIMIT 1", (item_id,)).fetchone()
    assert run == (0, 0, 1)


@pytest.mark.both_ways
def test_holdings_snapshot_sells_and_changes_positions(emulator, su):
    item_id = announce_with(emulator, su, ["transactions", "investments"], days=3, per_day=1)
    drain(su)
    rows = holdings(su, item_id)
    bill = next(s for s, r in rows.items() if r[5] is None)
    fund = next(s for s, r in rows.items() if r[0] == "47.74104242992852")
    emulator("investments", item_id=item_id, sell=[bill], quantity={fund: "47.7410424299285201"})
    webhook(emulator, su, item_id, code="DEFAULT_UPDATE", webhook_type="HOLDINGS", error=None,
            new_holdings=0, updated_holdings=1)
    drain(su)
    rows = holdings(su, item_id)
    assert rows[bill][4] is True and rows[fund][0] == "47.7410424299285201" and rows[fund][4] is False
    run = su.execute("SELECT added, modified, removed FROM plaid_sync.sync_runs WHERE item_id = %s "
                     "AND trigger = 'HOLDINGS/DEFAULT_UPDATE' ORDER BY id DESC LIMIT 1", (item_id,)).fetchone()
    assert run == (0, 1, 1)


@pytest.mark.both_ways
def test_a_transaction_added_mid_read_restarts_the_window(emulator, su):
    item_id = announce_with(emulator, su, ["transactions", "investments"], days=3, per_day=1)
    drain(su)
    emulator("investments", item_id=item_id, add=[{"days_ago": 2 + i % 80} for i in range(600)], mutate_next_page=True)
    investments_webhook(emulator, su, item_id, new_investments_transactions=600)
    drain(su)
    truth = emulator("investments", item_id=item_id)["transactions"]
    txns = investment_transactions(su, item_id)
    runs = su.execute("SELECT trigger, pages, restarts, added, removed, outcome, error FROM plaid_sync.sync_runs "
                      "WHERE item_id = %s AND product = 'investments' ORDER BY id", (item_id,)).fetchall()
    assert {k for k, v in txns.items() if not v[-1]} == {t["investment_transaction_id"] for t in truth}, runs
    assert len(truth) == 4 + 600 + 1
    pages, restarts = su.execute("SELECT pages, restarts FROM plaid_sync.sync_runs WHERE item_id = %s "
                                 "AND product = 'investments' ORDER BY id DESC LIMIT 1", (item_id,)).fetchone()
    assert (pages, restarts) == (2, 1)


# --- every product: errors and rate limits ------------------------------------------------------

PRODUCTS = {  # product -> (its endpoints, the first of them rate-limited below; rows it leaves for a fresh
    #            Item; its "no accounts" code)
    "recurring_transactions": ([RECURRING], "SELECT count(*) FROM plaid_sync.recurring_streams WHERE item_id = %s", None),
    "liabilities": (["/liabilities/get"], "SELECT count(*) FROM plaid_sync.liabilities WHERE item_id = %s",
                    "NO_LIABILITY_ACCOUNTS"),
    "investments": (["/investments/holdings/get", "/investments/transactions/get"],
                    "SELECT count(*) FROM plaid_sync.holdings WHERE item_id = %s", "NO_INVESTMENT_ACCOUNTS"),
}


@pytest.mark.both_ways
@pytest.mark.parametrize("product", sorted(PRODUCTS))
@pytest.mark.parametrize("fault, times", [("PRODUCT_NOT_READY", 2), ("rate_limit", 1)])
def test_not_ready_and_rate_limits_are_retried(emulator, su, product, fault, times):
    endpoints, count, _ = PRODUCTS[product]

    def setup(item_id):
        if fault == "rate_limit":   # 429 with the endpoint's documented code
            emulator("fault", endpoint=endpoints[0], kind="rate_limit", times=times)
        else:
            emulator("product_error", item_id=item_id, product=product, code=fault, times=times)
    item_id = announce_with(emulator, su, ["transactions", product], days=3, per_day=1, setup=setup)
    # A 429 comes back after the pacer's 5-15 s; PRODUCT_NOT_READY after the (test's) backoff.
    until(lambda: drain(su) >= 0 and product_state(su, item_id, product)[0] == "ok",
          timeout=40, what=f"{product} read")
    # Each endpoint answered once, after the failures.
    assert sum(len(requests_of(emulator, item_id, e)) for e in endpoints) == times + len(endpoints)
    expected = 1 if product == "liabilities" else 3   # the card's liability; three streams or holdings
    assert su.execute(count, (item_id,)).fetchone()[0] == expected
    assert su.execute("SELECT count(*) FROM plaid_sync.inbox WHERE item_id = %s AND status = 'failed'",
                      (item_id,)).fetchone()[0] == 0
    assert su.execute("SELECT status FROM plaid_sync.items WHERE item_id = %s", (item_id,)).fetchone()[0] == "healthy"


@pytest.mark.both_ways
@pytest.mark.parametrize("product", ["liabilities", "investments"])
def test_no_accounts_for_a_product_is_recorded_and_transactions_go_on(emulator, su, product):
    _, count, code = PRODUCTS[product]
    item_id = announce_with(emulator, su, ["transactions", product], days=3, per_day=1,
                            setup=lambda i: emulator("product_error", item_id=i, product=product, code=code))
    drain(su)
    assert product_state(su, item_id, product) == ("no_accounts", code, False)
    assert su.execute(count, (item_id,)).fetchone()[0] == 0
    health = su.execute("SELECT status, failed_jobs, products FROM plaid_sync.item_health WHERE item_id = %s",
                        (item_id,)).fetchone()
    assert health[:2] == ("healthy", 0) and health[2][product]["last_error"] == code
    assert su.execute("SELECT count(*) FROM plaid_sync.transactions WHERE item_id = %s", (item_id,)).fetchone()[0] == 3
