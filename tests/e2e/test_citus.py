"""plaid_sync on a Citus cluster (README, "Beyond one server"): a coordinator where plaid_sync
is preloaded and its workers run, and two Citus workers that hold the shards. Every test ends
with the mirror equal to the emulator and no row in the coordinator's shell tables.

Skipped when Citus is not installed for this PostgreSQL (scripts/setup builds it for the
majors the test command runs it on)."""

import os
import signal
import subprocess
import time

import psycopg
import pytest

from conftest import USED_SECRETS, make_cluster, until
from harness import PG_BIN, Cluster
from test_products import listen, received, settings
from test_sync import assert_matches_emulator

DB = "plaid"
PKGLIB = subprocess.run([f"{PG_BIN}/pg_config", "--pkglibdir"], capture_output=True, text=True).stdout.strip()
pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(PKGLIB, "citus.so")),
                                reason=f"Citus is not installed in {PKGLIB}")

CITUS = {
    "max_prepared_transactions": 50,
    "citus.shard_count": 8,
    # Citus's usage reports would try the network.
    "citus.enable_statistics_collection": "off",
}


@pytest.fixture(scope="module")
def citus(emulator):
    root = os.environ.get("PLAID_SYNC_TEST_DIR", "/var/tmp/plaid_sync_test")
    nodes = [Cluster(os.path.join(root, f"citus_w{i}"), {"shared_preload_libraries": "'citus'", **CITUS}).init()
             for i in (1, 2)]
    coord = make_cluster("citus_coord", emulator, **{
        "shared_preload_libraries": "'citus,plaid_sync'",
        "plaid_sync.database": f"'{DB}'",
        "plaid_sync.workers": 2,
        "plaid_sync.retry_base_delay": "'10ms'",
        "plaid_sync.retry_max_delay": "'50ms'",
        "plaid_sync.max_attempts": 6,
        **CITUS,
    })
    for n in nodes + [coord]:
        n.start()
    for n in nodes:
        n.create_database(DB, extension=False)
        with n.connect(DB) as c:
            c.execute("CREATE EXTENSION citus")
    coord.create_database(DB, extension=False)
    with coord.connect(DB) as c:
        c.execute("CREATE EXTENSION citus")
        c.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)", (coord.port,))
        for n in nodes:
            c.execute("SELECT citus_add_node('127.0.0.1', %s)", (n.port,))
    coord.nodes = nodes
    yield coord
    for n in [coord] + nodes:
        n.stop()


@pytest.fixture
def conn(citus):
    """The coordinator's database with plaid_sync created anew and distributed."""
    with citus.connect(DB) as c:
        if c.execute("SELECT count(*) FROM pg_extension WHERE extname = 'plaid_sync'").fetchone()[0]:
            until(lambda: c.execute("SELECT count(*) = 0 FROM plaid_sync.inbox WHERE status = 'running'").fetchone()[0],
                  timeout=60, what="the last test's jobs")
            drop_distributed(c)
        c.execute("CREATE EXTENSION plaid_sync")
        c.execute("SELECT plaid_sync.distribute()")
        yield c
    with citus.connect(DB) as c:   # a new session: a test may have restarted the coordinator
        bugs = c.execute("SELECT id, webhook_type, webhook_code, last_error FROM plaid_sync.inbox "
                         "WHERE last_error LIKE 'internal error%%'").fetchall()
        assert not bugs


def drop_distributed(c):
    """DROP EXTENSION alone leaves the shards on the Citus workers: the placed tables are taken
    out of the extension first, and dropped through Citus after it (README, "Beyond one server")."""
    placed = [t for (t,) in c.execute("SELECT name::text FROM plaid_sync.distributed_tables() "
                                      "WHERE name IN (SELECT logicalrelid FROM pg_dist_partition)").fetchall()]
    for t in placed:
        c.execute(f"ALTER EXTENSION plaid_sync DROP TABLE {t}")
    c.execute("DROP EXTENSION plaid_sync CASCADE")
    for t in placed[::-1]:
        c.execute(f"DROP TABLE IF EXISTS {t} CASCADE")


