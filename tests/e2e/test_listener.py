"""The HTTP listener (plaid_sync.http_listen) on a server with one worker: the backend's
notices as WebhookDB's guide sends them (Ruby's Net::HTTP), Plaid's signed webhooks (curl),
every answer code, a slow client, and 5,000 webhooks over 50 connections."""

import http.client
import json
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time

import pytest

from conftest import KEY1_HEX, USED_SECRETS, Cluster, free_port, make_cluster, until
from harness import PG_BIN

HTTP_SECRET = "e2e-listener-secret-7c2a91"
USED_SECRETS.add(HTTP_SECRET)
DB = "listen"


@pytest.fixture(scope="module")
def listener(emulator):
    port = free_port()
    c = make_cluster("listener", emulator, **{
        "plaid_sync.database": f"'{DB}'",
        "plaid_sync.workers": 1,
        "plaid_sync.http_listen": f"'127.0.0.1:{port}'",
        "plaid_sync.http_secret": f"'{HTTP_SECRET}'",
        "plaid_sync.http_timeout": "'1s'",
        "plaid_sync.http_max_connections": 60,
    })
    c.start()
    c.create_database(DB)
    c.http_port = port
    until(lambda: listening(port), what="the listener")
    yield c
    c.stop()


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.fixture
def conn(listener):
    with listener.connect(DB) as c:
        yield c


def post(port, body, headers=None, method="POST"):
    h = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    data = body if isinstance(body, bytes) else body.encode()
    h.request(method, "/", body=data, headers={"Content-Type": "application/json", **(headers or {})})
    r = h.getresponse()
    answer = (r.status, r.read().decode())
    h.close()
    return answer


def too_large(port):
    """The status of a POST declaring a body over 1 MiB: answered from its headers, before any
    of the body is sent (sending it could meet the closed connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nPlaid-Sync-Secret: {HTTP_SECRET}\r\n"
                  f"Content-Length: {(1 << 20) + 2}\r\n\r\n".encode())
        return int(s.recv(64).split(b" ")[1])


def ruby(listener, program, **env):
    """A backend's program as the guide writes it, with the URL and secret from the environment."""
    r = subprocess.run(["ruby", "-e", program], capture_output=True, text=True, timeout=60, env={
        **os.environ, "WHDB_PLAID_WEBHOOK_URL": f"http://127.0.0.1:{listener.http_port}/",
        "WHDB_PLAID_WEBHOOK_SECRET": HTTP_SECRET, **env})
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


RUBY_POST = """
require 'net/http'
require 'json'
def whdb_post(body)
  resp = Net::HTTP.post(URI(ENV['WHDB_PLAID_WEBHOOK_URL']), body.to_json,
                        {'Content-Type' => 'application/json', 'Whdb-Webhook-Secret' => ENV['WHDB_PLAID_WEBHOOK_SECRET']})
  raise "WebhookDB answered #{resp.code}: #{resp.body}" unless resp.code == '200'
  puts resp.code
end
"""


def inbox_count(conn):
    return conn.execute("SELECT count(*) FROM plaid_sync.inbox").fetchone()[0]


def new_item(emulator, **kw):
    item = emulator("items", count=1, days=kw.get("days", 30), per_day=3)["items"][0]
    USED_SECRETS.add(item["access_token"])
    return item


