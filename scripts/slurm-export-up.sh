#!/usr/bin/env bash
# Start a SECOND, separate Slurm on this host from an `aifactory export slurm` directory, to
# check that real Slurm loads what the export writes (tests/test_interop_slurm_real.py).
#
# Usage (as root):  bash scripts/slurm-export-up.sh DIR      stop: bash scripts/slurm-export-up.sh --stop
#
# It never touches the default test Slurm of scripts/slurm-up.sh: its own config dir
# (/etc/aifactory-slurm-export, passed as SLURM_CONF), state, logs and pid files
# (*/aifactory-slurm-export), cluster name, slurmctld port 6917 and slurmd ports 6950+i; no
# accounting (the accounts are checked by parsing accounts.sh). It shares munged with
# slurm-up.sh (started here only when not running, and then stopped again by --stop).
#
# From the export it takes slurm.conf (every line but AccountingStorageTRES and PriorityType,
# which need slurmdbd), gres.conf and topology.conf as they are,
# and adds what only this host knows: each node's NodeHostname, NodeAddr, Port and CPUs
# (several slurmd on one host, as slurm-up.sh does, needs Slurm's MULTIPLE_SLURMD), and
# placeholder GPU files (clones of /dev/null) in place of /dev/nvidia<i>. Export with
# `--topology tree` for Slurm before 23.11 (Debian's 22.05 has no topology/block).
# Hostlists are expanded here for what the export writes: one bracket per name, lists and
# zero-padded ranges inside it.
set -euo pipefail

readonly CONF_DIR=/etc/aifactory-slurm-export
readonly ROOT_DIR=/var/lib/aifactory-slurm-export
readonly LOG_DIR=/var/log/aifactory-slurm-export
readonly RUN_DIR=/run/aifactory-slurm-export
readonly CTLD_PORT=6917
readonly SLURMD_PORT0=6950
readonly NODE_CPUS=64
readonly MAX_NODES=32
readonly MUNGE_PID=/run/munge/munged.pid

