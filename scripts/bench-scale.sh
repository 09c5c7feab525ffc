#!/usr/bin/env bash
# bench-scale.sh - issue 8's targets ("performance at scale"), each measured with its reference
# beside it in the same run; one `target` line per target: figure, reference, ratio, met/missed.
#
# Sections (all by default; --only picks some):
#   loadgen  vswitchd-loadgen connect+close over a plain kernel veth pair: shows the load
#            generator is not the bottleneck (target >= 3 x 4,900/s, the Python loop's figure).
#   flows    one container, egress through the NAT: iperf3 one stream and connect+close rate
#            with 0 flows, then with TCPFLOWS idle TCP + UDPFLOWS UDP flows live (`loadgen
#            hold`, UDP kept alive every 5 s), target >= 0.9x the zero-flow figures; daemon RSS before / with / after the
#            flows close (and how long closing took); "near baseline" after close is read as
#            <= 1.5x the RSS before the flows opened.
#   connrate connect+close through the NAT (container -> world) and accepts through a
#            published port (world -> container), vswitchd vs slirp4netns and pasta beside it;
#            target >= 2x the better peer. pasta's published port is tried from a non-loopback
#            source (tap path) and from 127.0.0.1 (splice path); the better counts.
#   mtu      MTU 65520: NAT egress vs a kernel veth pair (>= 0.7x); published-port ingress vs
#            the same veth (>= 0.9x). iperf3 one stream.
#   latency  sockperf TCP ping-pong, 64 B, container<->container through vswitchd vs through a
#            kernel bridge with veths (Docker's rootful model); p50 and p99, target <= 1.5x.
#   small    64-byte UDP container->container (`loadgen udpflood` -> `loadgen serve --udp`):
#            received datagrams/s through vswitchd vs the kernel bridge, with loss; >= 1.0x.
#            The sender's interface TX drops and the receiver's RX drops locate lost datagrams.
#   attach   runs scripts/bench-attach.sh when it exists.
# A connection counts when the server's one-byte greeting has arrived (so a published port's
# second leg is included); every connection is closed with a reset (SO_LINGER 0), so no
# TIME_WAIT state limits the client; time_wait_in_W counts the sockets in TIME_WAIT in W (where
# vswitchd's, slirp4netns' and pasta's host sockets live) after a run, runs before included.
#
# Usage: scripts/bench-scale.sh [--only SECTIONS] [--secs N] [--reps N] [--conns N]
#          [--conn-threads N] [--tcp-flows N] [--udp-flows N] [--udp-threads N] [--quiet SECS]
#          [--perf]
#   --only       comma list of sections (default loadgen,flows,connrate,mtu,latency,small,attach)
#   --secs       seconds per measurement (default 3)
#   --reps       repetitions per measurement; the best is kept (highest rate, lowest latency)
#                (default 1)
#   --conns      connects in flight for connrate runs (default 32)
#   --conn-threads  loadgen threads for connrate runs, sharing --conns (default 2)
#   --tcp-flows  idle TCP flows for the flows section (default 10000)
#   --udp-flows  UDP flows for the flows section (default 1000)
#   --udp-threads  sending threads for the small section (default 1: one container's socket)
#   --quiet SECS before each measurement wait up to SECS for the rest of the machine to fall
#                under 10% busy (bg= shows what it was; default 0: don't wait). On a shared
#                machine the peers and the reference may otherwise meet different loads.
#   --perf       also sample the forwarder (vswitchd, slirp4netns, pasta) with `perf record`
#                during each of its runs and print its top symbols as "#   perf:" lines
#                (figures taken with --perf are perturbed by the sampling)
# Needs root. Installs iperf3, slirp4netns, passt, sockperf, socat if missing. Uses the newer
# pasta from /work/shared/bench/build-newer-pasta.sh when $PASTA_DIR/pasta exists (default
# /tmp/newpasta/bin), else Debian's, and says which.
# Output lines:
#   vswitchd egress flows=0 gbps=16.1 fwd_cpu=80% bg=3%
#   vswitchd connrate flow=egress flows=0 rate=4711/s connects=14133 errors=0 p50_us=5520
#     p99_us=19502 fwd_cpu=52% loadgen_cpu=23% time_wait_in_W=0 bg=7%
#   target flows-egress figure=15.2 reference=16.1(vswitchd,flows=0) ratio=0.94 want>=0.9 met=yes
# A figure that could not be measured prints as "error" (ratio n/a, met=n/a); the run goes on.
# Network safety: every packet goes to 127/8 or to addresses in namespaces made here (a world
# namespace W with 198.51.100.1, a stub namespace beyond it with 198.51.100.2 holding the
# "internet" servers, containers, and 10.20x.0.0/16 kernel references). Every namespace is
# deleted and every process started here stopped by PID on exit.
set -u
export LC_ALL=C
SECS=3 REPS=1 CONNS=32 CTHREADS=2 TCPFLOWS=10000 UDPFLOWS=1000 UDPTHREADS=1 PERF=0 QUIET=0
SECTIONS=loadgen,flows,connrate,mtu,latency,small,attach
usage() { sed -n '2,/^set -u/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
num() { case $2 in '' | *[!0-9]*) echo "bench-scale.sh: $1 wants a number ($2)" >&2; exit 2 ;; esac; }
while [ $# -gt 0 ]; do
  case $1 in
    --only) SECTIONS=${2:-}; shift ;;
    --secs) num "$1" "${2:-}"; SECS=$2; shift ;;
    --reps) num "$1" "${2:-}"; REPS=$2; shift ;;
    --conns) num "$1" "${2:-}"; CONNS=$2; shift ;;
    --conn-threads) num "$1" "${2:-}"; CTHREADS=$2; shift ;;
    --tcp-flows) num "$1" "${2:-}"; TCPFLOWS=$2; shift ;;
    --udp-flows) num "$1" "${2:-}"; UDPFLOWS=$2; shift ;;
    --udp-threads) num "$1" "${2:-}"; UDPTHREADS=$2; shift ;;
    --perf) PERF=1 ;;
    --quiet) num "$1" "${2:-}"; QUIET=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench-scale.sh: unknown option ($1); see --help" >&2; exit 2 ;;
  esac
  shift
