"""Upgrades in place, on PostgreSQL 15: each recorded release (RELEASES, built from its commit
by scripts/build-release) is installed and filled with real data through the API; then this
tree's build is installed, the server restarted and ALTER EXTENSION plaid_sync UPDATE run
(from 0.1.0 that runs every upgrade script in turn: 0.1.0 -> 0.2.0 -> this version).

The upgraded database must equal a fresh install object by object, keep every row, decrypt
its tokens and keep syncing, and so must a pg_dump/pg_restore of it. While the library is
new and the SQL old, workers wait with one WARNING and entry points work or name the fix."""

import glob
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "emulator"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import check_release  # noqa: E402
import plaid_emulator  # noqa: E402
from harness import PG_BIN, Cluster, free_port, post_json  # noqa: E402

LIB = "/usr/lib/postgresql/15/lib"
EXT = "/usr/share/postgresql/15/extension"
# It swaps the system server's plaid_sync files: scripts/test runs it as root or through sudo.
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: it swaps the system PostgreSQL 15's plaid_sync files")
KEY = "5ee1d0c0ffee00112233445566778899aabbccddeeff00112233445566778899"
SECRET = "upgrade-test-secret-77a1"
RELEASES = [v for v, _ in check_release.releases(ROOT)]
LAST = RELEASES[-1]
NEW = check_release.crate_version(ROOT)
WORK = os.environ.get("PLAID_SYNC_TEST_DIR", "/var/tmp/plaid_sync_test")


def pkg(version):
    return os.path.join(ROOT, "target", "releases", version, "pkg")


def built(version):
    return os.path.exists(os.path.join(pkg(version), LIB.lstrip("/"), "plaid_sync.so"))


def each_release():
    """Every recorded release, skipped (and said so) when scripts/build-release has not built it."""
    return [pytest.param(v, marks=pytest.mark.skipif(not built(v), reason=f"scripts/build-release {v} has not run"))
            for v in RELEASES]


def installed_files():
    return [os.path.join(LIB, "plaid_sync.so"), os.path.join(EXT, "plaid_sync.control")] + \
        glob.glob(os.path.join(EXT, "plaid_sync--*.sql"))


class Builds:
    """Switches the server's plaid_sync files between the release and this tree's build."""

    def __init__(self, tmp):
        self.new = os.path.join(tmp, "new")
        os.makedirs(self.new)
        for f in installed_files():
            shutil.copy2(f, self.new)

    def use(self, which):
        """"new" (this tree's build) or a release's version."""
        for f in installed_files():
            os.remove(f)
        if which != "new":
            for f in glob.glob(os.path.join(pkg(which), EXT.lstrip("/"), "*")):
                shutil.copy2(f, EXT)
            shutil.copy2(os.path.join(pkg(which), LIB.lstrip("/"), "plaid_sync.so"), LIB)
        else:
            for f in os.listdir(self.new):
                shutil.copy2(os.path.join(self.new, f), LIB if f.endswith(".so") else EXT)


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    b = Builds(str(tmp_path_factory.mktemp("builds")))
    yield b
    b.use("new")


@pytest.fixture(scope="module")
def emulator():
    port = free_port()
    server = plaid_emulator.serve(port, client_id="upgrade-client", secret=SECRET)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{port}"

    def call(what, **body):
        return post_json(f"{url}/_emulator/{what}", body)[1]
    call.url = url
    yield call
    server.shutdown()


def cluster(name, emulator, **settings):
    return Cluster(os.path.join(WORK, name), {
        "plaid_sync.encryption_key": f"'{KEY}'", "plaid_sync.client_id": "'upgrade-client'",
        "plaid_sync.secret": f"'{SECRET}'", "plaid_sync.api_url": f"'{emulator.url}'",
        "plaid_sync.retry_base_delay": "'10ms'", "plaid_sync.retry_max_delay": "'20ms'",
        "plaid_sync.max_attempts": 2, **settings}).init()


def drain(conn):
    for _ in range(200):
        if conn.execute("SELECT plaid_sync.plaid_process_inbox(100)").fetchone()[0] == 0 and \
                conn.execute("SELECT count(*) FROM plaid_sync.inbox WHERE status = 'pending'").fetchone()[0] == 0:
            return
        time.sleep(0.03)


def webhook(emulator, conn, item_id):
    w = emulator("webhook", item_id=item_id)
    conn.execute("SELECT plaid_sync.plaid_receive_webhook(%s, %s)", (w["body"], w["plaid_verification"]))


# ---- what is compared ----

