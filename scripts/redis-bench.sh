#!/usr/bin/env bash
# NaiveKV's RESP port against redis-server with an append-only file, same
# machine, same redis-benchmark runs (not run in CI).
#
# Pairs compared, each with pipelines of 1 and 16:
#   NaiveKV --sync always              vs redis --appendonly yes --appendfsync always
#   NaiveKV --sync interval (1000 ms)  vs redis --appendonly yes --appendfsync everysec
# Each run: redis-benchmark -t set,get -n $N -c $CLIENTS -P {1,16}
# -d $VALUE_BYTES -r $KEYSPACE -q --csv (random keys over the keyspace, the
# issue's workload: 100-byte values over 1M keys), then one client without
# pipelining (-c 1 -P 1 -n $N1, same values and keys) for latency.
# Prints a markdown table: requests/s for the P1 and P16 rows, p50 latency
# in ms for the c1 rows, and one ratio column whose direction is fixed:
# above 1.0 is always NaiveKV better (throughput: NaiveKV/Redis; latency:
# Redis p50 / NaiveKV p50, i.e. NaiveKV's p50 is that many times lower).
# The load average is printed before and after.
#
# ROUNDS=n (default 1) measures every cell n times, NaiveKV and Redis
# back to back in each round (alternating which goes first), and prints
# the medians and the median of the per-round ratios with their range: on
# a shared 2-core VM one run's ratio moved by 20 % from run to run
# (docs/BENCHMARKS.md, session 29).
#
# Usage: scripts/redis-bench.sh   (N=200000 N16=1000000 N1=20000 CLIENTS=50
# VALUE_BYTES=100 KEYSPACE=1000000 ROUNDS=1 by default; NAIVE_BIN=path runs that
# server binary instead of building run_server)
set -euo pipefail

cd "$(dirname "$0")/.."
N=${N:-200000}
# Pipelined runs go 5-10x faster: with N requests they lasted a quarter of a
# second, and the connection set-up and the first flush moved them by 30 %.
N16=${N16:-1000000}
N1=${N1:-20000}
ROUNDS=${ROUNDS:-1}
CLIENTS=${CLIENTS:-50}
VALUE_BYTES=${VALUE_BYTES:-100}
KEYSPACE=${KEYSPACE:-1000000}
SHAPE=(-d "$VALUE_BYTES" -r "$KEYSPACE")

for tool in redis-server redis-benchmark redis-cli; do
    if ! command -v "$tool" >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null && apt-get install -y -qq redis-tools redis-server >/dev/null
        break
    fi
done
NAIVE_BIN=${NAIVE_BIN:-}
if [[ -z "$NAIVE_BIN" ]]; then
    cargo build --release --quiet --bin run_server
    NAIVE_BIN=target/release/run_server
fi

work=$(mktemp -d)
pid=""
port=""
stop() {
    if [[ -n "$pid" ]]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=""
    fi
}
trap 'stop; rm -rf "$work"' EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_ready() {
    for _ in $(seq 100); do
        [[ "$(redis-cli -p "$1" ping 2>/dev/null)" == "PONG" ]] && return 0
        sleep 0.1
    done
    echo "server on $1 did not start" >&2
    return 1
}

# Both start a server in the background, setting $pid and $port (not in a
# subshell: $pid must survive for stop).
start_naive() { # sync flags...
    port=$(free_port)
    rm -rf "$work/naive"
    RUST_LOG=warn "$NAIVE_BIN" --directory "$work/naive" --port "$(free_port)" \
        --resp-port "$port" "$@" >"$work/naive.log" 2>&1 &
    pid=$!
    wait_ready "$port"
}

start_redis() { # appendfsync
    port=$(free_port)
    rm -rf "$work/redis" && mkdir -p "$work/redis"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$work/redis" --save "" \
        --appendonly yes --appendfsync "$1" --daemonize no >"$work/redis.log" 2>&1 &
    pid=$!
    wait_ready "$port"
}

# requests/s of "SET" and "GET" from a CSV run, as "set get".
bench() { # pipeline port
    local n=$N
    [[ "$1" == 1 ]] || n=$N16
    redis-benchmark -p "$2" -t set,get -n "$n" -c "$CLIENTS" -P "$1" "${SHAPE[@]}" -q --csv 2>/dev/null \
        | awk -F'"' '$2 == "SET" { s = $4 } $2 == "GET" { g = $4 } END { print s, g }'
}

