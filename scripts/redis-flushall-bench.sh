#!/usr/bin/env bash
# FLUSHALL of many keys on NaiveKV's RESP port: how long it takes to answer,
# and how soon compaction gives the space back. A measurement, not a gate.
#
# Builds run_server (release), starts it on free loopback ports with a fresh
# temporary directory (--sync none), loads KEYS keys (default 1,000,000) with
# `redis-cli --pipe` (MSET of 1000 keys per command, 60-byte values), waits
# until they are in segments, then times FLUSHALL and polls `INFO engine`
# until the segments hold less than a tenth of their bytes (at most 300 s).
# Prints the figures with the load average.
#
# Usage: scripts/redis-flushall-bench.sh     KEYS=200000 for a shorter run.
# Needs redis-cli (Debian's redis-tools).
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)
KEYS=${KEYS:-1000000}

command -v redis-cli >/dev/null || { echo "needs redis-cli (apt-get install redis-tools)" >&2; exit 1; }
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.3f}')"; }
info() { redis-cli -p "$port" info engine | tr -d '\r' | awk -F: -v k="$1" '$1 == k { print $2 }'; }

cargo build --release --quiet --bin run_server
data=$(mktemp -d /tmp/nkv-flushall-bench.XXXXXX)
native_port=$(free_port)
port=$(free_port)
RUST_LOG=warn "$repo/target/release/run_server" --directory "$data" --port "$native_port" \
    --resp-port "$port" --sync none >"$data.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data" "$data.log"' EXIT
for _ in $(seq 100); do
    [[ "$(redis-cli -p "$port" ping 2>/dev/null)" == PONG ]] && break
    sleep 0.1
done

t0=$(now)
python3 - "$KEYS" <<'EOF' | redis-cli -p "$port" --pipe >/dev/null
import sys
keys = int(sys.argv[1])
value = "v" * 60
out = sys.stdout
for start in range(0, keys, 1000):
    end = min(start + 1000, keys)
    parts = ["MSET"]
    for i in range(start, end):
        parts += [f"key:{i:09d}", value]
    out.write(f"*{len(parts)}\r\n")
    for part in parts:
        out.write(f"${len(part)}\r\n{part}\r\n")
EOF
loaded=$(elapsed "$t0" "$(now)")
[[ "$(redis-cli -p "$port" dbsize)" == "$KEYS" ]] || { echo "DBSIZE is not $KEYS" >&2; exit 1; }
for _ in $(seq 600); do
    [[ "$(info frozen_memtables)" == 0 && "$(info segment_bytes)" != 0 ]] && break
    sleep 0.1
done
before=$(info segment_bytes)

t0=$(now)
reply=$(redis-cli -p "$port" flushall)
flushed=$(elapsed "$t0" "$(now)")
[[ $reply == OK ]] || { echo "FLUSHALL answered $reply" >&2; exit 1; }

after=$before
for _ in $(seq 3000); do
    after=$(info segment_bytes)
    (( after * 10 < before )) && break
    sleep 0.1
done
reclaimed=$(elapsed "$t0" "$(now)")
[[ "$(redis-cli -p "$port" dbsize)" == 0 ]] || { echo "keys left after FLUSHALL" >&2; exit 1; }

echo "keys: $KEYS, loaded in ${loaded} s"
echo "FLUSHALL answered in ${flushed} s (redis-cli round trip included)"
echo "segment bytes: $before before, $after ${reclaimed} s after FLUSHALL was sent"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
