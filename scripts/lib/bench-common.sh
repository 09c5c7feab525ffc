# bench-common.sh - shared by the benchmark scripts (source it; bash only).
# Installs missing tools, builds the release binaries, and tracks what a script starts so that
# every process is stopped by PID and every namespace deleted on exit, even on failure.
# Before sourcing, set NAME (script name for messages) and TAG (namespace prefix).

# need_tools CMD:PACKAGE... - apt-get install the packages whose command is missing.
need_tools() {
  local t need=()
  for t; do command -v "${t%%:*}" >/dev/null 2>&1 || need+=("${t#*:}"); done
  [ ${#need[@]} -eq 0 ] && return 0
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null \
    || { echo "$NAME: apt-get install ${need[*]} failed" >&2; exit 1; }
}

# build_release - builds vswitchd/vswitchctl; sets BIN; makes /dev/net/tun usable rootless.
build_release() {
  cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
  cargo build --release -q || exit 1
  BIN=$PWD/target/release
  chmod 0666 /dev/net/tun
}

TMPD=$(mktemp -d) PIDS=() NSS=()
cleanup() {
  trap - EXIT INT TERM
  local p n
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  for n in "${NSS[@]}"; do ip netns del "$n" 2>/dev/null; done
  rm -rf "$TMPD"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkns() { local n; for n; do ip netns add "$n" && NSS+=("$n"); ip -n "$n" link set lo up; done; }
delns() { local n; for n; do ip netns del "$n" 2>/dev/null; done; }
start() { "$@" >>"$TMPD/bg.log" 2>&1 & PIDS+=($!); LAST=$!; }     # background, tracked
stop() {       # stop these tracked PIDs, forget them
  local p q keep=()
  for p; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  for q in "${PIDS[@]}"; do
    for p; do [ "$q" = "$p" ] && continue 2; done; keep+=("$q")
  done
  PIDS=("${keep[@]}")
}
waitfor() { local i; for i in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
listening() { ip netns exec "$1" ss -Hltn "sport = :$2" | grep -q .; }   # ns port
ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; } # CPU ticks of a PID