def new_item(emulator, **kw):
    item = emulator("items", count=1, **kw)["items"][0]
    USED_SECRETS.add(item["access_token"])
    return item


def node_of(conn, item_id):
    """The port of the Citus worker that holds the Item's shard."""
    return conn.execute("SELECT n.nodeport FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid) "
                        "WHERE p.shardid = get_shard_id_for_distribution_column('plaid_sync.items', %s::text)",
                        (item_id,)).fetchone()[0]


def new_items(emulator, conn, n, **kw):
    """n new Items, at least one on each Citus worker: ids are random, and a few Items can all
    hash to one worker (3 Items do, one time in four)."""
    items = [new_item(emulator, **kw) for _ in range(n)]
    while len({node_of(conn, it["item_id"]) for it in items}) < 2:
        items[-1] = new_item(emulator, **kw)
    return items


def announce(conn, item):
    conn.execute("SELECT plaid_sync.plaid_notify_item_created(%s, %s)", (item["item_id"], item["access_token"]))


def idle(conn):
    return conn.execute("SELECT count(*) = 0 FROM plaid_sync.inbox WHERE status IN ('pending', 'running')").fetchone()[0]


def settle(conn, timeout=60):
    until(lambda: idle(conn), timeout=timeout, what="the workers to finish every job")


def shard_rows(citus, table):
    """Rows of `table` on each Citus worker, counted in its shards there (not through Citus)."""
    with citus.connect(DB) as c:
        shards = c.execute("SELECT n.nodeport, shard_name(s.logicalrelid, s.shardid) FROM pg_dist_shard s "
                           "JOIN pg_dist_placement p USING (shardid) JOIN pg_dist_node n USING (groupid) "
                           "WHERE s.logicalrelid = %s::regclass", (f"plaid_sync.{table}",)).fetchall()
    counts = []
    for n in citus.nodes:
        with n.connect(DB) as c:
            c.execute("SET citus.override_table_visibility = off")  # Citus hides shards from pg_class
            counts.append(sum(c.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
                              for port, name in shards if port == n.port))
    return counts


def shell_bytes(conn):
    """Bytes in the coordinator's own files of the Citus-placed tables (pg_relation_size reads
    the shell's heap, not the shards): 0 whatever plaid_sync wrote, or rows went astray."""
    return conn.execute("SELECT coalesce(sum(pg_relation_size(name)), 0) FROM plaid_sync.distributed_tables()").fetchone()[0]


def assert_spread(citus, conn, items):
    """Each Item equal to the emulator, the rows in shards on both workers, none in a shell."""
    for it in items:
        assert_matches_emulator(emulator_of[0], conn, it["item_id"])
    per_worker = shard_rows(citus, "transaction_rows")
    total = conn.execute("SELECT count(*) FROM plaid_sync.transaction_rows").fetchone()[0]
    assert sum(per_worker) == total > 0 and all(n > 0 for n in per_worker), per_worker
    assert shell_bytes(conn) == 0


emulator_of = []


@pytest.fixture(autouse=True)
def _emulator(emulator):
    emulator_of[:] = [emulator]


def webhook(emulator, conn, item_id, code="SYNC_UPDATES_AVAILABLE", webhook_type="TRANSACTIONS", **fields):
    w = emulator("webhook", item_id=item_id, webhook_type=webhook_type, webhook_code=code, fields=fields)
    conn.execute("SELECT plaid_sync.plaid_receive_webhook(%s, %s)", (w["body"], w["plaid_verification"]))


def test_distribute_places_every_table_and_the_first_sync_lands_on_both_workers(emulator, citus, conn):
    placed = dict(conn.execute(
        "SELECT logicalrelid::regclass::text, partmethod FROM pg_dist_partition "
        "WHERE logicalrelid::regclass::text LIKE 'plaid_sync.%'").fetchall())
    want = dict(conn.execute("SELECT name::text, placement FROM plaid_sync.distributed_tables()").fetchall())
    assert {t: ("h" if p == "by item_id" else "n") for t, p in want.items()} == placed
    items = new_items(emulator, conn, 6, days=200, per_day=4)
    for it in items:
        announce(conn, it)
    settle(conn)
    assert_spread(citus, conn, items)


