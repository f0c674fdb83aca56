#!/usr/bin/env python3
"""The main job, end to end, on a throwaway PostgreSQL 15 with the local Plaid emulator: a
Link token from SQL, Link simulated with /sandbox/public_token/create, the public token
exchanged from SQL (the backend never holds Plaid's secret or an access token), the Item
synced; Plaid (the emulator) sends a signed SYNC_UPDATES_AVAILABLE webhook to the server's own
HTTP listener (plaid_sync.http_listen: no application route), which stores it for the workers
to verify and sync again; the same bank linked again is refused as a duplicate, and Link's
update mode opens on the Item from SQL.

With PLAID_CLIENT_ID and PLAID_SECRET set (and network access) Plaid's real sandbox is used
instead of the emulator; Plaid cannot reach this machine's listener, so that run asks for the
second sync with plaid_notify_item_updated.
"""

import argparse
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "emulator"))
from harness import Cluster, free_port, post_json  # noqa: E402
import psycopg  # noqa: E402
import plaid_emulator  # noqa: E402

KEY = os.urandom(32).hex()


def step(msg):
    print(f"\033[1m==> {msg}\033[0m", flush=True)


def plaid(base, path, body, client_id, secret):
    status, answer = post_json(base + path, dict(body, client_id=client_id, secret=secret))
    if status != 200:
        raise SystemExit(f"Plaid {path}: HTTP {status} {answer.get('error_code') if answer else ''}")
    return answer


def wait_listening(port, timeout=30):
    import socket
    for _ in range(int(timeout / 0.1)):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the HTTP listener did not start")


def wait_for_workers(conn, what, timeout=60):
    """The background workers do the work; we only watch the inbox drain."""
    started = time.time()
    while time.time() - started < timeout:
        left = conn.execute("SELECT count(*) FROM plaid_sync.inbox WHERE status IN ('pending', 'running')").fetchone()[0]
        if left == 0:
            step(f"{what}: done by the workers in {time.time() - started:.2f} s")
            return
        time.sleep(0.05)
    raise SystemExit(f"the workers did not finish ({what}) within {timeout} s")


