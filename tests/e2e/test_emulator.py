"""The emulator answers as Plaid does: the spec examples' shapes, Plaid's request checks, and
real cursors and pages."""

import json
import os

import pytest

from harness import post_json

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "plaid")


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return json.load(f)


def call(emulator, path, body, creds=True):
    if creds:
        body = dict(body, client_id="e2e-client", secret=emulator.world.secret)
    return post_json(emulator.url + path, body, timeout=10)


def keys(obj):
    return set(obj) if isinstance(obj, dict) else set()


@pytest.fixture(scope="module")
def token(emulator):
    return emulator("items", count=1, days=30, per_day=3)["items"][0]["access_token"]


@pytest.mark.parametrize("path,fixture_name,body", [
    ("/transactions/sync", "transactions_sync.json", {"count": 10}),
    ("/accounts/get", "accounts_get.json", {}),
    ("/item/get", "item_get.json", {}),
    ("/item/webhook/update", "item_webhook_update.json", {"webhook": "https://example.com/h"}),
])
def test_responses_have_the_spec_examples_keys(emulator, token, path, fixture_name, body):
    status, got = call(emulator, path, dict(body, access_token=token))
    want = fixture(fixture_name)
    assert status == 200 and keys(got) == keys(want)
    for field in ("item", "institution", "key"):
        if field in want:
            assert keys(want[field]) <= keys(got[field]), path
    for arr in ("accounts", "added", "modified"):
        if want.get(arr) and got.get(arr):
            assert keys(want[arr][0]) <= keys(got[arr][0]), f"{path} {arr}"
            assert keys(want[arr][0]["balances"] if arr == "accounts" else {}) <= keys(got[arr][0].get("balances", {}))


def test_institution_and_key_shapes(emulator):
    status, got = call(emulator, "/institutions/get_by_id", {"institution_id": "ins_109508", "country_codes": ["US"]})
    want = fixture("institutions_get_by_id.json")
    assert status == 200 and {"institution_id", "name", "products", "country_codes", "routing_numbers", "oauth"} <= keys(got["institution"])
    assert keys(got) == keys(want)
    status, got = call(emulator, "/webhook_verification_key/get", {"key_id": emulator.world.kid})
    assert status == 200 and keys(got["key"]) == keys(fixture("webhook_verification_key_get.json")["key"])


@pytest.mark.parametrize("body,creds,code", [
    ({"count": 10, "surprise": 1}, True, "UNKNOWN_FIELDS"),
    ({}, True, "MISSING_FIELDS"),
    ({"count": 501}, True, "INVALID_FIELD"),
    ({"count": 10, "cursor": "bm90IGEgY3Vyc29y"}, True, "INVALID_FIELD"),
    ({"count": 10, "options": None}, True, "INVALID_FIELD"),
    ({"count": 10}, False, "INVALID_API_KEYS"),
])
def test_requests_are_checked_as_plaid_does(emulator, token, body, creds, code):
    if body:
        body = dict(body, access_token=token)
    status, got = call(emulator, "/transactions/sync", body, creds=creds)
    assert status == 400 and got["error_code"] == code
    assert {"error_type", "error_code", "error_message", "display_message", "request_id"} <= keys(got)


def test_wrong_token_and_unknown_key(emulator):
    status, got = call(emulator, "/accounts/get", {"access_token": "access-sandbox-00000000-0000"})
    assert (status, got["error_code"]) == (400, "INVALID_ACCESS_TOKEN")
    status, got = call(emulator, "/webhook_verification_key/get", {"key_id": "nope"})
    assert (status, got["error_code"]) == (400, "INVALID_WEBHOOK_VERIFICATION_KEY_ID")


def test_pages_honour_count_and_cursors_resume(emulator):
    item = emulator("items", count=1, days=20, per_day=5)["items"][0]  # 100 events
    seen, cursor, pages = [], None, 0
    while True:
        body = {"access_token": item["access_token"], "count": 30}
        if cursor:
            body["cursor"] = cursor
        status, page = call(emulator, "/transactions/sync", body)
        assert status == 200
        assert len(page["added"]) + len(page["modified"]) + len(page["removed"]) <= 30
        seen += [t["transaction_id"] for t in page["added"]]
        cursor, pages = page["next_cursor"], pages + 1
        if not page["has_more"]:
            break
    assert pages == 4 and len(set(seen)) == len(seen) == 100
    # Nothing new: the final cursor returns an empty page and itself again.
    status, page = call(emulator, "/transactions/sync", {"access_token": item["access_token"], "cursor": cursor})
    assert page["added"] == [] and page["has_more"] is False
    # Removals name their account.
    state = emulator("state", item_id=item["item_id"])
    victim = next(iter(state["transactions"].values()))
    emulator("remove_transaction", item_id=item["item_id"], transaction_id=victim["transaction_id"])
    status, page = call(emulator, "/transactions/sync", {"access_token": item["access_token"], "cursor": cursor})
    assert page["removed"] == [{"account_id": victim["account_id"], "transaction_id": victim["transaction_id"]}]


def test_refresh_brings_new_transactions(emulator):
    item = emulator("items", count=1, days=2, per_day=1)["items"][0]
    status, first = call(emulator, "/transactions/sync", {"access_token": item["access_token"]})
    status, _ = call(emulator, "/transactions/refresh", {"access_token": item["access_token"]})
    assert status == 200
    status, page = call(emulator, "/transactions/sync", {"access_token": item["access_token"], "cursor": first["next_cursor"]})
    assert len(page["added"]) == 2
