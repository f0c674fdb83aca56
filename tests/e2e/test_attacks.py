"""Attacks an application role or a forged webhook could make, each as a red-team pass ran it
(against running workers, and against plaid_process_inbox where both run the code attacked),
with what must happen instead. The README's Security model lists them."""

import base64
import hashlib
import json
import os
import time

import pytest

from conftest import until
from test_sync import announce, assert_matches_emulator, drain, webhook


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(item_id, kid, **header):
    """A webhook signed by nobody: any kid, a random signature, a fresh iat."""
    body = json.dumps({"webhook_type": "TRANSACTIONS", "webhook_code": "SYNC_UPDATES_AVAILABLE",
                       "item_id": item_id, "initial_update_complete": True, "historical_update_complete": True,
                       "environment": "sandbox"})
    claims = {"iat": int(time.time()), "request_body_sha256": hashlib.sha256(body.encode()).hexdigest()}
    jwt = ".".join([b64(json.dumps({"alg": "ES256", "kid": kid, "typ": "JWT", **header}).encode()),
                    b64(json.dumps(claims).encode()), b64(os.urandom(64))])
    return body, jwt


def key_fetches(emulator):
    return [r for r in emulator("requests")["requests"] if r["path"] == "/webhook_verification_key/get"]


def send(su, body, jwt):
    return su.execute("SELECT plaid_sync.plaid_receive_webhook(%s, %s)", (body, jwt)).fetchone()[0]


@pytest.mark.both_ways
def test_a_nul_in_the_kid_is_rejected_before_any_use(emulator, su):
    """"zzX\\u0000" then "zzX" looped a worker in the key cache's ON CONFLICT."""
    item_id = announce(emulator, su, days=3)
    drain(su)
    fetches = len(key_fetches(emulator))
    first = send(su, *forged(item_id, "zzX\u0000"))
    drain(su)
    assert len(key_fetches(emulator)) == fetches, "rejected before any Plaid call"
    second = send(su, *forged(item_id, "zzX"))
    drain(su)
    rows = su.execute("SELECT id, status, last_error FROM plaid_sync.inbox WHERE id IN (%s, %s) ORDER BY id",
                      (first, second)).fetchall()
    assert [r[1] for r in rows] == ["rejected", "rejected"], rows
    assert "kid is not a key id" in rows[0][2]
    # The plausible-looking one was asked for once; the NUL one never reached Plaid or the cache.
    assert su.execute("SELECT count(*) FROM plaid_sync.webhook_keys WHERE kid LIKE 'zzX%%' AND kid <> 'zzX'"
                      ).fetchone()[0] == 0
    assert [r["key_id"] for r in key_fetches(emulator)[fetches:] if r["key_id"].startswith("zz")] == ["zzX"]
    # The worker is still serving: a genuine webhook syncs.
    emulator("advance", item_id=item_id, days=1)
    webhook(emulator, su, item_id)
    drain(su)
    assert_matches_emulator(emulator, su, item_id)


@pytest.mark.both_ways
def test_long_and_odd_kids_are_rejected_not_failed_and_cost_no_plaid_call(emulator, su):
    """A 5,900-character kid ended `failed` (btree row too big) and cost two calls."""
    item_id = announce(emulator, su, days=3)
    drain(su)
    fetches = len(key_fetches(emulator))
    ids = [send(su, *forged(item_id, kid)) for kid in ("k" * 5_900, "a'; --", "kid with spaces", "é")]
    drain(su)
    rows = su.execute("SELECT status, last_error FROM plaid_sync.inbox WHERE id = ANY(%s)", (ids,)).fetchall()
    assert [r[0] for r in rows] == ["rejected"] * 4, rows
    assert len(key_fetches(emulator)) == fetches
    assert su.execute("SELECT count(*) FROM plaid_sync.webhook_keys").fetchone()[0] <= 1
    health = su.execute("SELECT failed_jobs FROM plaid_sync.item_health WHERE item_id = %s", (item_id,)).fetchone()
    assert health == (0,)


