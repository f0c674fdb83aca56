"""Link from SQL (issue 28): the backend gets Link tokens from the database and hands Link's
public token back, so it holds neither Plaid's secret nor an access token. Link itself is
played by the emulator's /sandbox/public_token/create, as Plaid's sandbox does."""

import json

import psycopg
import pytest

from conftest import SECRET, USED_SECRETS
from harness import post_json
from test_products import settings
from test_sync import TOKENS, assert_matches_emulator, drain

LINK = {"client_name": "'Acme Budget'", "webhook_url": "'https://api.example.com/plaid/webhook'",
        "days_requested": 365}


def error_of(conn, sql, params=()):
    """The SQLSTATE and message (with hint) of the error `sql` raises, or None."""
    try:
        conn.execute(sql, params)
    except psycopg.Error as e:
        return e.sqlstate, f"{e.diag.message_primary} | {e.diag.message_hint}"
    return None


def finish_link(emulator, institution="ins_109508", username="user_good", products=("transactions",)):
    """A user finishing Link: a public token, and the metadata Link hands onSuccess."""
    pt = post_json(f"{emulator.url}/sandbox/public_token/create",
                   {"client_id": "e2e-client", "secret": SECRET, "institution_id": institution,
                    "initial_products": list(products), "options": {"override_username": username}})[1]["public_token"]
    USED_SECRETS.add(pt)
    return pt, emulator("link_metadata", public_token=pt)


def exchange(emulator, su, pt, user, metadata=None):
    item_id = su.execute("SELECT plaid_sync.plaid_exchange_public_token(%s, %s, %s::jsonb)",
                         (pt, user, json.dumps(metadata) if metadata else None)).fetchone()[0]
    TOKENS[item_id] = token_of(emulator, item_id)
    USED_SECRETS.add(TOKENS[item_id])
    return item_id


def token_of(emulator, item_id):
    return emulator.world.items[item_id].access_token


def counts(su):
    return su.execute("SELECT (SELECT count(*) FROM plaid_sync.items), (SELECT count(*) FROM plaid_sync.inbox)").fetchone()


@pytest.mark.both_ways
def test_link_a_new_item_then_update_mode_from_sql(emulator, su, cluster):
    su.autocommit = True
    with settings(cluster, **LINK):
        made = su.execute("SELECT plaid_sync.plaid_create_link_token('user-1', ARRAY['transactions'], NULL, "
                          "'{\"redirect_uri\": \"https://app.example.com/oauth\", \"user\": {\"email_address\": \"a@example.com\"}}')").fetchone()[0]
        assert made["link_token"].startswith("link-sandbox-") and made["expiration"]
        assert SECRET not in str(made)
        sent = emulator("link_token", link_token=made["link_token"])
        assert sent["client_name"] == "Acme Budget" and sent["language"] == "en" and sent["country_codes"] == ["US"]
        assert sent["webhook"] == "https://api.example.com/plaid/webhook"
        assert sent["user"] == {"client_user_id": "user-1", "email_address": "a@example.com"}
        assert sent["products"] == ["transactions"] and sent["transactions"] == {"days_requested": 365}
        assert sent["redirect_uri"] == "https://app.example.com/oauth" and sent["item_id"] is None

        pt, metadata = finish_link(emulator, username="user-1-login")
        item_id = exchange(emulator, su, pt, "user-1", metadata)
        assert su.execute("SELECT client_user_id, access_token_encrypted IS NOT NULL FROM plaid_sync.items "
                          "WHERE item_id = %s", (item_id,)).fetchone() == ("user-1", True)
        drain(su)
        assert_matches_emulator(emulator, su, item_id)
        assert su.execute("SELECT status, institution_id FROM plaid_sync.items WHERE item_id = %s",
                          (item_id,)).fetchone() == ("healthy", "ins_109508")
        assert su.execute("SELECT plaid_sync.plaid_decrypt_access_token(%s)", (item_id,)).fetchone()[0] == token_of(emulator, item_id)

        # Update mode: the Item's token goes to Plaid from inside the database; no products.
        upd = su.execute("SELECT plaid_sync.plaid_create_link_token('user-1', item_id => %s, "
                         "options => '{\"update\": {\"account_selection_enabled\": true}}')", (item_id,)).fetchone()[0]
        sent = emulator("link_token", link_token=upd["link_token"])
        assert sent["item_id"] == item_id and "products" not in sent and sent["update"] == {"account_selection_enabled": True}
        su.execute("SELECT plaid_sync.plaid_notify_item_updated(%s)", (item_id,))
        drain(su)
        assert_matches_emulator(emulator, su, item_id)

        # The same login linked again, with Link's metadata: refused before anything is
        # exchanged, naming the Item the user already has.
        exchanged = emulator("exchanges")["exchanged"]
        pt2, metadata2 = finish_link(emulator, username="user-1-login")
        code, message = error_of(su, "SELECT plaid_sync.plaid_exchange_public_token(%s, 'user-1', %s::jsonb)",
                                 (pt2, json.dumps(metadata2)))
        assert code == "23505" and item_id in message and "nothing was exchanged" in message, message
        assert emulator("exchanges")["exchanged"] == exchanged
        # Another user at the same bank is no duplicate; nor is the same user at another bank.
        other = exchange(emulator, su, pt2, "user-2", metadata2)
        pt3, metadata3 = finish_link(emulator, institution="ins_109512", username="user-1-login")
        third = exchange(emulator, su, pt3, "user-1", metadata3)
        drain(su)
        assert su.execute("SELECT count(*) FROM plaid_sync.duplicate_items").fetchone()[0] == 0
        for i in (other, third):
            assert_matches_emulator(emulator, su, i)