done
for s in ${SECTIONS//,/ }; do
  case $s in loadgen | flows | connrate | mtu | latency | small | attach) ;;
    *) echo "bench-scale.sh: unknown section ($s); one of loadgen,flows,connrate,mtu,latency,small,attach" >&2; exit 2 ;;
  esac
done
[ "$SECS" -ge 1 ] && [ "$REPS" -ge 1 ] && [ "$CONNS" -ge 1 ] && [ "$CTHREADS" -ge 1 ] && [ "$UDPTHREADS" -ge 1 ] ||
  { echo "bench-scale.sh: --secs, --reps, --conns, --conn-threads and --udp-threads must be at least 1" >&2; exit 2; }
has() { case ",$SECTIONS," in *",$1,"*) return 0 ;; esac; return 1; }
[ "$(id -u)" = 0 ] || { echo "bench-scale.sh: needs root" >&2; exit 1; }
NAME=bench-scale.sh TAG=bsc$$
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib/bench-common.sh"
need_tools iperf3:iperf3 slirp4netns:slirp4netns pasta:passt sockperf:sockperf socat:socat
[ "$PERF" = 0 ] || need_tools perf:linux-perf
PASTA_DIR=${PASTA_DIR:-/tmp/newpasta/bin}
if [ -x "$PASTA_DIR/pasta" ]; then PATH=$PASTA_DIR:$PATH; PASTA_NOTE="newer pasta from $PASTA_DIR (build-newer-pasta.sh)"
else PASTA_NOTE="Debian pasta $(dpkg-query -W -f='${Version}' passt 2>/dev/null) (no $PASTA_DIR/pasta: run /work/shared/bench/build-newer-pasta.sh for the newer one)"; fi
# As build_release, for both packages, and quiet unless the build fails.
cd "$HERE/.." || exit 1
cargo build --release -q -p vswitchd -p vswitchd-loadgen 2>"$TMPD/build.log" || { cat "$TMPD/build.log" >&2; exit 1; }
BIN=$PWD/target/release LG=$PWD/target/release/vswitchd-loadgen
chmod 0666 /dev/net/tun
ulimit -n "$(ulimit -Hn)" 2>/dev/null
CLK=$(getconf CLK_TCK)

echo "# bench-scale.sh $(date -u +%FT%TZ) kernel=$(uname -r) cpus=$(nproc) secs=$SECS reps=$REPS quiet=$QUIET conns=$CONNS conn_threads=$CTHREADS" \
     "tcp_flows=$TCPFLOWS udp_flows=$UDPFLOWS sections=$SECTIONS commit=$(git rev-parse --short HEAD 2>/dev/null)"
