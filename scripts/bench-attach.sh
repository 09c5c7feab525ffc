#!/usr/bin/env bash
# bench-attach.sh - attach cost of vswitchd as a network fills up (issue 8, "Attach").
#
# Setup: a world namespace W running vswitchd (release build) with one network "bench"
#   10.220.0.0/16; N container namespaces made here (`ip -batch`, no traffic leaves them).
#   A Python client attaches them one by one over the API socket (one keep-alive connection,
#   so no process start is timed) and records each attach's wall time.
# Prints:
#   attach first: median of attaches 1..20 (the "10th")    last: median of the last 20
#   ratio = last/first, met=yes when ratio <= 1.2 (the target)
#   daemon RSS (VmRSS of vswitchd) after all attaches, without flows
#   inspect: wall time of `vswitchctl network inspect bench` (three runs, sorted; target
#            <= 100 ms at 10,000 containers), and of the bare API call (curl) beside it
#   the median attach time of each tenth of the run (the trend; the machine's load varies)
#   ping: container<->container RTT (avg of 20 pings) after the first 20 attaches, and at the
#         end between the same two containers and between the first and the last
#   a percentile line (p10/p50/p90/max) of all attaches, and the time the whole run took
# IPv6: by default it is disabled in the container namespaces before they are attached, so
#   the figures are the control plane's. With -6 it stays on: each new container then sends
#   a few IPv6 multicast frames (MLD reports, DAD, router solicitations) that the switch floods
#   to every port, which is O(N) data-path work per attach and dominates at large N.
# Usage: scripts/bench-attach.sh [-n N] [-k] [-6]
#   -n containers to attach (default 1000; 10000 works: it needs about 3 GiB of memory for
#      the namespaces and an open-file hard limit of at least N+1000)
#   -k keep the per-attach times file (printed path) instead of deleting it
#   -6 leave IPv6 on in the containers
# Needs root. Traffic stays inside namespaces this script creates (10.220.0.0/16); all of
# them are deleted and every process it started is stopped by PID on exit.
set -u
export LC_ALL=C
N=1000 KEEP= V6=
while getopts "n:k6h" o; do
  case $o in
    n) N=$OPTARG ;; k) KEEP=1 ;; 6) V6=1 ;;
    *) sed -n '2,/^set -u/p' "$0" | sed '$d'; exit 0 ;;
  esac