CATALOG = {
    "relations": """SELECT c.relname, c.relkind, c.relpersistence, c.reloptions::text, c.relacl::text
                      FROM pg_class c WHERE c.relnamespace = 'plaid_sync'::regnamespace""",
    "columns": """SELECT c.relname, row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum), a.attname,
                         format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
                         a.attidentity, a.attgenerated, a.attstorage, a.attacl::text
                    FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
                    LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
                   WHERE c.relnamespace = 'plaid_sync'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped""",
    "constraints": """SELECT coalesce(conrelid::regclass::text, contypid::regtype::text), conname, contype,
                             pg_get_constraintdef(oid) FROM pg_constraint
                       WHERE connamespace = 'plaid_sync'::regnamespace""",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'plaid_sync'",
    "views": "SELECT viewname, definition FROM pg_views WHERE schemaname = 'plaid_sync'",
    "triggers": """SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger
                    WHERE NOT tgisinternal AND tgrelid IN (SELECT oid FROM pg_class
                                                            WHERE relnamespace = 'plaid_sync'::regnamespace)""",
    "functions": """SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_function_result(p.oid),
                           p.prosrc, p.probin, p.prosecdef, p.proconfig::text, p.proacl::text, p.provolatile,
                           p.proparallel, p.proisstrict, p.prokind, p.procost, p.prorows, l.lanname
                      FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
                     WHERE p.pronamespace = 'plaid_sync'::regnamespace""",
    "types": """SELECT t.typname, t.typtype, format_type(t.typbasetype, t.typtypmod), t.typacl::text FROM pg_type t
                 WHERE t.typnamespace = 'plaid_sync'::regnamespace AND t.typtype = 'd'""",
    "sequences": """SELECT seqrelid::regclass::text, format_type(seqtypid, NULL), seqstart, seqincrement, seqmax,
                           seqmin, seqcache, seqcycle FROM pg_sequence
                     WHERE seqrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'plaid_sync'::regnamespace)""",
    "schema": "SELECT nspname, nspacl::text FROM pg_namespace WHERE nspname = 'plaid_sync'",
    "members": """SELECT pg_describe_object(d.classid, d.objid, d.objsubid) FROM pg_depend d
                   WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
                     AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'plaid_sync')""",
    "config_dump": """SELECT extversion, (SELECT array_agg(c::regclass::text ORDER BY o) FROM
                             unnest(extconfig) WITH ORDINALITY x(c, o)), extcondition
                        FROM pg_extension WHERE extname = 'plaid_sync'""",
}


def catalog(conn):
    return {k: sorted(tuple(str(v) for v in r) for r in conn.execute(q)) for k, q in CATALOG.items()}


def shape(conn):
    """The release's tables (by name) and their columns, read before the upgrade."""
    return {t: set(cols) for t, cols in conn.execute(
        """SELECT c.relname, array_agg(a.attname::text) FROM pg_class c
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE c.relnamespace = 'plaid_sync'::regnamespace AND c.relkind = 'r' GROUP BY c.relname""")}


def rows(conn, tables):
    """Every row of the release's tables (a table it had may be a view now), with the columns
    it had, in a stable order."""
    out = {}
    for t, cols in sorted(tables.items()):
        got = [{k: v for k, v in r[0].items() if k in cols}
               for r in conn.execute(f"SELECT to_jsonb(t) FROM plaid_sync.{t} t")]
        out[t] = sorted(got, key=lambda r: json.dumps(r, sort_keys=True))
    return out


def tokens(conn):
    return dict(conn.execute("SELECT item_id, plaid_sync.plaid_decrypt_access_token(item_id) FROM plaid_sync.items "
                             "WHERE access_token_encrypted IS NOT NULL ORDER BY 1").fetchall())