echo "# peers: slirp4netns $(dpkg-query -W -f='${Version}' slirp4netns 2>/dev/null), $PASTA_NOTE;" \
     "sockperf $(dpkg-query -W -f='${Version}' sockperf 2>/dev/null); open-file limit $(ulimit -n)"
echo "# connections: closed by reset (SO_LINGER 0); ephemeral ports 30000-65535 in every namespace made here (all fixed ports are below), tcp_tw_reuse=1 in W"

# ---- helpers ----------------------------------------------------------------------------
cpu_sample() { awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8+$9, $5+$6}' /proc/stat; }
busy_pct() {   # whole-machine busy % over 0.5 s (someone else's load)
  local a b; a=($(cpu_sample)); sleep 0.5; b=($(cpu_sample))
  local dt=$((b[0]-a[0])) di=$((b[1]-a[1])); [ $dt -gt 0 ] || { echo 0; return; }
  echo $(( 100*(dt-di)/dt ))
}
# Runs "$@" with CPU of MON (a PID, or -) measured; sets OUT (stdout) and CPU (" fwd_cpu=N%").
MON=- OUT="" CPU="" BG=0
measure() {
  local k0 t0 pp="" q0=$SECONDS
  BG=$(busy_pct); CPU=""
  while [ "$BG" -ge 10 ] && [ $((SECONDS - q0)) -lt "$QUIET" ]; do BG=$(busy_pct); done
  [ "$MON" = - ] || { k0=$(ticks "$MON"); t0=$(date +%s.%N); }
  if [ "$PERF" = 1 ] && [ "$MON" != - ]; then
    perf record -q -F 499 -g -p "$MON" -o "$TMPD/perf.data" >/dev/null 2>&1 & pp=$!
  fi
  OUT=$("$@" 2>&1)
  if [ -n "$pp" ]; then
    kill -INT "$pp" 2>/dev/null; wait "$pp" 2>/dev/null
    PERFTOP=$(perf report -i "$TMPD/perf.data" --stdio --no-children --sort dso,symbol 2>/dev/null |
      awk '/^ +[0-9.]+%/{sub(/^ +/,""); gsub(/[ -]+$/,""); gsub(/  +/," "); printf "#   perf: %s\n", substr($0,1,150); if (++n==6) exit}')
  fi
  [ "$MON" = - ] || CPU=$(awk -v a="$k0" -v b="$(ticks "$MON")" -v s="$t0" -v e="$(date +%s.%N)" -v hz="$CLK" \
    'BEGIN{printf " fwd_cpu=%d%%", (b-a)/hz/(e-s)*100}')
}
PERFTOP=""
perftop() { [ -z "$PERFTOP" ] || echo "$PERFTOP"; PERFTOP=""; }
field() { echo "$OUT" | tr ' ' '\n' | awk -F= -v k="$1" '$1==k{v=$2} END{print (v==""?"error":v)}'; }
best() { printf '%s\n' "$@" | awk '$1+0>0 && $1+0>b {b=$1+0; s=$1} END{print (s==""?"error":s)}'; }
lowest() { printf '%s\n' "$@" | awk '$1+0>0 && (b=="" || $1+0<b) {b=$1+0; s=$1} END{print (s==""?"error":s)}'; }
# iperf NS ADDR PORT LABEL -> prints LABEL gbps=..., sets V (best over REPS)
iperf() {
  local r v all=()
  for r in $(seq "$REPS"); do
    measure ip netns exec "$1" timeout $((SECS+30)) iperf3 -f g -O 1 -t "$SECS" --connect-timeout 3000 -c "$2" -p "$3"
    v=$(echo "$OUT" | awk '/receiver/{for(i=1;i<=NF;i++) if($i=="Gbits/sec") v=$(i-1)} END{print (v==""?"error":v)}')
    echo "$4 gbps=$v$CPU bg=$BG%"; all+=("$v"); perftop
    [ "$v" != error ] || echo "#   iperf3: $(echo "$OUT" | tail -3 | tr '\n' ' ' | cut -c1-240)"
  done
  V=$(best "${all[@]}")
}
# connrate NS ADDR:PORT LABEL -> prints LABEL rate=..., sets V (best connects/s over REPS)
connrate() {
  local r v all=()
  for r in $(seq "$REPS"); do
    measure ip netns exec "$1" timeout $((SECS+30)) "$LG" connrate --to "$2" --conns "$CONNS" --threads "$CTHREADS" --secs "$SECS"
    v=$(field rate); v=${v%/s}
    echo "$3 rate=$v/s connects=$(field connects) errors=$(field errors)$(echo "$OUT" | grep -o ' error_kinds=[^ ]*')" \
         "p50_us=$(field connect_p50_us) p99_us=$(field connect_p99_us)$CPU loadgen_cpu=$(field cpu) time_wait_in_W=$(tw_count $W) bg=$BG%"
    echo "$OUT" | grep -q '^connrate' || echo "#   loadgen: $(echo "$OUT" | head -2 | tr '\n' ' ')"
    perftop
    all+=("$v")
  done
  V=$(best "${all[@]}")
}
# target NAME FIGURE REFERENCE REFLABEL ge|le THRESHOLD [NOTE]
SUMMARY=()
target() {
  local line
  line=$(awk -v n="$1" -v f="$2" -v r="$3" -v rl="$4" -v d="$5" -v t="$6" -v note="${7:-}" 'BEGIN{
    ratio = (f+0>0 && r+0>0) ? sprintf("%.2f", f/r) : "n/a"
    met = (ratio=="n/a") ? "n/a" : ((d=="ge" ? ratio+0>=t : ratio+0<=t) ? "yes" : "no")
    printf "target %s figure=%s reference=%s(%s) ratio=%s want%s%s met=%s%s", n, f, r, rl, ratio,
      (d=="ge" ? ">=" : "<="), t, met, (note=="" ? "" : " " note) }')
  echo "$line"; SUMMARY+=("$line")
}
rss_mib() { awk '/^VmRSS:/{printf "%.1f", $2/1024}' "/proc/$1/status" 2>/dev/null || echo error; }
tw_count() { ip netns exec "$1" ss -Htan state time-wait 2>/dev/null | wc -l; }
veth() {   # NS1 IF1 ADDR1 NS2 IF2 ADDR2
  ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
  ip -n "$1" addr add "$3" dev "$2"; ip -n "$4" addr add "$6" dev "$5"
  ip -n "$1" link set "$2" up; ip -n "$4" link set "$5" up
}
# Ephemeral ports 30000-65535 (the default is 32768-60999); every fixed port here is below, so
# 10,000 host sockets in TIME_WAIT cannot take a port a forwarder must listen on.
wideports() { local n; for n; do ip netns exec "$n" sysctl -qw net.ipv4.ip_local_port_range="30000 65535"; done; }
api() { echo "$2" | socat -t5 - "UNIX-CONNECT:$1"; }

