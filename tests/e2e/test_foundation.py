"""The SQL contract, settings, encrypted tokens and bad input, on a real server."""

import base64
import hashlib
import os
import re
import threading
import time

import psycopg
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from conftest import KEY1_HEX, KEY2_B64, SECRET, token
from harness import PG_BIN

APP_GRANTS = """
GRANT USAGE ON SCHEMA plaid_sync TO {role};
GRANT SELECT ON ALL TABLES IN SCHEMA plaid_sync TO {role};
GRANT EXECUTE ON FUNCTION
    plaid_sync.plaid_create_link_token(text, text[], text, jsonb),
    plaid_sync.plaid_exchange_public_token(text, text, jsonb),
    plaid_sync.plaid_notify_item_created(text, text, text),
    plaid_sync.plaid_notify_item_updated(text, text),
    plaid_sync.plaid_request_backfill(text),
    plaid_sync.plaid_receive_webhook(text, text),
    plaid_sync.plaid_notify(jsonb),
    plaid_sync.plaid_remove_item(text, boolean),
    plaid_sync.plaid_purge_item(text),
    plaid_sync.plaid_update_item_webhook(text, text),
    plaid_sync.plaid_process_inbox(integer),
    plaid_sync.plaid_retry_failed(text),
    plaid_sync.plaid_rotate_encryption_key()
  TO {role};
"""


def sqlstate_of(conn, sql, params=()):
    try:
        conn.execute(sql, params)
    except psycopg.Error as e:
        return e.sqlstate
    return None