def test_incremental_changes_pending_to_posted_and_a_backfill(emulator, citus, conn):
    items = new_items(emulator, conn, 4, days=30, per_day=3)
    for it in items:
        emulator("add_transactions", item_id=it["item_id"], transactions=[{"amount": "12.34", "pending": True}])
        announce(conn, it)
    settle(conn)
    for it in items:
        pending = next(t for t in emulator("state", item_id=it["item_id"])["transactions"].values() if t["pending"])
        emulator("post_pending", item_id=it["item_id"], transaction_id=pending["transaction_id"])
        emulator("advance", item_id=it["item_id"], days=5)   # modifies and removes some too
        webhook(emulator, conn, it["item_id"])
    settle(conn)
    assert_spread(citus, conn, items)
    removed = conn.execute("SELECT count(DISTINCT item_id) FROM plaid_sync.transactions WHERE removed_at IS NOT NULL").fetchone()[0]
    assert removed == len(items)
    runs = conn.execute("SELECT applied_by, count(*) FROM plaid_sync.sync_runs GROUP BY 1").fetchall()
    assert dict(runs).get("copy") is None, runs   # nothing COPY'd past Citus
    conn.execute("SELECT plaid_sync.plaid_request_backfill(%s)", (items[0]["item_id"],))
    settle(conn)
    assert conn.execute("SELECT trigger, outcome FROM plaid_sync.sync_runs WHERE item_id = %s ORDER BY id DESC LIMIT 1",
                        (items[0]["item_id"],)).fetchone() == ("backfill", "ok")
    assert_spread(citus, conn, items)


def test_a_removed_item_announced_again_syncs_again(emulator, citus, conn):
    items = new_items(emulator, conn, 3, days=20)
    for it in items:
        announce(conn, it)
    settle(conn)
    gone = items[0]["item_id"]
    conn.execute("SELECT plaid_sync.plaid_remove_item(%s)", (gone,))
    settle(conn)
    assert conn.execute("SELECT status FROM plaid_sync.items WHERE item_id = %s", (gone,)).fetchone()[0] == "removed"
    announce(conn, items[0])
    settle(conn)
    assert conn.execute("SELECT status FROM plaid_sync.items WHERE item_id = %s", (gone,)).fetchone()[0] == "healthy"
    assert_spread(citus, conn, items)


def test_the_products_sync_on_the_shards(emulator, citus, conn):
    items = []
    for it in new_items(emulator, conn, 4, days=3, per_day=1):
        emulator("products", item_id=it["item_id"], products=["transactions", "liabilities", "investments", "recurring_transactions"],
                 consented=["transactions", "liabilities", "investments", "recurring_transactions"])
        announce(conn, it)
        items.append(it)
    settle(conn)
    runs = dict(conn.execute("SELECT product, count(*) FILTER (WHERE outcome = 'ok') FROM plaid_sync.sync_runs GROUP BY 1").fetchall())
    assert runs["transactions"] == 4 and runs["liabilities"] == 4 and runs["investments"] >= 4, runs
    for table in ("liabilities", "holdings", "investment_transactions"):
        per_worker = shard_rows(citus, table)
        assert sum(per_worker) == conn.execute(f"SELECT count(*) FROM plaid_sync.{table}").fetchone()[0] > 0, table
    # Securities are a reference table: every node holds all of them.
    n = conn.execute("SELECT count(*) FROM plaid_sync.securities").fetchone()[0]
    assert n > 0 and shard_rows(citus, "securities") == [n, n]
    it = items[0]["item_id"]
    card, = emulator("liabilities", item_id=it)["liabilities"]
    emulator("liabilities", item_id=it, modify={card: {"minimum_payment_amount": "35.10"}})
    webhook(emulator, conn, it, code="DEFAULT_UPDATE", webhook_type="LIABILITIES", error=None,
            account_ids_with_new_liabilities=[], account_ids_with_updated_liabilities={card: ["minimum_payment_amount"]})
    settle(conn)
    assert conn.execute("SELECT minimum_payment_amount::text FROM plaid_sync.liabilities WHERE item_id = %s AND account_id = %s",
                        (it, card)).fetchone()[0] == "35.10"
    assert_spread(citus, conn, items)