# ---- kernel references: a veth pair, and a bridge with two veths ---------------------------
K=$TAG-k
kernel_up() {   # once: $K-v1 -veth- $K-v2 (10.201.0.0/24); $K-b1 -veth- [br0 in $K-br] -veth- $K-b2 (10.202.0.0/24)
  [ -n "${KUP:-}" ] && return 0; KUP=1
  mkns $K-v1 $K-v2 $K-b1 $K-b2 $K-br
  veth $K-v1 v0 10.201.0.1/24 $K-v2 v0 10.201.0.2/24
  ip -n $K-br link add br0 type bridge; ip -n $K-br link set br0 up
  local i
  for i in 1 2; do
    ip link add e0 netns $K-b$i type veth peer name p$i netns $K-br
    ip -n $K-b$i addr add 10.202.0.$i/24 dev e0; ip -n $K-b$i link set e0 up
    ip -n $K-br link set p$i master br0; ip -n $K-br link set p$i up
  done
  wideports $K-v1 $K-v2 $K-b1 $K-b2
  waitfor ip netns exec $K-b1 ping -c1 -W1 10.202.0.2
  start ip netns exec $K-v2 "$LG" serve --tcp 10.201.0.2:9000
  start ip netns exec $K-v2 iperf3 -s -p 5201
  start ip netns exec $K-b2 "$LG" serve --udp 10.202.0.2:9001
  start ip netns exec $K-b2 sockperf server --tcp -i 10.202.0.2 -p 11111
  waitfor listening $K-v2 9000; waitfor listening $K-v2 5201; waitfor listening $K-b2 11111
}
kernel_mtu() {  # MTU for every kernel reference link
  local l m=$1
  for l in "$K-v1 v0" "$K-v2 v0" "$K-b1 e0" "$K-b2 e0" "$K-br p1" "$K-br p2" "$K-br br0"; do
    set -- $l; ip -n "$1" link set "$2" mtu "$m"
  done
}