def test_a_webhookdb_backend_works_unchanged(emulator, listener, conn):
    # 1. A new Item, right after the exchange.
    item = new_item(emulator)
    out = ruby(listener, RUBY_POST + """
whdb_post({webhook_type: 'ITEM', webhook_code: 'CREATED', item_id: ENV['ITEM_ID'], access_token: ENV['TOKEN']})
""", ITEM_ID=item["item_id"], TOKEN=item["access_token"])
    assert out.split() == ["200"]
    until(lambda: conn.execute("SELECT status = 'healthy' FROM plaid_sync.items WHERE item_id = %s",
                               (item["item_id"],)).fetchone()[0], timeout=60, what="the new Item's first sync")
    truth = emulator("state", item_id=item["item_id"])["transactions"]
    assert conn.execute("SELECT count(*) FROM plaid_sync.live_transactions WHERE item_id = %s",
                        (item["item_id"],)).fetchone()[0] == len(truth) > 0
    # 2. The existing Items, in a loop over the application's table.
    existing = [new_item(emulator) for _ in range(3)]
    out = ruby(listener, RUBY_POST + """
JSON.parse(ENV['ITEMS']).each do |item|
  whdb_post({webhook_type: 'ITEM', webhook_code: 'CREATED', item_id: item['item_id'], access_token: item['access_token']})
end
""", ITEMS=json.dumps([{"item_id": i["item_id"], "access_token": i["access_token"]} for i in existing]))
    assert out.split() == ["200"] * 3
    ids = [i["item_id"] for i in existing]
    until(lambda: conn.execute("SELECT count(*) = 3 FROM plaid_sync.items WHERE item_id = ANY(%s) AND status = 'healthy'",
                               (ids,)).fetchone()[0], timeout=60, what="the existing Items' syncs")
    # 3. A backfill, and 4. an Item after Link update mode.
    out = ruby(listener, RUBY_POST + """
whdb_post({webhook_type: 'TRANSACTIONS', webhook_code: 'HISTORICAL_UPDATE', item_id: ENV['ITEM_ID']})
whdb_post({webhook_type: 'ITEM', webhook_code: 'UPDATED', item_id: ENV['ITEM_ID']})
""", ITEM_ID=item["item_id"])
    assert out.split() == ["200", "200"]
    kinds = conn.execute("SELECT webhook_type || '/' || webhook_code FROM plaid_sync.inbox WHERE item_id = %s "
                         "AND source = 'backend' ORDER BY id", (item["item_id"],)).fetchall()
    assert [k[0] for k in kinds][-2:] == ["TRANSACTIONS/HISTORICAL_UPDATE", "ITEM/UPDATED"]
    until(lambda: conn.execute("SELECT count(*) = 0 FROM plaid_sync.inbox WHERE item_id = %s AND status IN ('pending', 'running')",
                               (item["item_id"],)).fetchone()[0], timeout=60, what="the backfill and the update")
    # No token in any row the listener wrote.
    assert conn.execute("SELECT count(*) FROM plaid_sync.inbox WHERE coalesce(body::text, raw_body) LIKE '%%access-sandbox-%%'").fetchone()[0] == 0


def test_curl_posts_a_signed_plaid_webhook_and_the_sync_follows(emulator, listener, conn):
    item = new_item(emulator)
    conn.execute("SELECT plaid_sync.plaid_notify_item_created(%s, %s)", (item["item_id"], item["access_token"]))
    until(lambda: conn.execute("SELECT status = 'healthy' FROM plaid_sync.items WHERE item_id = %s",
                               (item["item_id"],)).fetchone()[0], timeout=60, what="the first sync")
    emulator("advance", item_id=item["item_id"], days=2, per_day=3)
    w = emulator("webhook", item_id=item["item_id"])
    r = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", "-X", "POST", "-H", "Content-Type: application/json",
                        "-H", f"Plaid-Verification: {w['plaid_verification']}", "--data-binary", w["body"],
                        f"http://127.0.0.1:{listener.http_port}/"], capture_output=True, text=True, timeout=30)
    body, code = r.stdout.rsplit("\n", 1)
    assert code == "200", r.stdout
    inbox_id = json.loads(body)["inbox_id"]
    until(lambda: conn.execute("SELECT status = 'done' FROM plaid_sync.inbox WHERE id = %s", (inbox_id,)).fetchone()[0],
          timeout=60, what="the webhook's sync")
    truth = emulator("state", item_id=item["item_id"])["transactions"]
    assert conn.execute("SELECT count(*) FROM plaid_sync.live_transactions WHERE item_id = %s",
                        (item["item_id"],)).fetchone()[0] == len(truth)


