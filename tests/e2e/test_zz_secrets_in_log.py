"""Runs last: no secret used anywhere in this session reached the server log."""

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


def test_no_secret_in_the_server_log(cluster):
    log = cluster.log_text()
    assert "plaid_sync" in log or log, "the log is being written"
    leaked = sorted(s for s in USED_SECRETS if s in log)
    assert not leaked, f"{len(leaked)} secrets found in the server log"
    assert KEY1_HEX not in log