def snapshot(conn):
    """A fingerprint of every row of every plaid_sync table."""
    tables = [r[0] for r in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'plaid_sync' ORDER BY 1")]
    return {t: conn.execute(
        f"SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM plaid_sync.{t} x"
    ).fetchone() for t in tables}


def gcm_envelope_of_0_2_0(token: str, item_id: str, key: bytes) -> bytes:
    """0.2.0's envelope as the README described it, made with Python's `cryptography`."""
    head = b"\x01" + hashlib.sha256(key).digest()[:8]
    nonce = os.urandom(12)
    return head + nonce + AESGCM(key).encrypt(nonce, token.encode(), head + item_id.encode())


def pgcrypto(su):
    su.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")


def pgp_open(su, env, key):
    return su.execute("SELECT pgp_sym_decrypt(%s::bytea, %s)", (env, key)).fetchone()[0]


# ---------------------------------------------------------------------------------------------

def test_tables_indexes_and_dump(cluster, su, db):
    names = {r[0] for r in su.execute(
        "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'plaid_sync'::regnamespace")}
    for t in ["items", "accounts", "balance_snapshots", "transactions", "inbox", "sync_runs",
              "item_health", "live_transactions", "inbox_due_idx", "inbox_item_open_idx",
              "transactions_item_idx", "accounts_item_id_idx", "sync_runs_item_idx"]:
        assert t in names, t
    su.execute("SELECT plaid_sync.plaid_notify_item_created('dumped-item', %s)", (token(1),))
    out = cluster.run([f"{PG_BIN}/pg_dump", "-h", cluster.sock, "-p",
                       str(cluster.port), "-U", "postgres", db]).stdout
    assert "COPY plaid_sync.items" in out and "dumped-item" in out
    assert "COPY plaid_sync.inbox" in out


def test_secret_settings_are_hidden_from_everyone(cluster, su, db):
    su.execute("CREATE ROLE nosy LOGIN")
    su.execute("CREATE ROLE monitor LOGIN IN ROLE pg_read_all_settings")
    secrets = ["plaid_sync.secret", "plaid_sync.encryption_key", "plaid_sync.previous_encryption_keys", "plaid_sync.http_secret",
               "plaid_sync.notify_secret"]
    try:
        with cluster.connect(db, user="nosy") as nosy:
            for g in secrets:
                assert sqlstate_of(nosy, f"SHOW {g}") == "42501", g
                assert sqlstate_of(nosy, "SELECT current_setting(%s)", (g,)) == "42501", g
                assert nosy.execute("SELECT count(*) FROM pg_settings WHERE name = %s", (g,)).fetchone()[0] == 0
            show_all = " ".join(str(r) for r in nosy.execute("SHOW ALL"))
            assert "plaid_sync.secret" not in show_all and SECRET not in show_all
        with cluster.connect(db, user="monitor") as mon:
            # pg_read_all_settings may SHOW it, but only the mask is there to see.
            assert mon.execute("SHOW plaid_sync.secret").fetchone()[0] == "********"
        # Superusers see the mask too; the value lives outside the GUC variable.
        assert su.execute("SHOW plaid_sync.secret").fetchone()[0] == "********"
        assert su.execute("SELECT current_setting('plaid_sync.encryption_key')").fetchone()[0] == "********"
        # Unset looks the same as set: a changing mask would put the value in the reload log line.
        assert su.execute("SHOW plaid_sync.previous_encryption_keys").fetchone()[0] == "********"
        assert su.execute("SELECT count(*) FROM pg_settings WHERE name LIKE 'plaid_sync.%%secret%%'").fetchone()[0] == 0
        everything = " ".join(str(r) for r in su.execute("SHOW ALL"))
        assert SECRET not in everything and KEY1_HEX not in everything
        # Settings can only come from the configuration files.
        assert sqlstate_of(su, "SET plaid_sync.secret = 'x'") == "55P02"
    finally:
        su.execute("DROP ROLE nosy")
        su.execute("DROP ROLE monitor")


def test_pgcrypto_reads_a_stored_token_with_one_statement(su):
    pgcrypto(su)
    t = token(2)
    su.execute("SELECT plaid_sync.plaid_notify_item_created('env-item', %s)", (t,))
    got, raw = su.execute("SELECT pgp_sym_decrypt(access_token_encrypted, %s), "
                          "pgp_sym_decrypt_bytea(access_token_encrypted, %s) "
                          "FROM plaid_sync.items WHERE item_id = 'env-item'", (KEY1_HEX, KEY1_HEX)).fetchone()
    assert got == t and bytes(raw) == t.encode()
    # A changed byte fails pgcrypto's integrity check, and plaid_sync's.
    su.execute("""UPDATE plaid_sync.items SET access_token_encrypted =
                    set_byte(access_token_encrypted, length(access_token_encrypted) - 5,
                             get_byte(access_token_encrypted, length(access_token_encrypted) - 5) # 1)
                  WHERE item_id = 'env-item'""")
    env = su.execute("SELECT access_token_encrypted FROM plaid_sync.items WHERE item_id = 'env-item'").fetchone()[0]
    with pytest.raises(psycopg.Error):
        with su.transaction():
            pgp_open(su, env, KEY1_HEX)
    assert sqlstate_of(su, "SELECT plaid_sync.plaid_decrypt_access_token('env-item')") == "22023"


def test_pgcrypto_written_tokens_are_accepted(su):
    pgcrypto(su)
    su.execute("SELECT plaid_sync.plaid_notify_item_created('pgc-item', %s)", (token(8),))
    su.execute("""UPDATE plaid_sync.items SET access_token_encrypted =
                    pgp_sym_encrypt(%s, %s, 'cipher-algo=aes256, s2k-digest-algo=sha256')
                  WHERE item_id = 'pgc-item'""", (token(9), KEY1_HEX))
    assert su.execute("SELECT plaid_sync.plaid_decrypt_access_token('pgc-item')").fetchone()[0] == token(9)


def test_copied_ciphertext_does_not_decrypt_on_another_item(su):
    pgcrypto(su)
    su.execute("SELECT plaid_sync.plaid_notify_item_created('a-item', %s)", (token(3),))
    su.execute("SELECT plaid_sync.plaid_notify_item_created('b-item', %s)", (token(4),))
    su.execute("""UPDATE plaid_sync.items SET access_token_encrypted =
                    (SELECT access_token_encrypted FROM plaid_sync.items WHERE item_id = 'a-item')
                  WHERE item_id = 'b-item'""")
    assert sqlstate_of(su, "SELECT plaid_sync.plaid_decrypt_access_token('b-item')") == "22023"
    assert su.execute("SELECT plaid_sync.plaid_decrypt_access_token('a-item')").fetchone()[0] == token(3)
    # pgcrypto knows nothing of Items: it still reads the copy.
    env = su.execute("SELECT access_token_encrypted FROM plaid_sync.items WHERE item_id = 'b-item'").fetchone()[0]
    assert pgp_open(su, env, KEY1_HEX) == token(3)


def set_keys(cluster, current, previous):
    with cluster.connect() as c:
        for name, value in (("plaid_sync.encryption_key", current), ("plaid_sync.previous_encryption_keys", previous)):
            if value is None:
                c.execute(f"ALTER SYSTEM RESET {name}")
            else:
                c.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    cluster.reload()


def test_key_rotation(cluster, su):
    pgcrypto(su)
    items = {f"rot-{i}": token(f"r{i}") for i in range(5)}
    for item, t in items.items():
        su.execute("SELECT plaid_sync.plaid_notify_item_created(%s, %s)", (item, t))
    # Two of 0.2.0's AES-GCM envelopes: still read, and rotated to the new format.
    for item in ("rot-0", "rot-1"):
        su.execute("UPDATE plaid_sync.items SET access_token_encrypted = %s WHERE item_id = %s",
                   (gcm_envelope_of_0_2_0(items[item], item, bytes.fromhex(KEY1_HEX)), item))
    assert su.execute("SELECT plaid_sync.plaid_decrypt_access_token('rot-0')").fetchone()[0] == items["rot-0"]
    try:
        set_keys(cluster, KEY2_B64, KEY1_HEX)
        with cluster.connect(su.info.dbname) as c:
            for item, t in items.items():  # old tokens still decrypt, in both formats
                assert c.execute("SELECT plaid_sync.plaid_decrypt_access_token(%s)", (item,)).fetchone()[0] == t
            assert c.execute("SELECT plaid_sync.plaid_rotate_encryption_key()").fetchone()[0] == 5
            assert c.execute("SELECT plaid_sync.plaid_rotate_encryption_key()").fetchone()[0] == 0
            for item, env in c.execute("SELECT item_id, access_token_encrypted FROM plaid_sync.items"):
                assert pgp_open(c, env, KEY2_B64) == items[item]
        set_keys(cluster, KEY2_B64, None)  # the old key can go now
        with cluster.connect(su.info.dbname) as c:
            for item, t in items.items():
                assert c.execute("SELECT plaid_sync.plaid_decrypt_access_token(%s)", (item,)).fetchone()[0] == t
    finally:
        set_keys(cluster, KEY1_HEX, None)


def test_rotation_with_the_same_key_moves_0_2_0_envelopes(su):
    pgcrypto(su)
    su.execute("SELECT plaid_sync.plaid_notify_item_created('same-key', %s)", (token(11),))
    su.execute("UPDATE plaid_sync.items SET access_token_encrypted = %s WHERE item_id = 'same-key'",
               (gcm_envelope_of_0_2_0(token(11), "same-key", bytes.fromhex(KEY1_HEX)),))
    assert su.execute("SELECT plaid_sync.plaid_rotate_encryption_key()").fetchone()[0] == 1
    env = su.execute("SELECT access_token_encrypted FROM plaid_sync.items WHERE item_id = 'same-key'").fetchone()[0]
    assert pgp_open(su, env, KEY1_HEX) == token(11)


@pytest.mark.parametrize("key,state", [(None, "55000"), ("not-a-key", "22023"), ("abcd" * 15, "22023")])
def test_missing_or_malformed_key_stores_nothing(cluster, su, key, state):
    before = snapshot(su)
    try:
        set_keys(cluster, key, None)
        with cluster.connect(su.info.dbname) as c:
            assert sqlstate_of(c, "SELECT plaid_sync.plaid_notify_item_created('k-item', %s)", (token(5),)) == state
            assert sqlstate_of(c, "SELECT plaid_sync.plaid_rotate_encryption_key()") == state
        assert snapshot(su) == before
    finally:
        set_keys(cluster, KEY1_HEX, None)


def test_pgcrypto_tokens_move_in_with_one_statement(su):
    su.execute("CREATE EXTENSION pgcrypto")
    su.execute("CREATE SCHEMA app")
    su.execute("CREATE TABLE app.plaid_items (item_id text PRIMARY KEY, token bytea NOT NULL)")
    app_key = "app-side-pgcrypto-key"
    tokens = {f"pgc-{i}": token(f"p{i}") for i in range(25)}
    with su.cursor() as cur:
        cur.executemany("INSERT INTO app.plaid_items VALUES (%s, pgp_sym_encrypt(%s, %s))",
                        [(i, t, app_key) for i, t in tokens.items()])
    n = su.execute("""SELECT count(plaid_sync.plaid_notify_item_created(item_id, pgp_sym_decrypt(token, %s)))
                        FROM app.plaid_items""", (app_key,)).fetchone()[0]
    assert n == 25
    got = dict(su.execute("SELECT item_id, plaid_sync.plaid_decrypt_access_token(item_id) FROM plaid_sync.items"))
    assert got == tokens
    assert su.execute("SELECT count(*) FROM plaid_sync.inbox WHERE webhook_code = 'CREATED'").fetchone()[0] == 25


def test_idempotent_item_created(su):
    a = su.execute("SELECT plaid_sync.plaid_notify_item_created('idem', %s)", (token(6),)).fetchone()[0]
    b = su.execute("SELECT plaid_sync.plaid_notify_item_created('idem', %s)", (token(6),)).fetchone()[0]
    assert a == b
    su.execute("SELECT plaid_sync.plaid_notify_item_created('idem', %s)", (token(7),))
    assert su.execute("SELECT count(*) FROM plaid_sync.items").fetchone()[0] == 1
    assert su.execute("SELECT count(*) FROM plaid_sync.inbox").fetchone()[0] == 1
    assert su.execute("SELECT plaid_sync.plaid_decrypt_access_token('idem')").fetchone()[0] == token(7)


def test_concurrent_notices_for_one_item_queue_one_job(cluster, db, su):
    """Notices are folded by a lookup under the Item's row lock, not a unique index: a call
    that waits for another's commit must find that call's row, not queue a second."""
    def race(sql, args):
        first = cluster.connect(db, autocommit=False)
        first.execute(sql, args)  # open transaction: holds the Item's lock
        second = {}

        def run():
            with cluster.connect(db) as c:
                second["id"] = c.execute(sql, args).fetchone()[0]
        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.3)
        assert t.is_alive(), "the second call should wait for the first one's commit"
        mine = first.execute("SELECT max(id) FROM plaid_sync.inbox").fetchone()[0]
        first.commit()
        first.close()
        t.join(10)
        return mine, second["id"]

    # A new Item announced twice at once.
    a, b = race("SELECT plaid_sync.plaid_notify_item_created('race', %s)", (token(1),))
    assert a == b
    # A repeated notice for a known Item.
    a, b = race("SELECT plaid_sync.plaid_request_backfill('race')", ())
    assert a == b
    assert su.execute("SELECT webhook_code, count(*) FROM plaid_sync.inbox GROUP BY 1 ORDER BY 1").fetchall() == [
        ("CREATED", 1), ("HISTORICAL_UPDATE", 1)]
    # Once a worker has taken the queued notice, a repeat queues a new one.
    su.execute("UPDATE plaid_sync.inbox SET status = 'running', attempts = 1 WHERE webhook_code = 'CREATED'")
    c = su.execute("SELECT plaid_sync.plaid_notify_item_created('race', %s)", (token(2),)).fetchone()[0]
    assert c != a
    assert su.execute("SELECT count(*) FROM plaid_sync.inbox WHERE webhook_code = 'CREATED'").fetchone()[0] == 2