# ---- the world W, the stub beyond it, and a vswitchd inside W ----------------------------
W=$TAG-w ST=$TAG-stub
world_up() {
  [ -n "${WUP:-}" ] && return 0; WUP=1
  mkns $W $ST
  veth $W w0 198.51.100.1/24 $ST w1 198.51.100.2/24        # TEST-NET-2, namespaces only
  ip -n $W route add default via 198.51.100.2
  ip -n $W link set w0 mtu 65520; ip -n $ST link set w1 mtu 65520
  wideports $W $ST; ip netns exec $W sysctl -qw net.ipv4.tcp_tw_reuse=1
  # "Internet" servers in the stub: greet (connrate), echo+udp (hold), iperf3.
  start ip netns exec $ST "$LG" serve --tcp 0.0.0.0:9000
  start ip netns exec $ST "$LG" serve --tcp 0.0.0.0:9002 --tcp-mode echo --udp 0.0.0.0:9003
  start ip netns exec $ST iperf3 -s -p 5201
  # W's own servers for slirp4netns (10.0.2.2) and pasta (the mapped gateway): W's loopback.
  start ip netns exec $W "$LG" serve --tcp 0.0.0.0:9000
  waitfor listening $ST 9000; waitfor listening $ST 9002; waitfor listening $ST 5201; waitfor listening $W 9000
}
# vsw_up K: a fresh vswitchd in W (socket $TMPD/K.sock) with network n1500 (10.204.K.0/24)
# holding containers $TAG-K-c (greet server :9000 published as 19000, iperf3 :5201 published
# as 15201), $TAG-K-a and $TAG-K-b (sockperf, UDP), and network n65520 (10.205.K.0/24) with
# $TAG-K-j (iperf3 :5201 published as 16201). Sets VPID and ctl().
vsw_up() {
  local k=$1 c
  world_up
  start ip netns exec $W "$BIN/vswitchd" --state-dir "$TMPD/$k-state" --socket "$TMPD/$k.sock" \
    --network n1500=10.204.$k.0/24 --max-flows 100000 --max-flows-per-endpoint 100000
  VSW=$LAST
  VSOCK=$TMPD/$k.sock
  waitfor ctl network ls || echo "# vswitchd $k did not answer on its socket"
  VPID=$(pgrep -P "$VSW" -x vswitchd || echo "$VSW")
  ctl network create --subnet 10.205.$k.0/24 --mtu 65520 n65520 >/dev/null
  mkns $TAG-$k-c $TAG-$k-a $TAG-$k-b $TAG-$k-j
  ctl network connect n1500 /run/netns/$TAG-$k-c --name c --publish 19000:9000 --publish 15201:5201 >/dev/null
  ctl network connect n1500 /run/netns/$TAG-$k-a --name a >/dev/null
  ctl network connect n1500 /run/netns/$TAG-$k-b --name b >/dev/null
  ctl network connect n65520 /run/netns/$TAG-$k-j --name j --publish 16201:5201 >/dev/null
  for c in c a b j; do
    ip -n $TAG-$k-$c -4 -o addr show scope global | grep -q . || echo "# vswitchd $k: container $c has no address"
  done
  wideports $TAG-$k-c $TAG-$k-a $TAG-$k-b $TAG-$k-j
  start ip netns exec $TAG-$k-c "$LG" serve --tcp 0.0.0.0:9000
  start ip netns exec $TAG-$k-c iperf3 -s -p 5201
  start ip netns exec $TAG-$k-j iperf3 -s -p 5201
  BADDR=$(ip -n $TAG-$k-b -4 -o addr show scope global | awk '{sub(/\/.*/,"",$4); print $4; exit}')
  start ip netns exec $TAG-$k-b sockperf server --tcp -i "$BADDR" -p 11111
  start ip netns exec $TAG-$k-b "$LG" serve --udp "$BADDR:9001"
  waitfor listening $TAG-$k-c 9000; waitfor listening $TAG-$k-c 5201; waitfor listening $TAG-$k-j 5201
  waitfor listening $TAG-$k-b 11111
  VK=$k
}
ctl() { "$BIN/vswitchctl" --socket "$VSOCK" "$@"; }
vsw_fresh() { [ -n "${VSW:-}" ] && stop "$VSW"; VSW=""; vsw_up "$1"; }       # a new daemon
vsw_any() { [ -n "${VSW:-}" ] && kill -0 "$VSW" 2>/dev/null || vsw_up "$1"; }  # the running one

