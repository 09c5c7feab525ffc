#!/usr/bin/env bash
# bench-overlay.sh - cross-host TCP through vswitchd's VXLAN overlay next to its references,
# measured in the same run: iperf3, one stream, -t SECS after -O 1 warm-up second, REPS
# repetitions, underlay MTU 1500 (overlay MTU 1450 everywhere).
#
#   vswitchd-vxlan : two host namespaces on a veth LAN (198.51.100.1/.2, MTU 1500), each running
#                    one overlay network's data path with its own VXLAN endpoint on :4789, one
#                    container per host (10.77.0.2 -> 10.77.0.3). Until the daemon's cluster
#                    mode is merged this runs `examples/vxlan_pair.rs`, which drives the same
#                    Datapath/Vxlan API the daemon uses (no etcd involved: the store's answers
#                    are given directly).
#   vswitchd-local : the same pair of containers on one host: one vswitchd, one network at MTU
#                    1450, two containers.
#   kernel-vxlan   : the kernel's VXLAN between the same kind of two host namespaces
#                    (`ip link add vx0 type vxlan id 42 ... dstport 4789` enslaved with a veth
#                    to the container in a Linux bridge on each host), containers at MTU 1450.
# Printed ratios: vswitchd-vxlan / kernel-vxlan (target >= 0.7) and vswitchd-vxlan /
# vswitchd-local (what crossing hosts costs), per repetition and as means in a summary line.
# cpu = CPU time of the forwarding process (vxlan_pair / vswitchd) over the run, % of one core.
#
# Usage: scripts/bench-overlay.sh [-t SECS] [-r REPS]   (defaults 5 and 3)
# Needs root; installs iperf3 if missing; builds the release binaries and example.
# Output lines:
#   kernel-vxlan tcp mtu=1500 gbps=9.1
#   vswitchd-local tcp mtu=1500 gbps=12.0 cpu=95%
#   vswitchd-vxlan tcp mtu=1500 gbps=7.2 cpu=140% ratio/kernel-vxlan=0.79 ratio/local=0.60
#   summary mtu=1500 vswitchd-vxlan=7.20 kernel-vxlan=9.10 vswitchd-local=12.00 ratio/kernel-vxlan=0.79 target=0.7 met=yes ratio/local=0.60
# Traffic stays inside namespaces this script creates (198.51.100.0/24, 10.77.0.0/24,
# 10.208.0.0/24, 10.209.0.0/24); all are deleted and every process it started is stopped by
# PID on exit.
set -u
export LC_ALL=C
SECS=5 REPS=3
while getopts "t:r:h" o; do
  case $o in
    t) SECS=$OPTARG ;; r) REPS=$OPTARG ;;
    *) sed -n '2,/^set -u/p' "$0" | sed '$d'; exit 0 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "bench-overlay.sh: needs root" >&2; exit 1; }
NAME=bench-overlay.sh TAG=bov$$
. "$(dirname "$0")/lib/bench-common.sh"
need_tools iperf3:iperf3
build_release
cargo build --release -q --example vxlan_pair || exit 1
iperf() {  # NS ADDR -> Gbit/s (receiver)
  ip netns exec "$1" timeout $((SECS+30)) iperf3 -f g -O 1 -t "$SECS" --connect-timeout 3000 \
      -c "$2" -p 5201 2>&1 |
    awk '/receiver/{for(i=1;i<=NF;i++) if($i=="Gbits/sec") v=$(i-1)} END{print (v==""?"error":v)}'
}
cpu_of() {  # PID CMD... -> runs CMD, prints "RESULT CPU%"
  local pid=$1; shift
  local t0 s0 v; t0=$(ticks "$pid"); s0=$(date +%s.%N)
  v=$("$@")
  awk -v v="$v" -v a="$t0" -v b="$(ticks "$pid")" -v s="$s0" -v e="$(date +%s.%N)" -v hz="$(getconf CLK_TCK)" \
    'BEGIN{printf "%s %d", v, (b-a)/hz/(e-s)*100}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a+0>0 && b+0>0) printf "%.2f", a/b; else print "n/a"}'; }
echo "# bench-overlay.sh $(date -u +%FT%TZ) kernel=$(uname -r) cpus=$(nproc) secs=$SECS reps=$REPS load=$(cut -d' ' -f1 /proc/loadavg)"

