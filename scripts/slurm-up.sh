#!/usr/bin/env bash
# Start a real Slurm of N nodes (default 2) of 8 GPUs each on this one machine, for the
# integration tests and CI.
#
# Usage (as root):  bash scripts/slurm-up.sh [--nodes N]    stop with:  bash scripts/slurm-down.sh
#
# What it sets up, and why:
#   * Debian packages slurm-wlm, munge and slurmdbd (installed only when missing).
#   * munged (as user munge) with /etc/munge/munge.key (created when absent).
#   * Accounting through slurmdbd on the local MariaDB/MySQL (127.0.0.1:3306, user root with an
#     empty password by default; override with AIFACTORY_SLURM_DB_{HOST,PORT,USER,PASS}). Why:
#     `sacct` reads only the accounting database; jobcomp/filetxt records completions but `sacct`
#     cannot show AllocTRES/ReqTRES from it, and accounting_storage/filetxt no longer exists.
#     The database is `aifactory_slurm_acct`, served through a dedicated DB user. When no server
#     answers on 127.0.0.1, mariadb-server is installed (if missing) and started.
#     AccountingStorageTRES=gres/gpu makes sacct's AllocTRES/ReqTRES carry `gres/gpu=N`.
#     Without a reachable database the script still starts Slurm with accounting_storage/none
#     (squeue/scontrol work, sacct does not) and says so.
#   * N nodes aif-n0 .. aif-n<N-1>, each its own slurmd on this host (`slurmd -N aif-nI`),
#     each declaring 8 GPUs. With the default N=2 they match the bundled fleet `slurm-local`
#     (whose group's `slurm_nodes` name them). Several slurmd on one host: each node has its
#     own Port (6820 + I), its own spool dir, pid file and log (SlurmdSpoolDir, SlurmdPidFile
#     and SlurmdLogFile use %n), and its own gres device files. All nodes have
#     NodeAddr=127.0.0.1: the controller and srun reach each slurmd on its port there, and a
#     job's MASTER_ADDR (its rank-0 node's NodeAddr) is reachable from every node.
#     NodeHostname is this machine's for every node. That needs a Slurm built with
#     --enable-multiple-slurmd, which Debian's 22.05 package is (`scontrol show config` says
#     MULTIPLE_SLURMD = Yes); the script checks it and stops with an error on a build that is
#     not (such a Slurm refuses two nodes on one NodeHostname).
#   * GPUs: gres.conf `Name=gpu File=...` over 8 placeholder character devices per node
#     (mknod c 1 3, i.e. /dev/null clones) under /var/lib/aifactory-slurm/gpu/<node>/. slurmd
#     stats the files, so they must exist. Slurm sets each task's CUDA_VISIBLE_DEVICES from
#     them (indices 0..7 on every node).
#   * SelectType=select/cons_tres, CR_Core, GresTypes=gpu. Each node declares 64 CPUs
#     (SlurmdParameters=config_overrides) although this VM has fewer: otherwise each job takes a
#     core and a 2-core VM could run only two jobs at once; the GPUs must be the binding
#     constraint, as on an HGX node.
#   * sched/builtin (strict FIFO, no backfill): the twin comparison replays with fifo and no
#     backfill. sched_interval=1, batch_sched_delay=0, sched_min_interval=0: a queued job starts
#     about 1 s after the GPUs it waits for are freed (measured in slurmctld.log; with
#     sched_interval=2 it was about 2 s). Slurm's controller loop wakes once a second, so 1 s is
#     the floor.
#   * proctrack/linuxproc and task/none: no cgroups (this runs in a sandboxed VM without systemd).
#   * Daemons run as root in the background; state under /var/lib/aifactory-slurm, logs under
#     /var/log/aifactory-slurm, pid files under /run/aifactory-slurm.
#
# Idempotent: rerunning leaves running daemons alone unless the generated config changed.
# Exit codes: 0 up; 3 Slurm cannot be installed here (not root, no apt-get, apt failed) -- tests
# skip on 3 only; 1 anything else (a real failure).
set -euo pipefail

usage() { echo "usage: slurm-up.sh [--nodes N]   (N nodes of 8 GPUs, default 2)" >&2; exit 1; }
NNODES=2
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) [ $# -ge 2 ] || usage; NNODES=$2; shift 2 ;;
    --nodes=*) NNODES=${1#--nodes=}; shift ;;
    *) usage ;;
  esac
done
case "$NNODES" in '' | *[!0-9]* | 0*) echo "slurm-up: --nodes '$NNODES': want 1..64" >&2; exit 1 ;; esac
[ "$NNODES" -le 64 ] || { echo "slurm-up: --nodes $NNODES: want 1..64" >&2; exit 1; }
readonly NNODES