# ==== loadgen: the load generator is not the bottleneck ======================================
if has loadgen; then
  kernel_up; kernel_mtu 1500; MON=-
  connrate $K-v1 10.201.0.2:9000 "kernel-veth connrate loadgen"
  target loadgen-connrate "$V" 14700 "3x4900/s" ge 1.0 "loadgen_cpu=$(field cpu)($CTHREADS threads; 100% per thread = generator-bound)"
fi

# ==== flows: NAT cost with 10k idle flows live ==============================================
if has flows; then
  vsw_fresh 1; C=$TAG-1-c; MON=$VPID
  rss0=$(rss_mib "$VPID")
  iperf $C 198.51.100.2 5201 "vswitchd egress flows=0"; e0=$V
  connrate $C 198.51.100.2:9000 "vswitchd connrate flow=egress flows=0"; r0=$V
  rss1=$(rss_mib "$VPID")
  t0=$(date +%s)
  start ip netns exec $C "$LG" hold --to 198.51.100.2:9002 --tcp "$TCPFLOWS" --udp "$UDPFLOWS" \
    --udp-to 198.51.100.2:9003 --keepalive-secs 5
  HOLD=$LAST
  for i in $(seq 600); do grep -q 'hold.*ready' "$TMPD/bg.log" && break; kill -0 $HOLD 2>/dev/null || break; sleep 0.5; done
  # A datagram lost on the way (see section small) leaves its flow to the next keepalive.
  nudp() { ip netns exec $W ss -Hun '( dport = :9003 )' | wc -l; }
  for i in $(seq 60); do [ "$(nudp)" -ge "$UDPFLOWS" ] && break; sleep 0.25; done
  echo "vswitchd $(grep -o 'hold tcp=.*ready' "$TMPD/bg.log" | tail -1 || echo 'hold: not ready') open_secs=$(( $(date +%s) - t0 ))" \
       "host_sockets=$(ip netns exec $W ss -Htan state established '( dport = :9002 )' | wc -l)tcp+$(nudp)udp"
  rss2=$(rss_mib "$VPID")
  L="$TCPFLOWS+$UDPFLOWS"
  iperf $C 198.51.100.2 5201 "vswitchd egress flows=$L"; e1=$V
  connrate $C 198.51.100.2:9000 "vswitchd connrate flow=egress flows=$L"; r1=$V
  stop $HOLD
  t0=$(date +%s.%N); left=0
  for i in $(seq 600); do
    left=$(ip netns exec $W ss -Htan '( dport = :9002 )' | grep -vc TIME-WAIT)
    [ "$left" -eq 0 ] && break; sleep 0.1
  done
  closed=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  # The host sockets are gone; the flows leave vswitchd's table once the containers' side
  # has closed too (a burst of 10,000 FINs can overflow the container's TAP ring, and the
  # dropped FINs are retransmitted), so wait for the table as well, at most 60 s.
  tcp_left=error
  for i in $(seq 600); do
    tcp_left=$(ctl network inspect n1500 2>/dev/null | tr -d ' \n' | grep -o '"Flows":{"Tcp":[0-9]*' | grep -o '[0-9]*$' || echo error)
    [ "$tcp_left" = 0 ] && break; sleep 0.1
  done
  table=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  sleep 1; rss3=$(rss_mib "$VPID")
  echo "vswitchd flows closed in ${closed}s (host sockets left: $left); TCP flows left the table in ${table}s (left: $tcp_left)"
  echo "vswitchd rss_mib start=$rss0 after_zero_flow_runs=$rss1 with_flows=$rss2 after_close=$rss3"
  target flows-egress "$e1" "$e0" "vswitchd,flows=0" ge 0.9
  target flows-connrate "$r1" "$r0" "vswitchd,flows=0" ge 0.9
  target flows-rss-after-close "$rss3" "$rss1" "vswitchd,before-flows" le 1.5 "rss_with_flows=${rss2}MiB(informational)"
fi

