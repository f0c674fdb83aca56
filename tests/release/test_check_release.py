"""scripts/check_release.py: released upgrade scripts are frozen, and a schema change needs a
new version and an upgrade script. Each case edits a copy of the repository's release files."""

import hashlib
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
CHECK = os.path.join(ROOT, "scripts", "check_release.py")
SCHEMA = os.environ.get("PLAID_SYNC_SCHEMA", os.path.join(ROOT, "target", "schema-current.sql"))


sys.path.insert(0, os.path.join(ROOT, "scripts"))
import check_release  # noqa: E402

LAST = check_release.releases(ROOT)[-1][0]


def run(root):
    r = subprocess.run([sys.executable, CHECK, "--root", root, "--schema", SCHEMA], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


@pytest.fixture
def repo(tmp_path):
    """The files the check reads, copied."""
    for f in ["RELEASES", "Cargo.toml"]:
        shutil.copy(os.path.join(ROOT, f), tmp_path / f)
    shutil.copytree(os.path.join(ROOT, "sql"), tmp_path / "sql")
    return tmp_path


def version(repo):
    import re
    return re.search(r'^version = "(.+)"', (repo / "Cargo.toml").read_text(), re.M).group(1)


def test_the_repository_passes():
    assert os.path.exists(SCHEMA), "scripts/test generates the schema first"
    code, out = run(ROOT)
    assert code == 0, out


def test_an_edited_released_script_fails(repo):
    """Release the current version (as the release commit would), then edit its script."""
    script = f"sql/plaid_sync--{LAST}--{version(repo)}.sql"
    with open(repo / "RELEASES", "a") as f:
        f.write(f"{version(repo)} 0000000000000000000000000000000000000000\n")
    digest = hashlib.sha256((repo / script).read_bytes()).hexdigest()
    with open(repo / "sql" / "frozen.sha256", "a") as f:
        f.write(f"{digest}  {script}\n")
    shutil.copy(SCHEMA, repo / "sql" / "released" / f"plaid_sync--{version(repo)}.sql")
    assert run(str(repo))[0] == 0
    with open(repo / script, "a") as f:
        f.write("-- one more line\n")
    code, out = run(str(repo))
    assert code == 1 and "was edited" in out and script in out


def test_a_script_to_a_release_must_be_frozen(repo):
    with open(repo / "RELEASES", "a") as f:
        f.write(f"{version(repo)} 0000000000000000000000000000000000000000\n")
    shutil.copy(SCHEMA, repo / "sql" / "released" / f"plaid_sync--{version(repo)}.sql")
    code, out = run(str(repo))
    assert code == 1 and "is not frozen" in out


def schema_changed_since_the_last_release(repo):
    """The last release's SQL with one object fewer than this tree generates."""
    with open(SCHEMA) as f:
        sql = f.read()
    (repo / "sql" / "released" / f"plaid_sync--{LAST}.sql").write_text(
        sql + "\n/* <begin connected objects> */\nCREATE TABLE plaid_sync.dropped_since (id int);\n")


def test_a_schema_change_without_an_upgrade_script_fails(repo):
    schema_changed_since_the_last_release(repo)
    os.remove(repo / "sql" / f"plaid_sync--{LAST}--{version(repo)}.sql")
    code, out = run(str(repo))
    assert code == 1 and "there is no" in out


def test_a_schema_change_under_the_released_version_fails(repo):
    schema_changed_since_the_last_release(repo)
    toml = (repo / "Cargo.toml").read_text().replace(f'version = "{version(repo)}"', f'version = "{LAST}"', 1)
    (repo / "Cargo.toml").write_text(toml)
    code, out = run(str(repo))
    assert code == 1 and f"the version is still {LAST}" in out


def test_an_unchanged_schema_needs_no_script(repo):
    shutil.copy(SCHEMA, repo / "sql" / "released" / f"plaid_sync--{LAST}.sql")
    os.remove(repo / "sql" / f"plaid_sync--{LAST}--{version(repo)}.sql")
    assert run(str(repo))[0] == 0
