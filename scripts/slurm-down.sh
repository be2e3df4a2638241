#!/usr/bin/env bash
# Stop the Slurm started by scripts/slurm-up.sh: every node's slurmd, slurmctld, slurmdbd (and
# munged with --all). Only the processes named in slurm-up's pid files are signalled. State
# (job ids, accounting) is kept; `bash scripts/slurm-up.sh` starts it again.
set -euo pipefail

readonly RUN_DIR=/run/aifactory-slurm

stop_pidfile() {  # stop_pidfile NAME PIDFILE
  local pid
  # Only a live process called NAME: a stale pid file may name someone else's process now.
  if [ ! -s "$2" ] || [ "$(cat "/proc/$(cat "$2")/comm" 2>/dev/null)" != "$1" ]; then
    rm -f "$2"; return 0
  fi
  pid=$(cat "$2")
  printf 'slurm-down: stopping %s (pid %s)\n' "$1" "$pid" >&2
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$2"
}

# One slurmd per node (slurmd-<node>.pid), and slurmd.pid of the older one-node layout.
for pidfile in "$RUN_DIR"/slurmd-*.pid "$RUN_DIR"/slurmd.pid; do
  if [ -e "$pidfile" ]; then stop_pidfile slurmd "$pidfile"; fi
done
stop_pidfile slurmctld "$RUN_DIR/slurmctld.pid"
stop_pidfile slurmdbd "$RUN_DIR/slurmdbd.pid"
if [ "${1:-}" = "--all" ]; then
  stop_pidfile munged /run/munge/munged.pid
  printf 'slurm-down: stopped (munged too)\n' >&2
else
  printf 'slurm-down: stopped (munged left running; --all stops it too)\n' >&2
fi