# ==== connrate: connection setup vs slirp4netns and pasta =====================================
if has connrate; then
  vsw_fresh 2; C=$TAG-2-c
  KEEP=("${PIDS[@]}")
  # slirp4netns in W: container -> 10.0.2.2 is W's 127.0.0.1; hostfwd 127.0.0.1:19001 -> :9000.
  S=$TAG-s; mkns $S
  start ip netns exec $W slirp4netns --configure --mtu=1500 --netns-type=path --api-socket "$TMPD/slirp.sock" /run/netns/$S tap0
  SLIRP=$LAST
  waitfor sh -c "ip -n $S -4 addr show tap0 | grep -q 10.0.2.100" && waitfor test -S "$TMPD/slirp.sock" || echo "# slirp4netns did not come up"
  api "$TMPD/slirp.sock" '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":19001,"guest_port":9000}}' >/dev/null
  # pasta in W: container -> 198.51.100.2 (the mapped gateway) is W's loopback; -t 19002:9000.
  # --runas 0: as root it would drop to nobody and then fail to join the namespace.
  P=$TAG-p; mkns $P
  start ip netns exec $W pasta -f -q --runas 0 --config-net -m 1500 -t 19002:9000 -T none -u none -U none --netns /run/netns/$P
  PASTA=$LAST
  waitfor sh -c "ip -n $P -4 addr | grep -q 198.51.100.1" && waitfor listening $W 19002 ||
    echo "# pasta did not come up: $(kill -0 $PASTA 2>/dev/null && echo running || echo exited);" \
         "$(grep -i 'pasta\|error\|fail\|cannot\|couldn' "$TMPD/bg.log" | tail -2 | tr '\n' ' ' | cut -c1-200)"
  wideports $S $P
  start ip netns exec $S "$LG" serve --tcp 0.0.0.0:9000
  start ip netns exec $P "$LG" serve --tcp 0.0.0.0:9000
  waitfor listening $S 9000; waitfor listening $P 9000; waitfor listening $W 19001; waitfor listening $W 19002

  MON=$VPID;  connrate $C 198.51.100.2:9000 "vswitchd connrate flow=egress"; ve=$V
  MON=$SLIRP; connrate $S 10.0.2.2:9000 "slirp4netns connrate flow=egress"; se=$V
  MON=$PASTA; connrate $P 198.51.100.2:9000 "pasta connrate flow=egress"; pe=$V
  MON=$VPID;  connrate $W 198.51.100.1:19000 "vswitchd connrate flow=published"; vp=$V
  MON=$SLIRP; connrate $W 127.0.0.1:19001 "slirp4netns connrate flow=published"; sp=$V
  MON=$PASTA; connrate $W 198.51.100.1:19002 "pasta connrate flow=published(tap)"; pp1=$V
  connrate $W 127.0.0.1:19002 "pasta connrate flow=published(splice)"; pp2=$V
  pp=$(best "$pp1" "$pp2")
  MON=-
  peer() { awk -v s="$1" -v p="$2" 'BEGIN{ if (s+0>=p+0 && s+0>0) print s" slirp4netns"; else if (p+0>0) print p" pasta"; else print "error none" }'; }
  set -- $(peer "$se" "$pe"); target connrate-egress "$ve" "$1" "best-peer=$2" ge 2.0
  set -- $(peer "$sp" "$pp"); target connrate-published "$vp" "$1" "best-peer=$2" ge 2.0
  stop $(printf '%s\n' "${PIDS[@]}" | grep -vxF -f <(printf '%s\n' "${KEEP[@]}"))   # slirp, pasta
fi

# ==== mtu: NAT egress and published-port ingress at MTU 65520 =================================
if has mtu; then
  kernel_up; kernel_mtu 65520
  vsw_any 3
  MON=-;     iperf $K-v1 10.201.0.2 5201 "kernel-veth tcp mtu=65520"; kv=$V
  MON=$VPID; iperf $TAG-$VK-j 198.51.100.2 5201 "vswitchd egress mtu=65520"; ve=$V
  iperf $W 198.51.100.1 16201 "vswitchd ingress(published) mtu=65520"; vi=$V
  target mtu65520-egress "$ve" "$kv" "kernel-veth" ge 0.7
  target mtu65520-ingress "$vi" "$kv" "kernel-veth" ge 0.9
  kernel_mtu 1500
fi