def fill(emulator, conn):
    """Data of every kind, made through the API of the release. Returns {item_id: token}."""
    items = emulator("items", count=4, days=40, per_day=3)["items"]
    for it in items:
        conn.execute("SELECT plaid_sync.plaid_notify_item_created(%s, %s, 'user-1')", (it["item_id"], it["access_token"]))
    drain(conn)
    a, b, c, d = (it["item_id"] for it in items)
    # Balances change: a second snapshot. Removed transactions, and pending -> posted.
    acct = emulator("state", item_id=a)["accounts"][0]
    emulator("modify_account", item_id=a, account_id=acct["account_id"],
             changes={"balances": dict(acct["balances"], current=1234.56)})
    conn.execute("SELECT plaid_sync.plaid_notify_item_updated(%s)", (a,))
    txns = emulator("state", item_id=a)["transactions"]
    gone = sorted(txns)[0]
    emulator("remove_transaction", item_id=a, transaction_id=gone)
    pending = next(t for t, v in txns.items() if v["pending"] and t != gone)
    emulator("post_pending", item_id=a, transaction_id=pending)
    webhook(emulator, conn, a)
    drain(conn)
    # A job that fails for good: Plaid errors past max_attempts.
    emulator("fault", endpoint="/transactions/sync", kind="http500", times=20)
    webhook(emulator, conn, c)
    drain(conn)
    emulator("clear_faults")
    conn.execute("SELECT plaid_sync.plaid_remove_item(%s)", (d,))
    drain(conn)
    counts = conn.execute("""SELECT (SELECT count(*) FROM plaid_sync.inbox WHERE status = 'failed'),
                                    (SELECT count(*) FROM plaid_sync.inbox WHERE status = 'done'),
                                    (SELECT count(*) FROM plaid_sync.transactions WHERE removed_at IS NOT NULL),
                                    (SELECT count(*) FROM plaid_sync.transactions WHERE pending_transaction_id IS NOT NULL),
                                    (SELECT count(*) FROM plaid_sync.balance_snapshots WHERE item_id = %s),
                                    (SELECT count(*) FROM plaid_sync.sync_runs)""", (a,)).fetchone()
    assert counts[0] == 1 and counts[1] >= 5 and counts[2] >= 1 and counts[3] >= 1 and counts[4] >= 4 and counts[5] >= 6, counts
    return {it["item_id"]: it["access_token"] for it in items[:3]}, a, c


def keeps_syncing(emulator, conn, a, c):
    """(d): a sync from the stored cursor brings new rows; the failed job can be retried."""
    cursor = conn.execute("SELECT transactions_cursor FROM plaid_sync.items WHERE item_id = %s", (a,)).fetchone()[0]
    before = conn.execute("SELECT count(*) FROM plaid_sync.transactions WHERE item_id = %s", (a,)).fetchone()[0]
    n_requests = len(emulator("requests")["requests"])
    emulator("advance", item_id=a, days=2, per_day=3)
    webhook(emulator, conn, a)
    drain(conn)
    after = conn.execute("SELECT count(*) FROM plaid_sync.transactions WHERE item_id = %s", (a,)).fetchone()[0]
    assert after > before
    syncs = [r for r in emulator("requests")["requests"][n_requests:] if r["path"] == "/transactions/sync"]
    assert syncs and syncs[0]["cursor"] == cursor  # from the stored cursor, not from scratch
    assert conn.execute("SELECT plaid_sync.plaid_retry_failed()").fetchone()[0] == 1
    drain(conn)
    assert conn.execute("SELECT count(*) FROM plaid_sync.inbox WHERE status = 'failed'").fetchone()[0] == 0
    assert conn.execute("SELECT status FROM plaid_sync.items WHERE item_id = %s", (c,)).fetchone()[0] == "healthy"


@pytest.mark.parametrize("old", each_release())
def test_the_recorded_release_schema_is_what_its_commit_generates(old):
    generated = open(os.path.join(pkg(old), EXT.lstrip("/"), f"plaid_sync--{old}.sql")).read()
    kept = open(os.path.join(ROOT, "sql", "released", f"plaid_sync--{old}.sql")).read()
    assert check_release.normalized(generated) == check_release.normalized(kept)