def test_every_answer_code(emulator, listener, conn):
    port = listener.http_port
    item = new_item(emulator)
    created = json.dumps({"webhook_type": "ITEM", "webhook_code": "CREATED", "item_id": item["item_id"],
                          "access_token": item["access_token"]})
    before = inbox_count(conn)
    # 401: a wrong or empty secret, under either header; nothing stored.
    for header in ("Whdb-Webhook-Secret", "Plaid-Sync-Secret"):
        for wrong in ("nope", HTTP_SECRET[:-1], ""):
            status, body = post(port, created, {header: wrong})
            assert status == 401 and item["access_token"] not in body and HTTP_SECRET not in body
    assert inbox_count(conn) == before
    # 400: what plaid_notify refuses, with its message (never the token).
    status, body = post(port, created.replace('"ITEM"', '"ITEMS"'), {"Plaid-Sync-Secret": HTTP_SECRET})
    assert status == 400 and "unknown backend notice" in json.loads(body)["error"] and item["access_token"] not in body
    status, body = post(port, created[:-5], {"Plaid-Sync-Secret": HTTP_SECRET})
    assert status == 400 and item["access_token"] not in body
    # ... and what plaid_receive_webhook refuses: a backend notice sent as Plaid's.
    status, body = post(port, created, {"Plaid-Verification": "x.y.z"})
    assert status == 400 and item["access_token"] not in body
    assert inbox_count(conn) == before
    # 405, 413.
    assert post(port, "", method="GET")[0] == 405
    assert post(port, "{}", {"Plaid-Sync-Secret": HTTP_SECRET}, method="PUT")[0] == 405
    assert too_large(port) == 413
    # 200, with the inbox row's id.
    status, body = post(port, created, {"Plaid-Sync-Secret": HTTP_SECRET})
    assert status == 200
    inbox_id = json.loads(body)["inbox_id"]
    assert conn.execute("SELECT item_id, source FROM plaid_sync.inbox WHERE id = %s", (inbox_id,)).fetchone() == \
        (item["item_id"], "backend")
    # 503: the server cannot take a new token now (no encryption key), so the sender retries.
    conn.execute("ALTER SYSTEM SET plaid_sync.encryption_key = ''")
    listener.reload()
    try:
        n = inbox_count(conn)
        status, body = post(port, created, {"Plaid-Sync-Secret": HTTP_SECRET})
        assert status == 503 and "encryption_key" in body and item["access_token"] not in body
        assert inbox_count(conn) == n
    finally:
        conn.execute(f"ALTER SYSTEM SET plaid_sync.encryption_key = '{KEY1_HEX}'")
        listener.reload()
    assert post(port, created, {"Plaid-Sync-Secret": HTTP_SECRET})[0] == 200


def test_the_secret_changes_on_reload_and_is_never_shown(listener, conn):
    assert conn.execute("SHOW plaid_sync.http_secret").fetchone()[0] == "********"
    new = "e2e-listener-secret-rotated-55e1"
    USED_SECRETS.add(new)
    backfill = json.dumps({"webhook_type": "TRANSACTIONS", "webhook_code": "HISTORICAL_UPDATE", "item_id": "nope"})
    conn.execute(f"ALTER SYSTEM SET plaid_sync.http_secret = '{new}'")
    listener.reload()
    try:
        until(lambda: post(listener.http_port, backfill, {"Plaid-Sync-Secret": HTTP_SECRET})[0] == 401,
              what="the old secret refused")
        assert post(listener.http_port, backfill, {"Plaid-Sync-Secret": new})[0] == 400  # no such Item: past the secret
    finally:
        conn.execute(f"ALTER SYSTEM SET plaid_sync.http_secret = '{HTTP_SECRET}'")
        listener.reload()
    until(lambda: post(listener.http_port, backfill, {"Plaid-Sync-Secret": HTTP_SECRET})[0] == 400,
          what="the first secret again")


def test_a_slow_client_is_cut_off_and_others_are_served_meanwhile(emulator, listener, conn):
    port = listener.http_port
    slow = socket.create_connection(("127.0.0.1", port))
    started = time.time()
    cut = False
    served = 0
    for b in b"POST / HTTP/1.1\r\nHost: x\r\nPlaid-Verification: " + b"a" * 40:
        try:
            slow.sendall(bytes([b]))
        except OSError:
            cut = True
            break
        assert post(port, "{}")[0] == 400  # another client, served at once (an empty object is refused)
        served += 1
        time.sleep(0.25)
    if not cut:
        slow.settimeout(2)
        cut = slow.recv(1) == b""
    assert cut and time.time() - started < 3, "the slow client held its connection past the 1 s limit"
    assert served >= 3


