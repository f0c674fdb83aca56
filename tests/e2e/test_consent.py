"""Plaid as it bills and as users revoke (issue 27): no product started by plaid_sync, the
options /transactions/sync is sent, Plaid's own freshness, revocations, deletion on request,
and ITEM: ERROR codes that do not need the user."""

import datetime as dt

import psycopg
import pytest

from test_products import announce_with, product_state, settings
from test_sync import TOKENS, announce, assert_matches_emulator, drain, requests_of, webhook

SYNC, ITEM_GET, ACCOUNTS = "/transactions/sync", "/item/get", "/accounts/get"


def calls_for(emulator, item_id):
    """Requests the emulator received for the Item, answered or not, per endpoint."""
    return emulator("calls")["by_item"].get(item_id, {})


def live(su, item_id, account_id=None):
    return su.execute("SELECT count(*) FROM plaid_sync.live_transactions WHERE item_id = %s "
                      "AND (%s::text IS NULL OR account_id = %s)", (item_id, account_id, account_id)).fetchone()[0]


@pytest.mark.both_ways
def test_no_product_is_started_by_plaid_sync(emulator, su):
    su.autocommit = True
    auth = announce_with(emulator, su, ["auth"], days=20)
    liab = announce_with(emulator, su, ["liabilities"], days=20)
    inv = announce_with(emulator, su, ["investments"], days=20)
    drain(su)

    # Linked for Auth: its Item, institution, accounts and balances, and no Transactions call.
    c = calls_for(emulator, auth)
    assert SYNC not in c and c[ITEM_GET] == 1 and c[ACCOUNTS] == 1, c
    assert su.execute("SELECT count(*), count(balance_current) FROM plaid_sync.accounts WHERE item_id = %s",
                      (auth,)).fetchone() == (3, 3)
    assert product_state(su, auth, "transactions") == ("absent", None, False)
    status, products = su.execute("SELECT status, products FROM plaid_sync.item_health WHERE item_id = %s",
                                  (auth,)).fetchone()
    assert status == "healthy" and products["transactions"]["state"] == "absent"
    assert live(su, auth) == 0

    # Liabilities only, investments only: their product is read, at once, and no Transactions.
    c = calls_for(emulator, liab)
    assert SYNC not in c and c["/liabilities/get"] == 1, c
    assert su.execute("SELECT count(*) FROM plaid_sync.liabilities WHERE item_id = %s", (liab,)).fetchone()[0] > 0
    c = calls_for(emulator, inv)
    assert SYNC not in c and c["/investments/holdings/get"] == 1 and c["/investments/transactions/get"] >= 1, c
    assert su.execute("SELECT count(*) FROM plaid_sync.holdings WHERE item_id = %s", (inv,)).fetchone()[0] > 0
    for item_id in (auth, liab, inv):
        assert not requests_of(emulator, item_id)

    # Transactions added later in Link update mode: the backend says so, and it syncs.
    emulator("products", item_id=auth, products=["auth", "transactions"])
    su.execute("SELECT plaid_sync.plaid_notify_item_updated(%s)", (auth,))
    drain(su)
    assert calls_for(emulator, auth)[SYNC] >= 1
    assert product_state(su, auth, "transactions") == ("ok", None, True)
    assert_matches_emulator(emulator, su, auth)


@pytest.mark.both_ways
def test_a_consented_transactions_is_initialised_only_when_allowed_with_days_requested(cluster, emulator, su):
    su.autocommit = True
    item_id = announce_with(emulator, su, ["auth"], consented=["auth", "transactions"], days=90, per_day=2)
    drain(su)
    assert SYNC not in calls_for(emulator, item_id)
    assert product_state(su, item_id, "transactions") == ("pending", None, False)
    with settings(cluster, add_consented_products="on", days_requested=30):
        su.execute("SELECT plaid_sync.plaid_notify_item_updated(%s)", (item_id,))
        drain(su)
        emulator("advance", item_id=item_id, days=1, per_day=2)
        webhook(emulator, su, item_id)
        drain(su)
    sent = [r["options"] for r in requests_of(emulator, item_id)]
    assert sent[0]["days_requested"] == 30 and all("days_requested" not in o for o in sent[1:]), sent
    oldest = su.execute("SELECT min(date) FROM plaid_sync.live_transactions WHERE item_id = %s", (item_id,)).fetchone()[0]
    assert oldest >= dt.date.today() - dt.timedelta(days=31)
    assert_matches_emulator(emulator, su, item_id)


