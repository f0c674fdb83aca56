"""Only Plaid can make the database act. Every forged webhook is rejected with its
reason, causes no Plaid call and changes no Item; genuine ones proceed."""

import json

import pytest

from test_sync import announce, drain, requests_of


def receive(su, body, header):
    return su.execute("SELECT plaid_sync.plaid_receive_webhook(%s, %s)", (body, header)).fetchone()[0]


def row(su, qid):
    return su.execute("SELECT status, coalesce(last_error, ''), coalesce(verification, '') FROM plaid_sync.inbox WHERE id = %s", (qid,)).fetchone()


def revoke_hook(emulator, item_id, forge=None):
    return emulator("webhook", item_id=item_id, webhook_type="ITEM", webhook_code="USER_PERMISSION_REVOKED",
                    fields={}, **({"forge": forge} if forge else {}))


@pytest.mark.parametrize("forge,reason", [
    ("wrong_key", "signature does not verify"),
    ("alg_none", "only ES256"),
    ("hs256_public_key", "only ES256"),
    ("stale_iat", "before receipt"),
    ("future_iat", "in the future"),
    ("unknown_kid", "unknown verification key id"),
    ("expired_key", "has expired"),
    ("not_a_jwt", "not a JWT"),
])
def test_forged_webhooks_are_rejected_one_by_one(emulator, su, forge, reason):
    item_id = announce(emulator, su, days=2)
    drain(su)
    calls = len(requests_of(emulator, item_id, "/transactions/sync"))
    h = revoke_hook(emulator, item_id, forge)
    qid = receive(su, h["body"], h["plaid_verification"])
    drain(su)
    status, err, _ = row(su, qid)
    assert status == "rejected" and reason in err, err
    assert su.execute("SELECT status FROM plaid_sync.items WHERE item_id = %s", (item_id,)).fetchone()[0] == "healthy"
    assert len(requests_of(emulator, item_id, "/transactions/sync")) == calls


def test_missing_header_and_altered_body(emulator, su):
    item_id = announce(emulator, su, days=2)
    drain(su)
    h = revoke_hook(emulator, item_id)
    a = receive(su, h["body"], None)
    b = receive(su, h["body"].replace("  ", "    "), h["plaid_verification"])  # re-indented: one hash off
    drain(su)
    assert row(su, a)[0:2] == ("rejected", "rejected: no Plaid-Verification header")
    assert row(su, b)[0] == "rejected" and "request_body_sha256" in row(su, b)[1]
    # A rejected body is never parsed into data: only the bytes received are kept.
    assert su.execute("SELECT body IS NULL AND raw_body = %s FROM plaid_sync.inbox WHERE id = %s",
                      (h["body"], a)).fetchone()[0]
    assert su.execute("SELECT status FROM plaid_sync.items WHERE item_id = %s", (item_id,)).fetchone()[0] == "healthy"


def test_a_genuine_webhook_proceeds_and_keys_are_fetched_once(emulator, su):
    item_id = announce(emulator, su, days=2)
    drain(su)
    before = len([r for r in emulator("requests")["requests"] if r["path"] == "/webhook_verification_key/get"])
    qids = [receive(su, *(lambda h: (h["body"], h["plaid_verification"]))(emulator("webhook", item_id=item_id))) for _ in range(5)]
    parsed = "SELECT count(*) FROM plaid_sync.inbox WHERE id = ANY(%s) AND body = raw_body::jsonb"
    assert su.execute(parsed, (qids,)).fetchone()[0] == 0, "kept as text until verified"
    drain(su)
    assert all(row(su, q)[2].startswith("verified (kid") for q in qids)
    assert su.execute(parsed, (qids,)).fetchone()[0] == 5, "each body parsed once verified"
    after = len([r for r in emulator("requests")["requests"] if r["path"] == "/webhook_verification_key/get"])
    assert after - before == 1, "one Plaid call for a new key, not one per webhook"
    assert su.execute("SELECT count(*) FROM plaid_sync.webhook_keys WHERE jwk IS NOT NULL").fetchone()[0] == 1


def test_unknown_kids_are_not_asked_for_again_and_again(emulator, su):
    item_id = announce(emulator, su, days=2)
    drain(su)
    h = revoke_hook(emulator, item_id, "unknown_kid")
    for _ in range(5):
        receive(su, h["body"], h["plaid_verification"])
    drain(su)
    kid = json.loads(__import__("base64").urlsafe_b64decode(h["plaid_verification"].split(".")[0] + "==").decode())["kid"]
    asked = [r for r in emulator("requests")["requests"] if r["key_id"] == kid]
    assert len(asked) == 1, "five webhooks with one unknown kid: Plaid asked once"
    assert su.execute("SELECT count(*) FROM plaid_sync.inbox WHERE status = 'rejected'").fetchone()[0] == 5
    assert su.execute("SELECT jwk IS NULL FROM plaid_sync.webhook_keys WHERE kid = %s", (kid,)).fetchone()[0]
    assert sum(1 for r in su.execute("SELECT last_error FROM plaid_sync.inbox WHERE last_error LIKE '%%cached answer%%'")) == 4


def test_verification_off_is_recorded_on_the_row(cluster, emulator, su):
    item_id = announce(emulator, su, days=2)
    drain(su)
    with cluster.connect() as c:
        c.execute("ALTER SYSTEM SET plaid_sync.verify_webhooks = off")
    cluster.reload()
    try:
        with cluster.connect(su.info.dbname) as s:
            h = emulator("webhook", item_id=item_id)
            qid = receive(s, h["body"], None)
            drain(s)
            assert row(s, qid)[0] == "done"
            assert row(s, qid)[2] == "skipped: plaid_sync.verify_webhooks is off"
    finally:
        with cluster.connect() as c:
            c.execute("ALTER SYSTEM RESET plaid_sync.verify_webhooks")
        cluster.reload()


def test_postgrest_request_headers_are_used(emulator, su):
    """PostgREST puts the request's headers in `request.headers`; a NULL plaid_verification
    falls back to its `plaid-verification` entry."""
    item_id = announce(emulator, su, days=2)
    drain(su)
    h = emulator("webhook", item_id=item_id)
    su.execute("SELECT set_config('request.headers', %s, false)",
               (json.dumps({"content-type": "application/json", "plaid-verification": h["plaid_verification"]}),))
    qid = receive(su, h["body"], None)
    su.execute("RESET request.headers")
    drain(su)
    assert row(su, qid)[0] == "done" and row(su, qid)[2].startswith("verified")
