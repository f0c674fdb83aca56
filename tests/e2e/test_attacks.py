"""Issue 33's attacks, each as the red team ran it, against running workers and against
plaid_process_inbox: what an application role or a forged webhook can do, and must not.
(This round closes the forged-kid holes, the crit header and the workers' search_path; the
others are still open in the issue.)"""

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
    """Hole 1: "zzX\\u0000" then "zzX" looped a worker in the key cache's ON CONFLICT."""
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
    """Hole 3: a 5,900-character kid ended `failed` (btree row too big) and cost two calls."""
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
    """Hole 12 (crit): RFC 7515 says a verifier that does not understand crit must refuse."""
    item_id = announce(emulator, su, days=3)
    drain(su)
    job = send(su, *forged(item_id, "6c5516e1-92dc-479e-a8ff-5a51992e0001", crit=["exp"]))
    drain(su)
    status, error = su.execute("SELECT status, last_error FROM plaid_sync.inbox WHERE id = %s", (job,)).fetchone()
    assert status == "rejected" and "crit" in error


@pytest.mark.both_ways
def test_a_function_planted_in_public_is_never_called_by_the_workers(cluster, jobs_run_by, emulator, su):
    """Hole 5: the workers run as the bootstrap superuser; a public.make_interval(integer)
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