@pytest.mark.both_ways
def test_sync_options_are_sent_and_land_in_the_rows(cluster, emulator, su):
    su.autocommit = True
    with settings(cluster, include_original_description="on", personal_finance_category_version="'v2'"):
        item_id = announce(emulator, su, days=5, per_day=2)
        drain(su)
    opts = requests_of(emulator, item_id)[0]["options"]
    assert opts == {"include_original_description": True, "personal_finance_category_version": "v2"}
    rows = su.execute("SELECT name, data ->> 'original_description', personal_finance_category ->> 'version' "
                      "FROM plaid_sync.live_transactions WHERE item_id = %s", (item_id,)).fetchall()
    assert len(rows) == 10 and all(desc == f"POS DEBIT {name}" and v == "v2" for name, desc, v in rows)
    # Off again (the defaults): the next sync asks for neither.
    emulator("advance", item_id=item_id, days=1, per_day=1)
    webhook(emulator, su, item_id)
    drain(su)
    assert requests_of(emulator, item_id)[-1]["options"] == {"include_original_description": False}


@pytest.mark.parametrize("name, value, reason", [
    ("days_requested", "0", "outside the valid range"),
    ("days_requested", "731", "outside the valid range"),
    ("personal_finance_category_version", "'v3'", "v1 or v2"),
    ("include_original_description", "'maybe'", "requires a Boolean value"),
])
def test_bad_settings_are_refused_with_the_reason(cluster, su, name, value, reason):
    su.autocommit = True
    with pytest.raises(psycopg.Error) as e:
        su.execute(f"ALTER SYSTEM SET plaid_sync.{name} = {value}")
    assert reason in str(e.value) + str(getattr(e.value.diag, "message_detail", ""))


@pytest.mark.both_ways
def test_plaids_freshness_is_kept_beside_the_mirrors(emulator, su):
    su.autocommit = True
    item_id = announce(emulator, su, days=5, per_day=1)
    drain(su)
    emulator("webhook", item_id=item_id, webhook_type="TRANSACTIONS", webhook_code="DEFAULT_UPDATE")
    su.execute("SELECT plaid_sync.plaid_notify_item_updated(%s)", (item_id,))
    drain(su)
    plaid_ok, plaid_failed, hook_at, hook_code, mirror, products = su.execute(
        "SELECT plaid_last_successful_update, plaid_last_failed_update, plaid_last_webhook_at, "
        "plaid_last_webhook_code, last_synced_at, products FROM plaid_sync.item_health WHERE item_id = %s",
        (item_id,)).fetchone()
    now = dt.datetime.now(dt.timezone.utc)
    assert plaid_ok and abs((now - plaid_ok).total_seconds()) < 300 and plaid_failed is None
    assert hook_code == "DEFAULT_UPDATE" and hook_at and mirror
    assert products["transactions"]["plaid_last_successful_update"]


def revoked_account(emulator, su, item_id):
    """An account of the Item that has transactions."""
    return su.execute("SELECT account_id FROM plaid_sync.live_transactions WHERE item_id = %s "
                      "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1", (item_id,)).fetchone()[0]


@pytest.mark.both_ways
def test_a_revoked_account_and_its_rows_are_no_longer_live(emulator, su):
    su.autocommit = True
    item_id = announce(emulator, su, days=20, per_day=3)
    drain(su)
    account = revoked_account(emulator, su, item_id)
    others = live(su, item_id) - live(su, item_id, account)
    webhook(emulator, su, item_id, code="USER_ACCOUNT_REVOKED", webhook_type="ITEM", account_id=account)
    drain(su)
    assert su.execute("SELECT removed_at IS NOT NULL FROM plaid_sync.accounts WHERE account_id = %s",
                      (account,)).fetchone()[0]
    assert live(su, item_id, account) == 0 and live(su, item_id) == others > 0
    assert su.execute("SELECT count(*) FROM plaid_sync.transactions WHERE account_id = %s", (account,)).fetchone()[0] > 0