done
case $N in ''|*[!0-9]*) echo "bench-attach.sh: -n wants a number of containers (got $N)" >&2; exit 2 ;; esac
[ "$N" -ge 40 ] && [ "$N" -le 60000 ] || { echo "bench-attach.sh: -n must be 40..60000 (got $N)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "bench-attach.sh: needs root" >&2; exit 1; }
NAME=bench-attach.sh TAG=batt$$
. "$(dirname "$0")/lib/bench-common.sh"
need_tools ip:iproute2 ping:iputils-ping python3:python3 curl:curl
build_release
# The daemon holds one TAP fd per container.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((N + 1000)) ] ||
  { echo "bench-attach.sh: the open-file limit $(ulimit -n) is too low for $N containers" >&2; exit 1; }

# Container namespaces are many: made and deleted in batches, by their own prefix.
CPFX=$TAG-c
del_containers() {
  ip netns list 2>/dev/null | awk -v p="^$CPFX" '$1 ~ p {print "netns del " $1}' | ip -force -batch - 2>/dev/null
}
trap 'cleanup; del_containers' EXIT

echo "# bench-attach.sh $(date -u +%FT%TZ) kernel=$(uname -r) cpus=$(nproc) n=$N commit=$(git rev-parse --short HEAD 2>/dev/null) ipv6=${V6:-off}"
W=$TAG-w
mkns $W
T0=$(date +%s.%N)
seq 1 "$N" | awk -v p="$CPFX" '{print "netns add " p $1}' | ip -batch - ||
  { echo "bench-attach.sh: could not create $N namespaces"; exit 1; }
for i in 1 2 $N; do ip -n ${CPFX}$i link set lo up; done
if [ -z "$V6" ]; then   # one process: setns into each and switch IPv6 off (before the TAP exists)
  python3 - "$CPFX" "$N" <<'EOF' || { echo "bench-attach.sh: could not disable IPv6 in the containers"; exit 1; }
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for i in range(1, int(sys.argv[2]) + 1):
    fd = os.open(f"/run/netns/{sys.argv[1]}{i}", os.O_RDONLY)
    if libc.setns(fd, 0x40000000) != 0:
        sys.exit(f"setns: {os.strerror(ctypes.get_errno())}")
    os.close(fd)
    for k in ("all", "default"):
        with open(f"/proc/sys/net/ipv6/conf/{k}/disable_ipv6", "w") as f:
            f.write("1")
EOF
fi
echo "# made $N namespaces in $(awk -v a="$T0" -v b="$(date +%s.%N)" "BEGIN {printf \"%.1f\", b - a}") s"

start ip netns exec $W "$BIN/vswitchd" --state-dir "$TMPD/state" --socket "$TMPD/sock" \
  --network bench=10.220.0.0/16
VSW=$LAST
ctl() { "$BIN/vswitchctl" --socket "$TMPD/sock" "$@"; }
waitfor ctl network ls || { echo "# vswitchd did not answer on its socket:"; tail -5 "$TMPD/bg.log"; exit 1; }
VPID=$(pgrep -P "$VSW" -x vswitchd || echo "$VSW")

cat >"$TMPD/attach.py" <<'EOF'
import http.client, json, socket, sys, time
sock, prefix, first, last, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(sock)
conn = Unix("localhost", timeout=30)
with open(out, "a") as f:
    for i in range(first, last + 1):
        body = json.dumps({"Container": f"/run/netns/{prefix}{i}", "Name": f"c{i}"})
        t = time.perf_counter()
        conn.request("POST", "/networks/bench/connect", body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        dt = time.perf_counter() - t
        if r.status != 200 and r.status != 201:
            print(f"attach c{i} failed: {r.status} {data[:200]!r}", file=sys.stderr)
            sys.exit(1)
        f.write(f"{i} {dt * 1000:.3f}\n")
EOF
TIMES=$TMPD/times
[ -n "$KEEP" ] && TIMES=/tmp/bench-attach-times.$$ && : >"$TIMES"

rtt() {   # ns dst -> avg RTT in ms, or "error"
  ip netns exec "$1" ping -q -c 20 -i 0.02 -W 1 "$2" 2>/dev/null |
    awk -F/ '/^rtt|^round-trip/ {print $5; f=1} END {if (!f) print "error"}'
}
ip_of() { echo "10.220.$(( ($1 + 1) / 256 )).$(( ($1 + 1) % 256 ))"; }   # c1 = 10.220.0.2

python3 "$TMPD/attach.py" "$TMPD/sock" "$CPFX" 1 20 "$TIMES" || exit 1
PING0=$(rtt ${CPFX}1 "$(ip_of 2)")
T1=$(date +%s.%N)
python3 "$TMPD/attach.py" "$TMPD/sock" "$CPFX" 21 "$N" "$TIMES" || exit 1
T2=$(date +%s.%N)
PING1=$(rtt ${CPFX}1 "$(ip_of 2)")
PINGN=$(rtt ${CPFX}1 "$(ip_of "$N")")
RSS=$(awk '/^VmRSS/ {printf "%.1f", $2/1024}' /proc/$VPID/status)
INSPECT=$(for k in 1 2 3; do
  s=$(date +%s%N); ctl network inspect bench >"$TMPD/inspect.json" || echo fail
  echo $(( ($(date +%s%N) - s) / 1000000 )); done | sort -n | tr '\n' ' ')
API=$(for k in 1 2 3; do
  curl -s --unix-socket "$TMPD/sock" -o /dev/null -w '%{time_total}\n' http://x/networks/bench; done |
  awk '{printf "%d ", $1 * 1000}')
EPS=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))[0]['Containers']))" "$TMPD/inspect.json" 2>/dev/null || echo '?')

python3 - "$TIMES" "$N" <<'EOF'
import statistics, sys
t = {}
for line in open(sys.argv[1]):
    i, ms = line.split(); t[int(i)] = float(ms)
n = int(sys.argv[2])
first = statistics.median(t[i] for i in range(1, 21))
last = statistics.median(t[i] for i in range(n - 19, n + 1))
ratio = last / first
allv = sorted(t.values())
pct = lambda p: allv[min(len(allv) - 1, int(p * len(allv)))]
print(f"attach n={n} first20_median_ms={first:.2f} last20_median_ms={last:.2f} ratio={ratio:.2f} target=1.2 met={'yes' if ratio <= 1.2 else 'no'}")
print(f"attach all p10_ms={pct(0.1):.2f} p50_ms={pct(0.5):.2f} p90_ms={pct(0.9):.2f} max_ms={allv[-1]:.2f}")
tenth = [statistics.median(t[i] for i in range(k * n // 10 + 1, (k + 1) * n // 10 + 1)) for k in range(10)]
print("attach median_ms_by_tenth=" + ",".join(f"{m:.2f}" for m in tenth))
EOF
echo "daemon rss_mib=$RSS endpoints=$EPS target=64 met=$(awk -v r="$RSS" 'BEGIN {print (r <= 64) ? "yes" : "no"}')"
BEST=${INSPECT%% *}
echo "inspect ms=${INSPECT% } best_ms=$BEST target=100 met=$(awk -v r="$BEST" 'BEGIN {print (r <= 100) ? "yes" : "no"}') api_only_ms=${API% }"
echo "ping c1-c2 start_ms=$PING0 end_ms=$PING1 c1-c$N end_ms=$PINGN"
echo "# attaches 21..$N took $(awk -v a="$T1" -v b="$T2" "BEGIN {printf \"%.1f\", b - a}") s${KEEP:+; times in $TIMES}"
