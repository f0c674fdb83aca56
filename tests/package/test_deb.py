"""The PostgreSQL 15 package: installed with dpkg -i on the system server, it holds what the
README says, and CREATE EXTENSION plus one sync work through it. Run by scripts/test after
scripts/package 15, as root; PLAID_SYNC_DEB names the .deb."""

import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "emulator"))
from harness import Cluster, free_port  # noqa: E402
import plaid_emulator  # noqa: E402

DEB = os.environ.get("PLAID_SYNC_DEB")
pytestmark = pytest.mark.skipif(not DEB or os.geteuid() != 0,
                                reason="needs PLAID_SYNC_DEB and root (scripts/test runs it as root or through sudo)")
LIB = "/usr/lib/postgresql/15/lib/plaid_sync.so"
EXT = "/usr/share/postgresql/15/extension"
KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
SECRET = "package-test-secret-3b9e"


def sh(*argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def installed():
    for f in [LIB, f"{EXT}/plaid_sync.control"] + [os.path.join(EXT, n) for n in os.listdir(EXT) if n.startswith("plaid_sync--")]:
        if os.path.exists(f):
            os.remove(f)  # whatever a source build left: only the package's files count
    sh("dpkg", "-i", DEB)
    yield
    sh("dpkg", "-r", "postgresql-15-plaid-sync")


def test_package_metadata_and_files(installed):
    fields = sh("dpkg-deb", "-f", DEB, "Package", "Version", "Depends", "Architecture")
    assert "Package: postgresql-15-plaid-sync" in fields
    assert "Architecture: amd64" in fields
    assert "postgresql-15" in fields.split("Depends:")[1].splitlines()[0]
    files = sh("dpkg", "-L", "postgresql-15-plaid-sync").split()
    version = sh("dpkg-deb", "-f", DEB, "Version").strip()
    assert LIB in files
    assert f"{EXT}/plaid_sync.control" in files
    assert f"{EXT}/plaid_sync--{version}.sql" in files
    repo_sql = os.path.join(HERE, "..", "..", "sql")
    for n in os.listdir(repo_sql):
        if n.startswith("plaid_sync--") and n.count("--") == 2:
            assert f"{EXT}/{n}" in files, n  # every upgrade script
    assert "/usr/share/doc/postgresql-15-plaid-sync/README.md" in files
    assert "/usr/share/doc/postgresql-15-plaid-sync/copyright" in files
    # The library on disk is the package's.
    with tempfile.TemporaryDirectory() as d:
        sh("dpkg-deb", "-x", DEB, d)
        packaged = open(os.path.join(d, LIB.lstrip("/")), "rb").read()
    assert hashlib.sha256(open(LIB, "rb").read()).digest() == hashlib.sha256(packaged).digest()


def test_create_extension_and_one_sync_through_the_package(installed):
    port = free_port()
    emu = plaid_emulator.serve(port, client_id="pkg-client", secret=SECRET)
    threading.Thread(target=emu.serve_forever, daemon=True).start()
    root = os.path.join(os.environ.get("PLAID_SYNC_TEST_DIR", "/var/tmp/plaid_sync_test"), "package")
    c = Cluster(root, {
        "plaid_sync.encryption_key": f"'{KEY}'", "plaid_sync.client_id": "'pkg-client'",
        "plaid_sync.secret": f"'{SECRET}'", "plaid_sync.api_url": f"'http://127.0.0.1:{port}'",
        "plaid_sync.database": "'app'", "plaid_sync.workers": 1,
    }).init()
    c.start()
    try:
        c.create_database("app")
        with c.connect("app") as conn:
            assert conn.execute("SELECT plaid_sync.version() = extversion FROM pg_extension "
                                "WHERE extname = 'plaid_sync'").fetchone()[0]
            from harness import post_json
            item = post_json(f"http://127.0.0.1:{port}/_emulator/items", {"count": 1, "days": 20})[1]["items"][0]
            conn.execute("SELECT plaid_sync.plaid_notify_item_created(%s, %s)", (item["item_id"], item["access_token"]))
            deadline = time.time() + 30
            while time.time() < deadline:
                st = conn.execute("SELECT status FROM plaid_sync.items").fetchone()[0]
                if st == "healthy":
                    break
                time.sleep(0.2)
            assert st == "healthy", c.log_tail()
            assert conn.execute("SELECT count(*) FROM plaid_sync.live_transactions").fetchone()[0] > 20
    finally:
        c.stop()
        emu.shutdown()