@pytest.mark.both_ways
def test_duplicates_linked_without_metadata_are_listed(emulator, su, cluster):
    su.autocommit = True
    first = exchange(emulator, su, finish_link(emulator, username="dup-login")[0], "user-9")
    second = exchange(emulator, su, finish_link(emulator, username="dup-login")[0], "user-9")
    exchange(emulator, su, finish_link(emulator, username="other-login")[0], "user-9")
    drain(su)
    rows = su.execute("SELECT item_id, duplicate_of, client_user_id, institution_id, matched_on "
                      "FROM plaid_sync.duplicate_items").fetchall()
    assert rows == [(second, first, "user-9", "ins_109508", "account_masks")]
    # The same accounts under new masks (a card reissued): persistent_account_id still matches.
    su.execute("UPDATE plaid_sync.accounts SET mask = '9999' WHERE item_id = %s AND type = 'credit'", (second,))
    assert su.execute("SELECT matched_on FROM plaid_sync.duplicate_items").fetchall() == [("persistent_account_id",)]
    su.execute("SELECT plaid_sync.plaid_remove_item(%s)", (second,))
    assert su.execute("SELECT count(*) FROM plaid_sync.duplicate_items").fetchone()[0] == 0


def test_bad_calls_are_refused_and_change_nothing(emulator, su, cluster):
    su.autocommit = True
    with settings(cluster, **LINK):
        pt, metadata = finish_link(emulator, username="refusals")
        item_id = exchange(emulator, su, pt, "owner")
        drain(su)
        before = counts(su)
        for sql, params, code, says in [
            ("SELECT plaid_sync.plaid_create_link_token(NULL)", (), "22023", "client_user_id must not be NULL"),
            ("SELECT plaid_sync.plaid_create_link_token('u', NULL)", (), "22023", "products must not be NULL"),
            ("SELECT plaid_sync.plaid_create_link_token('u', ARRAY['balance'])", (), "22023", "Balance comes with"),
            ("SELECT plaid_sync.plaid_create_link_token('u', ARRAY['transactions', NULL])", (), "22023", "NULL"),
            ("SELECT plaid_sync.plaid_create_link_token('u', options => '[1]')", (), "22023", "JSON object"),
            ("SELECT plaid_sync.plaid_create_link_token('u', options => '{\"secret\": \"x\"}')", (), "22023", "set by plaid_sync"),
            ("SELECT plaid_sync.plaid_create_link_token('u', options => '{\"webhook\": \"https://evil.example\"}')", (), "22023", "set by plaid_sync"),
            ("SELECT plaid_sync.plaid_create_link_token('u', options => '{\"access_token\": \"x\"}')", (), "22023", "set by plaid_sync"),
            ("SELECT plaid_sync.plaid_create_link_token('u', options => '{\"colour\": \"red\"}')", (), "22023", "not a Link option"),
            ("SELECT plaid_sync.plaid_create_link_token('intruder', item_id => %s)", (item_id,), "22023", "does not belong"),
            ("SELECT plaid_sync.plaid_create_link_token('owner', item_id => 'no_such_item')", (), "22023", "no Item"),
            ("SELECT plaid_sync.plaid_exchange_public_token(NULL)", (), "22023", "must not be NULL"),
            ("SELECT plaid_sync.plaid_exchange_public_token('not-a-token')", (), "22023", "not a Plaid public token"),
            ("SELECT plaid_sync.plaid_exchange_public_token('public-production-1234')", (), "22023", "sandbox environment"),
            ("SELECT plaid_sync.plaid_exchange_public_token(%s, NULL, '{\"institution\": {\"institution_id\": \"ins_1\"}, \"accounts\": [{\"type\": \"credit\"}]}')",
             (pt,), "22023", "give client_user_id"),
            ("SELECT plaid_sync.plaid_exchange_public_token(%s, 'u', '{\"accounts\": []}')", (pt,), "22023", "institution_id"),
            # Exchanged once already: Plaid says INVALID_PUBLIC_TOKEN, named with its request_id.
            ("SELECT plaid_sync.plaid_exchange_public_token(%s, 'u')", (pt,), "22023", "INVALID_PUBLIC_TOKEN"),
        ]:
            got = error_of(su, sql, params)
            assert got and got[0] == code and says in got[1], (sql, got)
            assert pt not in got[1] and SECRET not in got[1]
        assert "request_id" in error_of(su, "SELECT plaid_sync.plaid_exchange_public_token(%s)", (pt,))[1]

        # Inside a transaction block: refused with the hint, and the public token still works.
        fresh, _ = finish_link(emulator, username="in-a-block")
        with su.transaction():
            code, message = error_of(su, "SELECT plaid_sync.plaid_exchange_public_token(%s, 'u')", (fresh,))
            assert code == "25001" and "on its own" in message, message
            raise psycopg.Rollback()
        # Expired (30 minutes): a clear 22023.
        emulator("age_public_tokens", seconds=31 * 60)
        code, message = error_of(su, "SELECT plaid_sync.plaid_exchange_public_token(%s, 'u')", (fresh,))
        assert code == "22023" and "expired" in message, message
        assert counts(su) == before

        # A removed (or purged) Item cannot be opened in update mode.
        su.execute("SELECT plaid_sync.plaid_remove_item(%s)", (item_id,))
        assert error_of(su, "SELECT plaid_sync.plaid_create_link_token('owner', item_id => %s)", (item_id,))[0] == "22023"
        su.execute("SELECT plaid_sync.plaid_purge_item(%s)", (item_id,))
        code, message = error_of(su, "SELECT plaid_sync.plaid_create_link_token('owner', item_id => %s)", (item_id,))
        assert code == "22023" and "purged" in message

    # Without plaid_sync.client_name there is no Link token: 55000.
    assert error_of(su, "SELECT plaid_sync.plaid_create_link_token('u')")[0] == "55000"


