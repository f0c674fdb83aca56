"""The README's first command keeps working: the demo's flow, run non-interactively."""

import os
import subprocess
import sys


def test_demo_runs_end_to_end(tmp_path):
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.join(os.environ.get("PLAID_SYNC_TEST_DIR", "/var/tmp/plaid_sync_test"), "demo")
    env = {k: v for k, v in os.environ.items() if k not in ("PLAID_CLIENT_ID", "PLAID_SECRET")}
    r = subprocess.run([sys.executable, os.path.join(here, "..", "demo.py"), "--root", root],
                       capture_output=True, text=True, timeout=300, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "verified (kid" in out
    assert "healthy" in out and "First Platypus Bank" in out
    assert "access-sandbox-" not in out, "the demo must not print the access token"
    assert "plaid_exchange_public_token" in out and "23505: duplicate Item" in out
    assert "Link update mode" in out and "the Item read again after update mode: done" in out
    # The throwaway server is gone afterwards.
    assert not os.path.exists(os.path.join(root, "data", "postmaster.pid"))
