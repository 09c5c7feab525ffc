#!/usr/bin/env bash
# bench-l2.sh - vswitchd next to its references, measured in the same run at MTU 1500 and
# 65520, iperf3 TCP, one stream, -t SECS after -O 1 warm-up second, REPS repetitions.
#
# Section l2: container<->container through vswitchd next to the kernel reference (two
#   namespaces joined by veth pairs into a Linux bridge: Docker's rootful model); each
#   vswitchd figure is printed as a ratio of the kernel figure (target: >= 0.9, design.md).
# Section nat: container<->world through vswitchd's NAT next to slirp4netns and pasta (set up
#   as in /work/shared/bench/anchors.sh) and a plain kernel veth pair between two namespaces.
#   The "world" is a namespace W made here: lo up, 198.51.100.1/24 on a veth to a stub
#   namespace (198.51.100.2, W's default gateway); vswitchd, slirp4netns and pasta all run
#   inside W, so "the host" of each of them is W.
#   flow=egress : container opens the connection, data container->W; the iperf3 server in W
#                 listens on all addresses. vswitchd: client -> 198.51.100.2, the stub
#                 beyond W (default route via the network gateway, NATed to W's sockets; a
#                 container may not reach W's own addresses, so a second iperf3 server runs in
#                 the stub, one kernel veth hop past W); slirp4netns: -> 10.0.2.2
#                 (W's 127.0.0.1); pasta: -> 198.51.100.2, the mapped gateway (tap path).
#   flow=ingress: published port, W opens the connection, data W->container (server in the
#                 container on 5201). vswitchd: `network connect ... --publish HPORT:5201`
#                 (fallback `port add NET c HPORT:5201`), client in W -> 198.51.100.1:HPORT
#                 (HPORT 15201 at MTU 1500, 16201 at 65520); slirp4netns: API-socket
#                 hostfwd, client -> 127.0.0.1:15301; pasta: -t 15401:5201, client ->
#                 198.51.100.1:15401 (non-loopback source: tap path).
#   fwd_cpu = CPU time of the forwarding process (vswitchd / slirp4netns / pasta) over the
#   run, % of one core; bg = busy % of the whole machine just before the run (others' load).
#   After each MTU, one summary line per flow with the means over REPS: best-peer is the
#   better of slirp4netns and pasta in this run, kernel the kernel-veth figure of this run.
#   Targets: egress >= 1.5x best peer, >= 0.7x kernel at 65520 (>= 0.5x at 1500);
#   ingress (published port) >= 1.5x best peer, >= 0.9x kernel.
# Section ipv6: the same paths over IPv6 next to IPv4, in one run. A kernel bridge (as in
#   l2) carrying both families; a dual-stack vswitchd network (10.205.M.0/24 +
#   fd00:205:M::/64) with two containers; and NAT egress from a dual-stack network to a stub
#   beyond a world namespace (198.51.100.2 and 2001:db8:205::2). Each IPv6 figure is printed
#   with its ratio to the IPv4 figure of the same path and repetition (target >= 0.9), then
#   one summary line per path and MTU with the means.
# Section capture: container<->container through vswitchd with and without a packet capture
#   running (`vswitchctl capture NET -w /dev/null`: the whole network, full snaplen, and
#   `-s 96`, headers only), in the same run; each capture figure is printed as a ratio of the
#   figure without capture measured just before it, with the frames the capture wrote and
#   dropped (a slow reader drops frames; forwarding must not slow down).
#
# Usage: scripts/bench-l2.sh [-t SECS] [-r REPS] [-s l2,nat,ipv6,capture]
#   -t seconds per iperf3 run (default 5)   -r repetitions (default 2)
#   -s comma list of sections (default l2,nat,ipv6; capture only when named)
# Needs root; installs iperf3 (and for nat slirp4netns, passt, socat) if missing.
# Output lines:
#   kernel-bridge tcp mtu=1500 gbps=27.1
#   vswitchd tcp mtu=1500 gbps=20.3 ratio=0.75 vswitchd_cpu=85%
#   kernel-veth tcp mtu=1500 flow=a->b gbps=21.2 bg=0%
#   vswitchd tcp mtu=1500 flow=egress gbps=8.17 fwd_cpu=70% bg=0%
#   slirp4netns tcp mtu=1500 flow=egress gbps=0.71 fwd_cpu=91% bg=0%
#   pasta tcp mtu=1500 flow=egress gbps=0.00 fwd_cpu=4% bg=0%
#   summary mtu=1500 flow=egress ratio vswitchd/best-peer=11.51 vswitchd/kernel=0.39 targets=1.5,0.5 met=yes,no vswitchd=8.17 best-peer=slirp4netns:0.71 kernel-veth=21.20
#   ipv6 kernel-bridge mtu=1500 v4=27.1 v6=25.3 v6/v4=0.93
#   ipv6-summary mtu=1500 path=vswitchd-l2 v4=20.1 v6=19.2 v6/v4=0.96 target=0.9 met=yes
#   capture mtu=1500 mode=none gbps=20.1
#   capture mtu=1500 mode=full gbps=19.5 ratio=0.97 frames=81234 dropped=1200
# A figure that could not be measured prints as gbps=error (ratios n/a); the run goes on.
# Traffic stays inside namespaces this script creates (198.51.100.0/24, 10.20x.0.0/16 and
# their loopbacks); all of them are deleted and every process it started is stopped by PID
# on exit.
set -u
export LC_ALL=C
SECS=5 REPS=2 SECTIONS=l2,nat,ipv6
while getopts "t:r:s:h" o; do
  case $o in
    t) SECS=$OPTARG ;; r) REPS=$OPTARG ;; s) SECTIONS=$OPTARG ;;
    *) sed -n '2,/^set -u/p' "$0" | sed '$d'; exit 0 ;;
  esac
