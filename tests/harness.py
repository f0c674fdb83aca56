"""A throwaway PostgreSQL cluster (15 unless PLAID_SYNC_PG_BIN says otherwise) with plaid_sync preloaded, for the end-to-end suite,
the demo and the benchmarks.

PostgreSQL refuses to run as root, so when we are root every server command runs as a plain
OS user (PLAID_SYNC_TEST_USER, created by scripts/setup). Each cluster has its own data
directory, port and socket directory, and is stopped when the caller is done with it.
"""

import json
import os
import pwd
import shutil
import socket
import subprocess
import time

import psycopg


def post_json(url: str, body: dict, timeout: float = 30):
    """POSTs JSON the way Plaid clients do; returns (HTTP status, parsed body), errors included."""
    import urllib.error
    import urllib.request
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Plaid-Version": "2020-09-14"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")

# The server the suite runs: PostgreSQL 15 from Debian unless scripts/test points it at another major.
PG_BIN = os.environ.get("PLAID_SYNC_PG_BIN", "/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, root: str, settings: dict, user: str | None = None):
        self.root = root
        self.data = os.path.join(root, "data")
        self.sock = os.path.join(root, "sock")
        self.logfile = os.path.join(root, "server.log")
        self.port = free_port()
        self.settings = settings
        self.os_user = user or os.environ.get("PLAID_SYNC_TEST_USER", "plaidsync")

    # -- running things as the cluster's OS user ------------------------------------------
    def _as_user(self, argv):
        if os.geteuid() == 0:
            return ["runuser", "-u", self.os_user, "--"] + argv
        return argv

    def run(self, argv, check=True, **kw):
        return subprocess.run(self._as_user(argv), check=check, capture_output=True, text=True, **kw)

    # -- life cycle -------------------------------------------------------------------------
    def init(self):
        if os.path.exists(self.root):
            shutil.rmtree(self.root)
        os.makedirs(self.sock)
        if os.geteuid() == 0:
            pw = pwd.getpwnam(self.os_user)
            for p in (self.root, self.sock):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        self.run([f"{PG_BIN}/initdb", "-D", self.data, "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8", "--locale=C"])
        self.write_conf()
        return self

    def write_conf(self):
        base = {
            "port": self.port,
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.sock}'",
            "shared_preload_libraries": "'plaid_sync'",
            "fsync": "off",
            "max_connections": 200,
            "log_line_prefix": "'%m [%p] %b '",
        }
        base.update(self.settings)
        lines = [f"{k} = {v}" for k, v in base.items()]
        with open(os.path.join(self.data, "postgresql.auto.conf"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self):
        r = self.run([f"{PG_BIN}/pg_ctl", "-D", self.data, "-l", self.logfile, "-w", "-t", "60", "start"], check=False)
        if r.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {r.stdout}{r.stderr}\n{self.log_tail()}")
        return self

    def stop(self, mode="fast"):
        self.run([f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop"], check=False)

    def reload(self):
        with self.connect() as c:
            c.execute("SELECT pg_reload_conf()")
        time.sleep(0.3)  # the postmaster signals every process; give them a moment

    def log_text(self) -> str:
        try:
            with open(self.logfile, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, n=40) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    # -- clients ---------------------------------------------------------------------------
    def dsn(self, dbname="postgres", user="postgres") -> str:
        return f"host={self.sock} port={self.port} dbname={dbname} user={user}"

    def connect(self, dbname="postgres", user="postgres", autocommit=True) -> psycopg.Connection:
        return psycopg.connect(self.dsn(dbname, user), autocommit=autocommit)

    def create_database(self, name: str, extension=True):
        with self.connect() as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            c.execute(f'CREATE DATABASE "{name}"')
        if extension:
            with self.connect(name) as c:
                c.execute("CREATE EXTENSION plaid_sync")
        return name
