# Seatkeeper tasks. `just --list` shows them.

# Serve on 127.0.0.1:3000 with the in-memory store and demo plans.
run:
    cargo run -p seatkeeper-server

# Every test of the workspace.
test:
    cargo test --workspace

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Rewrite openapi.yaml from the code (the test `openapi` fails while it is stale).
openapi:
    cargo run -q -p seatkeeper-server -- openapi > openapi.yaml.new
    mv openapi.yaml.new openapi.yaml

# Clients from openapi.yaml with openapi-generator (python, typescript-fetch, rust), openapi-python-client and openapi-typescript, into /tmp/seatkeeper-clients: lists their warnings, fails on any not explained in docs/architecture.md (installs the pinned generators under ~/.cache/seatkeeper/).
check-clients:
    bash .ci/check-clients.sh

# Schema fuzzing: schemathesis against the debug server on the in-memory store, every check and phase (~20 s after the build; FUZZ_SEED=random for other inputs).
fuzz-api:
    bash .ci/schemathesis.sh

# What CI runs.
ci:
    bash .ci/run

# The benchmark table of docs/benchmarks.md (release build, ~10 minutes from scratch; the table ~15 minutes; needs PostgreSQL with pgbench, and a MongoDB replica set: `just mongodb`).
bench:
    bash bench/run.sh

# The MongoDB rows alone: the seatkeeper-mongobench ceiling, then the server on MongoDB (needs `just mongodb`; SEATKEEPER_BENCH_MONGODB_URL for another replica set).
bench-mongo:
    BENCH_STORES=mongo bash bench/run.sh

# Resident memory after 1,000,000 in-memory purchases (24 h and 5 s key retention) and over 1,000,000 sold-out requests.
bench-memory:
    bash bench/memory.sh all

# The payment-latency target in memory: interleaved 0 / 50 ms pairs with the echo control (~5 minutes).
bench-latency:
    bash bench/latency.sh

# Completed checkouts (open, confirm, webhook) against purchases, three interleaved rounds per store and plan count (~8 minutes; release binaries).
bench-checkout:
    bash bench/checkout.sh

# 10,000 live availability streams on one instance: their memory, and how fast one change reaches them all.
bench-streams:
    bash bench/streams.sh

# A single-node MongoDB 6.0 replica set on 127.0.0.1:27017 without Docker (start | stop | url | binary).
mongodb action="start":
    bash deploy/mongodb.sh {{action}}
