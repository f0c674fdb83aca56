"""Section 10 of the benchmarks: a year in compressed time (README, "Year two").

A set of Items is synced round after round (each round: a day of new transactions for every
Item, then a SYNC_UPDATES_AVAILABLE webhook for each, queued in one statement), with a short
`history_retention` and `done_retention`, so the history a year leaves is made and pruned in
minutes. The same figures are read once the retention window is full (the start) and after
the last round (the end): what the non-data tables hold per Item, what claiming a job costs,
notify → visible, dead tuples in the hot tables, and each worker's private memory."""

import json
import time

# The tables that record what plaid_sync did, as against the data it mirrors.
NON_DATA = ("inbox", "sync_runs", "sync_pages", "sync_rejects", "paid_calls", "deliveries")
RETENTION_S = 20
CLAIM_ROUNDS = 5

# The workers' claim (src/inbox.rs, `claim`) as a read: its search for the next due job, timed
# by EXPLAIN ANALYZE with the pages it reads, on the queue as it stands halfway through a round.
# The workers are held off meanwhile (the inbox locked against writes, which their claims need),
# so the figure is the search and not the scheduler: sampled while they drained the round on
# the same two cores, one run's p99 read 0.7 ms at the start and 3.3 ms at the end, the run
# before 0.5 and 0.3. The Items the workers have jobs in flight for come from shared memory
# there; here from `running` rows, looked up before and not timed.
CLAIM = """EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)
SELECT q.id FROM plaid_sync.inbox q
 WHERE q.lane BETWEEN 0 AND 1 AND q.status IN ('pending', 'running') AND q.run_after <= now()
   AND (q.status = 'pending' OR q.locked_until < now()
        OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = q.locked_by))
   AND (q.item_id IS NULL OR q.item_id <> ALL (%s::text[]))
 ORDER BY q.lane, q.run_after, q.id LIMIT 1"""
PENDING = "SELECT count(*) FROM plaid_sync.inbox WHERE status = 'pending'"
IN_FLIGHT = "SELECT coalesce(array_agg(item_id), '{}') FROM plaid_sync.inbox WHERE status = 'running'"

HOOKS = """SELECT count(plaid_sync.plaid_receive_webhook(json_build_object(
    'webhook_type', 'TRANSACTIONS', 'webhook_code', 'SYNC_UPDATES_AVAILABLE', 'item_id', i,
    'initial_update_complete', true, 'historical_update_complete', true, 'environment', 'sandbox')::text))
  FROM unnest(%s::text[]) AS i"""


def rss_mb(conn):
    """Each worker's private resident memory (RssAnon), MB."""
    out = []
    for (pid,) in conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'plaid_sync worker' ORDER BY pid"):
        with open(f"/proc/{pid}/status") as f:
            out.append(next(int(l.split()[1]) for l in f if l.startswith("RssAnon:")) / 1024)
    return out


def visible(b, emu, conn, probe, trials):
    """notify → visible: a new transaction at Plaid, its webhook, until the row is there."""
    ms = []
    for k in range(trials):
        item = probe[k % len(probe)]
        before = conn.execute("SELECT count(*) FROM plaid_sync.transaction_rows WHERE item_id = %s", (item,)).fetchone()[0]
        emu("add_transactions", item_id=item, transactions=[{"amount": "1.25"}])
        t0 = time.perf_counter()
        conn.execute(HOOKS, ([item],))
        while conn.execute("SELECT count(*) FROM plaid_sync.transaction_rows WHERE item_id = %s", (item,)).fetchone()[0] <= before:
            time.sleep(0.0005)
        ms.append((time.perf_counter() - t0) * 1000)
    return ms


def figures(b, emu, conn, ids, probe, syncs):
    """One set of readings, taken the same way at the start and the end."""
    # Claims: a round's webhooks queued, the search timed once the workers have done half of
    # it, over five rounds: one round's p50 moves by 2x between rounds in the same state (where
    # autovacuum has got to in the inbox).
    # Bytes and dead tuples are read after each round too, and the median kept: one reading
    # says where autovacuum was in its cycle at that instant (one run read 474 dead tuples at
    # the start and 1,460 at the end, the run before 1,373 and 383).
    claims, pages, sizes, dead_items, dead_inbox = [], [], [], [], []
    for _ in range(CLAIM_ROUNDS):
        emu("advance", days=1, per_day=1)
        conn.execute(HOOKS, (ids,))
        while conn.execute(PENDING).fetchone()[0] > len(ids) // 2:
            time.sleep(0.002)
        with conn.transaction():
            conn.execute("LOCK plaid_sync.inbox IN EXCLUSIVE MODE")
            busy = conn.execute(IN_FLIGHT).fetchone()[0]
            for _ in range(100):
                plan = conn.execute(CLAIM, (busy,)).fetchone()[0][0]
                claims.append(plan["Execution Time"])
                pages.append(plan["Plan"]["Shared Hit Blocks"] + plan["Plan"]["Shared Read Blocks"])
        b.wait_idle(conn)
        syncs += 1
        sizes.append(float(conn.execute("SELECT sum(pg_total_relation_size(format('plaid_sync.%%I', t)::regclass)) "
                                        "FROM unnest(%s::text[]) AS t", (list(NON_DATA),)).fetchone()[0]))
        dead = dict(conn.execute("SELECT relname, n_dead_tup FROM pg_stat_user_tables "
                                 "WHERE schemaname = 'plaid_sync' AND relname IN ('items', 'inbox')").fetchall())
        dead_items.append(dead.get("items", 0))
        dead_inbox.append(dead.get("inbox", 0))
    # Timed as section 2 times its trials: after a CHECKPOINT, with no autovacuum at work (the
    # rounds above leave it busy on tables that grow with the run, and it takes one of the
    # two cores).
    b.settle(conn)
    lat = visible(b, emu, conn, probe, 20)
    runs = conn.execute("SELECT count(*) FROM plaid_sync.sync_runs").fetchone()[0]
    return syncs, {
        "bytes": b.pct(sizes, 50) / len(ids), "runs": runs / len(ids),
        "claim50": b.pct(claims, 50), "claim99": b.pct(claims, 99), "pages50": b.pct(pages, 50),
        "vis50": b.pct(lat, 50), "vis99": b.pct(lat, 99),
        "dead_items": b.pct(dead_items, 50), "dead_inbox": b.pct(dead_inbox, 50),
        "rss": max(rss_mb(conn)),
    }


