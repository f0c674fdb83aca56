"""Year two (issue 32): the record of what plaid_sync did is kept as long as
plaid_sync.history_retention asks and no longer, by worker 0's maintenance; data rows stay."""

import time

import pytest

from conftest import until
from test_products import settings
from test_sync import announce, drain, webhook


def ids(su, sql, *args):
    return {r[0] for r in su.execute(sql, args)}


@pytest.mark.workers_only
def test_history_is_kept_as_long_as_asked_and_data_stays(emulator, su, cluster):
    su.autocommit = True
    item_id = announce(emulator, su, days=5)
    drain(su)
    for _ in range(4):
        emulator("advance", item_id=item_id, days=1)
        webhook(emulator, su, item_id)
        drain(su)
    runs = sorted(ids(su, "SELECT id FROM plaid_sync.sync_runs WHERE item_id = %s", item_id))
    assert len(runs) >= 5
    latest = ids(su, "SELECT max(id) FROM plaid_sync.sync_runs GROUP BY item_id, product")
    older = [r for r in runs if r not in latest]
    # A reject resolved long ago, and one still open, each on an older run.
    su.execute("INSERT INTO plaid_sync.sync_rejects (sync_run_id, item_id, transaction_id, error, resolved_at) "
               "VALUES (%s, %s, 'tx-resolved', 'test', now() - interval '1 day'), (%s, %s, 'tx-open', 'test', NULL)",
               (older[0], item_id, older[1], item_id))
    # Paid calls: two days old (gone), an hour old (within the budgets' 24 hours: kept), and
    # two days old but never finished (kept).
    su.execute("INSERT INTO plaid_sync.paid_calls (item_id, endpoint, requested_at, outcome) VALUES "
               "(%s, '/transactions/refresh', now() - interval '2 days', 'ok'), "
               "(%s, '/transactions/refresh', now() - interval '1 hour', 'ok'), "
               "(%s, '/transactions/refresh', now() - interval '2 days', NULL)", (item_id,) * 3)
    data = su.execute("SELECT (SELECT count(*) FROM plaid_sync.transaction_rows), (SELECT count(*) FROM plaid_sync.accounts), "
                      "(SELECT count(*) FROM plaid_sync.balance_snapshots), (SELECT count(*) FROM plaid_sync.item_products)").fetchone()

    with settings(cluster, history_retention=1):
        keep = latest | {older[1]}
        until(lambda: ids(su, "SELECT id FROM plaid_sync.sync_runs") == keep, timeout=30,
              what="old runs deleted by the maintenance")
        until(lambda: su.execute("SELECT count(*) FROM plaid_sync.paid_calls").fetchone()[0] == 2, timeout=15,
              what="the old paid call deleted")
    assert ids(su, "SELECT transaction_id FROM plaid_sync.sync_rejects") == {"tx-open"}
    assert su.execute("SELECT count(*) FROM plaid_sync.paid_calls WHERE requested_at < now() - interval '1 day'").fetchone()[0] == 1
    assert su.execute("SELECT (SELECT count(*) FROM plaid_sync.transaction_rows), (SELECT count(*) FROM plaid_sync.accounts), "
                      "(SELECT count(*) FROM plaid_sync.balance_snapshots), (SELECT count(*) FROM plaid_sync.item_products)").fetchone() == data
    assert su.execute("SELECT last_sync_outcome FROM plaid_sync.item_health WHERE item_id = %s", (item_id,)).fetchone()[0] == "ok"

    # 0 keeps everything: a new run is not deleted however old it gets.
    with settings(cluster, history_retention=0):
        webhook(emulator, su, item_id)
        drain(su)
        su.execute("UPDATE plaid_sync.sync_runs SET finished_at = finished_at - interval '1 year'")
        time.sleep(6)  # longer than one maintenance round
        assert len(ids(su, "SELECT id FROM plaid_sync.sync_runs")) == len(keep) + 1