def table(conn, title, sql, params=()):
    cur = conn.execute(sql, params)
    cols = [d.name for d in cur.description]
    rows = [[("" if v is None else str(v)) for v in r] for r in cur.fetchall()]
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)]
    print(f"\n{title}")
    print("  " + "  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  " + "  ".join("-" * w for w in widths))
    for r in rows:
        print("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="/var/tmp/plaid_sync_demo")
    ap.add_argument("--keep", action="store_true", help="leave the server running and print how to connect")
    a = ap.parse_args()
    real = bool(os.environ.get("PLAID_CLIENT_ID") and os.environ.get("PLAID_SECRET"))
    if real:
        base, client_id, secret = "https://sandbox.plaid.com", os.environ["PLAID_CLIENT_ID"], os.environ["PLAID_SECRET"]
        step("using Plaid's real sandbox (PLAID_CLIENT_ID / PLAID_SECRET are set)")
    else:
        client_id, secret = "demo-client", "demo-secret-" + os.urandom(6).hex()
        port = free_port()
        emu = plaid_emulator.serve(port, seed=7, client_id=client_id, secret=secret)
        threading.Thread(target=emu.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{port}"
        step(f"local Plaid emulator on {base}")

    listen_port = free_port()
    settings = {
        "plaid_sync.encryption_key": f"'{KEY}'",
        "plaid_sync.client_id": f"'{client_id}'",
        "plaid_sync.secret": f"'{secret}'",
        "plaid_sync.database": "'demo'",
        "plaid_sync.workers": 2,
        "plaid_sync.http_listen": f"'127.0.0.1:{listen_port}'",
    }
    if not real:
        settings["plaid_sync.api_url"] = f"'{base}'"
    cluster = Cluster(a.root, settings).init()
    step(f"PostgreSQL 15 in {a.root} (port {cluster.port}, socket {cluster.sock}), plaid_sync preloaded")
    cluster.start()
    try:
        cluster.create_database("demo")
        conn = cluster.connect("demo")
        hook = f"http://127.0.0.1:{listen_port}/plaid"
        wait_listening(listen_port)
        step(f"the server's HTTP listener on {hook} (plaid_sync.http_listen): Plaid's webhook URL, no application route")

        conn.execute("ALTER SYSTEM SET plaid_sync.client_name = 'plaid_sync demo'")
        conn.execute(f"ALTER SYSTEM SET plaid_sync.webhook_url = '{hook}'")
        conn.execute("SELECT pg_reload_conf()")
        time.sleep(0.2)
        step("SELECT plaid_sync.plaid_create_link_token('demo-user'): the backend's Link token, from SQL")
        link = conn.execute("SELECT plaid_sync.plaid_create_link_token('demo-user')").fetchone()[0]
        print(f"    link_token {link['link_token'][:18]}..., expires {link['expiration']}")

        step("Plaid Link, simulated with /sandbox/public_token/create: the user picks a bank and logs in")
        pt = plaid(base, "/sandbox/public_token/create", {"institution_id": "ins_109508", "initial_products": ["transactions"], "options": {"webhook": hook}}, client_id, secret)["public_token"]
        metadata = None if real else post_json(f"{base}/_emulator/link_metadata", {"public_token": pt})[1]

        step("SELECT plaid_sync.plaid_exchange_public_token(<public token>, 'demo-user', <Link's metadata>)")
        item_id = conn.execute("SELECT plaid_sync.plaid_exchange_public_token(%s, 'demo-user', %s::jsonb)",
                               (pt, json.dumps(metadata) if metadata else None)).fetchone()[0]
        print(f"    item {item_id}: its access token was sealed inside the database and never left it")
        wait_for_workers(conn, "first sync (item, institution, accounts, transactions)")
        n = conn.execute("SELECT count(*) FROM plaid_sync.live_transactions").fetchone()[0]
        step(f"first sync done: {n} transactions")

        if real:
            step("plaid_notify_item_updated (Plaid cannot reach the listener on this machine)")
            conn.execute("SELECT plaid_sync.plaid_notify_item_updated(%s)", (item_id,))
        else:
            step("three days pass at the bank: new transactions, pending ones post")
            post_json(f"{base}/_emulator/advance", {"item_id": item_id, "days": 3})
            step("Plaid fires SYNC_UPDATES_AVAILABLE (signed) at the listener, which stores it for the workers")
            post_json(f"{base}/_emulator/webhook", {"item_id": item_id, "webhook_type": "TRANSACTIONS",
                                                    "webhook_code": "SYNC_UPDATES_AVAILABLE", "deliver_to": hook})
            for _ in range(100):
                if conn.execute("SELECT count(*) FROM plaid_sync.inbox WHERE source = 'plaid'").fetchone()[0]:
                    break
                time.sleep(0.05)
            else:
                raise SystemExit("the webhook never reached plaid_receive_webhook")
        wait_for_workers(conn, "webhook verified and synced")
        m = conn.execute("SELECT count(*) FROM plaid_sync.live_transactions").fetchone()[0]
        step(f"now {m} live transactions")

        table(conn, "Accounts", "SELECT name, mask, type, subtype, balance_current, balance_available, iso_currency_code FROM plaid_sync.accounts ORDER BY name")
        table(conn, "Latest transactions", "SELECT date, name, merchant_name, amount, pending FROM plaid_sync.live_transactions ORDER BY date DESC, transaction_id LIMIT 10")
        table(conn, "Inbox", "SELECT id, source, webhook_type, webhook_code, status, verification FROM plaid_sync.inbox ORDER BY id")
        table(conn, "item_health", "SELECT item_id, status, institution_name, last_sync_outcome, pending_jobs, failed_jobs FROM plaid_sync.item_health")
        if m <= n and not real:
            raise SystemExit("the webhook sync brought no new transactions")

        if not real:
            step("the user links the same bank again: refused as a duplicate before anything is exchanged")
            pt2 = plaid(base, "/sandbox/public_token/create", {"institution_id": "ins_109508", "initial_products": ["transactions"]}, client_id, secret)["public_token"]
            meta2 = post_json(f"{base}/_emulator/link_metadata", {"public_token": pt2})[1]
            try:
                conn.execute("SELECT plaid_sync.plaid_exchange_public_token(%s, 'demo-user', %s::jsonb)", (pt2, json.dumps(meta2)))
                raise SystemExit("the duplicate Item was not refused")
            except psycopg.errors.UniqueViolation as e:
                print(f"    {e.sqlstate}: {e.diag.message_primary[:110]}...")
        step(f"Link update mode for {item_id}, from SQL: plaid_create_link_token('demo-user', item_id => ...)")
        upd = conn.execute("SELECT plaid_sync.plaid_create_link_token('demo-user', item_id => %s)", (item_id,)).fetchone()[0]
        print(f"    link_token {upd['link_token'][:18]}... opens Link on the Item; its token stayed in the database")
        step("Link finished in update mode: SELECT plaid_sync.plaid_notify_item_updated(...)")
        conn.execute("SELECT plaid_sync.plaid_notify_item_updated(%s)", (item_id,))
        wait_for_workers(conn, "the Item read again after update mode")
        table(conn, "item_health after update mode", "SELECT item_id, status, last_sync_outcome, failed_jobs FROM plaid_sync.item_health")
        print()
        if a.keep:
            print(f"The server is still running. Connect with:\n  psql -h {cluster.sock} -p {cluster.port} -U postgres demo")
            print(f"Stop it with:\n  runuser -u {cluster.os_user} -- /usr/lib/postgresql/15/bin/pg_ctl -D {cluster.data} stop")
        else:
            print("Done; the throwaway server is stopped. To explore the data with psql, run\n"
                  "  scripts/demo --keep\n"
                  f"and connect with the command it prints (this run's was: psql -h {cluster.sock} -p {cluster.port} -U postgres demo).")
    finally:
        if not a.keep:
            cluster.stop()


if __name__ == "__main__":
    main()