# ==== latency: sockperf TCP ping-pong container<->container ===================================
rr() {   # NS ADDR LABEL -> prints, sets P50 P99 (lowest over REPS)
  local r a50=() a99=()
  for r in $(seq "$REPS"); do
    measure ip netns exec "$1" timeout $((SECS+30)) sockperf ping-pong --tcp -i "$2" -p 11111 -m 64 -t "$SECS" --full-rtt
    OUT=$(echo "$OUT" | sed 's/\x1b\[[0-9;]*m//g' | awk '
      /avg-rtt=/{s=$0; sub(/.*avg-rtt=/,"",s); split(s,a," "); avg=a[1]}
      /percentile 50.000/{p50=$NF} /percentile 99.000/{p99=$NF}
      END{ print "avg=" (avg==""?"error":avg) " p50=" (p50==""?"error":p50) " p99=" (p99==""?"error":p99) }')
    echo "$3 rtt_us_$OUT$CPU bg=$BG%"; perftop
    a50+=("$(field p50)"); a99+=("$(field p99)")
  done
  P50=$(lowest "${a50[@]}"); P99=$(lowest "${a99[@]}")
}
if has latency; then
  kernel_up; kernel_mtu 1500
  vsw_any 4
  MON=-;     rr $K-b1 10.202.0.2 "kernel-bridge rr tcp 64B"; k50=$P50 k99=$P99
  MON=$VPID; rr $TAG-$VK-a "$BADDR" "vswitchd rr tcp 64B"; v50=$P50 v99=$P99
  target latency-p50 "$v50" "$k50" "kernel-bridge" le 1.5
  target latency-p99 "$v99" "$k99" "kernel-bridge" le 1.5
fi

# ==== small: 64-byte UDP container->container ==================================================
# drops SENDNS RECVNS -> "TX_DROPPED RX_DROPPED" of each namespace's one non-lo interface
drops() {
  local t r
  t=$(ip netns exec "$1" sh -c 'for i in /sys/class/net/*; do [ "${i##*/}" = lo ] || cat $i/statistics/tx_dropped; done' | head -1)
  r=$(ip netns exec "$2" sh -c 'for i in /sys/class/net/*; do [ "${i##*/}" = lo ] || cat $i/statistics/rx_dropped; done' | head -1)
  echo "${t:-0} ${r:-0}"
}
udp64() {  # NS ADDR RECVNS LABEL -> prints, sets V (received pps, best over REPS)
  local r v sent rcv all=()
  for r in $(seq "$REPS"); do
    local n0 spps scpu cpu d0 d1; n0=$(grep -c '^serve udp' "$TMPD/bg.log")
    d0=$(drops "$1" "$3")
    measure ip netns exec "$1" "$LG" udpflood --to "$2:9001" --size 64 --secs "$SECS" --threads "$UDPTHREADS"
    sent=$(field sent) spps=$(field pps) scpu=$(field cpu) cpu=$CPU
    waitfor sh -c "[ \$(grep -c '^serve udp' '$TMPD/bg.log') -gt $n0 ]"
    OUT=$(grep '^serve udp' "$TMPD/bg.log" | tail -1)
    [ "$(grep -c '^serve udp' "$TMPD/bg.log")" -gt "$n0" ] || OUT=""
    v=$(field pps); rcv=$(field received); d1=$(drops "$1" "$3")
    echo "$4 threads=$UDPTHREADS sent=$sent sent_pps=$spps sender_cpu=$scpu received=$rcv received_pps=$v" \
         "loss=$(awk -v s="$sent" -v r="$rcv" 'BEGIN{ if (s+0>0) printf "%.2f%%", 100*(s-r)/s; else print "n/a" }')" \
         "$(awk -v a="$d0" -v b="$d1" 'BEGIN{split(a,x," "); split(b,y," "); printf "sender_if_tx_dropped=%d receiver_if_rx_dropped=%d", y[1]-x[1], y[2]-x[2]}')$cpu bg=$BG%"
    all+=("$v"); perftop
  done
  V=$(best "${all[@]}")
}
if has small; then
  kernel_up; kernel_mtu 1500
  vsw_any 5
  MON=-;     udp64 $K-b1 10.202.0.2 $K-b2 "kernel-bridge udp 64B"; ku=$V
  MON=$VPID; udp64 $TAG-$VK-a "$BADDR" $TAG-$VK-b "vswitchd udp 64B"; vu=$V
  target small-udp64 "$vu" "$ku" "kernel-bridge" ge 1.0
fi
MON=-

# ==== attach ===================================================================================
if has attach; then
  if [ -f "$HERE/bench-attach.sh" ]; then
    bash "$HERE/bench-attach.sh"
  else
    echo "attach: see scripts/bench-attach.sh (missing)"
  fi
fi

echo "# summary"
printf '%s\n' "${SUMMARY[@]}"
