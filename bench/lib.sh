# Shared by the bench/ part scripts (sourced, not run): options, the build, process
# accounting from /proc, and the markdown summary helper.
# Every part script takes: [--rounds N] [--quick] [--out FILE]; ROUNDS and QUICK=1 in
# the environment do the same. Progress goes to stderr, the markdown section to FILE
# (default: stdout).

set -euo pipefail
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
ROUNDS_SET=${ROUNDS:+1}
ROUNDS=${ROUNDS:-5}
QUICK=${QUICK:-0}
OUT=${OUT:-/dev/stdout}

parse_args() {
  while [[ $# -gt 0 ]]; do
    case $1 in
      --rounds) ROUNDS=$2; ROUNDS_SET=1; shift 2 ;;
      --rounds=*) ROUNDS=${1#*=}; ROUNDS_SET=1; shift ;;
      --quick) QUICK=1; shift ;;
      --out) OUT=$2; shift 2 ;;
      --out=*) OUT=${1#*=}; shift ;;
      -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
      *) echo "$(basename "$0"): unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
  done
  if [[ $QUICK == 1 && -z ${ROUNDS_SET:-} ]]; then ROUNDS=2; fi
  [[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "$(basename "$0"): --rounds must be a positive number, got $ROUNDS" >&2; exit 2; }
  export ROUNDS QUICK
}

log() { echo "[$(date +%H:%M:%S)] $(basename "$0"): $*" >&2; }
die() { echo "$(basename "$0"): $*" >&2; exit 1; }

need_root() { [[ $(id -u) == 0 ]] || die "needs root (taskset pins, network namespaces, apt-get)"; }

# need_pkg COMMAND PACKAGE: install PACKAGE with apt-get when COMMAND is missing.
need_pkg() {
  command -v "$1" >/dev/null 2>&1 && return 0
  log "installing $2 (for $1)"
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 \
    || die "cannot install $2 with apt-get"
  command -v "$1" >/dev/null 2>&1 || die "$2 installed but $1 is still missing"
}

BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
# build: release binaries of punch and punch-loadgen, once per bench/run (BENCH_BUILT=1
# skips it in the part scripts it calls).
build() {
  if [[ ${BENCH_BUILT:-0} != 1 ]]; then
    log "building release binaries (punch, punch-loadgen)"
    (cd "$ROOT" && cargo build --release -q -p punch-cli -p punch-loadgen) || die "build failed"
    export BENCH_BUILT=1
  fi
  [[ -x $BIN/punch && -x $BIN/punch-loadgen ]] || die "no binaries in $BIN"
}

# cpu_ticks PID: user+system clock ticks of a process (all its threads).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# cpu_split PID: user and system clock ticks of a process, apart ("USER SYSTEM").
cpu_split() { awk '{print $14, $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
# machine_ticks: clock ticks of every CPU of the machine, summed over the CPUs (/proc/stat),
# as "BUSY STEAL TOTAL": busy is user, nice, system, irq and softirq; steal is time a
# virtual machine's CPU was ready to run but its hypervisor ran something else (not busy,
# not idle: a shared host's contention); total is every kind of tick.
machine_ticks() {
  awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print $2 + $3 + $4 + $7 + $8, $9, t}' /proc/stat
}
# steal_pct BEFORE AFTER: the share of CPU time stolen between two machine_ticks readings (%).
steal_pct() {
  awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); d = y[3] - x[3];
    printf "%.1f", (d > 0 ? (y[2] - x[2]) * 100 / d : 0) }'
}
# rss_kib PID: resident memory in KiB.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# stop PID: end a process this script started, and reap it.
stop() {
  local pid=$1
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# wait_for FILE PATTERN SECS: until FILE holds PATTERN (a process said it is ready).
# Empty FILE before starting the process: a background job opens its redirections after
# the fork, so a FILE left from an earlier run could answer first.
wait_for() {
  local f=$1 pat=$2 secs=$3 i
  for ((i = 0; i < secs * 100; i++)); do
    grep -q -- "$pat" "$f" 2>/dev/null && return 0
    sleep 0.01
  done
  return 1
}


# lab_up PREFIX DIR: a NAT lab (lab/punch-lab) of two port-restricted cones, the punch
# server in its srv namespace, and a port forward on router b (UDP 4433 for the plain QUIC
# reference, TCP and UDP 5201 for iperf3) to host b: the references cross the same veths,
# routers and core as punch's punched path, but need an inbound port, which a
# port-restricted cone gives only forwarded. Sets the lab's facts (SRV_IP, A_IP, B_IP,
# B_PUB, ...) and LAB_P; lab_down removes it all (call it from a trap).
lab_up() {
  LAB_P=$1
  local dir=$2
  "$ROOT/lab/punch-lab" up --replace "$LAB_P" port-restricted-cone port-restricted-cone \
    >"$dir/lab.env" || die "punch-lab up failed"
  # KEY=VALUE lines, the lab's facts.
  source "$dir/lab.env"
  ip netns exec "$LAB_P-rb" nft -f - <<NFT || die "cannot add the port forward on router b"
table ip benchfwd {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "wan" ip daddr $B_PUB meta l4proto { tcp, udp } th dport { 4433, 5201 } dnat ip to $B_IP
  }
}
NFT
  LAB_SERVER_CMD="$BIN/punch server --listen $SRV_IP:3478 --relay-rate 100000 --register-rate 0 --connect-rate 0 --stun-rate 0 --data-dir $dir/labsrv"
  : >"$dir/labsrv.log"
  ip netns exec "$LAB_P-srv" $LAB_SERVER_CMD >"$dir/labsrv.log" 2>&1 &
  LAB_SRV=$!
  wait_for "$dir/labsrv.log" "(TCP main)" 10 || { cat "$dir/labsrv.log" >&2; die "lab server did not start"; }
}

lab_down() {
  [[ -n ${LAB_SRV:-} ]] && stop "$LAB_SRV"
  [[ -n ${LAB_P:-} ]] && "$ROOT/lab/punch-lab" down "$LAB_P" >/dev/null 2>&1
  LAB_SRV=; LAB_P=
}

# inns NODE CMD...: run CMD in the lab's namespace NODE (a, b, srv, ...).
inns() { local n=$1; shift; ip netns exec "$LAB_P-$n" "$@"; }

# quic_plain_up DIR: start the plain QUIC reference's server (one connection) on host b,
# behind router b's forwarded port 4433; sets QP_PID (stop it with `stop "$QP_PID"`) and
# QP_KEY, the key its client must be given.
QUIC_SRV="$BIN/punch-loadgen quic-plain server --listen 0.0.0.0:4433"
quic_plain_up() {
  local dir=$1
  : >"$dir/qs.out"   # empty before the start: wait_for must not read the last run's
  inns b $QUIC_SRV >"$dir/qs.out" 2>"$dir/qs.err" &
  QP_PID=$!
  wait_for "$dir/qs.out" '"key"' 10 || { cat "$dir/qs.err" >&2; die "quic-plain server did not start"; }
  QP_KEY=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["key"])' "$dir/qs.out")
}

# first_error FILE: the error line of a failed run's stderr (not its backtrace), as JSON.
first_error() {
  python3 - "$1" <<'PY'
import json, sys
lines = [l.strip() for l in open(sys.argv[1], errors="replace")]
err = next((l for l in lines if l.startswith("Error")), None) or next((l for l in reversed(lines) if l), "")
print(json.dumps(err[:300]))
PY
}
