#!/usr/bin/env bash
# Start a real single-node SLURM cluster on this machine, for the integration tests:
# loopback only, two fake GPUs (gres on mknod character devices), no accounting (jobs are
# followed with squeue; MinJobAge keeps finished jobs visible). Needs root (apt, daemons).
#
#   tests/slurm/start_local_slurm.sh [STATE_DIR]     # default /tmp/mammosynth-slurm
#   export SLURM_CONF=STATE_DIR/slurm.conf            # point sbatch/squeue/scancel at it
#   tests/slurm/stop_local_slurm.sh [STATE_DIR]      # stops only the daemons started here
#
# slurm.conf and gres.conf live in STATE_DIR; /etc/slurm/slurm.conf becomes a symlink to it,
# because snakemake's jobstep plugin strips SLURM_CONF before the `srun` inside each job (so jobs
# only find the default path). An existing /etc/slurm/slurm.conf that is not such a symlink means
# this machine belongs to a real cluster: the script refuses to touch it. Prints why and exits 1
# if the cluster does not come up (daemon logs in STATE_DIR/log).
set -euo pipefail

STATE=${1:-/tmp/mammosynth-slurm}
HOST=$(hostname)
say() { echo "start_local_slurm: $*" >&2; }
fail() { say "$*"; for f in "$STATE"/log/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done; exit 1; }

[ "$(id -u)" = 0 ] || fail "needs root (installs packages, starts slurmctld/slurmd/munged)"
case "$(getent hosts "$HOST" | awk '{print $1}')" in
  127.*) ;;
  *) fail "hostname $HOST does not resolve to 127.x (add it to /etc/hosts)";;
esac

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
   || ! command -v munged >/dev/null; then
  say "installing slurmctld slurmd slurm-client munge (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi

mkdir -p "$STATE"/{spool/ctld,spool/d,run,log,dev}
if [ -f "$STATE/run/slurmctld.pid" ] && kill -0 "$(cat "$STATE/run/slurmctld.pid")" 2>/dev/null; then
  fail "a cluster from $STATE is already running; stop it first (tests/slurm/stop_local_slurm.sh $STATE)"
fi

# munge: reuse a running munged (not ours to stop), else start one and remember its PID.
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  say "munged already running: reusing it"
else
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge && dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key 2>/dev/null || true
  chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
  munged --force --pid-file="$STATE/run/munged.pid" --log-file="$STATE/log/munged.log" \
    || fail "munged did not start"
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n | unmunge >/dev/null 2>&1 || fail "munge does not work"
fi

# Two fake GPUs: character devices, so slurmd accepts them as gres files.
for i in 0 1; do [ -e "$STATE/dev/nvidia$i" ] || mknod "$STATE/dev/nvidia$i" c 1 3; done

CPUS=$(nproc)
MEM=$(( $(free -m | awk '/^Mem:/{print $2}') * 85 / 100 ))
cat > "$STATE/slurm.conf" <<CONF
ClusterName=mammosynth
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
CommunicationParameters=NoInAddrAny
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=600
KillWait=5
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
GresTypes=gpu
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM Gres=gpu:2 NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
cat > "$STATE/gres.conf" <<CONF
AutoDetect=off
NodeName=$HOST Name=gpu File=$STATE/dev/nvidia[0-1]
CONF
export SLURM_CONF="$STATE/slurm.conf"
if [ -e /etc/slurm/slurm.conf ] && [ ! -L /etc/slurm/slurm.conf ]; then
  fail "/etc/slurm/slurm.conf exists and is not a test symlink: this machine is configured for a real cluster; not touching it"
fi
mkdir -p /etc/slurm
ln -sfn "$SLURM_CONF" /etc/slurm/slurm.conf

slurmctld -f "$SLURM_CONF" -i || fail "slurmctld did not start"
slurmd -f "$SLURM_CONF" || fail "slurmd did not start"

for _ in $(seq 60); do
  state=$(sinfo -h -N -o %T 2>/dev/null | head -1 || true)
  [ "$state" = idle ] && break
  sleep 0.5
done
[ "${state:-}" = idle ] || fail "node not idle after 30 s (state: ${state:-none})"

# A real job (with a GPU) must run before we call the cluster up.
out="$STATE/log/probe.out"
rm -f "$out"
id=$(sbatch --parsable --gpus=1 -o "$out" --wrap 'echo ok $CUDA_VISIBLE_DEVICES') \
  || fail "sbatch of a probe job failed"
for _ in $(seq 60); do [ -s "$out" ] && break; sleep 0.5; done
grep -q '^ok' "$out" 2>/dev/null || fail "probe job $id did not run"
say "up: SLURM_CONF=$SLURM_CONF, node $HOST, $CPUS CPUs, ${MEM} MB, 2 fake GPUs (probe: $(cat "$out"))"
