#!/usr/bin/env bash
# Client compatibility of NaiveKV's Redis protocol listener.
#
# Builds run_server (release), starts it with --resp-port on free loopback
# ports and a temporary directory, and drives it with real clients:
# redis-py with protocol 2 and with its default (3 in redis-py 8), redis-cli
# one-shot (with -e: exit 1 on an error reply), redis-cli --pipe loading 10k
# keys, and a bounded redis-benchmark. Each check reads values back.
# Installs what it needs (redis-tools, redis-server, pip, redis-py) if
# missing. Prints "N passed, M failed"; exits non-zero if any failed.
#
# Usage: scripts/redis-compat.sh   (from anywhere; about 1-3 minutes)
set -euo pipefail

cd "$(dirname "$0")/.."
started=$(date +%s)

log() { printf '[redis-compat] %s\n' "$*" >&2; }

install_tools() {
    if ! command -v redis-cli >/dev/null || ! command -v redis-benchmark >/dev/null \
        || ! command -v redis-server >/dev/null || ! python3 -m pip --version >/dev/null 2>&1; then
        log "installing redis-tools, redis-server, python3-pip"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq redis-tools redis-server python3-pip >/dev/null
    fi
    if ! python3 -c 'import redis' 2>/dev/null; then
        log "installing redis-py"
        python3 -m pip install -q redis 2>/dev/null \
            || python3 -m pip install -q --break-system-packages redis
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

install_tools
log "building run_server (release)"
cargo build --release --quiet --bin run_server

work=$(mktemp -d)
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

native_port=$(free_port)
port=$(free_port)
while [[ "$port" == "$native_port" ]]; do port=$(free_port); done
# --sync interval: the checks are about the protocol; the counter runs
# INCRs one WAL sync each under --sync always, which would make the
# INCR benchmark slow without telling anything more.
RUST_LOG=warn target/release/run_server --directory "$work/data" --port "$native_port" \
    --resp-port "$port" --sync interval >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
    if [[ "$(redis-cli -p "$port" ping 2>/dev/null)" == "PONG" ]]; then break; fi
    sleep 0.1
done
log "server pid $server_pid, RESP port $port"

passed=0
failed=0
check() {
    local name=$1
    shift
    local t0 out
    t0=$(date +%s%N)
    if out=$("$@" 2>&1); then
        passed=$((passed + 1))
        printf 'PASS %-34s %6d ms\n' "$name" $((($(date +%s%N) - t0) / 1000000))
    else
        failed=$((failed + 1))
        printf 'FAIL %-34s\n%s\n' "$name" "$out" | head -40
    fi
}

redis_py() {
    python3 - "$port" "$1" <<'PY'
import sys
import redis

port, protocol = int(sys.argv[1]), sys.argv[2]
kwargs = {} if protocol == "default" else {"protocol": int(protocol)}
r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True, **kwargs)
p = f"py{protocol}:"
assert r.ping() is True
assert r.set(p + "k", "v") is True
assert r.get(p + "k") == "v", r.get(p + "k")
assert r.get(p + "missing") is None
assert r.set(p + "k", "w", nx=True) is None
assert r.set(p + "k", "w", xx=True) is True
assert r.setnx(p + "k", "x") is False
assert r.mset({p + "a": "1", p + "b": "2"}) is True
assert r.mget([p + "a", p + "missing", p + "b"]) == ["1", None, "2"]
assert r.incr(p + "a") == 2 and r.incrby(p + "a", 10) == 12 and r.decr(p + "a") == 11
assert r.append(p + "k", "zz") == 3 and r.strlen(p + "k") == 3
assert r.exists(p + "a", p + "b", p + "missing") == 2
pipe = r.pipeline(transaction=False)
for i in range(200):
    pipe.set(f"{p}n{i}", i)
    pipe.get(f"{p}n{i}")
out = pipe.execute()
assert out[1::2] == [str(i) for i in range(200)]
keys = set(r.scan_iter(match=p + "n*", count=37))
assert len(keys) == 200, len(keys)
assert len(r.keys(p + "n1*")) == 111
assert r.delete(p + "a", p + "b", p + "missing") == 2
assert r.get(p + "a") is None
r.client_setname("compat")
assert r.client_getname() == "compat"
assert r.config_get("save") == {"save": ""}
info = r.info()
assert "redis_version" in info and "db0" in info, info
assert r.dbsize() >= 201
try:
    r.incr(p + "k")
    raise AssertionError("INCR of text did not fail")
except redis.ResponseError as e:
    assert "not an integer" in str(e)
spoken = int(r.connection_pool.get_connection().protocol or 2)
expected = 3 if protocol == "default" and int(redis.__version__.split(".")[0]) >= 8 else int(
    protocol if protocol != "default" else spoken
)
assert spoken == expected, (spoken, expected)
print("protocol", spoken, "ok")
PY
}