# p50 latency in ms of "SET" and "GET" with one client, no pipelining.
bench_p50() { # port
    redis-benchmark -p "$1" -t set,get -n "$N1" -c 1 -P 1 "${SHAPE[@]}" -q --csv 2>/dev/null \
        | awk -F'"' '$2 == "SET" { s = $10 } $2 == "GET" { g = $10 } END { print s, g }'
}

# One table row from the rounds' figures (space-separated, one per round,
# NaiveKV's and Redis's in the same order): their medians, and the ratio,
# NaiveKV's advantage (above 1.0: NaiveKV better; NaiveKV/Redis for
# throughput, Redis/NaiveKV for latency), per round, as the median and,
# with several rounds, the range.
row() { # name pipeline test "naive..." "redis..." [latency]
    local cells
    cells=$(python3 - "$4" "$5" "${6:-}" <<'PY' 2>/dev/null || echo "? ? ?"
import statistics, sys
naive = [float(x) for x in sys.argv[1].split()]
redis = [float(x) for x in sys.argv[2].split()]
inverse = sys.argv[3] != ""
ratios = sorted((r / n) if inverse else (n / r) for n, r in zip(naive, redis))
fmt = "{:.3f}" if inverse else "{:.0f}"
ratio = f"{statistics.median(ratios):.2f}"
if len(ratios) > 1:
    ratio += f" ({ratios[0]:.2f}-{ratios[-1]:.2f})"
print(fmt.format(statistics.median(naive)), fmt.format(statistics.median(redis)), ratio.replace(" ", "_"))
PY
)
    local naive redis ratio
    read -r naive redis ratio <<<"$cells"
    printf '| %-44s | %-7s | %-4s | %12s | %12s | %-42s |\n' "$1" "$2" "$3" "$naive" "$redis" \
        "${ratio//_/ }"
}

# Runs "$@" (a bench function taking the port last) against NaiveKV with
# $naive_flags and Redis with $redis_fsync, ROUNDS times, NaiveKV first in
# odd rounds; sets naive_a/naive_b and redis_a/redis_b (the two figures of
# each run, one per round, space-separated).
measure() { # bench-function [args before the port...]
    naive_a="" naive_b="" redis_a="" redis_b=""
    local round server a b
    for ((round = 1; round <= ROUNDS; round++)); do
        for server in naive redis; do
            if ((round % 2 == 0)); then
                [[ $server == naive ]] && server=redis || server=naive
            fi
            if [[ $server == naive ]]; then
                # shellcheck disable=SC2086
                start_naive $naive_flags
            else
                start_redis "$redis_fsync"
            fi
            read -r a b < <("$@" "$port")
            stop
            if [[ $server == naive ]]; then
                naive_a+=" $a" naive_b+=" $b"
            else
                redis_a+=" $a" redis_b+=" $b"
            fi
        done
    done
}

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(redis-server --version | cut -d' ' -f1-3)"
echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg); rounds: $ROUNDS"
echo "# redis-benchmark -t set,get -n $N (P16: -n $N16) -c $CLIENTS -d $VALUE_BYTES -r $KEYSPACE -q --csv"
echo "# P1/P16 rows: requests/s, ratio = NaiveKV/Redis throughput (above 1.0: NaiveKV faster)"
echo "# c1 p50 rows (-c 1 -P 1 -n $N1): p50 latency in ms, lower is better;"
echo "#   ratio = Redis p50 / NaiveKV p50 (above 1.0: NaiveKV's latency lower)"
printf '| %-44s | %-7s | %-4s | %12s | %12s | %-42s |\n' durability P test NaiveKV Redis \
    "NaiveKV/Redis r/s (c1: Redis/NaiveKV p50)"
printf '|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..46})" --------- ------ \
    "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..44})"
for pair in "always|--sync always|always" "1 s|--sync interval --sync-interval-ms 1000|everysec"; do
    IFS='|' read -r label naive_flags redis_fsync <<<"$pair"
    name="sync $label / appendfsync $redis_fsync"
    for pipeline in 1 16; do
        measure bench "$pipeline"
        row "$name" "$pipeline" SET "$naive_a" "$redis_a"
        row "$name" "$pipeline" GET "$naive_b" "$redis_b"
    done
    measure bench_p50
    row "$name" "c1 p50" SET "$naive_a" "$redis_a" inverse
    row "$name" "c1 p50" GET "$naive_b" "$redis_b" inverse
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