@pytest.mark.both_ways
def test_a_revoked_item_stops_and_comes_back_when_access_is_granted_again(emulator, su):
    su.autocommit = True
    item_id = announce_with(emulator, su, ["transactions", "liabilities"], days=20, per_day=3)
    drain(su)
    n = live(su, item_id)
    assert n > 0
    emulator("revoke_permission", item_id=item_id)
    err = {"error_code": "USER_PERMISSION_REVOKED", "error_type": "ITEM_ERROR", "status": 400,
           "error_message": "the holder of this account has revoked their permission", "display_message": None}
    webhook(emulator, su, item_id, code="USER_PERMISSION_REVOKED", webhook_type="ITEM", error=err)
    drain(su)
    assert su.execute("SELECT status FROM plaid_sync.items WHERE item_id = %s", (item_id,)).fetchone()[0] == "revoked"
    assert live(su, item_id) == 0
    for table in ("accounts", "liabilities"):
        assert su.execute(f"SELECT count(*) FILTER (WHERE removed_at IS NULL), count(*) FROM plaid_sync.{table} "
                          "WHERE item_id = %s", (item_id,)).fetchone()[0] == 0
    # It stops syncing: a webhook for it calls nothing.
    before = calls_for(emulator, item_id).get(SYNC, 0)
    webhook(emulator, su, item_id)
    drain(su)
    assert calls_for(emulator, item_id).get(SYNC, 0) == before

    # Access granted again through update mode: from an empty cursor, everything back live.
    emulator("repair_login", item_id=item_id)
    k = len(requests_of(emulator, item_id))
    su.execute("SELECT plaid_sync.plaid_notify_item_updated(%s)", (item_id,))
    drain(su)
    assert su.execute("SELECT status FROM plaid_sync.items WHERE item_id = %s", (item_id,)).fetchone()[0] == "healthy"
    assert requests_of(emulator, item_id)[k]["cursor"] is None
    assert live(su, item_id) == n
    assert_matches_emulator(emulator, su, item_id)
    assert su.execute("SELECT count(*) FROM plaid_sync.liabilities WHERE item_id = %s AND removed_at IS NULL",
                      (item_id,)).fetchone()[0] > 0