log() { printf 'slurm-export-up: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
pid_alive() { [ -s "$1" ] && [ "$(cat "/proc/$(cat "$1")/comm" 2>/dev/null)" = "$2" ]; }
stop_pidfile() {  # stop_pidfile NAME PIDFILE: TERM the one process we started
  local pid
  pid_alive "$2" "$1" || { rm -f "$2"; return 0; }
  pid=$(cat "$2")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$2"
}
stop_all() {
  for f in "$RUN_DIR"/slurmd-*.pid; do [ -e "$f" ] && stop_pidfile slurmd "$f"; done
  stop_pidfile slurmctld "$RUN_DIR/slurmctld.pid"
  if [ -e "$RUN_DIR/started-munged" ]; then stop_pidfile munged "$MUNGE_PID"; rm -f "$RUN_DIR/started-munged"; fi
}
expand() {  # expand HOSTLIST: one name per line
  local item head body tail part lo hi w i
  local IFS_SAVE=$IFS
  # split on commas outside brackets
  local rest=$1 depth=0 cur="" ch items=()
  for ((i = 0; i < ${#rest}; i++)); do
    ch=${rest:i:1}
    case "$ch" in
      '[') depth=$((depth + 1)); cur+=$ch ;;
      ']') depth=$((depth - 1)); cur+=$ch ;;
      ',') if [ $depth -eq 0 ]; then items+=("$cur"); cur=""; else cur+=$ch; fi ;;
      *) cur+=$ch ;;
    esac
  done
  items+=("$cur")
  for item in "${items[@]}"; do
    if [[ "$item" != *"["* ]]; then echo "$item"; continue; fi
    head=${item%%\[*}; body=${item#*\[}; tail=${body#*\]}; body=${body%%\]*}
    IFS=, read -ra parts <<<"$body"; IFS=$IFS_SAVE
    for part in "${parts[@]}"; do
      lo=${part%-*}; hi=${part#*-}; w=${#lo}
      for ((i = 10#$lo; i <= 10#$hi; i++)); do printf '%s%0*d%s\n' "$head" "$w" "$i" "$tail"; done
    done
  done
}

[ "$(id -u)" -eq 0 ] || { log "must run as root"; exit 3; }
if [ "${1:-}" = "--stop" ]; then stop_all; log "stopped"; exit 0; fi
[ $# -eq 1 ] && [ -f "$1/slurm.conf" ] || die "usage: slurm-export-up.sh DIR (an export) | --stop"
EXPORT=$1
command -v slurmctld >/dev/null || { log "Slurm is not installed (run scripts/slurm-up.sh once)"; exit 3; }
stop_all
mkdir -p "$CONF_DIR" "$ROOT_DIR"/{slurmctld,gpu} "$LOG_DIR" "$RUN_DIR"
rm -rf "${ROOT_DIR:?}"/slurmctld/* "$LOG_DIR"/*

if ! pid_alive "$MUNGE_PID" munged; then
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
    || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  runuser -u munge -- /usr/sbin/munged --force
  touch "$RUN_DIR/started-munged"
fi

HOST=$(hostname -s)
real_mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.5}' /proc/meminfo)
{
  cat <<EOF
ClusterName=aifexport
SlurmctldHost=$HOST
SlurmctldPort=$CTLD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd-%n.pid
SlurmdSpoolDir=$ROOT_DIR/slurmd/%n
StateSaveLocation=$ROOT_DIR/slurmctld
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd-%n.log
ReturnToService=2
SlurmdParameters=config_overrides
SchedulerType=sched/builtin
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
EOF
  i=0
  while IFS= read -r line; do
    if [[ "$line" == NodeName=* ]]; then
      expr=${line%% *}; expr=${expr#NodeName=}; rest=${line#* }
      for n in $(expand "$expr"); do
        [ $i -lt $MAX_NODES ] || die "more than $MAX_NODES nodes: export a smaller fleet"
        echo "NodeName=$n NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$((SLURMD_PORT0 + i)) CPUs=$NODE_CPUS RealMemory=$real_mem_mb $rest"
        NODES+=("$n"); i=$((i + 1))
      done
    elif [[ "$line" == AccountingStorageTRES=* || "$line" == PriorityType=* ]]; then
      # Both need slurmdbd, which this Slurm runs without.
      echo "# (left out, no slurmdbd here) $line"
    else
      echo "$line"
    fi
  done <"$EXPORT/slurm.conf"
} >"$CONF_DIR/slurm.conf.tmp"
mapfile -t NODES < <(grep '^NodeName=' "$CONF_DIR/slurm.conf.tmp" | sed 's/^NodeName=\([^ ]*\).*/\1/')
mv "$CONF_DIR/slurm.conf.tmp" "$CONF_DIR/slurm.conf"

: >"$CONF_DIR/gres.conf"
while IFS= read -r line; do
  [[ "$line" == NodeName=* ]] || { echo "$line" >>"$CONF_DIR/gres.conf"; continue; }
  expr=${line%% *}; expr=${expr#NodeName=}; rest=${line#* }
  files=${rest##*File=/dev/nvidia}; files=${files%% *}
  for n in $(expand "$expr"); do
    mkdir -p "$ROOT_DIR/gpu/$n" "$ROOT_DIR/slurmd/$n"
    for g in $(expand "gpu$files"); do
      [ -c "$ROOT_DIR/gpu/$n/$g" ] || mknod "$ROOT_DIR/gpu/$n/$g" c 1 3
    done
    echo "NodeName=$n ${rest/File=\/dev\/nvidia/File=$ROOT_DIR/gpu/$n/gpu}" >>"$CONF_DIR/gres.conf"
  done
done <"$EXPORT/gres.conf"
cp "$EXPORT/topology.conf" "$CONF_DIR/topology.conf"

export SLURM_CONF=$CONF_DIR/slurm.conf
/usr/sbin/slurmctld -f "$SLURM_CONF"
for _ in $(seq 1 60); do scontrol ping >/dev/null 2>&1 && break; sleep 0.5; done
scontrol ping >/dev/null 2>&1 || die "slurmctld does not answer (see $LOG_DIR/slurmctld.log)"
for n in "${NODES[@]}"; do /usr/sbin/slurmd -f "$SLURM_CONF" -N "$n"; done
for n in "${NODES[@]}"; do
  for _ in $(seq 1 120); do
    case "$(sinfo -h -n "$n" -o '%T' | head -n1)" in idle*) break ;; esac
    sleep 0.5
  done
  case "$(sinfo -h -n "$n" -o '%T' | head -n1)" in idle*) ;; *) die "node $n is not idle (see $LOG_DIR)" ;; esac
done
log "up: ${#NODES[@]} nodes; SLURM_CONF=$SLURM_CONF; stop with: bash scripts/slurm-export-up.sh --stop"