readonly CANNOT_INSTALL=3
readonly CLUSTER=aifactory
readonly PARTITION=gpu
readonly NGPUS=8
readonly NODE_CPUS=64
readonly ROOT_DIR=/var/lib/aifactory-slurm
readonly LOG_DIR=/var/log/aifactory-slurm
readonly RUN_DIR=/run/aifactory-slurm
readonly CONF_DIR=/etc/slurm
readonly NODE_PREFIX=aif-n
readonly SLURMD_PORT0=6820
readonly DB_NAME=aifactory_slurm_acct
readonly DB_SLURM_USER=aifactory_slurm
readonly DB_SLURM_PASS=aifactory-slurm-local
DB_HOST=${AIFACTORY_SLURM_DB_HOST:-127.0.0.1}
DB_PORT=${AIFACTORY_SLURM_DB_PORT:-3306}
DB_ADMIN_USER=${AIFACTORY_SLURM_DB_USER:-root}
DB_ADMIN_PASS=${AIFACTORY_SLURM_DB_PASS:-}
HOST=$(hostname -s)  # runs slurmctld and slurmdbd
NODES=()
for i in $(seq 0 $((NNODES - 1))); do NODES+=("$NODE_PREFIX$i"); done
if [ "$NNODES" -eq 1 ]; then NODE_RANGE=${NODES[0]}; else NODE_RANGE="$NODE_PREFIX[0-$((NNODES - 1))]"; fi