def test_plaid_errors_and_429s(emulator, su, cluster):
    su.autocommit = True
    with settings(cluster, **LINK):
        emulator("fault", endpoint="/link/token/create", kind="http500")
        code, message = error_of(su, "SELECT plaid_sync.plaid_create_link_token('u')")
        assert code == "58000" and "INTERNAL_SERVER_ERROR" in message and "request_id" in message, message
        # One 429 is waited out and retried in place; Plaid refusing again and again is 58000.
        emulator("fault", endpoint="/link/token/create", kind="rate_limit", times=1)
        assert su.execute("SELECT plaid_sync.plaid_create_link_token('u') ? 'link_token'").fetchone()[0]
        emulator("fault", endpoint="/link/token/create", kind="rate_limit", times=10)
        code, message = error_of(su, "SELECT plaid_sync.plaid_create_link_token('u')")
        assert code == "58000" and "RATE_LIMIT" in message, message
        emulator("clear_faults")
        # Through the shared limiter: its calls and 429s are counted with the workers'.
        calls, throttled = su.execute("SELECT calls_last_minute, throttled_last_hour FROM plaid_sync.plaid_rate_status() "
                                      "WHERE endpoint = '/link/token/create'").fetchone()
        assert calls >= 6 and throttled >= 4, (calls, throttled)

        before = counts(su)
        pt, _ = finish_link(emulator, username="errors")
        emulator("fault", endpoint="/item/public_token/exchange", kind="http500")
        assert error_of(su, "SELECT plaid_sync.plaid_exchange_public_token(%s, 'u')", (pt,))[0] == "58000"
        emulator("fault", endpoint="/item/public_token/exchange", kind="rate_limit", times=10)
        assert error_of(su, "SELECT plaid_sync.plaid_exchange_public_token(%s, 'u')", (pt,))[0] == "58000"
        emulator("clear_faults")
        assert counts(su) == before
        # Keys Plaid does not accept: the server is not configured (55000), the secret unsaid.
        emulator.world.secret = "rotated-at-plaid"
        try:
            for sql, params in (("SELECT plaid_sync.plaid_create_link_token('u')", ()),
                                ("SELECT plaid_sync.plaid_exchange_public_token(%s, 'u')", (pt,))):
                code, message = error_of(su, sql, params)
                assert code == "55000" and "INVALID_API_KEYS" in message and SECRET not in message, message
        finally:
            emulator.world.secret = SECRET
        assert counts(su) == before
        # The token Plaid never consumed still works.
        exchange(emulator, su, pt, "u")
        assert counts(su)[0] == before[0] + 1


