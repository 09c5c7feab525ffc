#!/usr/bin/env bash
# bench-rootless.sh - the slirp4netns drop-in under rootlesskit, next to the real slirp4netns
# and pasta, measured in the same run at MTU 65520 and 1500: iperf3 TCP, one stream, -t SECS
# after -O 1 warm-up second, REPS repetitions. Issue 10's target: drop-in >= 3x slirp4netns.
#
# Everything runs as the unprivileged user vswitch-test (created with subordinate ids
# 1100000-1165535 if missing, as tests/slirp4netns_compat.rs does) inside a world namespace W
# made here: lo up, 198.51.100.1/24 on a veth to a stub namespace S (198.51.100.2, W's default
# gateway). The rootless tools run inside W, so "the host" of each of them is W.
#   slirp4netns  rootlesskit --net=slirp4netns (Debian's /usr/bin/slirp4netns)
#                --port-driver=slirp4netns (the source-IP-preserving driver)
#   drop-in      the same, --slirp4netns-binary = a copy of target/release/vswitchd named
#                slirp4netns (built if missing), or of $VSWITCH_SLIRP4NETNS if set (as in the
#                tests); "n/a: drop-in not available" when that binary does not act as
#                slirp4netns (its --version must start "slirp4netns version")
#   pasta        rootlesskit 1.1 has no --net=pasta (2.0 added it), so pasta runs the way
#                rootlesskit 2 and podman 5 use it: as the user, making its own user+network
#                namespace for the child, --config-net with rootlesskit's addresses (10.0.2.100/24,
#                gateway 10.0.2.2), -t for the published port. Debian's pasta, and as
#                "pasta-new" the one ../shared/bench/build-newer-pasta.sh builds if
#                /tmp/newpasta/bin/pasta exists (PASTA_NEW=path overrides).
#   flow=egress : the child opens the connection, data child -> iperf3 server in S
#                 (198.51.100.2:5201, through W's sockets).
#   flow=ingress: published port, a client in S opens it to W's 198.51.100.1:15201 -> child
#                 :5201, data S -> child (rootlessctl add-ports 0.0.0.0:15201:5201/tcp; pasta
#                 -t 15201:5201). A non-loopback client: pasta's tap path, not its splice path.
#   fwd_cpu = CPU time of the slirp4netns/drop-in/pasta process over the run, % of one core;
#   bg = busy % of the whole machine just before the run (someone else's load).
# After each MTU, one summary line per flow with the means over REPS and each tool's ratio to
# slirp4netns of this run.
#
# Usage: scripts/bench-rootless.sh [-t SECS] [-r REPS] [-s slirp4netns,pasta,dropin] [-m MTUS]
#   -t seconds per iperf3 run (default 5)   -r repetitions (default 2)
#   -s comma list of sections (default slirp4netns,pasta,dropin)
#   -m comma list of MTUs (default 65520,1500)
# Needs root; installs iperf3, rootlesskit, slirp4netns, passt, uidmap if missing.
# Output lines:
#   slirp4netns tcp mtu=65520 flow=egress gbps=8.20 fwd_cpu=99% bg=0%
#   drop-in tcp mtu=65520 flow=egress gbps=n/a: drop-in not available
#   summary mtu=65520 flow=egress slirp4netns=8.20 pasta=6.10 pasta/slirp4netns=0.74 drop-in=n/a
# A figure that could not be measured prints as gbps=error (ratios n/a); the run goes on.
# Traffic stays inside namespaces this script creates (198.51.100.0/24, 10.0.2.0/24 in the
# children); all of them are deleted and every process it started is stopped by PID on exit.
set -u
export LC_ALL=C
SECS=5 REPS=2 SECTIONS=slirp4netns,pasta,dropin MTUS=65520,1500
while getopts "t:r:s:m:h" o; do
  case $o in
    t) SECS=$OPTARG ;; r) REPS=$OPTARG ;; s) SECTIONS=$OPTARG ;; m) MTUS=$OPTARG ;;
    *) sed -n '2,/^set -u/p' "$0" | sed '$d'; exit 0 ;;
  esac
done
for v in "$SECS" "$REPS"; do
  case $v in ''|*[!0-9]*|0) echo "bench-rootless.sh: -t and -r take a positive integer ($v)" >&2; exit 2 ;; esac