@pytest.mark.parametrize("old", each_release())
def test_upgrade_keeps_everything_and_equals_a_fresh_install(builds, emulator, old):
    builds.use(old)
    c = cluster("upgrade", emulator, **{"plaid_sync.workers": 0})
    c.start()
    try:
        c.create_database("app")
        with c.connect("app") as conn:
            assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'plaid_sync'").fetchone()[0] == old
            toks, a, failed_item = fill(emulator, conn)
            tables = shape(conn)
            before = rows(conn, tables)
        c.stop()
        builds.use("new")
        c.start()
        with c.connect("app") as conn:
            conn.execute("ALTER EXTENSION plaid_sync UPDATE")
            assert conn.execute("SELECT extversion, plaid_sync.version() FROM pg_extension "
                                "WHERE extname = 'plaid_sync'").fetchone() == (NEW, NEW)
            # 0.3.0's resync scan reads synced_on: every synced Item has it, from its last sync.
            assert conn.execute("SELECT count(*) FILTER (WHERE last_synced_at IS NOT NULL), "
                                "count(*) FILTER (WHERE synced_on = (last_synced_at AT TIME ZONE 'UTC')::date) "
                                "FROM plaid_sync.items").fetchone()[0] > 0
            assert conn.execute("SELECT count(*) FROM plaid_sync.items WHERE last_synced_at IS NOT NULL "
                                "AND synced_on IS DISTINCT FROM (last_synced_at AT TIME ZONE 'UTC')::date").fetchone()[0] == 0
            if old == "0.1.0":
                # 0.2.0 added item_products: each synced Item's come from its last /item/get.
                listed = conn.execute("SELECT count(*) FROM plaid_sync.items WHERE status <> 'removed' "
                                      "AND data -> 'products' ? 'transactions'").fetchone()[0]
                assert listed > 0
                assert conn.execute("SELECT count(*) FROM plaid_sync.item_products WHERE product = 'transactions' "
                                    "AND state = 'pending'").fetchone()[0] == listed
        dump = os.path.join(c.root, "app.dump")
        c.run([f"{PG_BIN}/pg_dump", "-h", c.sock, "-p", str(c.port), "-U", "postgres", "-Fc", "-f", dump, "app"])
        c.create_database("fresh")
        c.create_database("restored", extension=False)
        r = c.run([f"{PG_BIN}/pg_restore", "-h", c.sock, "-p", str(c.port), "-U", "postgres", "-d", "restored",
                   "--exit-on-error", dump], check=False)
        assert r.returncode == 0, r.stderr
        with c.connect("fresh") as fresh:
            want = catalog(fresh)
        for db in ("app", "restored"):
            with c.connect(db) as conn:
                got = catalog(conn)
                for part in CATALOG:
                    assert got[part] == want[part], (db, part)           # (a)
                assert rows(conn, tables) == before, db                  # (b)
                assert tokens(conn) == toks, db                          # (c)
        for db in ("app", "restored"):
            with c.connect(db) as conn:
                keeps_syncing(emulator, conn, a, failed_item)            # (d), (e)
    finally:
        c.stop()


@pytest.mark.skipif(not built(LAST), reason=f"scripts/build-release {LAST} has not run")
def test_version_skew_workers_wait_and_resume_after_update(builds, emulator):
    builds.use(LAST)
    c = cluster("skew", emulator, **{"plaid_sync.workers": 1, "plaid_sync.database": "'app'",
                                     "plaid_sync.poll_interval": "'300ms'"})
    c.start()
    try:
        c.create_database("app")
        item, second = emulator("items", count=2, days=10)["items"]
        with c.connect("app") as conn:
            conn.execute("SELECT plaid_sync.plaid_notify_item_created(%s, %s)", (item["item_id"], item["access_token"]))
            deadline = time.time() + 30
            while conn.execute("SELECT status FROM plaid_sync.items").fetchone()[0] != "healthy":
                assert time.time() < deadline, c.log_tail()
                time.sleep(0.1)
        c.stop()
        builds.use("new")
        # The new library's HTTP listener too (a setting the old library does not have).
        http_port = free_port()
        c.settings.update({"plaid_sync.http_listen": f"'127.0.0.1:{http_port}'",
                           "plaid_sync.http_secret": "'upgrade-http-secret'"})
        c.write_conf()
        c.start()
        with c.connect("app") as conn:
            deadline = time.time() + 20
            while "ALTER EXTENSION plaid_sync UPDATE" not in c.log_text():
                assert time.time() < deadline, c.log_tail()
                time.sleep(0.1)
            pid = conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'plaid_sync worker'").fetchone()[0]
            # Every entry point either works or names the fix.
            w = emulator("webhook", item_id=item["item_id"])
            calls = [
                ("SELECT plaid_sync.plaid_notify_item_created(%s, %s)", (second["item_id"], second["access_token"])),
                ("SELECT plaid_sync.plaid_receive_webhook(%s, %s)", (w["body"], w["plaid_verification"])),
                ("SELECT plaid_sync.plaid_notify_item_updated(%s)", (item["item_id"],)),
                ("SELECT plaid_sync.plaid_request_backfill(%s)", (item["item_id"],)),
                ("SELECT plaid_sync.plaid_notify(%s::jsonb)", (json.dumps({"webhook_type": "ITEM", "webhook_code": "UPDATED",
                                                                            "item_id": item["item_id"]}),)),
                ("SELECT plaid_sync.plaid_update_item_webhook(%s, 'https://example.com/hook')", (item["item_id"],)),
                ("SELECT plaid_sync.plaid_retry_failed()", ()),
                ("SELECT plaid_sync.plaid_rotate_encryption_key()", ()),
                ("SELECT plaid_sync.plaid_decrypt_access_token(%s) IS NOT NULL", (item["item_id"],)),
                ("SELECT plaid_sync.plaid_process_inbox(10)", ()),
            ]
            import psycopg
            for sql, args in calls:
                try:
                    conn.execute(sql, args)
                except psycopg.Error as e:
                    assert "ALTER EXTENSION plaid_sync UPDATE" in str(e), (sql, str(e))
            with pytest.raises(psycopg.Error, match="ALTER EXTENSION plaid_sync UPDATE"):
                conn.execute("SELECT plaid_sync.plaid_process_inbox(10)")
            # A notice through the listener meanwhile: 503, so the backend retries, naming the fix.
            import http.client
            notice = json.dumps({"webhook_type": "ITEM", "webhook_code": "UPDATED", "item_id": item["item_id"]})
            deadline = time.time() + 20
            while True:
                try:
                    h = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
                    h.request("POST", "/", body=notice, headers={"Plaid-Sync-Secret": "upgrade-http-secret"})
                    r = h.getresponse()
                    break
                except OSError:
                    assert time.time() < deadline, c.log_tail()
                    time.sleep(0.1)
            assert r.status == 503 and "ALTER EXTENSION plaid_sync UPDATE" in r.read().decode()
            time.sleep(2)  # several polls: nothing runs (the webhook, at least, was queued)
            assert conn.execute("SELECT count(*) FROM plaid_sync.inbox WHERE status = 'pending' AND attempts = 0").fetchone()[0] >= 1
            assert c.log_text().count("ALTER EXTENSION plaid_sync UPDATE in that database; the workers run no jobs") == 1

            conn.execute("ALTER EXTENSION plaid_sync UPDATE")
            conn.execute("SELECT plaid_sync.plaid_notify_item_created(%s, %s)", (second["item_id"], second["access_token"]))
            deadline = time.time() + 30
            while conn.execute("SELECT count(*) FROM plaid_sync.inbox WHERE status IN ('pending', 'running')").fetchone()[0]:
                assert time.time() < deadline, c.log_tail()
                time.sleep(0.1)
            assert conn.execute("SELECT status FROM plaid_sync.items WHERE item_id = %s", (second["item_id"],)).fetchone()[0] == "healthy"
            assert conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'plaid_sync worker'").fetchone()[0] == pid
            assert "the workers run jobs again" in c.log_text()
    finally:
        c.stop()


