"""Notification webhooks to the backend (plaid_sync.notify_url), on a server with two workers
and a receiver of our own: every event delivered at least once, signed, in order per Item;
retried with backoff while the receiver fails, hangs or is down, never delaying a sync; sent
again on request; nothing lost across kill -9 of a worker."""

import hashlib
import hmac
import json
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest

from conftest import USED_SECRETS, free_port, make_cluster, until

NOTIFY_SECRET = "e2e-notify-secret-3b8e01"
USED_SECRETS.add(NOTIFY_SECRET)
DB = "notify"


class Receiver:
    """The backend's endpoint: records what arrives; can fail, hang, or be down."""

    def __init__(self):
        self.port = free_port()
        self.got = []
        self.fail = 0
        self.hang = False
        self.server = None
        self.up()

    def up(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                if receiver.hang:
                    time.sleep(5)
                    return
                if receiver.fail > 0:
                    receiver.fail -= 1
                    self.send_response(500)
                else:
                    receiver.got.append((dict(self.headers), body))
                    self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self):
        self.server.shutdown()
        self.server.server_close()

    def events(self):
        return [json.loads(body) for _, body in self.got]


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.down()


@pytest.fixture(scope="module")
def notifying(emulator, receiver):
    c = make_cluster("notify", emulator, **{
        "plaid_sync.database": f"'{DB}'",
        "plaid_sync.workers": 2,
        "plaid_sync.notify_url": f"'http://127.0.0.1:{receiver.port}/plaid-sync'",
        "plaid_sync.notify_secret": f"'{NOTIFY_SECRET}'",
        "plaid_sync.request_timeout": "'1s'",
    })
    c.start()
    c.create_database(DB)
    yield c
    c.stop()


@pytest.fixture
def conn(notifying, receiver):
    receiver.got.clear()
    receiver.fail, receiver.hang = 0, False
    with notifying.connect(DB) as c:
        yield c


def announce(emulator, conn, days=5):
    item = emulator("items", count=1, days=days, per_day=2)["items"][0]
    USED_SECRETS.add(item["access_token"])
    conn.execute("SELECT plaid_sync.plaid_notify_item_created(%s, %s)", (item["item_id"], item["access_token"]))
    return item


def settled(conn, timeout=60):
    until(lambda: conn.execute("SELECT count(*) = 0 FROM plaid_sync.deliveries WHERE status = 'pending'").fetchone()[0]
          and conn.execute("SELECT count(*) = 0 FROM plaid_sync.inbox WHERE status IN ('pending', 'running')").fetchone()[0],
          timeout=timeout, what="every job and delivery done")


def verify(headers, body):
    """The receiver's check, written from the README's description (not from our code)."""
    t, v1 = (p.split("=", 1)[1] for p in headers["Plaid-Sync-Signature"].split(","))
    expected = hmac.new(NOTIFY_SECRET.encode(), f"{t}.{body}".encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, v1) and abs(time.time() - int(t)) < 300


def test_every_event_is_delivered_signed_once_and_in_order_per_item(emulator, conn, receiver):
    items = [announce(emulator, conn) for _ in range(3)]
    settled(conn)
    for it in items:
        emulator("advance", item_id=it["item_id"], days=1, per_day=3)
        w = emulator("webhook", item_id=it["item_id"])
        conn.execute("SELECT plaid_sync.plaid_receive_webhook(%s, %s)", (w["body"], w["plaid_verification"]))
    settled(conn)
    conn.execute("SELECT plaid_sync.plaid_remove_item(%s)", (items[0]["item_id"],))
    settled(conn)
    rows = conn.execute("SELECT id, event_id::text, item_id, event, attempts FROM plaid_sync.deliveries ORDER BY id").fetchall()
    got = receiver.events()
    assert len(got) == len(rows) and {e["event_id"] for e in got} == {r[1] for r in rows}, "each exactly once"
    for headers, body in receiver.got:
        assert verify(headers, body)
        assert headers["Plaid-Sync-Event-Id"] == json.loads(body)["event_id"]
        assert all(it["access_token"] not in body for it in items) and NOTIFY_SECRET not in body
    for it in items:
        sent = [r[1] for r in rows if r[2] == it["item_id"]]
        arrived = [e["event_id"] for e in got if e["item_id"] == it["item_id"]]
        assert arrived == sent, "in order per Item"
        kinds = [(e["type"], e.get("event"), e.get("to")) for e in got if e["item_id"] == it["item_id"]]
        assert kinds[0] == ("item", "status", "healthy") and kinds.count(("sync", None, None)) == 2
    assert ("item", "status", "removed") in [(e["type"], e.get("event"), e.get("to")) for e in got]
    assert all(r[4] == 1 for r in rows)


def test_a_rolled_back_change_queues_nothing(emulator, conn):
    it = announce(emulator, conn)
    settled(conn)
    n = conn.execute("SELECT count(*) FROM plaid_sync.deliveries").fetchone()[0]
    with conn.transaction():
        conn.execute("SELECT plaid_sync.plaid_remove_item(%s)", (it["item_id"],))
        assert conn.execute("SELECT count(*) FROM plaid_sync.deliveries").fetchone()[0] == n + 1
        raise psycopg.Rollback()
    assert conn.execute("SELECT count(*) FROM plaid_sync.deliveries").fetchone()[0] == n


