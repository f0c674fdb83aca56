"""Fixtures for the end-to-end suite: real PostgreSQL servers with plaid_sync preloaded.

Jobs run two ways, as in production and as `plaid_process_inbox` runs them:
- `inbox`: a server without workers (`plaid_sync.workers = 0`); each test has a database of
  its own and `drain` runs the jobs with `plaid_process_inbox` in the test's session;
- `workers`: a server with two workers serving one database, which each test gets anew (the
  extension dropped and created again, as a user may); `drain` only waits while the workers
  run the jobs on their threads.

A test marked `both_ways` runs once each way (its id ends in `[inbox]` or `[workers]`);
every other test runs the `inbox` way."""

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
WORKER_DB = "e2e_workers"  # served by the inbox server's (absent) workers: nothing runs there
RUN_DB = "postgres"  # served by the workers server's two workers (initdb made it: they never wait for it)

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
    """A token in Plaid's format (access-sandbox-<uuid>), the same for the same n."""
    import hashlib
    import uuid
    t = f"access-sandbox-{uuid.UUID(hashlib.md5(f'e2e-{n}'.encode()).hexdigest())}"
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


FAST_RETRIES = {
    "plaid_sync.retry_base_delay": "'10ms'",
    "plaid_sync.retry_max_delay": "'50ms'",
    "plaid_sync.max_attempts": 4,
}


@pytest.fixture(scope="session")
def inbox_cluster(emulator):
    c = make_cluster("e2e", emulator, **{
        "plaid_sync.database": f"'{WORKER_DB}'",
        "plaid_sync.workers": 0,
        **FAST_RETRIES,
    })
    c.start()
    yield c
    c.stop()


@pytest.fixture(scope="session")
def workers_cluster(emulator):
    c = make_cluster("e2e_workers", emulator, **{
        "plaid_sync.database": f"'{RUN_DB}'",
        "plaid_sync.workers": 2,
        **FAST_RETRIES,
    })
    c.start()
    with c.connect(RUN_DB) as conn:
        until(lambda: conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'plaid_sync worker' "
                                   "AND datname = %s", (RUN_DB,)).fetchone()[0] == 2, what="two workers")
    yield c
    c.stop()


def pytest_configure(config):
    config.addinivalue_line("markers", "both_ways: runs with plaid_process_inbox and under running workers")
    config.addinivalue_line("markers", "workers_only: runs under running workers only (paid calls)")
    config.addinivalue_line("markers", "slow: left out by scripts/test --quick (floods, throughput, restarts)")


def pytest_generate_tests(metafunc):
    if "jobs_run_by" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker
    ways = ["inbox", "workers"] if marker("both_ways") else ["workers"] if marker("workers_only") else ["inbox"]
    metafunc.parametrize("jobs_run_by", ways, indirect=True, ids=ways if len(ways) > 1 else None)


@pytest.fixture
def jobs_run_by(request):
    return request.param


@pytest.fixture
def cluster(request, jobs_run_by):
    return request.getfixturevalue(f"{jobs_run_by}_cluster")


# Lines no job may leave in a server log: a job thread that reached into Postgres.
JOB_THREAD_SLIPS = ("may not be called from multiple threads", "read on a job thread")


# Anything shaped like an access token, whether or not a test made it with token().
TOKEN_SHAPE = re.compile(r"access-[a-z]+-[0-9a-fA-F]{8}-[0-9a-fA-F]{4}")


def assert_no_secret_in_log(cluster, log_from):
    """After every test, whatever it refused: no secret it used, and nothing shaped like a
    token, reached the server log (the log is read from where the test began)."""
    with open(cluster.logfile, encoding="utf-8", errors="replace") as f:
        f.seek(log_from)
        log = f.read()
    leaked = [s for s in USED_SECRETS if s in log]
    shaped = TOKEN_SHAPE.findall(log)
    assert not leaked and not shaped, f"{len(leaked)} secrets and {len(shaped)} token-shaped strings in the log"


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_server_log():
    """When the session ends: no secret used anywhere in it reached any server's log (the
    inbox and workers servers, the demo's, and the servers tests start themselves)."""
    yield
    import glob
    root = os.environ.get("PLAID_SYNC_TEST_DIR", "/var/tmp/plaid_sync_test")
    for path in glob.glob(os.path.join(root, "*", "server.log")):
        with open(path, encoding="utf-8", errors="replace") as f:
            log = f.read()
        leaked = [s for s in USED_SECRETS if s in log]
        assert not leaked and KEY1_HEX not in log, f"{len(leaked)} secrets found in {path}"


def log_size(cluster):
    try:
        return os.path.getsize(cluster.logfile)
    except FileNotFoundError:
        return 0


@pytest.fixture
def db(cluster, jobs_run_by, request):
    log_from = log_size(cluster)
    if jobs_run_by == "workers":
        yield from _workers_database(cluster)
    else:
        name = "t_" + re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:55]
        cluster.create_database(name)
        yield name
        with cluster.connect() as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert_no_secret_in_log(cluster, log_from)


def _workers_database(cluster):
    """The workers' database with the extension created anew; afterwards, no job may have
    failed with an internal error and no job thread may have touched Postgres."""
    log_from = len(cluster.log_text())
    with cluster.connect(RUN_DB) as c:
        if c.execute("SELECT count(*) FROM pg_extension WHERE extname = 'plaid_sync'").fetchone()[0]:
            until(lambda: c.execute("SELECT count(*) = 0 FROM plaid_sync.inbox WHERE status = 'running'").fetchone()[0],
                  timeout=120, what="the workers to finish the last test's jobs")
            c.execute("DROP EXTENSION plaid_sync CASCADE")
        c.execute("CREATE EXTENSION plaid_sync")
    yield RUN_DB
    with cluster.connect(RUN_DB) as c:
        bugs = c.execute("SELECT id, webhook_type, webhook_code, last_error FROM plaid_sync.inbox "
                         "WHERE last_error LIKE 'internal error%%'").fetchall()
    slips = [line for line in cluster.log_text()[log_from:].splitlines() if any(s in line for s in JOB_THREAD_SLIPS)]
    assert not bugs and not slips, (bugs, slips)


@pytest.fixture
def su(cluster, db):
    with cluster.connect(db) as conn:
        yield conn