@pytest.mark.both_ways
def test_an_unknown_crit_header_is_rejected(emulator, su):
    """RFC 7515 says a verifier that does not understand crit must refuse."""
    item_id = announce(emulator, su, days=3)
    drain(su)
    job = send(su, *forged(item_id, "6c5516e1-92dc-479e-a8ff-5a51992e0001", crit=["exp"]))
    drain(su)
    status, error = su.execute("SELECT status, last_error FROM plaid_sync.inbox WHERE id = %s", (job,)).fetchone()
    assert status == "rejected" and "crit" in error


@pytest.mark.both_ways
def test_a_function_planted_in_public_is_never_called_by_the_workers(cluster, jobs_run_by, emulator, su):
    """The workers run as the bootstrap superuser; a public.make_interval(integer)
    made by a role with CREATE on public was called by worker 0's maintenance."""
    if jobs_run_by == "inbox":
        pytest.skip("the workers' own maintenance is what is attacked")
    su.execute("DROP ROLE IF EXISTS mallory")
    su.execute("CREATE ROLE mallory LOGIN")
    su.execute("GRANT CREATE ON SCHEMA public TO mallory")
    try:
        with cluster.connect(su.info.dbname, user="mallory") as m:
            for fn in ("make_interval(secs integer)", "hashtext(x varchar)", "now(x int DEFAULT 0)"):
                m.execute(f"CREATE FUNCTION public.{fn} RETURNS interval LANGUAGE plpgsql AS "
                          "$$ BEGIN EXECUTE 'ALTER ROLE mallory SUPERUSER'; RETURN interval '1 s'; END $$")
        item_id = announce(emulator, su, days=3)
        drain(su)
        webhook(emulator, su, item_id)
        drain(su)
        time.sleep(6)  # worker 0's maintenance runs every 5 s
        assert_matches_emulator(emulator, su, item_id)
        assert su.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'").fetchone()[0] is False
    finally:
        su.execute("DROP OWNED BY mallory")
        su.execute("DROP ROLE mallory")


def test_the_replay_window_is_measured_from_the_clock_at_receipt(emulator, su):
    """`received_at` was the start of the caller's transaction, so a transaction held
    open stretched the 5-minute window of a webhook's iat."""
    item_id = announce(emulator, su, days=3)
    drain(su)
    su.autocommit = False
    su.execute("SELECT 1")  # the transaction starts here, at t0
    time.sleep(6)  # held open
    # Genuinely signed 303 s before now (t0 + 6): 297 s before the transaction started, so
    # measured from the transaction's start the webhook would still be fresh.
    w = emulator("webhook", item_id=item_id, iat_age=303)
    job = su.execute("SELECT plaid_sync.plaid_receive_webhook(%s, %s)", (w["body"], w["plaid_verification"])).fetchone()[0]
    su.commit()
    su.autocommit = True
    drain(su)
    status, error = su.execute("SELECT status, last_error FROM plaid_sync.inbox WHERE id = %s", (job,)).fetchone()
    assert status == "rejected" and "before receipt" in error, (status, error)


@pytest.mark.parametrize("bad", ["access-sandbox--", "access-sandbox-de3ce8ef", "access-sandbox-e2e1-7c1e-4f55-9a2d-31b0c5e8d001",
                                 "access-sandbox-de3ce8ef-33f8-452c-a685-8671031fc0f6-0"])
def test_a_token_not_in_plaids_format_is_refused_and_replaces_nothing(emulator, su, bad):
    """`access-sandbox--` was accepted and replaced a live Item's token."""
    import psycopg
    item_id = announce(emulator, su, days=3)
    drain(su)
    before = su.execute("SELECT access_token_encrypted FROM plaid_sync.items WHERE item_id = %s", (item_id,)).fetchone()
    for call in ("SELECT plaid_sync.plaid_notify_item_created(%s, %s)", "SELECT plaid_sync.plaid_notify_item_updated(%s, %s)"):
        with pytest.raises(psycopg.Error) as e:
            su.execute(call, (item_id, bad))
        assert e.value.sqlstate == "22023" and "access-<environment>-<uuid>" in str(e.value)
        assert bad not in str(e.value)
    assert su.execute("SELECT access_token_encrypted FROM plaid_sync.items WHERE item_id = %s", (item_id,)).fetchone() == before


