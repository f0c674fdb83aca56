"""An install that outgrew one server: the last release, undistributed, on a Citus coordinator,
filled through its API; then this tree's build, ALTER EXTENSION plaid_sync UPDATE (Citus runs it
on every node) and plaid_sync.distribute(). Every row is kept, now in shards on both Citus
workers, the tokens decrypt, and syncing goes on (here by plaid_process_inbox).

Skipped when Citus is not installed for the system PostgreSQL 15 (scripts/setup builds it)."""

import os

import pytest

from test_upgrade import (LAST, LIB, NEW, WORK, Cluster, builds, built, cluster, emulator, fill,  # noqa: F401
                          keeps_syncing, rows, shape, tokens)


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: it swaps the system PostgreSQL 15's plaid_sync files"),
    pytest.mark.skipif(not os.path.exists(os.path.join(LIB, "citus.so")), reason=f"Citus is not installed in {LIB}"),
    pytest.mark.skipif(not built(LAST), reason=f"scripts/build-release {LAST} has not run"),
]
CITUS = {"max_prepared_transactions": 50, "citus.shard_count": 8, "citus.enable_statistics_collection": "off"}


def test_an_undistributed_install_upgraded_then_distributed_keeps_every_row(builds, emulator):
    builds.use(LAST)
    nodes = [Cluster(os.path.join(WORK, f"upgrade_citus_w{i}"), {"shared_preload_libraries": "'citus'", **CITUS}).init()
             for i in (1, 2)]
    c = cluster("upgrade_citus", emulator, **{"plaid_sync.workers": 0,
                                             "shared_preload_libraries": "'citus,plaid_sync'", **CITUS})
    everything = nodes + [c]
    try:
        for n in everything:
            n.start()
            n.create_database("app", extension=False)
            with n.connect("app") as conn:
                conn.execute("CREATE EXTENSION citus")
        with c.connect("app") as conn:
            conn.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)", (c.port,))
            for n in nodes:
                conn.execute("SELECT citus_add_node('127.0.0.1', %s)", (n.port,))
            conn.execute("CREATE EXTENSION plaid_sync")
            assert conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'plaid_sync'").fetchone()[0] == LAST
            toks, a, failed_item = fill(emulator, conn)
            tables = shape(conn)
            before = rows(conn, tables)
            assert tokens(conn) == toks
        for n in everything:
            n.stop()
        builds.use("new")
        for n in everything:
            n.start()
        with c.connect("app") as conn:
            conn.execute("ALTER EXTENSION plaid_sync UPDATE")
            for n in nodes:   # Citus ran the update on its workers too
                with n.connect("app") as w:
                    assert w.execute("SELECT extversion FROM pg_extension WHERE extname = 'plaid_sync'").fetchone() == (NEW,)
            conn.execute("SELECT plaid_sync.distribute()")
            assert conn.execute("SELECT count(*) FROM pg_dist_partition WHERE logicalrelid::regclass::text LIKE 'plaid_sync.%'"
                                ).fetchone()[0] == conn.execute("SELECT count(*) FROM plaid_sync.distributed_tables()").fetchone()[0]
            assert rows(conn, tables) == before
            # One call per Item: in a query over items, Citus would run the function on the
            # shard's worker, which holds no key (README, "Beyond one server").
            ids = [r[0] for r in conn.execute("SELECT item_id FROM plaid_sync.items "
                                              "WHERE access_token_encrypted IS NOT NULL ORDER BY 1")]
            assert {i: conn.execute("SELECT plaid_sync.plaid_decrypt_access_token(%s)", (i,)).fetchone()[0]
                    for i in ids} == toks
            per_node = dict(conn.execute(
                "SELECT n.nodeport, count(*) FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid) "
                "JOIN pg_dist_node n USING (groupid) WHERE s.logicalrelid = 'plaid_sync.transaction_rows'::regclass "
                "GROUP BY 1").fetchall())
            assert set(per_node) == {n.port for n in nodes}
            # The coordinator's own copies were emptied once the shards had the rows.
            assert conn.execute("SELECT sum(pg_relation_size(name)) FROM plaid_sync.distributed_tables()").fetchone()[0] == 0
            keeps_syncing(emulator, conn, a, failed_item)
    finally:
        for n in everything:
            n.stop()
