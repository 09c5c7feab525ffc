#!/usr/bin/env bash
# bench-l2.sh - container<->container TCP through vswitchd, next to the kernel reference
# (two namespaces joined by veth pairs into a Linux bridge: Docker's rootful model), measured
# in the same run at MTU 1500 and 65520, one iperf3 stream; prints each vswitchd figure as a
# ratio of the kernel figure (target: >= 0.9, design.md).
#
# Usage: scripts/bench-l2.sh [-t SECS] [-r REPS]      (as root; installs iperf3 if missing)
# Output lines:
#   kernel-bridge tcp mtu=1500 gbps=27.1
#   vswitchd tcp mtu=1500 gbps=20.3 ratio=0.75 vswitchd_cpu=85%
# Traffic stays inside namespaces this script creates; all of them are deleted and every
# process it started is stopped by PID on exit.
set -u
export LC_ALL=C
SECS=5 REPS=2
while getopts "t:r:h" o; do
  case $o in t) SECS=$OPTARG ;; r) REPS=$OPTARG ;; *) sed -n '2,13p' "$0"; exit 0 ;; esac
done
[ "$(id -u)" = 0 ] || { echo "bench-l2.sh: needs root" >&2; exit 1; }
command -v iperf3 >/dev/null || { apt-get update -q >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -q iperf3 >/dev/null; }
cd "$(dirname "$0")/.."
cargo build --release -q || exit 1
BIN=$PWD/target/release
chmod 0666 /dev/net/tun

TAG=bl2$$ TMPD=$(mktemp -d) PIDS=() NSS=()
cleanup() {
  local p n
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  for n in "${NSS[@]}"; do ip netns del "$n" 2>/dev/null; done
  rm -rf "$TMPD"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkns() { local n; for n; do ip netns add "$n" && NSS+=("$n"); ip -n "$n" link set lo up; done; }
start() { "$@" >>"$TMPD/bg.log" 2>&1 & PIDS+=($!); LAST=$!; }
waitfor() { local i; for i in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
listening() { ip netns exec "$1" ss -Hltn "sport = :$2" | grep -q .; }
iperf() {  # NS ADDR -> Gbit/s (receiver)
  ip netns exec "$1" timeout $((SECS+30)) iperf3 -f g -O 1 -t "$SECS" -c "$2" -p 5201 2>&1 |
    awk '/receiver/{for(i=1;i<=NF;i++) if($i=="Gbits/sec") v=$(i-1)} END{print (v==""?"error":v)}'
}
ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

echo "# bench-l2.sh $(date -u +%FT%TZ) kernel=$(uname -r) cpus=$(nproc) secs=$SECS reps=$REPS"

# Kernel reference: c1 -veth- [br0 in b] -veth- c2.
mkns $TAG-k1 $TAG-k2 $TAG-kb
ip -n $TAG-kb link add br0 type bridge; ip -n $TAG-kb link set br0 up
for i in 1 2; do
  ip link add e0 netns $TAG-k$i type veth peer name p$i netns $TAG-kb
  ip -n $TAG-k$i addr add 10.202.0.$i/24 dev e0; ip -n $TAG-k$i link set e0 up
  ip -n $TAG-kb link set p$i master br0; ip -n $TAG-kb link set p$i up
done
waitfor ip netns exec $TAG-k1 ping -c1 -W1 10.202.0.2
start ip netns exec $TAG-k2 iperf3 -s -p 5201; waitfor listening $TAG-k2 5201

# vswitchd in its own world namespace, one network per MTU, two containers on each.
mkns $TAG-w $TAG-a1500 $TAG-b1500 $TAG-a65520 $TAG-b65520
start ip netns exec $TAG-w "$BIN/vswitchd" --state-dir "$TMPD/state" --socket "$TMPD/sock" \
  --network n1500=10.203.1.0/24
VSW=$LAST
ctl() { "$BIN/vswitchctl" --socket "$TMPD/sock" "$@"; }
waitfor ctl network ls
ctl network create --subnet 10.203.2.0/24 --mtu 65520 n65520 >/dev/null
for m in 1500 65520; do
  ctl network connect n$m /run/netns/$TAG-a$m --name a >/dev/null
  ctl network connect n$m /run/netns/$TAG-b$m --name b >/dev/null
  start ip netns exec $TAG-b$m iperf3 -s -p 5201; waitfor listening $TAG-b$m 5201
done
VPID=$(pgrep -P "$VSW" -x vswitchd || echo "$VSW")

for mtu in 1500 65520; do
  for l in "$TAG-k1 e0" "$TAG-k2 e0" "$TAG-kb p1" "$TAG-kb p2" "$TAG-kb br0"; do
    set -- $l; ip -n "$1" link set "$2" mtu $mtu
  done
  net=$([ $mtu = 1500 ] && echo 10.203.1 || echo 10.203.2)
  for r in $(seq "$REPS"); do
    k=$(iperf $TAG-k1 10.202.0.2)
    echo "kernel-bridge tcp mtu=$mtu gbps=$k"
    t0=$(ticks "$VPID"); s0=$(date +%s.%N)
    v=$(iperf $TAG-a$mtu $net.3)
    cpu=$(awk -v a="$t0" -v b="$(ticks "$VPID")" -v s="$s0" -v e="$(date +%s.%N)" -v hz="$(getconf CLK_TCK)" \
      'BEGIN{printf "%d", (b-a)/hz/(e-s)*100}')
    ratio=$(awk -v v="$v" -v k="$k" 'BEGIN{ if (k+0>0 && v+0>0) printf "%.2f", v/k; else print "n/a"}')
    echo "vswitchd tcp mtu=$mtu gbps=$v ratio=$ratio vswitchd_cpu=$cpu%"
  done
done