def test_a_receiver_failing_three_times_gets_it_on_the_fourth_and_syncs_go_on(emulator, conn, receiver):
    receiver.fail = 3
    t = time.time()
    it = announce(emulator, conn)
    until(lambda: conn.execute("SELECT status = 'healthy' FROM plaid_sync.items WHERE item_id = %s",
                               (it["item_id"],)).fetchone()[0], what="the sync, whatever the receiver does")
    synced = time.time() - t
    settled(conn)
    first = conn.execute("SELECT attempts, status, last_error FROM plaid_sync.deliveries WHERE item_id = %s ORDER BY id LIMIT 1",
                         (it["item_id"],)).fetchone()
    assert first == (4, "done", None)
    assert synced < 5 and receiver.events()[0]["event_id"]


def test_a_receiver_that_never_answers_is_retried_without_delaying_a_sync(emulator, conn, receiver):
    receiver.hang = True
    it = announce(emulator, conn)
    until(lambda: conn.execute("SELECT status = 'healthy' FROM plaid_sync.items WHERE item_id = %s",
                               (it["item_id"],)).fetchone()[0], timeout=10, what="the sync")
    until(lambda: conn.execute("SELECT max(attempts) >= 2 FROM plaid_sync.deliveries WHERE item_id = %s",
                               (it["item_id"],)).fetchone()[0], timeout=30, what="a second try")
    err = conn.execute("SELECT last_error FROM plaid_sync.deliveries WHERE item_id = %s ORDER BY id LIMIT 1",
                       (it["item_id"],)).fetchone()[0]
    assert err.startswith("no answer") and "127.0.0.1" not in err
    receiver.hang = False
    settled(conn)
    assert [e["item_id"] for e in receiver.events()].count(it["item_id"]) >= 2


def test_redeliver_sends_one_again_and_refuses_bad_input(emulator, conn, receiver):
    it = announce(emulator, conn)
    settled(conn)
    did = conn.execute("SELECT id FROM plaid_sync.deliveries WHERE item_id = %s ORDER BY id LIMIT 1", (it["item_id"],)).fetchone()[0]
    before = len(receiver.got)
    conn.execute("SELECT plaid_sync.plaid_redeliver(%s)", (did,))
    settled(conn)
    assert len(receiver.got) == before + 1
    for bad, message in ((None, "must not be NULL"), (-1, "no delivery -1")):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
            conn.execute("SELECT plaid_sync.plaid_redeliver(%s::bigint)", (bad,))


def test_nothing_is_lost_across_kill_9_of_a_worker(emulator, notifying, conn, receiver):
    receiver.down()
    try:
        it = announce(emulator, conn)
        until(lambda: conn.execute("SELECT max(attempts) >= 1 FROM plaid_sync.deliveries WHERE item_id = %s",
                                   (it["item_id"],)).fetchone()[0], what="a try against the absent receiver")
        pid = conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'plaid_sync worker' LIMIT 1").fetchone()[0]
        os.kill(pid, signal.SIGKILL)  # the postmaster restarts every process
    finally:
        receiver.up()
    time.sleep(1)

    def delivered():
        try:
            with notifying.connect(DB) as c:
                return c.execute("SELECT count(*) = 0 FROM plaid_sync.deliveries WHERE status = 'pending'").fetchone()[0]
        except psycopg.OperationalError:
            return False  # still recovering
    until(delivered, timeout=120, what="the deliveries after the crash")
    assert it["item_id"] in [e["item_id"] for e in receiver.events()]


@pytest.mark.slow
def test_a_receiver_down_for_a_minute_gets_everything_after(emulator, conn, receiver):
    receiver.down()
    try:
        items = [announce(emulator, conn) for _ in range(2)]
        time.sleep(60)
        assert conn.execute("SELECT count(*) FROM plaid_sync.deliveries WHERE status = 'pending'").fetchone()[0] >= 2
    finally:
        receiver.up()
    settled(conn, timeout=180)
    got = {e["item_id"] for e in receiver.events()}
    assert {it["item_id"] for it in items} <= got


def test_an_event_older_than_24_hours_is_dead_after_its_next_failure_and_delivered_ones_expire(emulator, notifying, conn, receiver):
    it = announce(emulator, conn)
    settled(conn)
    # Delivered rows go with done_retention (worker 0's maintenance, every 5 s).
    conn.execute("ALTER SYSTEM SET plaid_sync.done_retention = '1s'")
    notifying.reload()
    try:
        until(lambda: conn.execute("SELECT count(*) = 0 FROM plaid_sync.deliveries WHERE item_id = %s",
                                   (it["item_id"],)).fetchone()[0], timeout=30, what="delivered rows to expire")
    finally:
        conn.execute("ALTER SYSTEM RESET plaid_sync.done_retention")
        notifying.reload()
    # An event a day old that fails once more is given up: dead, and sent no more.
    receiver.fail = 100
    conn.execute("SELECT plaid_sync.plaid_remove_item(%s)", (it["item_id"],))
    conn.execute("UPDATE plaid_sync.deliveries SET created_at = now() - interval '25 hours' WHERE item_id = %s", (it["item_id"],))
    until(lambda: conn.execute("SELECT status = 'dead' FROM plaid_sync.deliveries WHERE item_id = %s",
                               (it["item_id"],)).fetchone()[0], timeout=30, what="the old event to be dead")
    row = conn.execute("SELECT attempts, last_error FROM plaid_sync.deliveries WHERE item_id = %s", (it["item_id"],)).fetchone()
    assert row[0] >= 1 and row[1] == "the receiver answered HTTP 500"
    # Sent again on request, and delivered this time.
    receiver.fail = 0
    did = conn.execute("SELECT id FROM plaid_sync.deliveries WHERE item_id = %s", (it["item_id"],)).fetchone()[0]
    conn.execute("SELECT plaid_sync.plaid_redeliver(%s)", (did,))
    settled(conn)
    assert conn.execute("SELECT status FROM plaid_sync.deliveries WHERE id = %s", (did,)).fetchone()[0] == "done"