def test_application_role_with_only_the_readme_grants(cluster, su, db):
    su.execute("CREATE ROLE app_backend LOGIN")
    su.execute("CREATE ROLE stranger LOGIN")
    su.execute(APP_GRANTS.format(role="app_backend"))
    try:
        with cluster.connect(db, user="stranger") as s:
            assert sqlstate_of(s, "SELECT plaid_sync.plaid_notify_item_created('x', %s)", (token(8),)) == "42501"
            assert sqlstate_of(s, "SELECT plaid_sync.plaid_purge_item('x')") == "42501"
        with cluster.connect(db, user="app_backend") as app:
            app.execute("SELECT plaid_sync.plaid_notify_item_created('app-item', %s, 'user-42')", (token(9),))
            app.execute("SELECT plaid_sync.plaid_notify_item_updated('app-item')")
            app.execute("SELECT plaid_sync.plaid_request_backfill('app-item')")
            app.execute("SELECT plaid_sync.plaid_notify(%s::jsonb)",
                        ('{"webhook_type":"ITEM","webhook_code":"CREATED","item_id":"app-item2","access_token":"%s"}' % token(10),))
            app.execute("SELECT plaid_sync.plaid_receive_webhook(%s, NULL)",
                        ('{"webhook_type":"TRANSACTIONS","webhook_code":"DEFAULT_UPDATE","item_id":"app-item"}',))
            app.execute("SELECT plaid_sync.plaid_update_item_webhook('app-item', 'https://example.com/hook')")
            assert app.execute("SELECT plaid_sync.plaid_retry_failed()").fetchone()[0] == 0
            assert app.execute("SELECT plaid_sync.plaid_rotate_encryption_key()").fetchone()[0] == 0
            app.execute("SELECT plaid_sync.plaid_remove_item('app-item2')")
            assert app.execute("SELECT count(*) FROM plaid_sync.items").fetchone()[0] == 2
            assert app.execute("SELECT status FROM plaid_sync.item_health WHERE item_id = 'app-item2'").fetchone()[0] == "removed"
            app.execute("SELECT plaid_sync.plaid_purge_item('app-item2')")
            assert app.execute("SELECT purged_at IS NOT NULL FROM plaid_sync.item_health "
                               "WHERE item_id = 'app-item2'").fetchone()[0]
            # Reading the tables is allowed; writing them directly and decrypting are not.
            assert sqlstate_of(app, "DELETE FROM plaid_sync.items") == "42501"
            assert sqlstate_of(app, "SELECT plaid_sync.plaid_decrypt_access_token('app-item')") == "42501"
    finally:
        su.execute("DROP OWNED BY app_backend")
        su.execute("DROP ROLE app_backend")
        su.execute("DROP ROLE stranger")


