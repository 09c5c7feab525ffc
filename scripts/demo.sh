#!/usr/bin/env bash
# demo.sh - vswitchd on its defaults: the "bridge" network 172.17.0.0/16, two containers that
# ping each other and the gateway, then `network inspect`.
#
# Usage: scripts/demo.sh [--rootless]
#   As root: the world and both containers are namespaces made with `ip netns`, attached with
#   `vswitchctl network connect`. Missing tools (iproute2, iputils-ping) are installed.
#   As a plain user (or as root with --rootless): the rootless way. The world is a user+network
#   namespace made with `unshare -Urn`; vswitchd runs in it as that user; the containers are
#   commands started with `vswitchctl run`, each in fresh namespaces of its own, and the second
#   finds the first by name through the gateway's DNS. Needs /dev/net/tun mode 0666 (stock
#   distributions), unprivileged user namespaces, ip and ping; it says which is missing.
# Everything happens inside a private world namespace, so no packet can leave the machine;
# everything started is stopped by PID, and every namespace is deleted on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOTLESS=0
case "${1:-}" in
  --rootless) ROOTLESS=1 ;;
  "") [ "$(id -u)" = 0 ] || ROOTLESS=1 ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
say() { echo "demo.sh: $*" >&2; }
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    say "needs ${need[*]}: install them (as root: apt-get install ${need[*]}) and run again"; exit 1
  fi
  say "installing ${need[*]}"
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"; } >/dev/null ||
    { say "cannot install ${need[*]}; install them and run again"; exit 1; }
fi
command -v cargo >/dev/null 2>&1 || { say "cargo (Rust) is needed to build vswitchd"; exit 1; }
cargo build --release -q
BIN=$PWD/target/release
DIR=$(mktemp -d)

if [ $ROOTLESS = 1 ]; then
  if [ "$(id -u)" = 0 ]; then chmod 0666 /dev/net/tun 2>/dev/null || true; fi
  [ -r /dev/net/tun ] && [ -w /dev/net/tun ] ||
    { say "/dev/net/tun is not usable by $(id -un) (stock distributions make it 0666)"; exit 1; }
  unshare -Urn true 2>/dev/null ||
    { say "unprivileged user namespaces are disabled (sysctl kernel.unprivileged_userns_clone)"; exit 1; }
  trap 'rm -rf "$DIR"' EXIT
  # The world: a user+network namespace of our own. Inside it, vswitchd and two containers.
  exec unshare -Urn env BIN="$BIN" DIR="$DIR" bash -euo pipefail -c '
    ip link set lo up
    "$BIN/vswitchd" --state-dir "$DIR/state" --socket "$DIR/sock" 2>"$DIR/log" & PID=$!
    # c1 first, so that its `vswitchctl run` detaches it while the daemon still runs.
    trap "set +e; kill \${C1:-} 2>/dev/null; wait \${C1:-} 2>/dev/null; kill \$PID; wait; rm -rf \"\$DIR\"" EXIT
    trap "exit 130" INT TERM HUP PIPE
    ctl() { "$BIN/vswitchctl" --socket "$DIR/sock" "$@"; }
    for i in $(seq 50); do ctl network ls >/dev/null 2>&1 && break; sleep 0.1; done
    set -x
    ctl network ls
    ctl run --name c1 -- sleep 30 & C1=$!
    for i in $(seq 50); do ctl network inspect bridge | grep -q "\"c1\"" && break; sleep 0.1; done
    ctl run --name c2 -- sh -c "ip -br addr show eth0; ping -c 3 172.17.0.1; ping -c 3 c1"
    ctl network inspect bridge
  '
fi

[ "$(id -u)" = 0 ] || { say "the ip-netns demo needs root; run without arguments as a plain user"; exit 1; }
TAG=vswdemo$$ PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  for n in world c1 c2; do ip netns del "$TAG-$n" 2>/dev/null || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT
for n in world c1 c2; do ip netns add "$TAG-$n"; ip -n "$TAG-$n" link set lo up; done
chmod 0666 /dev/net/tun 2>/dev/null || true
ip netns exec "$TAG-world" "$BIN/vswitchd" --state-dir "$DIR/state" --socket "$DIR/sock" 2>"$DIR/log" &
PID=$!
ctl() { "$BIN/vswitchctl" --socket "$DIR/sock" "$@"; }
for i in $(seq 50); do ctl network ls >/dev/null 2>&1 && break; sleep 0.1; done
set -x
ctl network ls
ctl network connect bridge /run/netns/$TAG-c1 --name c1
ctl network connect bridge /run/netns/$TAG-c2 --name c2
ip -n $TAG-c1 -br addr show eth0
ip netns exec $TAG-c1 ping -c 3 172.17.0.1
ip netns exec $TAG-c1 ping -c 3 172.17.0.3
ip netns exec $TAG-c2 ping -c 3 172.17.0.2
ctl network inspect bridge
