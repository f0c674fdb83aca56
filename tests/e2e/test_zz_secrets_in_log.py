"""Runs last: no secret used anywhere in this session reached a server log (the main server,
the workers' server that calls Plaid with the tokens, and the demo's)."""

import glob
import os

from conftest import KEY1_HEX, SECRET, USED_SECRETS


def test_reloading_a_changed_secret_does_not_log_it(cluster):
    new_secret = "e2e-rotated-secret-0b9e2d41"
    USED_SECRETS.add(new_secret)
    with cluster.connect() as c:
        c.execute(f"ALTER SYSTEM SET plaid_sync.secret = '{new_secret}'")
    cluster.reload()
    with cluster.connect() as c:
        c.execute(f"ALTER SYSTEM SET plaid_sync.secret = '{SECRET}'")
    cluster.reload()


def test_no_secret_in_any_server_log(cluster):
    root = os.environ.get("PLAID_SYNC_TEST_DIR", "/var/tmp/plaid_sync_test")
    logs = glob.glob(os.path.join(root, "*", "server.log"))
    assert cluster.logfile in logs and len(logs) >= 2, logs
    for path in logs:
        with open(path, encoding="utf-8", errors="replace") as f:
            log = f.read()
        assert log, f"{path} is being written"
        leaked = sorted(s for s in USED_SECRETS if s in log)
        assert not leaked, f"{len(leaked)} secrets found in {path}"
        assert KEY1_HEX not in log