def test_jobs_in_plaid_process_inbox_ignore_the_callers_formats(emulator, su):
    """With DateStyle German, /investments/transactions/get got a German start_date."""
    from test_products import announce_with, investment_transactions, product_state
    su.execute("SET DateStyle = 'German'")
    su.execute("SET TimeZone = 'Pacific/Kiritimati'")
    su.execute("SET IntervalStyle = 'sql_standard'")
    su.execute("SET extra_float_digits = -15")
    item_id = announce_with(emulator, su, ["transactions", "investments"], days=3, per_day=1)
    drain(su)
    assert product_state(su, item_id, "investments")[0] == "ok"
    assert investment_transactions(su, item_id)
    assert su.execute("SELECT count(*) FROM plaid_sync.inbox WHERE item_id = %s AND status <> 'done'",
                      (item_id,)).fetchone()[0] == 0
    # The caller's session keeps its own settings.
    assert su.execute("SHOW DateStyle").fetchone()[0] == "German, DMY"


@pytest.mark.slow
@pytest.mark.both_ways
def test_forged_random_kids_cost_one_look_up_each_and_leave_no_rows(emulator, su):
    """100 forged random kids made 200 key calls (each also refreshed every key held)
    and left 100 rows that nothing deleted."""
    import uuid
    item_id = announce(emulator, su, days=3)
    drain(su)
    webhook(emulator, su, item_id)  # a genuine one: the emulator's key is cached and current
    drain(su)
    fetches = len(key_fetches(emulator))
    ids = [send(su, *forged(item_id, str(uuid.uuid4()))) for _ in range(20)]
    drain(su)
    assert su.execute("SELECT count(*) FROM plaid_sync.inbox WHERE id = ANY(%s) AND status = 'rejected'",
                      (ids,)).fetchone()[0] == 20
    assert len(key_fetches(emulator)) - fetches == 20  # one per forged kid, none for the key held
    assert su.execute("SELECT count(*) FROM plaid_sync.webhook_keys WHERE jwk IS NULL").fetchone()[0] == 20
    # Once "unknown" is no longer believed, maintenance deletes the answers; Plaid's key stays.
    su.execute("UPDATE plaid_sync.webhook_keys SET fetched_at = now() - interval '10 minutes' WHERE jwk IS NULL")
    if su.execute("SELECT current_setting('plaid_sync.workers')::int").fetchone()[0] == 0:
        return  # no worker 0 here to run the maintenance
    until(lambda: su.execute("SELECT count(*) FROM plaid_sync.webhook_keys WHERE jwk IS NULL").fetchone()[0] == 0,
          timeout=15, what="maintenance to prune unknown kids")
    assert su.execute("SELECT count(*) FROM plaid_sync.webhook_keys WHERE jwk IS NOT NULL").fetchone()[0] == 1


def test_a_forged_flood_for_one_item_does_not_hold_up_another(cluster, emulator, jobs_run_by, su):
    """2,000 forged webhooks naming one announced Item made each claim scan the Item's
    pile for every row it skipped (1.4 s a claim), and each finished job re-dated the pile."""
    import uuid
    flooded = announce(emulator, su, days=3)
    other = announce(emulator, su, days=3)
    drain(su)
    body, jwt = forged(flooded, str(uuid.uuid4()))
    su.execute("SELECT plaid_sync.plaid_receive_webhook(%s, %s) FROM generate_series(1, 20000)", (body, jwt))
    if jobs_run_by == "inbox":
        # One claim, whatever the pile: the first due row (a forged one) is taken at once.
        t = time.time()
        assert su.execute("SELECT plaid_sync.plaid_process_inbox(1)").fetchone()[0] == 1
        assert time.time() - t < 1.0
        su.execute("DELETE FROM plaid_sync.inbox WHERE item_id = %s AND status = 'pending'", (flooded,))
        return
    time.sleep(1)  # the workers are busy with the pile
    emulator("advance", item_id=other, days=1, per_day=2)
    t = time.time()
    job = webhook(emulator, su, other)
    until(lambda: su.execute("SELECT status FROM plaid_sync.inbox WHERE id = %s", (job,)).fetchone()[0] in ("done", "failed"),
          timeout=30, every=0.02, what="the other Item's webhook")
    took = time.time() - t
    assert su.execute("SELECT status FROM plaid_sync.inbox WHERE id = %s", (job,)).fetchone()[0] == "done"
    assert took < 1.0, f"the other Item's fresh webhook took {took:.2f} s"
    assert_matches_emulator(emulator, su, other)
    # Nothing of the pile became failed; let the test's teardown find no job running.
    assert su.execute("SELECT count(*) FROM plaid_sync.inbox WHERE item_id = %s AND status = 'failed'",
                      (flooded,)).fetchone()[0] == 0
    # The rest of the pile goes, without waiting on rows a worker holds: a plain DELETE and a
    # worker moving the Item's due rows lock them in different orders, and could deadlock.
    until(lambda: su.execute(
        "WITH gone AS (DELETE FROM plaid_sync.inbox WHERE id IN (SELECT id FROM plaid_sync.inbox "
        "WHERE item_id = %s AND status = 'pending' FOR UPDATE SKIP LOCKED) RETURNING 1) "
        "SELECT NOT EXISTS (SELECT FROM plaid_sync.inbox WHERE item_id = %s AND status = 'pending')",
        (flooded, flooded)).fetchone()[0],
          timeout=30, every=0.05, what="the forged pile to be cleared")


