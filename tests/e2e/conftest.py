"""Fixtures for the end-to-end suite: one real PostgreSQL 15 server per test session, with
plaid_sync preloaded. Tests that must not meet a worker use their own database (workers
serve only `plaid_sync.database`)."""

import base64
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from harness import Cluster, free_port, post_json  # noqa: E402,F401

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "emulator"))
import plaid_emulator  # noqa: E402

KEY1_HEX = "6b1f5c0a9e3d4c2b1a0f9e8d7c6b5a4938271605f4e3d2c1b0a9988776655443"
KEY2_B64 = base64.b64encode(bytes(range(100, 132))).decode()
SECRET = "e2e-plaid-secret-5f1d9c7a"
WORKER_DB = "e2e_workers"

# Every secret a test uses is registered here; the last test greps the server log for them.
USED_SECRETS: set[str] = {KEY1_HEX, KEY2_B64, SECRET}


def until(fn, timeout=30, every=0.05, what="condition"):
    """Polls fn until it returns something true; fails after timeout seconds."""
    import time
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def token(n: int | str) -> str:
    t = f"access-sandbox-e2e{n}-7c1e-4f55-9a2d-31b0c5e8d{str(n).rjust(3, '0')}"
    USED_SECRETS.add(t)
    return t


class Emulator:
    def __init__(self):
        self.port = free_port()
        self.server = plaid_emulator.serve(self.port, client_id="e2e-client", secret=SECRET)
        self.world = self.server.RequestHandlerClass.world
        self.url = f"http://127.0.0.1:{self.port}"
        self._run()

    def _run(self):
        import threading
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        """Plaid is unreachable: open connections are cut and new ones are refused."""
        self.server.shutdown()
        self.server.server_close()
        plaid_emulator.drop_connections()

    def start(self):
        """Back on the same port, with the same data."""
        from http.server import ThreadingHTTPServer
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), plaid_emulator.Handler)
        self.server.daemon_threads = True
        self._run()

    def __call__(self, what, **body):
        return post_json(f"{self.url}/_emulator/{what}", body)[1]


@pytest.fixture(scope="session")
def emulator():
    e = Emulator()
    yield e
    e.server.shutdown()


def make_cluster(name, emulator, **settings):
    """A throwaway server for the suite, talking to the session's emulator."""
    root = os.path.join(os.environ.get("PLAID_SYNC_TEST_DIR", "/var/tmp/plaid_sync_test"), name)
    return Cluster(root, {
        "plaid_sync.encryption_key": f"'{KEY1_HEX}'",
        "plaid_sync.client_id": "'e2e-client'",
        "plaid_sync.secret": f"'{SECRET}'",
        "plaid_sync.api_url": f"'{emulator.url}'",
        **settings,
    }).init()


@pytest.fixture(scope="session")
def cluster(emulator):
    c = make_cluster("e2e", emulator, **{
        "plaid_sync.database": f"'{WORKER_DB}'",
        "plaid_sync.workers": 0,
        "plaid_sync.retry_base_delay": "'10ms'",
        "plaid_sync.retry_max_delay": "'50ms'",
        "plaid_sync.max_attempts": 4,
    })
    c.start()
    yield c
    c.stop()


@pytest.fixture
def db(cluster, request):
    name = "t_" + re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:55]
    cluster.create_database(name)
    yield name
    with cluster.connect() as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def su(cluster, db):
    with cluster.connect(db) as conn:
        yield conn