# ---- kernel VXLAN: hosts kA kB on a veth LAN; in each, bridge br0 = vx0 + veth to container.
mkns $TAG-ka $TAG-kb $TAG-kca $TAG-kcb
ip link add u0 netns $TAG-ka mtu 1500 type veth peer name u0 netns $TAG-kb mtu 1500
for s in a:1:2 b:2:1; do
  IFS=: read -r h me peer <<<"$s"
  H=$TAG-k$h
  ip -n $H addr add 198.51.100.$me/24 dev u0; ip -n $H link set u0 up
  ip -n $H link add vx0 type vxlan id 42 local 198.51.100.$me remote 198.51.100.$peer dstport 4789 dev u0
  ip -n $H link add br0 type bridge
  ip -n $H link set vx0 master br0
  ip link add c0 netns $TAG-kc$h mtu 1450 type veth peer name p0 netns $H mtu 1450
  ip -n $H link set p0 master br0
  for l in vx0 p0 br0; do ip -n $H link set $l up; done
  ip -n $TAG-kc$h addr add 10.208.0.$((me+1))/24 dev c0; ip -n $TAG-kc$h link set c0 up
done
waitfor ip netns exec $TAG-kca ping -c1 -W1 10.208.0.3 || echo "# kernel VXLAN pair does not ping"
start ip netns exec $TAG-kcb iperf3 -s -p 5201; waitfor listening $TAG-kcb 5201

# ---- vswitchd-vxlan: examples/vxlan_pair in hosts vA vB, containers vca vcb.
mkns $TAG-va $TAG-vb $TAG-vca $TAG-vcb
start "$PWD/target/release/examples/vxlan_pair" $TAG-va $TAG-vb $TAG-vca $TAG-vcb
PAIR=$LAST
waitfor ip netns exec $TAG-vca ping -c1 -W1 10.77.0.3 || echo "# vswitchd VXLAN pair does not ping"
start ip netns exec $TAG-vcb iperf3 -s -p 5201; waitfor listening $TAG-vcb 5201

# ---- vswitchd-local: one vswitchd, one network at MTU 1450, two containers.
mkns $TAG-w $TAG-la $TAG-lb
start ip netns exec $TAG-w "$BIN/vswitchd" --state-dir "$TMPD/state" --socket "$TMPD/sock" \
  --network keep=10.209.9.0/24
VSW=$LAST
ctl() { "$BIN/vswitchctl" --socket "$TMPD/sock" "$@"; }
waitfor ctl network ls || echo "# vswitchd did not answer"
ctl network create --subnet 10.209.0.0/24 --mtu 1450 local >/dev/null
ctl network connect local /run/netns/$TAG-la --name a >/dev/null
ctl network connect local /run/netns/$TAG-lb --name b >/dev/null
start ip netns exec $TAG-lb iperf3 -s -p 5201; waitfor listening $TAG-lb 5201
VPID=$(pgrep -P "$VSW" -x vswitchd || echo "$VSW")
LB=$(ip netns exec $TAG-lb ip -4 -o addr show | awk '$2!="lo"{split($4,a,"/"); print a[1]}')
waitfor ip netns exec $TAG-la ping -c1 -W1 "$LB" || echo "# vswitchd local pair does not ping"

K=() L=() V=()
for r in $(seq "$REPS"); do
  k=$(iperf $TAG-kca 10.208.0.3); K+=("$k")
  echo "kernel-vxlan tcp mtu=1500 gbps=$k"
  read -r l lc < <(cpu_of "$VPID" iperf $TAG-la "$LB"); L+=("$l")
  echo "vswitchd-local tcp mtu=1500 gbps=$l cpu=$lc%"
  read -r v vc < <(cpu_of "$PAIR" iperf $TAG-vca 10.77.0.3); V+=("$v")
  echo "vswitchd-vxlan tcp mtu=1500 gbps=$v cpu=$vc% ratio/kernel-vxlan=$(ratio "$v" "$k") ratio/local=$(ratio "$v" "$l")"
done
mean() { echo "$@" | awk '{n=0;s=0; for(i=1;i<=NF;i++) if($i+0>0){s+=$i;n++}} END{ if(n) printf "%.2f", s/n; else print "error" }'; }
mv=$(mean "${V[@]}") mk=$(mean "${K[@]}") ml=$(mean "${L[@]}")
rk=$(ratio "$mv" "$mk")
met=$(awk -v r="$rk" 'BEGIN{ if (r=="n/a") print "n/a"; else print (r+0>=0.7 ? "yes" : "no") }')
echo "summary mtu=1500 vswitchd-vxlan=$mv kernel-vxlan=$mk vswitchd-local=$ml ratio/kernel-vxlan=$rk target=0.7 met=$met ratio/local=$(ratio "$mv" "$ml")"
