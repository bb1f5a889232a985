#!/usr/bin/env bash
# PostgreSQL 15 for the shared-store suites (runtime/tests/shared_store.rs): they start their
# own cluster with initdb and pg_ctl from /usr/lib/postgresql/15/bin.
set -euo pipefail
if [ -x /usr/lib/postgresql/15/bin/initdb ] && [ -x /usr/lib/postgresql/15/bin/pg_dump ]; then
    exit 0
fi
echo "tests/setup/10-postgres.sh: installing postgresql-15" >&2
if ! apt-cache show postgresql-15 >/dev/null 2>&1; then
    apt-get update >&2
fi
apt-get install -y postgresql-15 >&2
