#!/usr/bin/env bash
# Stop the daemons tests/slurm/start_local_slurm.sh started (by their PID files), nothing else.
set -uo pipefail
STATE=${1:-/tmp/mammosynth-slurm}
export SLURM_CONF="$STATE/slurm.conf"
[ -f "$SLURM_CONF" ] && scancel --quiet --user="$(id -un)" 2>/dev/null
for name in slurmd slurmctld munged; do
  pidfile="$STATE/run/$name.pid"
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$pidfile"
done
[ "$(readlink /etc/slurm/slurm.conf 2>/dev/null)" = "$SLURM_CONF" ] && rm -f /etc/slurm/slurm.conf
echo "stop_local_slurm: stopped the daemons of $STATE" >&2