def test_a_webhook_storm_coalesces_and_leaves_every_item_exact(emulator, citus, conn):
    items = new_items(emulator, conn, 8, days=10)
    for it in items:
        announce(conn, it)
    settle(conn)
    for it in items:
        emulator("advance", item_id=it["item_id"], days=2)
    hooks = [emulator("webhook", item_id=it["item_id"]) for it in items for _ in range(60)]
    with conn.cursor() as cur:
        cur.executemany("SELECT plaid_sync.plaid_receive_webhook(%s, %s)", [(h["body"], h["plaid_verification"]) for h in hooks])
    settle(conn, timeout=120)
    assert conn.execute("SELECT count(*) FROM plaid_sync.inbox WHERE source = 'plaid' AND status = 'done'").fetchone()[0] >= 480
    overlaps = conn.execute("""SELECT count(*) FROM plaid_sync.sync_runs a JOIN plaid_sync.sync_runs b
                                 ON a.item_id = b.item_id AND a.id < b.id
                                AND tstzrange(a.started_at, a.finished_at) && tstzrange(b.started_at, b.finished_at)""").fetchone()[0]
    assert overlaps == 0
    assert_spread(citus, conn, items)


def test_kill_9_of_a_worker_mid_sync(emulator, citus, conn):
    # 13 pages: the first four are staged when the fourth would pass the 2 MiB a run holds.
    item = new_item(emulator, days=1600, per_day=4)
    others = new_items(emulator, conn, 3, days=20)
    emulator("fault", endpoint="/transactions/sync", kind="slow", page=6, delay_ms=4000, times=1)
    announce(conn, item)
    until(lambda: conn.execute("SELECT count(*) FROM plaid_sync.sync_pages").fetchone()[0] >= 4, what="pages 1-4 staged")
    pid = conn.execute("SELECT locked_by FROM plaid_sync.inbox WHERE item_id = %s", (item["item_id"],)).fetchone()[0]
    os.kill(pid, signal.SIGKILL)  # the coordinator's postmaster restarts every process
    time.sleep(1)

    def healthy():
        try:
            with citus.connect(DB) as c:
                return c.execute("SELECT status FROM plaid_sync.items WHERE item_id = %s", (item["item_id"],)).fetchone()[0] == "healthy"
        except Exception:
            return False
    until(healthy, timeout=90, what="the sync to complete after the crash")
    with citus.connect(DB) as c:
        for it in others:
            announce(c, it)
        settle(c)
        runs = c.execute("SELECT outcome FROM plaid_sync.sync_runs WHERE item_id = %s ORDER BY id", (item["item_id"],)).fetchall()
        assert runs[-1] == ("ok",) and ("failed",) in runs  # the abandoned run is closed
        assert c.execute("SELECT count(*) FROM plaid_sync.sync_pages").fetchone()[0] == 0
        assert_spread(citus, c, [item] + others)


