"""Secrets and the server log: what a reload does with a changed secret. (Every test's log is
checked for secrets and token-shaped text by conftest's `db` fixture, and every server log of
the session once more when the session ends.)"""

from conftest import SECRET, USED_SECRETS, log_size


def test_reloading_a_changed_secret_does_not_log_it(cluster):
    new_secret = "e2e-rotated-secret-0b9e2d41"
    USED_SECRETS.add(new_secret)
    log_from = log_size(cluster)
    try:
        with cluster.connect() as c:
            c.execute(f"ALTER SYSTEM SET plaid_sync.secret = '{new_secret}'")
        cluster.reload()
        with cluster.connect() as c:
            # Masked even for a superuser: the setting is shown, its value never.
            assert c.execute("SELECT current_setting('plaid_sync.secret')").fetchone()[0] == "********"
    finally:
        with cluster.connect() as c:
            c.execute(f"ALTER SYSTEM SET plaid_sync.secret = '{SECRET}'")
        cluster.reload()
    with open(cluster.logfile, encoding="utf-8", errors="replace") as f:
        f.seek(log_from)
        log = f.read()
    assert "received SIGHUP" in log, "the reload happened"
    assert new_secret not in log and SECRET not in log