done
for m in ${MTUS//,/ }; do
  case $m in ''|*[!0-9]*) echo "bench-rootless.sh: -m takes MTUs 68..65520 ($m)" >&2; exit 2 ;; esac
  [ "$m" -ge 68 ] && [ "$m" -le 65520 ] || { echo "bench-rootless.sh: -m takes MTUs 68..65520 ($m)" >&2; exit 2; }
done
for s in ${SECTIONS//,/ }; do
  case $s in slirp4netns|pasta|dropin) ;; *) echo "bench-rootless.sh: unknown section ($s): slirp4netns, pasta, dropin" >&2; exit 2 ;; esac
done
has() { case ",$SECTIONS," in *",$1,"*) return 0 ;; esac; return 1; }
[ "$(id -u)" = 0 ] || { echo "bench-rootless.sh: needs root" >&2; exit 1; }
NAME=bench-rootless.sh TAG=brl$$
. "$(dirname "$0")/lib/bench-common.sh"
need_tools iperf3:iperf3 rootlesskit:rootlesskit rootlessctl:rootlesskit slirp4netns:slirp4netns \
  pasta:passt newuidmap:uidmap setpriv:util-linux nsenter:util-linux flock:util-linux
[ -n "${VSWITCH_SLIRP4NETNS:-}" ] || ! has dropin || build_release
chmod 0755 "$TMPD"

# ---- the unprivileged user ---------------------------------------------------------------
U=vswitch-test
flock /run/vswitch-test-user.lock sh -c "
  getent passwd $U >/dev/null || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin $U || exit 1
  grep -q '^$U:' /etc/subuid 2>/dev/null || usermod --add-subuids 1100000-1165535 $U || exit 1
  grep -q '^$U:' /etc/subgid 2>/dev/null || usermod --add-subgids 1100000-1165535 $U || exit 1" \
  || { echo "bench-rootless.sh: cannot create user $U" >&2; exit 1; }

# ---- the world W and the stub S --------------------------------------------------------------
W=$TAG-w S=$TAG-s
mkns "$W" "$S"
ip link add w0 netns "$W" type veth peer name s0 netns "$S"
ip -n "$W" addr add 198.51.100.1/24 dev w0; ip -n "$S" addr add 198.51.100.2/24 dev s0
ip -n "$W" link set w0 up; ip -n "$S" link set s0 up
ip -n "$W" route add default via 198.51.100.2
# `ip netns exec W` shows this as /etc/resolv.conf: no real resolver is ever configured.
mkdir -p "/etc/netns/$W"; echo "nameserver 198.51.100.2" >"/etc/netns/$W/resolv.conf"
trap 'rm -rf "/etc/netns/$W"; cleanup' EXIT
start ip netns exec "$S" iperf3 -s -p 5201; waitfor listening "$S" 5201

# "${AS_USER[@]}" CMD... runs CMD as $U inside W; every link execs the next, so a background
# start's PID is CMD's own.
UHOME=$TMPD/home; mkdir -p "$UHOME" "$TMPD/bin"; chown "$U:" "$UHOME"; chmod 0755 "$TMPD/bin"
AS_USER=(ip netns exec "$W" setpriv --reuid="$U" --regid="$U" --clear-groups
  env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME="$UHOME" XDG_RUNTIME_DIR="$UHOME")