done
has() { case ",$SECTIONS," in *",$1,"*) return 0 ;; esac; return 1; }
[ "$(id -u)" = 0 ] || { echo "bench-l2.sh: needs root" >&2; exit 1; }
NAME=bench-l2.sh TAG=bl2$$
. "$(dirname "$0")/lib/bench-common.sh"
need_tools iperf3:iperf3 $(has nat && echo slirp4netns:slirp4netns pasta:passt socat:socat)
ip6() { ip -6 "$@"; }   # addresses below are added with nodad: usable at once
build_release
iperf() {  # NS ADDR [PORT] -> Gbit/s (receiver)
  ip netns exec "$1" timeout $((SECS+30)) iperf3 -f g -O 1 -t "$SECS" --connect-timeout 3000 \
      -c "$2" -p "${3:-5201}" 2>&1 |
    awk '/receiver/{for(i=1;i<=NF;i++) if($i=="Gbits/sec") v=$(i-1)} END{print (v==""?"error":v)}'
}

echo "# bench-l2.sh $(date -u +%FT%TZ) kernel=$(uname -r) cpus=$(nproc) secs=$SECS reps=$REPS sections=$SECTIONS"

# ==== section l2 ==========================================================================
if has l2; then
L2START=${#PIDS[@]}
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
stop "${PIDS[@]:$L2START}"
delns $TAG-k1 $TAG-k2 $TAG-kb $TAG-w $TAG-a1500 $TAG-b1500 $TAG-a65520 $TAG-b65520
fi

# ==== section capture =====================================================================
if has capture; then
  CSTART=${#PIDS[@]}
  mkns $TAG-cw $TAG-ca1500 $TAG-cb1500 $TAG-ca65520 $TAG-cb65520
  start ip netns exec $TAG-cw "$BIN/vswitchd" --state-dir "$TMPD/cap-state" --socket "$TMPD/cap.sock" \
    --network c1500=10.207.1.0/24
  cctl() { "$BIN/vswitchctl" --socket "$TMPD/cap.sock" "$@"; }
  waitfor cctl network ls || echo "# vswitchd (capture) did not answer on its socket"
  cctl network create --subnet 10.207.2.0/24 --mtu 65520 c65520 >/dev/null
  for m in 1500 65520; do
    cctl network connect c$m /run/netns/$TAG-ca$m --name a >/dev/null
    cctl network connect c$m /run/netns/$TAG-cb$m --name b >/dev/null
    start ip netns exec $TAG-cb$m iperf3 -s -p 5201; waitfor listening $TAG-cb$m 5201
  done
  for mtu in 1500 65520; do
    n=$([ $mtu = 1500 ] && echo 1 || echo 2)
    for r in $(seq "$REPS"); do
      base=$(iperf $TAG-ca$mtu 10.207.$n.3)
      echo "capture mtu=$mtu mode=none gbps=$base"
      for mode in full s96; do
        flags=(); [ $mode = s96 ] && flags=(-s 96)
        # The binary itself in the background (not a function: $! must be its PID).
        "$BIN/vswitchctl" --socket "$TMPD/cap.sock" capture c$mtu "${flags[@]}" -w /dev/null \
          2>"$TMPD/cap.err" & CAP=$!; PIDS+=($CAP)
        sleep 0.5
        v=$(iperf $TAG-ca$mtu 10.207.$n.3)
        kill -TERM "$CAP" 2>/dev/null; wait "$CAP" 2>/dev/null; stop "$CAP"
        counts=$(awk '/frames captured/{gsub(",",""); printf "frames=%s dropped=%s", $1, ($4==""?"?":$4)}' "$TMPD/cap.err")
        ratio=$(awk -v v="$v" -v k="$base" 'BEGIN{ if (k+0>0 && v+0>0) printf "%.2f", v/k; else print "n/a"}')
        echo "capture mtu=$mtu mode=$mode gbps=$v ratio=$ratio ${counts:-frames=error}"
      done
    done
  done
  stop "${PIDS[@]:$CSTART}"
  delns $TAG-cw $TAG-ca1500 $TAG-cb1500 $TAG-ca65520 $TAG-cb65520
fi

# ==== section nat =========================================================================
# veth NS1 IF1 ADDR1 NS2 IF2 ADDR2
veth() {
  ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
  ip -n "$1" addr add "$3" dev "$2"; ip -n "$4" addr add "$6" dev "$5"
  ip -n "$1" link set "$2" up; ip -n "$4" link set "$5" up
}
cpu_sample() { awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8+$9, $5+$6}' /proc/stat; }
busy_pct() {   # whole-machine busy % over 0.5 s
  local a b; a=($(cpu_sample)); sleep 0.5; b=($(cpu_sample))
  local dt=$((b[0]-a[0])) di=$((b[1]-a[1])); [ $dt -gt 0 ] || { echo 0; return; }
  echo $(( 100*(dt-di)/dt ))
}
declare -A RES   # "tool mtu flow" -> space-separated Gbit/s figures of this run
# ntcp TOOL MTU FLOW FWD_PID NS ADDR PORT   (FWD_PID "-" for none) -> one line, REPS times
ntcp() {
  local tool=$1 mtu=$2 flow=$3 mon=$4 ns=$5 addr=$6 port=$7 r bg k0 t0 v cpu
  for r in $(seq "$REPS"); do
    bg=$(busy_pct); cpu=""
    [ "$mon" = - ] || { k0=$(ticks "$mon"); t0=$(date +%s.%N); }
    v=$(iperf "$ns" "$addr" "$port")
    [ "$mon" = - ] || cpu=$(awk -v a="$k0" -v b="$(ticks "$mon")" -v s="$t0" -v e="$(date +%s.%N)" \
      -v hz="$(getconf CLK_TCK)" 'BEGIN{printf " fwd_cpu=%d%%", (b-a)/hz/(e-s)*100}')
    echo "$tool tcp mtu=$mtu flow=$flow gbps=$v$cpu bg=$bg%"
    RES["$tool $mtu $flow"]+=" $v"
  done
}
mean() { echo "${RES["$1"]:-}" | awk '{n=0;s=0; for(i=1;i<=NF;i++) if($i+0>0){s+=$i;n++}}
  END{ if(n) printf "%.2f", s/n; else print "error" }'; }
summary() {    # MTU FLOW PEER_TARGET KERNEL_TARGET
  local mtu=$1 flow=$2 v s p k
  v=$(mean "vswitchd $mtu $flow"); s=$(mean "slirp4netns $mtu $flow"); p=$(mean "pasta $mtu $flow")
  k=$(mean "kernel-veth $mtu a->b")
  awk -v mtu="$mtu" -v flow="$flow" -v v="$v" -v s="$s" -v p="$p" -v k="$k" -v t1="$3" -v t2="$4" 'BEGIN{
    bp="none"; b=0
    if (s+0>0) { bp="slirp4netns"; b=s+0 }
    if (p+0>b) { bp="pasta"; b=p+0 }
    r1 = (v+0>0 && b>0)   ? sprintf("%.2f", v/b) : "n/a"
    r2 = (v+0>0 && k+0>0) ? sprintf("%.2f", v/k) : "n/a"
    m1 = (r1=="n/a") ? "n/a" : (r1+0>=t1 ? "yes" : "no")
    m2 = (r2=="n/a") ? "n/a" : (r2+0>=t2 ? "yes" : "no")
    printf "summary mtu=%s flow=%s ratio vswitchd/best-peer=%s vswitchd/kernel=%s targets=%s,%s met=%s,%s vswitchd=%s best-peer=%s:%s kernel-veth=%s\n",
      mtu, flow, r1, r2, t1, t2, m1, m2, v, bp, (b>0 ? sprintf("%.2f", b) : "error"), k }'
}
api() { echo "$2" | socat -t5 - "UNIX-CONNECT:$1"; }

if has nat; then
  echo "# nat: iperf3=$(dpkg-query -W -f='${Version}' iperf3 2>/dev/null) slirp4netns=$(dpkg-query -W -f='${Version}' slirp4netns 2>/dev/null)" \
       "libslirp0=$(dpkg-query -W -f='${Version}' libslirp0 2>/dev/null) passt=$(dpkg-query -W -f='${Version}' passt 2>/dev/null)"
  W=$TAG-nw
  # The world W: lo + veth to a stub namespace holding W's default gateway (pasta copies it).
  mkns $W $TAG-nstub $TAG-v1 $TAG-v2
  veth $W w0 198.51.100.1/24 $TAG-nstub w1 198.51.100.2/24      # TEST-NET-2, namespaces only
  ip -n $W route add default via 198.51.100.2
  # A jumbo link, so the 65520 runs through it are not capped by the veth default of 1500.
  ip -n $W link set w0 mtu 65520; ip -n $TAG-nstub link set w1 mtu 65520
  # One iperf3 server in W on all addresses: 198.51.100.1 (vswitchd) and 127.0.0.1 (slirp, pasta).
  start ip netns exec $W iperf3 -s -p 5201; waitfor listening $W 5201
  # vswitchd's egress target: beyond W, since containers may not reach W's own addresses.
  start ip netns exec $TAG-nstub iperf3 -s -p 5201; waitfor listening $TAG-nstub 5201
  # Kernel reference: plain veth pair between two namespaces.
  veth $TAG-v1 v0 10.201.0.1/24 $TAG-v2 v0 10.201.0.2/24
  start ip netns exec $TAG-v2 iperf3 -s -p 5201; waitfor listening $TAG-v2 5201

  # vswitchd inside W, one network per MTU, one container on each (egress client, and the
  # iperf3 server behind the published port HPORT).
  declare -A HPORT=([1500]=15201 [65520]=16201) PUBOK=()
  start ip netns exec $W "$BIN/vswitchd" --state-dir "$TMPD/nat-state" --socket "$TMPD/nat.sock" \
    --network n1500=10.204.1.0/24
  NVSW=$LAST
  nctl() { "$BIN/vswitchctl" --socket "$TMPD/nat.sock" "$@"; }
  waitfor nctl network ls || echo "# vswitchd (nat) did not answer on its socket"
  nctl network create --subnet 10.204.2.0/24 --mtu 65520 n65520 >/dev/null
  NVPID=$(pgrep -P "$NVSW" -x vswitchd || echo "$NVSW")
  for m in 1500 65520; do
    C=$TAG-c$m; mkns $C
    if nctl network connect n$m /run/netns/$C --name c --publish ${HPORT[$m]}:5201 >"$TMPD/pub.log" 2>&1; then
      PUBOK[$m]=1
    else
      # no --publish (yet?): connect plainly if that did not happen, then `port add`
      ip -n $C -4 -o addr show scope global | grep -q . ||
        nctl network connect n$m /run/netns/$C --name c >>"$TMPD/pub.log" 2>&1
      if nctl port add n$m c ${HPORT[$m]}:5201 >>"$TMPD/pub.log" 2>&1; then PUBOK[$m]=1; else
        echo "# vswitchd: could not publish ${HPORT[$m]}:5201 on n$m: $(grep -m1 -i 'error\|unexpected\|unrecognized' "$TMPD/pub.log" | tr -s ' ' | cut -c1-160)"
      fi
    fi
    ip -n $C -4 -o addr show scope global | grep -q . || echo "# vswitchd: container on n$m has no address"
    ip -n $C route show default | grep -q . || echo "# vswitchd: container on n$m has no default route"
    start ip netns exec $C iperf3 -s -p 5201; waitfor listening $C 5201
  done

  for mtu in 1500 65520; do
    ip -n $TAG-v1 link set v0 mtu $mtu; ip -n $TAG-v2 link set v0 mtu $mtu
    # slirp4netns in W; "host" 127.0.0.1 is W's loopback, reached from the container as 10.0.2.2.
    KEEP=("${PIDS[@]}")
    S=$TAG-s; mkns $S
    start ip netns exec $W slirp4netns --configure --mtu=$mtu --netns-type=path \
      --api-socket "$TMPD/slirp.sock" /run/netns/$S tap0
    SLIRP=$LAST
    waitfor sh -c "ip -n $S -4 addr show tap0 | grep -q 10.0.2.100" && waitfor test -S "$TMPD/slirp.sock" \
      || echo "# slirp4netns did not come up"
    start ip netns exec $S iperf3 -s -p 5201; waitfor listening $S 5201
    api "$TMPD/slirp.sock" '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":15301,"guest_port":5201}}' >/dev/null
    # pasta in W; the container copies W's 198.51.100.1/24 and default via 198.51.100.2; the
    # gateway address is mapped to W's loopback (tap path); -t from a non-loopback source too.
    # --runas 0: as root it would drop to nobody and then fail to join the namespace.
    P=$TAG-p; mkns $P
    start ip netns exec $W pasta -f -q --runas 0 --config-net -m $mtu \
      -t 15401:5201 -T none -u none -U none --netns /run/netns/$P
    PASTA=$LAST
    waitfor sh -c "ip -n $P -4 addr | grep -q 198.51.100.1" || echo "# pasta did not come up"
    start ip netns exec $P iperf3 -s -p 5201; waitfor listening $P 5201
    waitfor listening $W 15401 && waitfor listening $W 15301

    ntcp kernel-veth $mtu 'a->b' - $TAG-v1 10.201.0.2 5201
    ntcp vswitchd    $mtu egress $NVPID $TAG-c$mtu 198.51.100.2 5201
    ntcp slirp4netns $mtu egress $SLIRP $S 10.0.2.2 5201
    ntcp pasta       $mtu egress $PASTA $P 198.51.100.2 5201
    [ -n "${PUBOK[$mtu]:-}" ] || echo "# vswitchd: port ${HPORT[$mtu]} not published, ingress will fail"
    ntcp vswitchd    $mtu ingress $NVPID $W 198.51.100.1 ${HPORT[$mtu]}
    ntcp slirp4netns $mtu ingress $SLIRP $W 127.0.0.1 15301
    ntcp pasta       $mtu ingress $PASTA $W 198.51.100.1 15401
    if [ $mtu = 65520 ]; then summary $mtu egress 1.5 0.7; else summary $mtu egress 1.5 0.5; fi
    summary $mtu ingress 1.5 0.9

    stop $(printf '%s\n' "${PIDS[@]}" | grep -vxF -f <(printf '%s\n' "${KEEP[@]}"))   # slirp, pasta
    delns $S $P; rm -f "$TMPD/slirp.sock"
  done
fi

# ==== section ipv6 ========================================================================
# pair NS ADDR4 ADDR6 [PORT] -> "v4 v6" Gbit/s, one after the other to the same peer.
pair() { echo "$(iperf "$1" "$2" "${4:-5201}") $(iperf "$1" "$3" "${4:-5201}")"; }
declare -A R6    # "path mtu" -> "v4 v6" pairs of this run
ratio6() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a+0>0 && b+0>0) printf "%.2f", b/a; else print "n/a"}'; }
if has ipv6; then
  I6START=${#PIDS[@]}
  mkns $TAG-6k1 $TAG-6k2 $TAG-6kb $TAG-6w $TAG-6stub $TAG-6a1500 $TAG-6b1500 $TAG-6a65520 $TAG-6b65520 \
       $TAG-6c1500 $TAG-6c65520
  ip -n $TAG-6kb link add br0 type bridge; ip -n $TAG-6kb link set br0 up
  for i in 1 2; do
    ip link add e0 netns $TAG-6k$i type veth peer name p$i netns $TAG-6kb
    ip -n $TAG-6k$i addr add 10.206.0.$i/24 dev e0
    ip6 -n $TAG-6k$i addr add fd00:206::$i/64 dev e0 nodad; ip -n $TAG-6k$i link set e0 up
    ip -n $TAG-6kb link set p$i master br0; ip -n $TAG-6kb link set p$i up
  done
  waitfor ip netns exec $TAG-6k1 ping -c1 -W1 fd00:206::2
  start ip netns exec $TAG-6k2 iperf3 -s -p 5201; waitfor listening $TAG-6k2 5201
  # The world: vswitchd's host side, with a dual-stack stub one veth hop beyond it.
  ip link add w0 netns $TAG-6w type veth peer name w1 netns $TAG-6stub
  ip -n $TAG-6w addr add 198.51.100.1/24 dev w0; ip -n $TAG-6stub addr add 198.51.100.2/24 dev w1
  ip6 -n $TAG-6w addr add 2001:db8:205::1/64 dev w0 nodad
  ip6 -n $TAG-6stub addr add 2001:db8:205::2/64 dev w1 nodad
  for l in "$TAG-6w w0" "$TAG-6stub w1"; do set -- $l; ip -n $1 link set $2 mtu 65520 up; done
  start ip netns exec $TAG-6stub iperf3 -s -p 5201; waitfor listening $TAG-6stub 5201
  start ip netns exec $TAG-6w "$BIN/vswitchd" --state-dir "$TMPD/v6-state" --socket "$TMPD/v6.sock" \
    --network d1500=10.205.1.0/24,fd00:205:1::/64
  ctl6() { "$BIN/vswitchctl" --socket "$TMPD/v6.sock" "$@"; }
  waitfor ctl6 network ls || echo "# vswitchd (ipv6) did not answer on its socket"
  ctl6 network create --ipv6 --subnet 10.205.2.0/24 --subnet fd00:205:2::/64 --mtu 65520 d65520 >/dev/null
  for m in 1500 65520; do
    for c in a b c; do ctl6 network connect d$m /run/netns/$TAG-6$c$m --name $c >/dev/null; done
    start ip netns exec $TAG-6b$m iperf3 -s -p 5201; waitfor listening $TAG-6b$m 5201
  done
  for mtu in 1500 65520; do
    for l in "$TAG-6k1 e0" "$TAG-6k2 e0" "$TAG-6kb p1" "$TAG-6kb p2" "$TAG-6kb br0"; do
      set -- $l; ip -n "$1" link set "$2" mtu $mtu
    done
    n=$([ $mtu = 1500 ] && echo 1 || echo 2)
    for r in $(seq "$REPS"); do
      for path in kernel-bridge vswitchd-l2 vswitchd-nat-egress; do
        case $path in
          kernel-bridge) set -- $(pair $TAG-6k1 10.206.0.2 fd00:206::2) ;;
          vswitchd-l2) set -- $(pair $TAG-6a$mtu 10.205.$n.3 fd00:205:$n::3) ;;
          vswitchd-nat-egress) set -- $(pair $TAG-6c$mtu 198.51.100.2 2001:db8:205::2) ;;
        esac
        echo "ipv6 $path mtu=$mtu v4=$1 v6=$2 v6/v4=$(ratio6 "$1" "$2")"
        R6["$path $mtu"]+=" $1 $2"
      done
    done
    for path in kernel-bridge vswitchd-l2 vswitchd-nat-egress; do
      echo "${R6["$path $mtu"]}" | awk -v mtu=$mtu -v path=$path '{
        for (i = 1; i < NF; i += 2) if ($i+0 > 0 && $(i+1)+0 > 0) { a += $i; b += $(i+1); n++ }
        if (!n) { printf "ipv6-summary mtu=%s path=%s v4=error v6=error v6/v4=n/a\n", mtu, path; exit }
        r = b / a
        printf "ipv6-summary mtu=%s path=%s v4=%.2f v6=%.2f v6/v4=%.2f", mtu, path, a/n, b/n, r
        if (path != "kernel-bridge") printf " target=0.9 met=%s", (r >= 0.9 ? "yes" : "no")
        printf "\n" }'
    done
  done
  stop "${PIDS[@]:$I6START}"
  delns $TAG-6k1 $TAG-6k2 $TAG-6kb $TAG-6w $TAG-6stub $TAG-6a1500 $TAG-6b1500 $TAG-6a65520 \
        $TAG-6b65520 $TAG-6c1500 $TAG-6c65520
fi
