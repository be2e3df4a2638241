#!/usr/bin/env bash
# Create the users the local executor needs; idempotent, run as root.
#
#   aifactory-job  the unprivileged user local jobs run as when `aifactory serve` runs as
#                  root (the default of --run-as). A service running as root refuses to
#                  start the local executor without it. Added to the GPU device groups
#                  (video, render) that exist here.
#   aifactory-svc  a non-root user to run the service as (and the tests that check the
#                  sandbox of a service that is not root); --no-service-user skips it.
#
# Neither user can log in (nologin shell) or has a home; a job's HOME is its working
# directory. Exit 3 when the users are missing and cannot be made here (not root, no
# useradd): the tests that need them then skip, saying so.
set -euo pipefail

job_user=aifactory-job
svc_user=aifactory-svc
while [ $# -gt 0 ]; do
  case "$1" in
    --job-user) job_user=$2; shift 2 ;;
    --no-service-user) svc_user=""; shift ;;
    *) echo "usage: $0 [--job-user NAME] [--no-service-user]" >&2; exit 2 ;;
  esac
done

wanted=("$job_user")
[ -n "$svc_user" ] && wanted+=("$svc_user")

missing=()
for user in "${wanted[@]}"; do
  getent passwd "$user" >/dev/null || missing+=("$user")
done

if [ "$(id -u)" -ne 0 ]; then
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup-job-user.sh: users ${missing[*]} are missing and only root can create them" >&2
    exit 3
  fi
  exit 0
fi
if ! command -v useradd >/dev/null 2>&1; then
  echo "setup-job-user.sh: useradd not found; cannot create ${missing[*]:-users}" >&2
  [ ${#missing[@]} -gt 0 ] && exit 3
  exit 0
fi

nologin=$(command -v nologin || echo /usr/sbin/nologin)
for user in "${missing[@]}"; do
  useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell "$nologin" --comment "aifactory ${user#aifactory-}" "$user"
  echo "setup-job-user.sh: created user $user (uid $(id -u "$user"))"
done

# GPU device nodes are often group-owned (AMD's /dev/kfd and /dev/dri by render and video).
for group in video render; do
  if getent group "$group" >/dev/null && ! id -nG "$job_user" | tr ' ' '\n' | grep -qx "$group"; then
    usermod -aG "$group" "$job_user"
  fi
done