def test_superuser_check_sees_the_caller_not_the_definer(cluster, su, db):
    """plaid_decrypt_access_token is SECURITY DEFINER, yet must refuse a non-superuser even
    when it has been granted EXECUTE."""
    su.execute("CREATE ROLE granted LOGIN")
    su.execute("GRANT USAGE ON SCHEMA plaid_sync TO granted")
    su.execute("GRANT EXECUTE ON FUNCTION plaid_sync.plaid_decrypt_access_token(text) TO granted")
    su.execute("SELECT plaid_sync.plaid_notify_item_created('dec-item', %s)", (token(11),))
    try:
        with cluster.connect(db, user="granted") as g:
            assert sqlstate_of(g, "SELECT plaid_sync.plaid_decrypt_access_token('dec-item')") == "42501"
    finally:
        su.execute("DROP OWNED BY granted")
        su.execute("DROP ROLE granted")


BIG = "x" * (10 * 1024 * 1024)
WEBHOOK = '{"webhook_type":"TRANSACTIONS","webhook_code":"SYNC_UPDATES_AVAILABLE","item_id":"%s"}'

BAD_CALLS = [
    # plaid_notify_item_created
    ("SELECT plaid_sync.plaid_notify_item_created(NULL, %s)", lambda: (token(20),), "22023"),
    ("SELECT plaid_sync.plaid_notify_item_created('', %s)", lambda: (token(20),), "22023"),
    ("SELECT plaid_sync.plaid_notify_item_created('   ', %s)", lambda: (token(20),), "22023"),
    ("SELECT plaid_sync.plaid_notify_item_created(%s, %s)", lambda: (BIG, token(20)), "22023"),
    ("SELECT plaid_sync.plaid_notify_item_created(%s, %s)", lambda: ("x'); DROP TABLE plaid_sync.items; --", token(20)), "22023"),
    ("SELECT plaid_sync.plaid_notify_item_created(%s, %s)", lambda: ("item\x01ctl", token(20)), "22023"),
    ("SELECT plaid_sync.plaid_notify_item_created(%s, %s)", lambda: ("item\nline", token(20)), "22023"),
    ("SELECT plaid_sync.plaid_notify_item_created('ok-item', NULL)", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_notify_item_created('ok-item', '')", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_notify_item_created('ok-item', ' ')", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_notify_item_created('ok-item', 'access-production-5e2a9c1d-0000')", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_notify_item_created('ok-item', 'public-sandbox-5e2a9c1d')", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_notify_item_created('ok-item', %s)", lambda: ("access-sandbox-" + BIG,), "22023"),
    ("SELECT plaid_sync.plaid_notify_item_created('ok-item', %s, %s)", lambda: (token(20), "user\x07"), "22023"),
    ("SELECT plaid_sync.plaid_notify_item_created('ok-item', %s, %s)", lambda: (token(20), BIG), "22023"),
    # plaid_notify_item_updated / plaid_request_backfill
    ("SELECT plaid_sync.plaid_notify_item_updated(NULL)", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_notify_item_updated('no-such-item')", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_notify_item_updated('known', 'access-production-1')", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_request_backfill(NULL)", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_request_backfill('no-such-item')", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_request_backfill(%s)", lambda: ("known; SELECT 1",), "22023"),
    # plaid_receive_webhook
    ("SELECT plaid_sync.plaid_receive_webhook(NULL)", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_receive_webhook('')", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_receive_webhook('  ')", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_receive_webhook('{not json')", lambda: (), "22P02"),
    ("SELECT plaid_sync.plaid_receive_webhook('[1, 2]')", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_receive_webhook('\"just a string\"')", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_receive_webhook(%s)", lambda: ('{"webhook_type":"TRANSACTIONS","webhook_code":"X","pad":"' + BIG + '"}',), "22023"),
    ("SELECT plaid_sync.plaid_receive_webhook(%s)", lambda: ('{"webhook_type":"ITEM","webhook_code":"CREATED","item_id":"known"}',), "22023"),
    ("SELECT plaid_sync.plaid_receive_webhook(%s)", lambda: ('{"webhook_type":"ITEM","webhook_code":"UPDATED","item_id":"known"}',), "22023"),
    ("SELECT plaid_sync.plaid_receive_webhook(%s)", lambda: ('{"webhook_type":"TRANSACTIONS","webhook_code":"SYNC_UPDATES_AVAILABLE","item_id":"known","access_token":"%s"}' % token(21),), "22023"),
    ("SELECT plaid_sync.plaid_receive_webhook(%s)", lambda: ('{"webhook_type":"TRANSACTIONS","item_id":"known"}',), "22023"),
    ("SELECT plaid_sync.plaid_receive_webhook(%s)", lambda: (WEBHOOK % "x' OR '1'='1",), "22023"),
    ("SELECT plaid_sync.plaid_receive_webhook(%s)", lambda: ('{"webhook_type":"TRANS ACTIONS","webhook_code":"X"}',), "22023"),
    ("SELECT plaid_sync.plaid_receive_webhook(%s, %s)", lambda: (WEBHOOK % "known", BIG), "22023"),
    # plaid_notify
    ("SELECT plaid_sync.plaid_notify(NULL)", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_notify('{bad json'::jsonb)", lambda: (), "22P02"),
    ("SELECT plaid_sync.plaid_notify('[]'::jsonb)", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_notify('42'::jsonb)", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_notify('{\"webhook_type\":\"FOO\",\"webhook_code\":\"BAR\",\"item_id\":\"known\"}')", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_notify('{\"webhook_type\":\"TRANSACTIONS\",\"webhook_code\":\"SYNC_UPDATES_AVAILABLE\",\"item_id\":\"known\"}')", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_notify('{\"webhook_type\":\"ITEM\",\"webhook_code\":\"CREATED\",\"item_id\":\"new-one\"}')", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_notify('{\"webhook_type\":\"ITEM\",\"webhook_code\":\"CREATED\",\"item_id\":\"new-one\",\"access_token\":42}')", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_notify('{\"webhook_type\":\"ITEM\",\"webhook_code\":\"CREATED\",\"access_token\":\"access-sandbox-1\"}')", lambda: (), "22023"),
    # remove / webhook update / queue
    ("SELECT plaid_sync.plaid_remove_item(NULL)", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_remove_item('no-such-item')", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_remove_item('known', NULL)", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_update_item_webhook('known', NULL)", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_update_item_webhook('known', 'ftp://example.com/hook')", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_update_item_webhook('known', 'https://exa mple.com/')", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_update_item_webhook('no-such-item', 'https://example.com/')", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_process_inbox(0)", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_process_inbox(-5)", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_process_inbox(NULL)", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_process_inbox(1000000)", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_retry_failed('bad id!')", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_decrypt_access_token('no-such-item')", lambda: (), "22023"),
    ("SELECT plaid_sync.plaid_decrypt_access_token(NULL)", lambda: (), "22023"),
]


def test_bad_input_changes_nothing(su):
    assert len(BAD_CALLS) >= 30
    su.execute("SELECT plaid_sync.plaid_notify_item_created('known', %s)", (token(22),))
    before = snapshot(su)
    failures = []
    for sql, params, want in BAD_CALLS:
        got = sqlstate_of(su, sql, params())
        if got != want:
            failures.append(f"{sql[:90]!r}: SQLSTATE {got}, want {want}")
        if snapshot(su) != before:
            failures.append(f"{sql[:90]!r}: changed a plaid_sync table")
            before = snapshot(su)
    assert not failures, "\n".join(failures)


def test_errors_name_no_secret(su):
    """Error text never repeats the token or the key."""
    t = "access-production-9d1c0b7e-5ec2-4d0a-b6c1-2f3e4d5c6b7a"
    try:
        su.execute("SELECT plaid_sync.plaid_notify_item_created('e-item', %s)", (t,))
    except psycopg.Error as e:
        text = f"{e} {e.diag.message_detail} {e.diag.message_hint} {e.diag.context}"
        assert "9d1c0b7e" not in text
    else:
        pytest.fail("a production token on a sandbox server must be refused")


def test_the_core_has_no_postgres_in_it():
    """src/plaid and src/crypto.rs are plain Rust, unit-tested without a server."""
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[2] / "src"
    files = list((root / "plaid").glob("*.rs")) + [root / "crypto.rs", root / "validate.rs", root / "error.rs"]
    for f in files:
        text = f.read_text()
        assert "use pgrx" not in text and "pgrx::" not in text, f


README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def readme_section(title):
    text = open(README, encoding="utf-8").read()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def test_readme_lists_every_setting_and_function(su):
    """The README's GUC table and SQL reference are in step with what the extension defines."""
    documented = set(re.findall(r"^\| `(plaid_sync\.[a-z_]+)` \|", readme_section("Settings (GUCs)"), re.M))
    # pg_settings leaves the secrets out (NO_SHOW_ALL); the README names them all.
    defined = {r[0] for r in su.execute("SELECT name FROM pg_settings WHERE name LIKE 'plaid_sync.%'")}
    hidden = {"plaid_sync.secret", "plaid_sync.encryption_key", "plaid_sync.previous_encryption_keys", "plaid_sync.http_secret",
              "plaid_sync.notify_secret"}
    assert defined | hidden == documented
    reference = readme_section("SQL reference")
    functions = {r[0] for r in su.execute(
        "SELECT proname FROM pg_proc WHERE pronamespace = 'plaid_sync'::regnamespace")}
    missing = {f for f in functions if f"`{f}(" not in reference}
    assert not missing, f"functions the README's SQL reference does not describe: {missing}"