test_a_forged_flood_for_one_item_does_not_hold_up_another = pytest.mark.both_ways(
    test_a_forged_flood_for_one_item_does_not_hold_up_another)


def test_a_token_passed_as_an_item_id_is_not_echoed_or_logged(cluster, emulator, su):
    """Backfill, remove and refresh echoed a token passed as item_id ("no
    Item access-sandbox-…"), and only four functions kept their failing statement out of the log."""
    import psycopg
    from conftest import token
    leaked = token("as-item-id")
    log_from = len(cluster.log_text())
    calls = ["SELECT plaid_sync.plaid_request_backfill('{t}')",
             "SELECT plaid_sync.plaid_remove_item('{t}')",
             "SELECT plaid_sync.plaid_refresh_transactions('{t}')",
             "SELECT plaid_sync.plaid_update_item_webhook('{t}', 'https://example.com/h')",
             "SELECT plaid_sync.plaid_retry_failed('{t}')",
             "SELECT plaid_sync.plaid_decrypt_access_token('{t}')",
             "SELECT plaid_sync.plaid_notify_item_updated('{t}')"]
    for sql in calls:
        with pytest.raises(psycopg.Error) as e:
            su.execute(sql.format(t=leaked))  # a literal, as a careless caller writes it
        assert e.value.sqlstate == "22023", (sql, e.value.sqlstate)
        assert leaked not in str(e.value) and "looks like a Plaid token" in str(e.value)
    log = cluster.log_text()[log_from:]
    assert log.count("looks like a Plaid token") >= len(calls)
    assert leaked not in log and "STATEMENT" not in log


@pytest.mark.workers_only
def test_a_rolled_back_caller_cannot_spend_the_paid_budget(cluster, emulator, su):
    """Six times BEGIN; refresh; plaid_process_inbox; ROLLBACK made six billed calls
    against a budget of 4, and left no paid_calls row."""
    from test_products import billed, settings
    su.autocommit = True
    item_id = announce(emulator, su, days=2)
    drain(su)
    before = billed(emulator, item_id)
    refresh = "SELECT plaid_sync.plaid_refresh_transactions(%s)"
    with settings(cluster, refreshes_per_item_per_day=4):
        for _ in range(6):
            with su.transaction(force_rollback=True):
                su.execute(refresh, (item_id,))
                su.execute("SELECT plaid_sync.plaid_process_inbox(10)")
        drain(su)
        assert billed(emulator, item_id) == before, "no call made inside a transaction that rolled back"
        assert su.execute("SELECT count(*) FROM plaid_sync.paid_calls").fetchone()[0] == 0
        # Committed, the request is a worker's: one call, booked and marked before it is made.
        job = su.execute(refresh, (item_id,)).fetchone()[0]
        drain(su)
        assert billed(emulator, item_id) == before + 1
        # The job run again, as after a crash between the call and its record: no second call.
        su.execute("UPDATE plaid_sync.inbox SET status = 'pending', run_after = now(), finished_at = NULL "
                   "WHERE id = %s", (job,))
        drain(su)
        assert billed(emulator, item_id) == before + 1
        status, note = su.execute("SELECT status, last_error FROM plaid_sync.inbox WHERE id = %s", (job,)).fetchone()
        assert status == "done" and note.startswith("skipped: this paid call was started once already"), note
        assert su.execute("SELECT outcome, request_id IS NOT NULL FROM plaid_sync.paid_calls WHERE inbox_id = %s",
                          (job,)).fetchall() == [("ok", True)]