@pytest.mark.skipif(not built(LAST), reason=f"scripts/build-release {LAST} has not run")
def test_upgrade_to_0_3_0_unpauses_errors_the_user_need_not_fix_and_keeps_transactions(builds, emulator):
    """0.3.0 gates Transactions by item_products and no longer pauses an Item on an ITEM: ERROR
    the user need not fix: the upgrade gives every Item that synced its transactions row, and
    puts Items 0.2.0 paused that way back to syncing (one the user must fix stays paused)."""
    builds.use(LAST)
    c = cluster("upgrade_consent", emulator, **{"plaid_sync.workers": 0})
    c.start()
    try:
        c.create_database("app")
        with c.connect("app") as conn:
            items = emulator("items", count=3, days=5, per_day=1)["items"]
            for it in items:
                conn.execute("SELECT plaid_sync.plaid_notify_item_created(%s, %s)", (it["item_id"], it["access_token"]))
            drain(conn)
            down, no_accounts, old = (it["item_id"] for it in items)
            conn.execute("""UPDATE plaid_sync.items SET status = 'error', error = '{"error_code": "INSTITUTION_DOWN"}'
                             WHERE item_id = %s""", (down,))
            conn.execute("""UPDATE plaid_sync.items SET status = 'error', error = '{"error_code": "NO_ACCOUNTS"}'
                             WHERE item_id = %s""", (no_accounts,))
            # An Item announced before item_products existed, never re-read since.
            conn.execute("DELETE FROM plaid_sync.item_products WHERE item_id = %s", (old,))
        c.stop()
        builds.use("new")
        c.start()
        with c.connect("app") as conn:
            conn.execute("ALTER EXTENSION plaid_sync UPDATE")
            status = dict(conn.execute("SELECT item_id, status FROM plaid_sync.items").fetchall())
            assert status == {down: "healthy", no_accounts: "error", old: "healthy"}
            assert conn.execute("SELECT state FROM plaid_sync.item_products WHERE item_id = %s "
                                "AND product = 'transactions'", (old,)).fetchone() == ("ok",)
            before = conn.execute("SELECT count(*) FROM plaid_sync.transactions WHERE item_id = %s", (old,)).fetchone()[0]
            emulator("advance", item_id=old, days=1, per_day=2)
            webhook(emulator, conn, old)
            drain(conn)
            assert conn.execute("SELECT count(*) FROM plaid_sync.transactions WHERE item_id = %s",
                                (old,)).fetchone()[0] > before
    finally:
        c.stop()