def bench_longrun(b, emu, items_n, rounds):
    b.say(f"10. a year in compressed time: {items_n:,} Items x {rounds} syncs, history_retention {RETENTION_S} s")
    emu("reset")  # this section's Items only: each round advances every Item the emulator has
    c = b.cluster("longrun", emu, 2, **{
        # The pacer lifted as in section 1: the run measures plaid_sync's own costs over time.
        "plaid_sync.rate_limits": "'/transactions/sync=-/-, /accounts/get=-/-, /item/get=-/-'",
        "plaid_sync.history_retention": f"'{RETENTION_S}s'", "plaid_sync.done_retention": "'5s'",
        "plaid_sync.resync_interval": "0",
        # The webhooks are made in SQL, unsigned (as plaid_sync's own tests of the path do).
        "plaid_sync.verify_webhooks": "off",
        # Autovacuum's pace compressed with the rest (default: a look every minute).
        "autovacuum_naptime": "'5s'",
    })
    try:
        conn = c.connect("bench")
        b.wait_workers(conn, 2)
        items = emu("items", count=items_n, days=30, per_day=2)["items"]
        ids = [i["item_id"] for i in items]
        b.announce_all(conn, items)
        b.wait_idle(conn)
        syncs, t0 = 1, time.time()
        probe = ids[:20]
        # Warm up until the retention window is full and pruning has begun.
        while time.time() - t0 < RETENTION_S + 10:
            emu("advance", days=1, per_day=1)
            conn.execute(HOOKS, (ids,))
            b.wait_idle(conn)
            syncs += 1
        syncs, start = figures(b, emu, conn, ids, probe, syncs)
        at_start = syncs
        t1 = time.time()
        # The end: at least `rounds` syncs per Item, and three times as many as at the start.
        while syncs < max(rounds, 3 * at_start) - 1:
            emu("advance", days=1, per_day=1)
            conn.execute(HOOKS, (ids,))
            b.wait_idle(conn)
            syncs += 1
        rate = (syncs - at_start) * items_n / (time.time() - t1)
        syncs, end = figures(b, emu, conn, ids, probe, syncs)
        print(f"    start {json.dumps(start, default=float)}\n    end   {json.dumps(end, default=float)}", flush=True)

        def within(k, slack=0.0):
            return end[k] <= start[k] * 1.1 + slack

        head = f"after {at_start} / {syncs} syncs per Item"
        b.result("10a", f"non-data tables ({', '.join(NON_DATA)}) on disk per Item (median of {CLAIM_ROUNDS} readings), {head} "
                        f"({start['runs']:.1f} / {end['runs']:.1f} sync_runs rows per Item; {rate:,.0f} syncs/s)",
                 f"{start['bytes'] / 1024:.1f} KB → {end['bytes'] / 1024:.1f} KB", "end ≤ start + 10%", within("bytes"))
        b.result("10b", f"claiming a job (its search, EXPLAIN ANALYZE, 100 samples in each of {CLAIM_ROUNDS} rounds "
                        f"with half the round done and the workers held off), {head}",
                 f"p50 {start['claim50']:.2f} → {end['claim50']:.2f} ms, p99 {start['claim99']:.2f} → {end['claim99']:.2f} ms "
                 f"(pages read p50 {start['pages50']:.0f} → {end['pages50']:.0f})",
                 "end ≤ start + 10% (p50 +0.1 ms, p99 +0.5 ms)",
                 within("claim50", 0.1) and within("claim99", 0.5))
        b.result("10c", f"webhook → new transaction visible, 20 trials on an idle queue, {head}",
                 f"p50 {start['vis50']:.1f} → {end['vis50']:.1f} ms (p99 {start['vis99']:.1f} → {end['vis99']:.1f})",
                 "p50 end ≤ start + 10% (+1 ms)", within("vis50", 1.0))
        b.result("10d", f"dead tuples in items / inbox (autovacuum_naptime 5 s; median of {CLAIM_ROUNDS} readings), {head}",
                 f"{start['dead_items']:,} / {start['dead_inbox']:,} → {end['dead_items']:,} / {end['dead_inbox']:,}",
                 f"end ≤ start + 10% (+{items_n:,}: one round's)",
                 within("dead_items", items_n) and within("dead_inbox", items_n))
        b.result("10e", f"largest worker's private memory (RssAnon), {head}",
                 f"{start['rss']:.1f} MB → {end['rss']:.1f} MB", "end ≤ start + 10%", within("rss"))
    finally:
        c.stop()