def test_settings_are_checked_when_set(cluster, su):
    su.autocommit = True
    for name, value, says in [("country_codes", "US,XX", "not a country code"), ("country_codes", "", "at least one"),
                              ("language", "klingon", "not shown in"), ("client_name", "x" * 31, "30 characters"),
                              ("webhook_url", "ftp://example.com/hook", "https://")]:
        try:
            su.execute(f"ALTER SYSTEM SET plaid_sync.{name} = '{value}'")
            raise AssertionError(f"{name} = {value} was accepted")
        except psycopg.Error as e:
            assert e.sqlstate == "22023" and says in (e.diag.message_detail or ""), (name, e.diag.message_detail)
    assert su.execute("SHOW plaid_sync.country_codes").fetchone()[0] == "US"
    assert su.execute("SHOW plaid_sync.language").fetchone()[0] == "en"


@pytest.mark.both_ways
def test_update_item_webhook_without_a_url_uses_the_setting(emulator, su, cluster):
    su.autocommit = True
    pt, _ = finish_link(emulator, username="hooks")
    item_id = exchange(emulator, su, pt, "u")
    drain(su)
    with settings(cluster, webhook_url="'https://hooks.example.com/plaid'"):
        su.execute("SELECT plaid_sync.plaid_update_item_webhook(%s)", (item_id,))
        drain(su)
    assert su.execute("SELECT webhook FROM plaid_sync.items WHERE item_id = %s",
                      (item_id,)).fetchone()[0] == "https://hooks.example.com/plaid"
    assert emulator.world.items[item_id].webhook == "https://hooks.example.com/plaid"


def test_an_application_role_links_with_the_readme_grants(emulator, cluster, su, db):
    from test_foundation import APP_GRANTS
    su.autocommit = True
    su.execute("CREATE ROLE link_app LOGIN")
    su.execute("CREATE ROLE link_stranger LOGIN")
    su.execute(APP_GRANTS.format(role="link_app"))
    try:
        with settings(cluster, **LINK):
            with cluster.connect(db, user="link_stranger") as s:
                s.autocommit = True
                assert error_of(s, "SELECT plaid_sync.plaid_create_link_token('u')")[0] == "42501"
                assert error_of(s, "SELECT plaid_sync.plaid_exchange_public_token('public-sandbox-x')")[0] == "42501"
            with cluster.connect(db, user="link_app") as app:
                app.autocommit = True
                assert app.execute("SELECT plaid_sync.plaid_create_link_token('u') ? 'link_token'").fetchone()[0]
                pt, metadata = finish_link(emulator, username="app-role")
                item_id = exchange(emulator, app, pt, "u", metadata)
                drain(su)
                assert app.execute("SELECT count(*) FROM plaid_sync.accounts WHERE item_id = %s", (item_id,)).fetchone()[0] == 3
                assert app.execute("SELECT count(*) FROM plaid_sync.duplicate_items").fetchone()[0] == 0
                assert error_of(app, "SELECT plaid_sync.plaid_decrypt_access_token(%s)", (item_id,))[0] == "42501"
    finally:
        su.execute("DROP OWNED BY link_app")
        su.execute("DROP ROLE link_app")
        su.execute("DROP ROLE link_stranger")