def holders(su, needles):
    """Every table of the schema with a row whose text holds one of `needles`: {table: rows}."""
    tables = [r[0] for r in su.execute(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname = 'plaid_sync'")]
    assert len(tables) >= 15
    found = {}
    for t in tables:
        n = su.execute(f"SELECT count(*) FROM {t} x WHERE x::text LIKE ANY(%s)",
                       ([f"%{s}%" for s in needles],)).fetchone()[0]
        if n:
            found[t] = n
    return found


def item_ids(su, item_id):
    accounts = [r[0] for r in su.execute("SELECT account_id FROM plaid_sync.accounts WHERE item_id = %s", (item_id,))]
    txns = [r[0] for r in su.execute("SELECT transaction_id FROM plaid_sync.transaction_rows WHERE item_id = %s", (item_id,))]
    return accounts, txns


@pytest.mark.both_ways
def test_purge_deletes_every_row_of_the_item_and_removes_it_at_plaid(emulator, su):
    su.autocommit = True
    item_id = announce_with(emulator, su, ["transactions", "liabilities", "investments"], days=20, per_day=3)
    keep = announce(emulator, su, days=3, per_day=1)   # another Item: untouched
    drain(su)
    webhook(emulator, su, item_id, code="USER_ACCOUNT_REVOKED", webhook_type="ITEM", account_id="nope")
    drain(su)
    accounts, txns = item_ids(su, item_id)
    assert len(accounts) >= 3 and len(txns) > 20
    kept = live(su, keep)

    su.execute("SELECT plaid_sync.plaid_purge_item(%s)", (item_id,))
    found = holders(su, [item_id] + accounts + txns)
    # The Item's one row saying it was purged, and the job that removes it at Plaid.
    assert set(found) <= {"plaid_sync.items", "plaid_sync.inbox"} and found["plaid_sync.items"] == 1, found
    row = su.execute("SELECT status, purged_at IS NOT NULL, client_user_id, data, institution_id "
                     "FROM plaid_sync.items WHERE item_id = %s", (item_id,)).fetchone()
    assert row == ("removed", True, None, None, None)
    drain(su)
    assert calls_for(emulator, item_id)["/item/remove"] == 1
    assert holders(su, [item_id] + accounts + txns) == {"plaid_sync.items": 1}
    assert su.execute("SELECT access_token_encrypted IS NULL FROM plaid_sync.items WHERE item_id = %s",
                      (item_id,)).fetchone()[0]
    assert live(su, keep) == kept

    # Idempotent: again, nothing happens and Plaid is not called again.
    su.execute("SELECT plaid_sync.plaid_purge_item(%s)", (item_id,))
    drain(su)
    assert calls_for(emulator, item_id)["/item/remove"] == 1
    # A late webhook for it is ignored.
    qid = webhook(emulator, su, item_id)
    drain(su)
    status, note = su.execute("SELECT status, last_error FROM plaid_sync.inbox WHERE id = %s", (qid,)).fetchone()
    assert status == "done" and note == f"ignored: Item {item_id} was purged"
    assert live(su, item_id) == 0


@pytest.mark.parametrize("arg, message", [
    (None, "item_id must not be NULL"),
    ("no-such-item", "no Item no-such-item"),
])
def test_purge_refuses_bad_input(su, arg, message):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        su.execute("SELECT plaid_sync.plaid_purge_item(%s)", (arg,))


@pytest.mark.both_ways
def test_purge_on_revoke_deletes_instead_of_marking(cluster, emulator, su):
    su.autocommit = True
    item_id = announce(emulator, su, days=20, per_day=3)
    drain(su)
    account = revoked_account(emulator, su, item_id)
    with settings(cluster, purge_on_revoke="on"):
        webhook(emulator, su, item_id, code="USER_ACCOUNT_REVOKED", webhook_type="ITEM", account_id=account)
        drain(su)
        for table in ("accounts", "transaction_rows", "balance_snapshots"):
            assert su.execute(f"SELECT count(*) FROM plaid_sync.{table} WHERE account_id = %s",
                              (account,)).fetchone()[0] == 0, table
        assert live(su, item_id) > 0
        accounts, txns = item_ids(su, item_id)
        webhook(emulator, su, item_id, code="USER_PERMISSION_REVOKED", webhook_type="ITEM",
                error={"error_code": "USER_PERMISSION_REVOKED", "error_type": "ITEM_ERROR"})
        drain(su)
    assert holders(su, [item_id] + accounts + txns) == {"plaid_sync.items": 1}
    assert calls_for(emulator, item_id)["/item/remove"] == 1


@pytest.mark.both_ways
def test_an_item_error_the_user_need_not_fix_keeps_the_item_syncing(emulator, su):
    su.autocommit = True
    item_id = announce(emulator, su, days=5, per_day=1)
    drain(su)
    webhook(emulator, su, item_id, code="ERROR", webhook_type="ITEM",
            error={"error_code": "INSTITUTION_DOWN", "error_type": "INSTITUTION_ERROR", "status": 400})
    drain(su)
    assert su.execute("SELECT status, last_error FROM plaid_sync.item_health WHERE item_id = %s",
                      (item_id,)).fetchone() == ("healthy", "INSTITUTION_DOWN")
    # The next sync (the scheduled resync, or a webhook) runs, and clears the error.
    emulator("advance", item_id=item_id, days=1, per_day=2)
    webhook(emulator, su, item_id)
    drain(su)
    assert su.execute("SELECT status, error FROM plaid_sync.items WHERE item_id = %s",
                      (item_id,)).fetchone() == ("healthy", None)
    assert_matches_emulator(emulator, su, item_id)
    # One the user must fix still pauses it.
    webhook(emulator, su, item_id, code="ERROR", webhook_type="ITEM",
            error={"error_code": "ITEM_LOGIN_REQUIRED", "error_type": "ITEM_ERROR", "status": 400})
    drain(su)
    assert su.execute("SELECT status FROM plaid_sync.items WHERE item_id = %s", (item_id,)).fetchone()[0] == "login_required"
