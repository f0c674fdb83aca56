"""Issue 16: what plaid_sync tells the application (change notices) and the paid calls it
makes only when asked (on-demand refresh within its budgets)."""

import contextlib
import json

import psycopg
import pytest

from test_sync import TOKENS, announce, drain, webhook


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


def received(conn, n, timeout=5.0):
    out = []
    for note in conn.notifies(timeout=timeout, stop_after=n):
        if note.channel == "plaid_sync":
            out.append(json.loads(note.payload))
    return out


def test_each_applied_sync_notifies_at_commit_without_a_token(cluster, db, emulator, su):
    su.autocommit = True
    app = listen(cluster, db)
    try:
        item_id = announce(emulator, su, days=10, per_day=2)
        drain(su)
        first = received(app, 1)
        run = su.execute("SELECT id, added, modified, removed FROM plaid_sync.sync_runs WHERE item_id = %s "
                         "AND outcome = 'ok' ORDER BY id DESC LIMIT 1", (item_id,)).fetchone()
        assert first == [{"item_id": item_id, "product": "transactions", "sync_run_id": run[0],
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
        assert second == [{"item_id": item_id, "product": "transactions", "sync_run_id": run[0],
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


def billed(emulator, item_id=None):
    b = emulator("calls")["billed"]
    return sum(v for k, v in b.items() if item_id is None or k.startswith(item_id + " "))


def test_no_paid_call_is_ever_made_implicitly(emulator, su):
    before = billed(emulator)
    item_id = announce(emulator, su, days=10, per_day=2)
    drain(su)
    emulator("advance", item_id=item_id, days=2, per_day=2)
    webhook(emulator, su, item_id)
    su.execute("SELECT plaid_sync.plaid_request_backfill(%s)", (item_id,))
    su.execute("SELECT plaid_sync.plaid_notify_item_updated(%s)", (item_id,))
    drain(su)
    assert billed(emulator, item_id) == 0
    assert billed(emulator) == before


def test_refresh_is_queued_within_budget_and_then_refused(cluster, emulator, su):
    su.autocommit = True
    item_id = announce(emulator, su, days=5, per_day=1)
    drain(su)
    with settings(cluster, refreshes_per_item_per_day=2):
        refresh = "SELECT plaid_sync.plaid_refresh_transactions(%s)"
        # Asked twice while the first waits: one job, one paid call.
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