cpu_sample() { awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8+$9, $5+$6}' /proc/stat; }
busy_pct() {   # whole-machine busy % over 0.5 s
  local a b; a=($(cpu_sample)); sleep 0.5; b=($(cpu_sample))
  local dt=$((b[0]-a[0])) di=$((b[1]-a[1])); [ $dt -gt 0 ] || { echo 0; return; }
  echo $(( 100*(dt-di)/dt ))
}
iperf() {  # NS-ARGS... -- IPERF-ARGS  -> Gbit/s (receiver)
  timeout $((SECS+30)) "$@" -f m -O 1 -t "$SECS" --connect-timeout 3000 2>&1 |
    awk '/receiver/{for(i=1;i<=NF;i++) if($i=="Mbits/sec") v=$(i-1)}
      END{ if (v=="") print "error"; else printf "%.3f", v/1000 }'
}
declare -A RES   # "tool mtu flow" -> Gbit/s figures of this run
# measure TOOL MTU FLOW FWD_PID CMD...  -> one line per repetition
measure() {
  local tool=$1 mtu=$2 flow=$3 mon=$4 r bg k0 t0 v cpu; shift 4
  for r in $(seq "$REPS"); do
    bg=$(busy_pct); k0=$(ticks "$mon"); t0=$(date +%s.%N)
    v=$(iperf "$@")
    cpu=$(awk -v a="$k0" -v b="$(ticks "$mon")" -v s="$t0" -v e="$(date +%s.%N)" \
      -v hz="$(getconf CLK_TCK)" 'BEGIN{printf " fwd_cpu=%d%%", (b-a)/hz/(e-s)*100}')
    echo "$tool tcp mtu=$mtu flow=$flow gbps=$v$cpu bg=$bg%"
    RES["$tool $mtu $flow"]+=" $v"
  done
}
na() {         # TOOL MTU WHY -> n/a lines for both flows
  local f; for f in egress ingress; do echo "$1 tcp mtu=$2 flow=$f gbps=n/a: $3"; RES["$1 $2 $f"]="n/a"; done
}
mean() { echo "${RES["$1"]:-}" | awk '{n=0;s=0; for(i=1;i<=NF;i++) if($i+0>0){s+=$i;n++}}
  END{ if(n) printf "%.2f", s/n; else print "n/a" }'; }
child_listening() { nsenter --net="/proc/$1/ns/net" ss -Hltn "sport = :5201" | grep -q .; }

# rootlesskit TOOL MTU BINARY - one rootlesskit with --port-driver=slirp4netns, both flows
rootlesskit_run() {
  local tool=$1 mtu=$2 binary=$3 st=$UHOME/rk-$1-$2 rk child fwd srv
  start "${AS_USER[@]}" rootlesskit --net=slirp4netns --slirp4netns-binary="$binary" --mtu="$mtu" \
    --port-driver=slirp4netns --disable-host-loopback --state-dir="$st" sleep 3600
  rk=$LAST
  if ! waitfor test -S "$st/api.sock" || ! waitfor test -s "$st/child_pid"; then
    na "$tool" "$mtu" "rootlesskit did not start ($(tail -n 2 "$TMPD/bg.log" | tr '\n' ' '))"
    stop "$rk"; return
  fi
  child=$(cat "$st/child_pid")
  fwd=$(ps --ppid "$rk" -o pid=,comm= | awk '$2=="slirp4netns"{print $1; exit}')
  start nsenter --net="/proc/$child/ns/net" iperf3 -s -p 5201; srv=$LAST
  waitfor child_listening "$child"
  "${AS_USER[@]}" rootlessctl --socket="$st/api.sock" add-ports 0.0.0.0:15201:5201/tcp >/dev/null \
    || echo "# $tool mtu=$mtu: rootlessctl add-ports failed" >&2
  measure "$tool" "$mtu" egress "${fwd:-0}" nsenter --net="/proc/$child/ns/net" iperf3 -c 198.51.100.2 -p 5201
  measure "$tool" "$mtu" ingress "${fwd:-0}" ip netns exec "$S" iperf3 -c 198.51.100.1 -p 15201
  stop "$srv" "$rk"
}

# pasta_run TOOL MTU BINARY - pasta making the child's namespaces itself, both flows
pasta_run() {
  local tool=$1 mtu=$2 binary=$3 pa child srv
  # the previous pasta may still be closing its port 15201 in W
  waitfor sh -c "! ip netns exec $W ss -Hltn 'sport = :15201' | grep -q ."
  start "${AS_USER[@]}" "$binary" -f -q --config-net -a 10.0.2.100 -n 24 -g 10.0.2.2 -m "$mtu" \
    -t 15201:5201 -u none -T none -U none -- sleep 3600
  pa=$LAST
  waitfor sh -c "ps --ppid $pa -o pid= | grep -q ." \
    || { na "$tool" "$mtu" "pasta did not start ($(tail -n 1 "$TMPD/bg.log"))"; stop "$pa"; return; }
  child=$(ps --ppid "$pa" -o pid= | awk '{print $1; exit}')
  waitfor sh -c "nsenter --net=/proc/$child/ns/net ip -4 addr | grep -q 10.0.2.100" \
    || { na "$tool" "$mtu" "pasta did not configure the child"; stop "$pa"; kill -9 "$child" 2>/dev/null; return; }
  start nsenter --net="/proc/$child/ns/net" iperf3 -s -p 5201; srv=$LAST
  waitfor child_listening "$child"
  measure "$tool" "$mtu" egress "$pa" nsenter --net="/proc/$child/ns/net" iperf3 -c 198.51.100.2 -p 5201
  measure "$tool" "$mtu" ingress "$pa" ip netns exec "$S" iperf3 -c 198.51.100.1 -p 15201
  stop "$srv" "$pa"
  kill -9 "$child" 2>/dev/null   # pasta's child (our sleep) outlives pasta, holding its sockets
}

# the drop-in: a copy of the release vswitchd named slirp4netns, if it acts as one
DROPIN="" DROPIN_WHY="drop-in not available"
if has dropin; then
  cp "${VSWITCH_SLIRP4NETNS:-$BIN/vswitchd}" "$TMPD/bin/slirp4netns" && chmod 0755 "$TMPD/bin/slirp4netns"
  if "$TMPD/bin/slirp4netns" --version 2>/dev/null | head -n 1 | grep -q '^slirp4netns version' &&
     "$TMPD/bin/slirp4netns" --help 2>&1 | grep -q -- --netns-type; then
    DROPIN=$TMPD/bin/slirp4netns
  fi
fi
cd "$TMPD" || exit 1    # the user's processes start here, not in a repository under /root
PASTA_NEW=${PASTA_NEW:-/tmp/newpasta/bin/pasta}
if [ -x "$PASTA_NEW" ]; then   # where the user can run it, still named pasta (its mode)
  mkdir -p "$TMPD/newpasta" && cp "$PASTA_NEW" "$TMPD/newpasta/pasta" && chmod 0755 "$TMPD/newpasta" "$TMPD/newpasta/pasta"
fi
TOOLS=()
has slirp4netns && TOOLS+=(slirp4netns)
has pasta && TOOLS+=(pasta) && [ -x "$PASTA_NEW" ] && TOOLS+=(pasta-new)
has dropin && TOOLS+=(drop-in)

echo "# bench-rootless.sh $(date -u +%FT%TZ) kernel=$(uname -r) cpus=$(nproc) secs=$SECS reps=$REPS" \
     "rootlesskit=$(rootlesskit --version 2>/dev/null | awk '{print $3}')" \
     "slirp4netns=$(dpkg-query -W -f='${Version}' slirp4netns 2>/dev/null)" \
     "passt=$(dpkg-query -W -f='${Version}' passt 2>/dev/null)" \
     "pasta-new=$([ -x "$PASTA_NEW" ] && echo "$PASTA_NEW" || echo none)" \
     "drop-in=$([ -n "$DROPIN" ] && echo "$DROPIN" || echo none)"

for mtu in ${MTUS//,/ }; do
  for t in "${TOOLS[@]}"; do
    case $t in
      slirp4netns) rootlesskit_run slirp4netns "$mtu" /usr/bin/slirp4netns ;;
      pasta) pasta_run pasta "$mtu" "$(command -v pasta)" ;;
      pasta-new) pasta_run pasta-new "$mtu" "$TMPD/newpasta/pasta" ;;
      drop-in) if [ -n "$DROPIN" ]; then rootlesskit_run drop-in "$mtu" "$DROPIN"
               else na drop-in "$mtu" "$DROPIN_WHY"; fi ;;
    esac
  done
  for flow in egress ingress; do
    s=$(mean "slirp4netns $mtu $flow")
    line="summary mtu=$mtu flow=$flow"
    for t in "${TOOLS[@]}"; do
      v=$(mean "$t $mtu $flow"); line+=" $t=$v"
      [ "$t" = slirp4netns ] && continue
      line+=" $t/slirp4netns=$(awk -v v="$v" -v s="$s" 'BEGIN{ if (v+0>0 && s+0>0) printf "%.2f", v/s; else print "n/a" }')"
    done
    d=$(mean "drop-in $mtu $flow")
    if has dropin && has slirp4netns; then
      line+=" target(drop-in/slirp4netns)=3 met=$(awk -v v="$d" -v s="$s" 'BEGIN{ if (v+0>0 && s+0>0) print (v/s>=3?"yes":"no"); else print "n/a" }')"
    fi
    echo "$line"
  done
done