def test_an_items_events_are_sent_from_the_coordinator(emulator, citus, conn):
    """No trigger on a distributed items table: the statements send the Item's events, once,
    when they commit, and the deliveries queue stays on the coordinator."""
    assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'item_events'").fetchone()[0] == 0
    app = listen(citus, DB)
    try:
        item = new_item(emulator, days=3, per_day=1)
        item_id = item["item_id"]

        def status(frm, to, error_code=None):
            return {"type": "item", "item_id": item_id, "event": "status", "from": frm, "to": to,
                    "error_code": error_code, "consent_expiration_time": None}
        announce(conn, item)
        settle(conn)
        assert received(app, 1, kind="item") == [status("pending", "healthy")]
        login = {"error_type": "ITEM_ERROR", "error_code": "ITEM_LOGIN_REQUIRED", "error_message": "x",
                 "display_message": None, "status": 400}
        webhook(emulator, conn, item_id, code="ERROR", webhook_type="ITEM", error=login)
        settle(conn)
        assert received(app, 1, kind="item") == [status("healthy", "login_required", "ITEM_LOGIN_REQUIRED")]
        webhook(emulator, conn, item_id, code="NEW_ACCOUNTS_AVAILABLE", webhook_type="ITEM", error=None)
        settle(conn)
        assert received(app, 1, kind="item") == [{"type": "item", "item_id": item_id, "event": "new_accounts_available"}]
        conn.execute("SELECT plaid_sync.plaid_remove_item(%s)", (item_id,))
        conn.execute("SELECT plaid_sync.plaid_purge_item(%s)", (item_id,))
        got = received(app, 2, kind="item")
        assert got == [status("login_required", "removed", "ITEM_LOGIN_REQUIRED"), {"type": "item", "item_id": item_id, "event": "purged"}]
        assert received(app, 1, timeout=0.5, kind="item") == []   # each event once
        assert conn.execute("SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'plaid_sync.deliveries'::regclass").fetchone()[0] == 0
    finally:
        app.close()


def test_history_retention_and_key_rotation_run_across_the_shards(emulator, citus, conn):
    """The maintenance deletes old runs and resolved rejects with no multi-shard FOR UPDATE,
    and a key rotation reads every Item's token: both touch every shard."""
    items = new_items(emulator, conn, 4, days=5)
    for it in items:
        announce(conn, it)
    settle(conn)
    for _ in range(2):
        for it in items:
            emulator("advance", item_id=it["item_id"], days=1)
            webhook(emulator, conn, it["item_id"])
        settle(conn)
    latest = {r[0] for r in conn.execute("SELECT max(id) FROM plaid_sync.sync_runs GROUP BY item_id, product")}
    older = conn.execute("SELECT id, item_id FROM plaid_sync.sync_runs WHERE id <> ALL(%s) ORDER BY id", (list(latest),)).fetchall()
    assert len(older) >= 8
    conn.execute("INSERT INTO plaid_sync.sync_rejects (sync_run_id, item_id, transaction_id, error, resolved_at) "
                 "VALUES (%s, %s, 'tx-resolved', 'test', now() - interval '1 day')", older[0])
    data = conn.execute("SELECT (SELECT count(*) FROM plaid_sync.transaction_rows), (SELECT count(*) FROM plaid_sync.accounts), "
                        "(SELECT count(*) FROM plaid_sync.balance_snapshots)").fetchone()
    with settings(citus, history_retention=1):
        until(lambda: {r[0] for r in conn.execute("SELECT id FROM plaid_sync.sync_runs")} == latest, timeout=30,
              what="old runs deleted by the maintenance")
    assert conn.execute("SELECT count(*) FROM plaid_sync.sync_rejects").fetchone()[0] == 0
    assert conn.execute("SELECT (SELECT count(*) FROM plaid_sync.transaction_rows), (SELECT count(*) FROM plaid_sync.accounts), "
                        "(SELECT count(*) FROM plaid_sync.balance_snapshots)").fetchone() == data
    assert conn.execute("SELECT plaid_sync.plaid_rotate_encryption_key()").fetchone()[0] == 0  # all under the current key
    # The self-healing scan reads the stale Items (distributed), then queues those with no job
    # open (the local inbox): each Item gets its sync.
    with settings(citus, resync_interval="'2s'"):
        until(lambda: conn.execute("SELECT count(DISTINCT item_id) FROM plaid_sync.inbox WHERE status = 'done' "
                                   "AND body ->> 'reason' = 'resync_interval'").fetchone()[0] == len(items),
              timeout=30, what="a resync of every Item")
    settle(conn)
    assert_spread(citus, conn, items)