log() { printf 'slurm-up: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
cannot_install() { log "CANNOT INSTALL: $*"; exit "$CANNOT_INSTALL"; }

# ---------------------------------------------------------------- packages
[ "$(id -u)" -eq 0 ] || cannot_install "must run as root (apt-get, munged, slurmd need it)"

pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
missing=()
for p in slurm-wlm munge slurmdbd; do
  pkg_installed "$p" || missing+=("$p")
done
command -v mysql >/dev/null 2>&1 || missing+=(mariadb-client)
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || cannot_install "no apt-get to install ${missing[*]}"
  log "installing ${missing[*]}"
  # Other setup steps (e.g. PostgreSQL in CI) may hold the dpkg lock: wait for it.
  apt-get -o DPkg::Lock::Timeout=300 update -qq \
    || cannot_install "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null \
    || cannot_install "apt-get install ${missing[*]} failed"
fi

mkdir -p "$ROOT_DIR"/{slurmctld,gpu} "$LOG_DIR" "$RUN_DIR" "$CONF_DIR"
for n in "${NODES[@]}"; do mkdir -p "$ROOT_DIR/slurmd/$n" "$ROOT_DIR/gpu/$n"; done

# ---------------------------------------------------------------- helpers
pid_alive() {  # pid_alive PIDFILE NAME: PIDFILE names a live process called NAME
  # The name check guards against a stale pid file whose number now belongs to another process.
  [ -s "$1" ] && [ "$(cat "/proc/$(cat "$1")/comm" 2>/dev/null)" = "$2" ]
}
stop_pidfile() {  # stop_pidfile NAME PIDFILE: TERM the one process we started, wait for it
  local pid
  pid_alive "$2" "$1" || { rm -f "$2"; return 0; }
  pid=$(cat "$2")
  log "stopping $1 (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$2"
}
wait_for() {  # wait_for SECONDS DESCRIPTION CMD...: poll CMD every 0.5 s
  local secs=$1 what=$2; shift 2
  local tries=$((secs * 2))
  for _ in $(seq 1 "$tries"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  return 1
}
# install_if_changed SRC DEST MODE: move SRC over DEST when they differ; echo "changed" if so
install_if_changed() {
  if [ -f "$2" ] && cmp -s "$1" "$2"; then rm -f "$1"; return 0; fi
  install -m "$3" "$1" "$2"; rm -f "$1"; echo changed
}

# ---------------------------------------------------------------- munge
readonly MUNGE_PID=/run/munge/munged.pid
if [ ! -s /etc/munge/munge.key ]; then
  log "creating munge key"
  mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
    || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge && chmod 0755 /run/munge
if ! pid_alive "$MUNGE_PID" munged; then
  log "starting munged"
  runuser -u munge -- /usr/sbin/munged --force
fi
wait_for 20 munge bash -c 'munge -n | unmunge' || die "munged does not answer (see /var/log/munge)"

# ---------------------------------------------------------------- GPU placeholders
for n in "${NODES[@]}"; do
  for i in $(seq 0 $((NGPUS - 1))); do
    dev="$ROOT_DIR/gpu/$n/gpu$i"
    [ -c "$dev" ] || { rm -f "$dev"; mknod "$dev" c 1 3 || die "mknod $dev failed"; }
  done
done

# ---------------------------------------------------------------- accounting database
# Admin access: TCP with the given user/password first (this machine: root, empty password);
# for a local server, the unix socket as OS root next (a fresh Debian mariadb-server
# authenticates root@localhost by unix_socket, which TCP cannot use).
MYSQL_ADMIN_MODE=tcp
mysql_admin() {
  if [ "$MYSQL_ADMIN_MODE" = tcp ]; then
    MYSQL_PWD="$DB_ADMIN_PASS" mysql --protocol=TCP -h "$DB_HOST" -P "$DB_PORT" \
      -u "$DB_ADMIN_USER" --connect-timeout=5 "$@"
  else
    mysql -u root --connect-timeout=5 "$@"
  fi
}
db_up() {
  command -v mysql >/dev/null 2>&1 || return 1
  MYSQL_ADMIN_MODE=tcp
  mysql_admin -e 'SELECT 1' >/dev/null 2>&1 && return 0
  [ "$DB_HOST" = 127.0.0.1 ] || return 1
  MYSQL_ADMIN_MODE=socket
  mysql_admin -e 'SELECT 1' >/dev/null 2>&1
}
ACCOUNTING=none
if ! db_up && [ "$DB_HOST" = 127.0.0.1 ]; then
  # sacct needs the database: install a local MariaDB when there is none (CI on a bare image).
  if ! pkg_installed mariadb-server; then
    log "no MySQL/MariaDB answering: installing mariadb-server for Slurm accounting"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
      --no-install-recommends mariadb-server >/dev/null \
      || log "WARNING: apt-get install mariadb-server failed"
  fi
  if [ -x /etc/init.d/mariadb ]; then
    log "starting MariaDB"
    service mariadb start >/dev/null 2>&1 || true
    wait_for 30 MariaDB db_up || true
  fi
fi
if db_up; then
  mysql_admin <<SQL || die "could not create database $DB_NAME / user $DB_SLURM_USER"
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$DB_SLURM_USER'@'%' IDENTIFIED BY '$DB_SLURM_PASS';
CREATE USER IF NOT EXISTS '$DB_SLURM_USER'@'localhost' IDENTIFIED BY '$DB_SLURM_PASS';
GRANT ALL ON $DB_NAME.* TO '$DB_SLURM_USER'@'%';
GRANT ALL ON $DB_NAME.* TO '$DB_SLURM_USER'@'localhost';
SQL
  ACCOUNTING=slurmdbd
else
  log "WARNING: no MySQL/MariaDB at $DB_HOST:$DB_PORT for $DB_ADMIN_USER: accounting is off," \
    "sacct will not work"
fi

# ---------------------------------------------------------------- config files
real_mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ "$ACCOUNTING" = slurmdbd ]; then
  acct_lines="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$HOST
AccountingStorageTRES=gres/gpu"
else
  acct_lines="AccountingStorageType=accounting_storage/none"
fi

node_lines=""
gres_lines=""
for i in $(seq 0 $((NNODES - 1))); do
  n=${NODES[$i]}
  node_lines+="NodeName=$n NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$((SLURMD_PORT0 + i))"
  node_lines+=" CPUs=$NODE_CPUS RealMemory=$real_mem_mb Gres=gpu:$NGPUS State=UNKNOWN"$'\n'
  gres_lines+="NodeName=$n Name=gpu File=$ROOT_DIR/gpu/$n/gpu[0-$((NGPUS - 1))]"$'\n'
done

cat >"$tmp/slurm.conf" <<EOF
# Generated by scripts/slurm-up.sh (aifactory): $NNODES nodes of $NGPUS placeholder GPUs, one
# slurmd each, all on this host. Do not edit.
ClusterName=$CLUSTER
SlurmctldHost=$HOST
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
SlurmctldDebug=info
SlurmdDebug=info
ReturnToService=2
SlurmdParameters=config_overrides
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1,batch_sched_delay=0,sched_min_interval=0
PriorityType=priority/basic
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
$acct_lines
JobCompType=jobcomp/none
InactiveLimit=0
KillWait=5
MinJobAge=300
Waittime=0
MessageTimeout=10
SlurmctldTimeout=30
SlurmdTimeout=60
${node_lines%$'\n'}
PartitionName=$PARTITION Nodes=$NODE_RANGE Default=YES MaxTime=INFINITE State=UP
EOF

cat >"$tmp/gres.conf" <<EOF
# Generated by scripts/slurm-up.sh (aifactory): placeholder GPU devices (clones of /dev/null).
${gres_lines%$'\n'}
EOF

cat >"$tmp/slurmdbd.conf" <<EOF
# Generated by scripts/slurm-up.sh (aifactory). Do not edit.
AuthType=auth/munge
DbdHost=$HOST
DbdPort=6819
SlurmUser=root
LogFile=$LOG_DIR/slurmdbd.log
PidFile=$RUN_DIR/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=$DB_HOST
StoragePort=$DB_PORT
StorageUser=$DB_SLURM_USER
StoragePass=$DB_SLURM_PASS
StorageLoc=$DB_NAME
EOF

changed=""
changed+=$(install_if_changed "$tmp/slurm.conf" "$CONF_DIR/slurm.conf" 0644)
changed+=$(install_if_changed "$tmp/gres.conf" "$CONF_DIR/gres.conf" 0644)
dbd_changed=$(install_if_changed "$tmp/slurmdbd.conf" "$CONF_DIR/slurmdbd.conf" 0600)

readonly DBD_PID=$RUN_DIR/slurmdbd.pid CTLD_PID=$RUN_DIR/slurmctld.pid
slurmd_pid() { printf '%s/slurmd-%s.pid' "$RUN_DIR" "$1"; }
if [ -n "$changed$dbd_changed" ]; then
  log "configuration changed: restarting the Slurm daemons"
  # Every slurmd we started: also those of nodes no longer configured, and the single
  # slurmd.pid of the one-node layout this script had before.
  for pidfile in "$RUN_DIR"/slurmd-*.pid "$RUN_DIR"/slurmd.pid; do
    if [ -e "$pidfile" ]; then stop_pidfile slurmd "$pidfile"; fi
  done
  stop_pidfile slurmctld "$CTLD_PID"
fi
[ -n "$dbd_changed" ] && stop_pidfile slurmdbd "$DBD_PID"

# ---------------------------------------------------------------- daemons
if [ "$ACCOUNTING" = slurmdbd ]; then
  if ! pid_alive "$DBD_PID" slurmdbd; then
    log "starting slurmdbd"
    /usr/sbin/slurmdbd
  fi
  wait_for 60 slurmdbd sacctmgr -n list cluster \
    || die "slurmdbd does not answer (see $LOG_DIR/slurmdbd.log)"
  if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
    log "registering cluster $CLUSTER in accounting"
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
  fi
fi
if ! pid_alive "$CTLD_PID" slurmctld; then
  log "starting slurmctld"
  /usr/sbin/slurmctld
fi
if ! wait_for 60 slurmctld scontrol ping; then
  # A Slurm built without --enable-multiple-slurmd refuses the config at start.
  if [ "$NNODES" -gt 1 ] && grep -q 'Duplicated NodeHostName' "$LOG_DIR/slurmctld.log" 2>/dev/null
  then
    die "this Slurm is not built with --enable-multiple-slurmd: it cannot run $NNODES nodes" \
      "on one host (use --nodes 1)"
  fi
  die "slurmctld does not answer (see $LOG_DIR/slurmctld.log)"
fi
# (Captured first: grep -q closing the pipe early would fail the pipeline under pipefail.)
build_options=$(scontrol show config 2>/dev/null || true)
if [ "$NNODES" -gt 1 ] && ! grep -Eq '^MULTIPLE_SLURMD += Yes' <<<"$build_options"; then
  die "this Slurm is not built with --enable-multiple-slurmd: it cannot run $NNODES nodes" \
    "on one host (use --nodes 1)"
fi
for n in "${NODES[@]}"; do
  if ! pid_alive "$(slurmd_pid "$n")" slurmd; then
    log "starting slurmd for node $n"
    /usr/sbin/slurmd -N "$n"
  fi
done

node_state() { sinfo -h -n "$1" -o '%T' 2>/dev/null | head -n1; }
node_ready() {
  case "$(node_state "$1")" in idle | mixed | allocated | completing) return 0 ;; *) return 1 ;; esac
}
for n in "${NODES[@]}"; do
  for _ in $(seq 1 120); do
    node_ready "$n" && break
    case "$(node_state "$n")" in
      down* | drain* | unknown* | fail*)
        scontrol update nodename="$n" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
  done
  node_ready "$n" \
    || die "node $n is $(node_state "$n"), not idle (see $LOG_DIR/slurmd-$n.log, slurmctld.log)"
done

log "Slurm is up: nodes $NODE_RANGE ($NGPUS GPUs each), partition $PARTITION," \
  "accounting=$ACCOUNTING"
sinfo -N -o '%N %T %C %G' >&2
log "stop with: bash scripts/slurm-down.sh"
