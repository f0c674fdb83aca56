"""Section 9 of the benchmarks: plaid_sync distributed on Citus (README, "Beyond one server").

The same first syncs are ingested into a distributed install with one Citus worker and then
with two, each against a COPY of the same rows into a table distributed the same way
(co-located with transaction_rows, so the rows go to the same shards). All nodes share this
machine's cores: the scaling figure says what a second worker adds here, not on real hardware."""

import os
import subprocess
import time

from harness import PG_BIN, Cluster

CITUS = {"max_prepared_transactions": 50, "citus.enable_statistics_collection": "off",
         "synchronous_commit": "off", "shared_buffers": "'256MB'"}


def citus_installed():
    lib = subprocess.run([f"{PG_BIN}/pg_config", "--pkglibdir"], capture_output=True, text=True).stdout.strip()
    return os.path.exists(os.path.join(lib, "citus.so"))


def start(b, emu, name, workers_n):
    """A coordinator (plaid_sync preloaded, two plaid_sync workers, the pacer lifted as in
    section 1) and `workers_n` Citus workers, plaid_sync created and distributed."""
    root = os.environ.get("PLAID_SYNC_BENCH_DIR", "/var/tmp/plaid_sync_bench")
    nodes = [Cluster(os.path.join(root, f"{name}_w{i}"), {"shared_preload_libraries": "'citus'", **CITUS}).init()
             for i in range(workers_n)]
    for n in nodes:
        n.start()
        n.create_database("bench", extension=False)
        with n.connect("bench") as c:
            c.execute("CREATE EXTENSION citus")
    coord = b.cluster(name, emu, 2, **{"shared_preload_libraries": "'citus,plaid_sync'",
                                       "plaid_sync.rate_limits": "'/transactions/sync=-/-'", **CITUS})
    coord.nodes = nodes
    with coord.connect("bench") as c:
        c.execute("DROP EXTENSION plaid_sync")
        c.execute("CREATE EXTENSION citus")
        c.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)", (coord.port,))
        for n in nodes:
            c.execute("SELECT citus_add_node('127.0.0.1', %s)", (n.port,))
        c.execute("CREATE EXTENSION plaid_sync")
        c.execute("SELECT plaid_sync.distribute(shard_count => 16)")
    return coord


def ingest(b, emu, conn, items_n, per_item):
    """The best of two rounds of new Items synced by the workers: (rows, seconds, ids)."""
    best = None
    for _ in range(2):
        items = emu("items", count=items_n, days=per_item // 4, per_day=4)["items"]
        ids = [i["item_id"] for i in items]
        b.fetch_pages(emu, items)  # the emulator builds its pages before the clock starts
        start = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        b.announce_all(conn, items)
        b.wait_idle(conn)
        end = conn.execute("SELECT max(finished_at) FROM plaid_sync.inbox WHERE item_id = ANY(%s)", (ids,)).fetchone()[0]
        rows = conn.execute("SELECT count(*) FROM plaid_sync.transaction_rows WHERE item_id = ANY(%s)", (ids,)).fetchone()[0]
        took = (end - start).total_seconds()
        if best is None or rows / took > best[0] / best[1]:
            best = (rows, took, ids)
    return best


def copy_limit(b, conn, ids, rows):
    """COPY of the rows plaid_sync stored into a table distributed as transaction_rows is."""
    conn.execute("CREATE TABLE public.copy_txn (LIKE plaid_sync.transaction_rows INCLUDING ALL)")
    conn.execute("SELECT create_distributed_table('public.copy_txn', 'item_id', colocate_with => 'plaid_sync.transaction_rows')")
    dump = b.copy_out(conn, f"SELECT * FROM plaid_sync.transaction_rows WHERE item_id = ANY('{{{','.join(ids)}}}')")
    best = None
    for _ in range(3):
        conn.execute("TRUNCATE public.copy_txn")
        t0 = time.time()
        with conn.cursor().copy("COPY public.copy_txn FROM STDIN") as cp:
            cp.write(dump)
        best = min(best or 1e9, time.time() - t0)
    assert conn.execute("SELECT count(*) FROM public.copy_txn").fetchone()[0] == rows
    return rows / best


def bench_citus(b, emu, items_n, per_item):
    b.say(f"9. Citus: {items_n} Items x {per_item} transactions, one Citus worker then two")
    if not citus_installed():
        b.result("9", "Citus ingest", "skipped: Citus is not installed for this PostgreSQL (scripts/setup builds it)", "—", None)
        return
    rates = {}
    for workers_n in (1, 2):
        c = start(b, emu, f"citus{workers_n}", workers_n)
        try:
            with c.connect("bench") as conn:
                b.wait_workers(conn, 2)
                rows, took, ids = ingest(b, emu, conn, items_n, per_item)
                ours = rows / took
                limit = copy_limit(b, conn, ids, rows)
                rates[workers_n] = ours
                applied = conn.execute("SELECT count(*) FILTER (WHERE applied_by = 'upsert'), count(*) "
                                       "FROM plaid_sync.sync_runs WHERE item_id = ANY(%s)", (ids,)).fetchone()
                b.result(f"9{'ab'[workers_n - 1]}",
                         f"ingest into tables distributed over {workers_n} Citus worker{'s' if workers_n > 1 else ''} "
                         f"({rows:,} transactions, {items_n} Items; {applied[0]} of {applied[1]} syncs applied by SQL through Citus), "
                         f"against a COPY of the same rows into a table distributed the same way",
                         f"{ours:,.0f} txn/s; COPY {limit:,.0f} txn/s; plaid_sync = {ours / limit:.2f}×", "—", None)
        finally:
            c.stop()
            for n in c.nodes:
                n.stop()
    b.result("9c", "from one Citus worker to two (all nodes on this machine's 2 cores)",
             f"{rates[2] / rates[1]:.2f}× the ingest rate", "—", None)