def runs_read(su):
    """Rows of sync_runs read so far by sequential scans and by its primary key."""
    su.execute("SELECT pg_stat_clear_snapshot()")
    return su.execute("SELECT t.seq_tup_read + coalesce(i.idx_tup_read, 0) FROM pg_stat_user_tables t "
                      "LEFT JOIN pg_stat_user_indexes i ON i.relid = t.relid AND i.indexrelname = 'sync_runs_pkey' "
                      "WHERE t.relid = 'plaid_sync.sync_runs'::regclass").fetchone()[0]


@pytest.mark.workers_only
def test_a_retention_round_reads_the_old_runs_not_the_window(emulator, su, cluster):
    """The runs the retention keeps are most of sync_runs (at a million Items, four syncs a day
    and 30 days, 120 million): a maintenance round must not read them to find the few it deletes."""
    su.autocommit = True
    item_id = announce(emulator, su, days=3)
    drain(su)
    window = 50_000
    su.execute("INSERT INTO plaid_sync.sync_runs (item_id, trigger, started_at, finished_at, outcome) "
               "SELECT %s, 'test', now() - interval '10 minutes' + g * interval '1 ms', "
               "now() - interval '10 minutes' + g * interval '1 ms', 'ok' FROM generate_series(1, %s) g",
               (item_id, window))
    su.execute("ANALYZE plaid_sync.sync_runs")
    with settings(cluster, history_retention=3600):
        def old_run_goes():
            # An old run, and a newer one of the Item's: the Item's latest run is always kept.
            old = su.execute("INSERT INTO plaid_sync.sync_runs (item_id, trigger, started_at, finished_at, outcome) "
                             "VALUES (%s, 'test-old', now() - interval '2 hours', now() - interval '2 hours', 'ok') "
                             "RETURNING id", (item_id,)).fetchone()[0]
            su.execute("INSERT INTO plaid_sync.sync_runs (item_id, trigger, finished_at, outcome) "
                       "VALUES (%s, 'test-newer', now(), 'ok')", (item_id,))
            until(lambda: not ids(su, "SELECT id FROM plaid_sync.sync_runs WHERE id = %s", old), timeout=30,
                  what="a run older than the retention deleted")
        old_run_goes()
        time.sleep(1.5)  # the workers' statistics reach shared memory at most once a second
        before = runs_read(su)
        for _ in range(3):
            old_run_goes()
        time.sleep(1.5)
        read = runs_read(su) - before
    assert read < window, f"three maintenance rounds read {read:,} rows of sync_runs (the window holds {window:,})"
    assert su.execute("SELECT count(*) FROM plaid_sync.sync_runs WHERE trigger = 'test'").fetchone()[0] == window


def item_updates(su):
    su.execute("SELECT pg_stat_clear_snapshot()")
    return su.execute("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                      "WHERE relid = 'plaid_sync.items'::regclass").fetchone()


@pytest.mark.both_ways
def test_a_syncs_updates_of_its_item_are_hot(emulator, su):
    """Each sync rewrites the Item's row (cursor, last sync): HOT, so no index entry and no
    dead tuple for an index to skip, as long as the day (what the resync index holds) is the same."""
    su.autocommit = True
    item_id = announce(emulator, su, days=3)
    drain(su)
    until(lambda: item_updates(su)[0] > 0, timeout=15, what="the first sync's updates in the statistics")
    time.sleep(1.5)
    upd0, hot0 = item_updates(su)
    for _ in range(8):
        emulator("advance", item_id=item_id, days=1)
        webhook(emulator, su, item_id)
        drain(su)
    until(lambda: item_updates(su)[0] - upd0 >= 8, timeout=15, what="the syncs' updates in the statistics")
    time.sleep(1.5)
    upd, hot = item_updates(su)
    assert (hot - hot0) / (upd - upd0) >= 0.9, (upd - upd0, hot - hot0)
    assert su.execute("SELECT synced_on = (now() AT TIME ZONE 'UTC')::date FROM plaid_sync.items WHERE item_id = %s",
                      (item_id,)).fetchone()[0]
