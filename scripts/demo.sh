#!/usr/bin/env bash
# demo.sh - vswitchd on its defaults: the "bridge" network 172.17.0.0/16, two containers that
# ping each other and the gateway, then `network inspect`. Run as root (it creates network
# namespaces). Everything happens inside a private "world" namespace, so no packet can leave
# the machine; everything started is stopped by PID and every namespace deleted on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (it creates network namespaces)" >&2; exit 1; }
# What the demo itself runs: ip (iproute2) and ping (iputils-ping); installed when missing.
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
if [ ${#need[@]} -gt 0 ]; then
  echo "demo.sh: installing ${need[*]}" >&2
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"; } >/dev/null ||
    { echo "demo.sh: cannot install ${need[*]}; install them and run again" >&2; exit 1; }
fi
command -v cargo >/dev/null 2>&1 || { echo "demo.sh: cargo (Rust) is needed to build vswitchd" >&2; exit 1; }
cargo build --release -q
BIN=$PWD/target/release
TAG=vswdemo$$ DIR=$(mktemp -d) PID=""
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
