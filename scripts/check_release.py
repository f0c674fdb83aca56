#!/usr/bin/env python3
"""Release discipline, checked (scripts/test runs it before anything is built):

1. An upgrade script that belongs to a recorded release (RELEASES) is frozen: its SHA-256 is in
   sql/frozen.sha256 and must still match, and every script to a recorded release must be there.
2. When the SQL `cargo pgrx schema` generates (--schema) differs from the last release's
   (sql/released/plaid_sync--<last>.sql), the crate's version must be a new one and
   sql/plaid_sync--<last>--<version>.sql must exist.

    check_release.py --schema target/schema-current.sql [--root DIR]

Exit status 1, with one line per problem, when either fails.
"""

import argparse
import hashlib
import os
import re
import sys


def releases(root):
    """[(version, commit)] from RELEASES, oldest first."""
    out = []
    with open(os.path.join(root, "RELEASES")) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                version, commit = line.split()
                out.append((version, commit))
    return out


def crate_version(root):
    with open(os.path.join(root, "Cargo.toml")) as f:
        return re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M).group(1)


def normalized(sql):
    """pgrx's generated SQL as a sorted list of its blocks, without comments or layout: pgrx
    says its order follows a dependency graph and is not stable, and its comments name source
    lines."""
    blocks = []
    for block in sql.split("/* <begin connected objects> */"):
        block = re.sub(r"/\*.*?\*/", " ", block, flags=re.S)
        block = "\n".join(line.split("--", 1)[0] if not line.lstrip().startswith("--") else ""
                          for line in block.splitlines())
        block = " ".join(block.split())
        if block:
            blocks.append(block)
    return sorted(blocks)


def check(root, schema_file):
    problems = []
    recorded = releases(root)
    versions = {v for v, _ in recorded}
    frozen_path = os.path.join(root, "sql", "frozen.sha256")
    frozen = {}
    if os.path.exists(frozen_path):
        with open(frozen_path) as f:
            for line in f:
                if line.strip():
                    digest, path = line.split()
                    frozen[path] = digest
    for path, digest in frozen.items():
        full = os.path.join(root, path)
        if not os.path.exists(full):
            problems.append(f"{path} belongs to a release and is gone")
        elif hashlib.sha256(open(full, "rb").read()).hexdigest() != digest:
            problems.append(f"{path} belongs to a release and was edited: released scripts are frozen; "
                            "put the change in a new upgrade script")
    for name in sorted(os.listdir(os.path.join(root, "sql"))):
        m = re.fullmatch(r"plaid_sync--(.+)--(.+)\.sql", name)
        if m and m.group(2) in versions and f"sql/{name}" not in frozen:
            problems.append(f"sql/{name} leads to release {m.group(2)} but is not frozen in sql/frozen.sha256")

    last = recorded[-1][0]
    current = crate_version(root)
    released_schema = os.path.join(root, "sql", "released", f"plaid_sync--{last}.sql")
    if not os.path.exists(released_schema):
        problems.append(f"sql/released/plaid_sync--{last}.sql (the SQL release {last} generated) is missing")
    else:
        with open(released_schema) as a, open(schema_file) as b:
            changed = normalized(a.read()) != normalized(b.read())
        if changed and current == last:
            problems.append(f"the generated SQL differs from release {last}'s, but the version is still {last}: "
                            "bump the version and write the upgrade script")
        elif changed and not os.path.exists(os.path.join(root, "sql", f"plaid_sync--{last}--{current}.sql")):
            problems.append(f"the generated SQL differs from release {last}'s and there is no "
                            f"sql/plaid_sync--{last}--{current}.sql")
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    ap.add_argument("--schema", required=True, help="the SQL `cargo pgrx schema` generated for this tree")
    args = ap.parse_args()
    problems = check(args.root, args.schema)
    for p in problems:
        print(f"release check: {p}", file=sys.stderr)
    if not problems:
        print("release check: ok")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