def _notices_with(t):
    head = '{"webhook_type":"ITEM","webhook_code":"CREATED","item_id":"item-bad-json","access_token":"' + t
    return [
        ("truncated", head + '"', "22P02"),
        ("not JSON after the token", head + '", oops}', "22P02"),
        ("NUL after the token", head + '\\u0000"}', "22023"),
        ("1e400", head + '", "n": 1e400}', "22P02"),
        ("nested 200 deep", head + '", "n": ' + "[" * 200 + "]" * 200 + "}", "22P02"),
    ]


@pytest.mark.parametrize("case", range(5), ids=[c[0] for c in _notices_with("t")])
def test_plaid_notify_refuses_bad_json_without_quoting_it(cluster, su, case):
    """`plaid_notify(jsonb)` failed in Postgres's JSON parser before it ran, and
    the error's CONTEXT quoted the token into the log; 1e400 and deep nesting were XX000 with a
    Rust backtrace. The body is now text, parsed inside; the jsonb form wraps the text form."""
    import psycopg
    from conftest import token
    leaked = token(f"bad-json-{case}")
    _, body, sqlstate = _notices_with(leaked)[case]
    log_from = len(cluster.log_text())
    calls = [("SELECT plaid_sync.plaid_notify(%s)", body)]  # a bind parameter: untyped, so text
    if sqlstate == "22P02" and case >= 3:
        calls.append(("SELECT plaid_sync.plaid_notify(%s::jsonb)", body))  # jsonb takes these
    for sql, arg in calls:
        with pytest.raises(psycopg.Error) as e:
            su.execute(sql, (arg,))
        su.rollback()
        message = f"{e.value} {e.value.diag.message_detail} {e.value.diag.context}"
        assert e.value.sqlstate == sqlstate, (sql, e.value.sqlstate, str(e.value))
        assert leaked not in message and ".rs:" not in message and "panicked" not in message, message
    log = cluster.log_text()[log_from:]
    assert leaked not in log and ".rs:" not in log and "XX000" not in log
    assert su.execute("SELECT count(*) FROM plaid_sync.items WHERE item_id = 'item-bad-json'").fetchone()[0] == 0


@pytest.mark.both_ways
def test_an_outside_role_cannot_stall_an_item(cluster, jobs_run_by, emulator, su):
    """`pg_advisory_lock(0x504c4144, hashtext(item_id))`, open to any role with CONNECT,
    stopped the Item's jobs silently for as long as it was held."""
    import psycopg
    su.autocommit = True
    item_id = announce(emulator, su, days=3)
    drain(su)
    su.execute("DROP ROLE IF EXISTS outsider")
    su.execute("CREATE ROLE outsider LOGIN")
    su.execute("GRANT USAGE ON SCHEMA plaid_sync TO outsider")
    su.execute("GRANT SELECT ON ALL TABLES IN SCHEMA plaid_sync TO outsider")  # the README's app grants
    try:
        with cluster.connect(su.info.dbname, user="outsider", autocommit=False) as o:
            assert o.execute("SELECT pg_try_advisory_lock(x'504c4144'::int, hashtext(%s))", (item_id,)).fetchone()[0]
            # The lock that keeps an Item's jobs apart now is its row, which reading cannot take.
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                o.execute("SELECT 1 FROM plaid_sync.items WHERE item_id = %s FOR KEY SHARE", (item_id,))
            o.rollback()
            o.execute("SELECT 1 FROM plaid_sync.items WHERE item_id = %s", (item_id,))  # held open, reading
            emulator("advance", item_id=item_id, days=1, per_day=2)
            job = webhook(emulator, su, item_id)
            drain(su)
            assert su.execute("SELECT status FROM plaid_sync.inbox WHERE id = %s", (job,)).fetchone()[0] == "done"
            assert_matches_emulator(emulator, su, item_id)
    finally:
        su.execute("DROP OWNED BY outsider")
        su.execute("DROP ROLE outsider")
