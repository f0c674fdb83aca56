# PGXS-style entry points around cargo-pgrx, for those who install extensions with
# `make install PG_CONFIG=...`. The PostgreSQL major (and so the cargo feature) comes from
# the pg_config given; cargo-pgrx also copies the upgrade scripts in sql/. scripts/setup
# installs cargo-pgrx and what it needs.
PG_CONFIG ?= pg_config
CARGO ?= cargo
PG_MAJOR := $(shell $(PG_CONFIG) --version 2>/dev/null | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
PGRX_FLAGS = --pg-config $(PG_CONFIG) --no-default-features --features pg$(PG_MAJOR)

.PHONY: all install uninstall package installcheck check-pg-config

all: check-pg-config
	$(CARGO) pgrx package $(PGRX_FLAGS) --out-dir target/make-build

install: check-pg-config
	$(CARGO) pgrx install --release $(PGRX_FLAGS)

uninstall: check-pg-config
	rm -f "$(shell $(PG_CONFIG) --pkglibdir)/plaid_sync.so" \
	      "$(shell $(PG_CONFIG) --sharedir)/extension/plaid_sync.control" \
	      "$(shell $(PG_CONFIG) --sharedir)"/extension/plaid_sync--*.sql

package:
	scripts/package $(PG_MAJOR)

installcheck:
	PLAID_SYNC_MAJORS="$(PG_MAJOR)" scripts/test

check-pg-config:
	@test -n "$(PG_MAJOR)" || { echo "PG_CONFIG=$(PG_CONFIG) is not a working pg_config" >&2; exit 1; }
	@case "$(PG_MAJOR)" in 15|16|17|18) ;; *) echo "PostgreSQL $(PG_MAJOR) is not supported (15-18)" >&2; exit 1;; esac