def test_distribute_again_or_with_a_bad_shard_count_changes_nothing(citus, conn):
    before = conn.execute("SELECT count(*) FROM pg_dist_shard").fetchone()[0]
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="shard_count must be between 1 and 64000, not 0"):
        conn.execute("SELECT plaid_sync.distribute(0)")
    notices = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    conn.execute("SELECT plaid_sync.distribute()")
    assert notices == ["plaid_sync is already distributed"]
    assert conn.execute("SELECT count(*) FROM pg_dist_shard").fetchone()[0] == before
    # On a Citus worker the call is refused: the workers and the queue live on the coordinator.
    with citus.nodes[0].connect(DB) as w:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="runs on the Citus coordinator"):
            w.execute("SELECT plaid_sync.distribute()")


def test_every_statement_a_job_runs_stays_on_one_shard(emulator, citus, conn):
    """Citus raises on any statement split over several shards while
    citus.multi_task_query_log_level = error: set for every session of the server (the workers
    included), every kind of job runs, and none fails or logs one. The maintenance, which
    scans every Item by design, is kept from running its scans (no history retention, no
    resync) for the test's length."""
    log_from = len(citus.log_text())
    with citus.connect() as c:
        c.execute("ALTER SYSTEM SET citus.multi_task_query_log_level = 'error'")
        c.execute("ALTER SYSTEM SET plaid_sync.resync_interval = 0")
        c.execute("ALTER SYSTEM SET plaid_sync.history_retention = 0")
    citus.reload()
    conn.execute("SET citus.multi_task_query_log_level = 'off'")   # the test's own counts span shards
    try:
        items = []
        # The first three on both workers; the fourth is removed at Plaid.
        for n, it in enumerate(new_items(emulator, conn, 3, days=200, per_day=4) + [new_item(emulator, days=20)]):
            if n == 0:
                emulator("products", item_id=it["item_id"], products=["transactions", "liabilities", "investments", "recurring_transactions"],
                         consented=["transactions", "liabilities", "investments", "recurring_transactions"])
            emulator("add_transactions", item_id=it["item_id"], transactions=[{"amount": "12.34", "pending": True}])
            announce(conn, it)
            items.append(it)
        settle(conn)
        for it in items:
            emulator("advance", item_id=it["item_id"], days=3)
            for _ in range(5):
                webhook(emulator, conn, it["item_id"])
        login = {"error_type": "ITEM_ERROR", "error_code": "ITEM_LOGIN_REQUIRED", "error_message": "x",
                 "display_message": None, "status": 400}
        webhook(emulator, conn, items[1]["item_id"], code="ERROR", webhook_type="ITEM", error=login)
        webhook(emulator, conn, items[1]["item_id"], code="LOGIN_REPAIRED", webhook_type="ITEM")
        conn.execute("SELECT plaid_sync.plaid_request_backfill(%s)", (items[2]["item_id"],))
        conn.execute("SELECT plaid_sync.plaid_remove_item(%s, true)", (items[3]["item_id"],))
        settle(conn)
        # (Coalesced and cancelled jobs say so in last_error: those are no failures.)
        failed = conn.execute("SELECT webhook_type, webhook_code, last_error FROM plaid_sync.inbox "
                              "WHERE status = 'failed' OR last_error LIKE 'internal error%%'").fetchall()
        assert failed == []
        multi = [l for l in citus.log_text()[log_from:].splitlines() if "multi-task query" in l]
        assert multi == []
        assert conn.execute("SELECT count(*) FROM plaid_sync.inbox WHERE status = 'done'").fetchone()[0] >= 12
        assert_spread(citus, conn, items[:3])
    finally:
        with citus.connect() as c:
            for g in ("citus.multi_task_query_log_level", "plaid_sync.resync_interval", "plaid_sync.history_retention"):
                c.execute(f"ALTER SYSTEM RESET {g}")
        citus.reload()