def test_the_listener_stops_on_sigterm_and_restarts(listener, conn):
    pid = conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'plaid_sync listener'").fetchone()[0]
    t = time.time()
    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    until(lambda: not conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0],
          timeout=5, what="the listener to stop")
    assert time.time() - t < 1.0, "stopped within a second of SIGTERM"
    until(lambda: conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'plaid_sync listener'")
          .fetchone()[0] == 1, timeout=15, what="the listener to restart")
    until(lambda: listening(listener.http_port), timeout=15, what="the restarted listener to serve")
    assert post(listener.http_port, "{}")[0] == 400


@pytest.mark.slow
def test_5000_webhooks_over_50_connections_each_stored_once(emulator, listener, conn):
    item = new_item(emulator)
    conn.execute("SELECT plaid_sync.plaid_notify_item_created(%s, %s)", (item["item_id"], item["access_token"]))
    webhooks = [emulator("webhook", item_id=item["item_id"], webhook_type="ITEM",
                         webhook_code="WEBHOOK_UPDATE_ACKNOWLEDGED", fields={"new_webhook_url": f"https://x.test/{i}"})
                for i in range(5000)]
    answers = {}
    failures = []

    def send(share):
        h = http.client.HTTPConnection("127.0.0.1", listener.http_port, timeout=30)
        for i, w in share:
            h.request("POST", "/", body=w["body"], headers={"Content-Type": "application/json",
                                                              "Plaid-Verification": w["plaid_verification"]})
            r = h.getresponse()
            body = r.read()
            if r.status != 200 or r.getheader("Connection", "").lower() == "close":
                failures.append((i, r.status, body))
                h.close()
                h = http.client.HTTPConnection("127.0.0.1", listener.http_port, timeout=30)
            else:
                answers[i] = json.loads(body)["inbox_id"]
        h.close()

    threads = [threading.Thread(target=send, args=(list(enumerate(webhooks))[k::50],)) for k in range(50)]
    t = time.time()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    took = time.time() - t
    assert not failures, failures[:3]
    assert len(answers) == 5000 and len(set(answers.values())) == 5000
    rows = conn.execute("SELECT raw_body FROM plaid_sync.inbox WHERE id = ANY(%s)", (list(answers.values()),)).fetchall()
    urls = sorted(json.loads(r[0])["new_webhook_url"] for r in rows)
    assert urls == sorted(f"https://x.test/{i}" for i in range(5000)), "each webhook stored exactly once"
    print(f"5,000 webhooks over 50 connections in {took:.1f} s ({5000 / took:,.0f}/s)")


def test_a_standby_answers_503_and_serves_once_promoted(emulator, listener, conn):
    port = free_port()
    root = os.path.join(os.path.dirname(listener.root), "listener_standby")
    sb = Cluster(root, {**listener.settings, "plaid_sync.http_listen": f"'127.0.0.1:{port}'",
                        "primary_conninfo": f"'host={listener.sock} port={listener.port} user=postgres'"})
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(sb.sock)
    if os.geteuid() == 0:
        pw = pwd.getpwnam(sb.os_user)
        for p in (root, sb.sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    sb.run([f"{PG_BIN}/pg_basebackup", "-D", sb.data, "-R", "-X", "stream", "-c", "fast", "-h", listener.sock,
            "-p", str(listener.port), "-U", "postgres"])
    sb.write_conf()  # replaces the auto.conf pg_basebackup wrote; primary_conninfo is in the settings
    sb.start()
    try:
        with sb.connect(DB) as s:
            assert s.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        until(lambda: listening(port), what="the standby's listener")
        item = new_item(emulator)
        created = json.dumps({"webhook_type": "ITEM", "webhook_code": "CREATED", "item_id": item["item_id"],
                              "access_token": item["access_token"]})
        status, body = post(port, created, {"Plaid-Sync-Secret": HTTP_SECRET})
        assert status == 503 and "standby" in body and item["access_token"] not in body
        w = emulator("webhook", item_id=item["item_id"])
        assert post(port, w["body"], {"Plaid-Verification": w["plaid_verification"]})[0] == 503
        sb.run([f"{PG_BIN}/pg_ctl", "-D", sb.data, "-w", "promote"])
        until(lambda: post(port, created, {"Plaid-Sync-Secret": HTTP_SECRET})[0] == 200, timeout=30,
              what="the promoted standby to serve")
        with sb.connect(DB) as s:
            assert s.execute("SELECT count(*) FROM plaid_sync.items WHERE item_id = %s", (item["item_id"],)).fetchone()[0] == 1
    finally:
        sb.stop()