redis_cli_oneshot() {
    local cli=(redis-cli -p "$port")
    [[ "$("${cli[@]}" set cli:k hello)" == "OK" ]]
    [[ "$("${cli[@]}" get cli:k)" == "hello" ]]
    [[ "$("${cli[@]}" -e append cli:k " world")" == "11" ]]
    [[ "$("${cli[@]}" -e get cli:k)" == "hello world" ]]
    local status=0
    "${cli[@]}" -e incr cli:k >"$work/err.txt" 2>&1 || status=$?
    [[ $status -eq 1 ]] || { echo "redis-cli -e on an error exited $status"; return 1; }
    grep -q "not an integer" "$work/err.txt"
    # Without -e an error reply still exits 0, as with Redis.
    "${cli[@]}" incr cli:k >/dev/null
    [[ "$("${cli[@]}" command count)" -gt 10 ]]
}

redis_cli_pipe() {
    python3 - >"$work/pipe.txt" <<'PY'
import sys
out = sys.stdout.buffer
for i in range(10000):
    k, v = f"pipe:{i}".encode(), f"value-{i}".encode()
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
PY
    redis-cli -p "$port" --pipe <"$work/pipe.txt" >"$work/pipe.out" 2>&1
    grep -q "errors: 0, replies: 10000" "$work/pipe.out" || { cat "$work/pipe.out"; return 1; }
    [[ "$(redis-cli -p "$port" get pipe:9999)" == "value-9999" ]]
    [[ "$(redis-cli -p "$port" get pipe:0)" == "value-0" ]]
    [[ "$(redis-cli -p "$port" --scan --pattern 'pipe:*' | wc -l)" -eq 10000 ]]
}

redis_benchmark() {
    redis-benchmark -p "$port" -t set,get,incr,mset,ping -n 20000 -c 20 -q --csv \
        >"$work/bench.csv" 2>"$work/bench.err" || { cat "$work/bench.err"; return 1; }
    cat "$work/bench.csv" >&2
    local tests
    tests=$(grep -c '^"' "$work/bench.csv" || true)
    [[ $tests -ge 6 ]] || { echo "only $tests result lines"; return 1; }
    # Every INCR of the benchmark's one counter key counted: none lost.
    [[ "$(redis-cli -p "$port" get counter:__rand_int__)" == "20000" ]]
    # SET and MSET wrote the benchmark's 3-byte random payload.
    [[ "$(redis-cli -p "$port" strlen key:__rand_int__)" == "3" ]]
}

check "redis-py protocol=2" redis_py 2
check "redis-py default protocol (RESP3)" redis_py default
check "redis-cli one-shot and -e" redis_cli_oneshot
check "redis-cli --pipe 10k keys" redis_cli_pipe
check "redis-benchmark -n 20000" redis_benchmark

if ! kill -0 "$server_pid" 2>/dev/null; then
    log "server died:"; tail -20 "$work/server.log" >&2
    failed=$((failed + 1))
fi
log "versions: $(redis-cli --version); redis-py $(python3 -c 'import redis; print(redis.__version__)')"
log "took $(( $(date +%s) - started ))s"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
