#!/usr/bin/env bash
# Install and start a one-node Slurm cluster on this machine (slurmctld + slurmd + munge, all on
# localhost), partition `ci` holding this node's CPUs, for the hydra/launcher=slurm tests.
# Debian/Ubuntu, as root (CI), no systemd needed, no cgroups (containers rarely allow them).
# Safe to run again: it only starts what is down.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "slurm.sh: run as root (sudo bash .ci/slurm.sh)" >&2; exit 1; }
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  apt-get update -qq
  # policy-rc.d in containers may refuse to start services: we start the daemons ourselves.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# munge: one key, the daemon as its own user (it refuses to run as root without --force).
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
chmod 400 /etc/munge/munge.key
chmod 755 /run/munge
munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || runuser -u munge -- /usr/sbin/munged

# slurm.conf: this node as slurmd -C sees it (CPUs, memory), one partition, no time limit.
node=$(hostname -s)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
conf=/etc/slurm/slurm.conf
hw=$(slurmd -C | head -1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ UpTime=.*//')
cat > "$conf.new" <<EOF
# Written by charmlp's .ci/slurm.sh: one node on localhost, no cgroups, no accounting.
ClusterName=charmlp
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
KillWait=5
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$node NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=ci Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
changed=0
cmp -s "$conf.new" "$conf" || { mv "$conf.new" "$conf"; changed=1; }
rm -f "$conf.new"

if [ "$changed" = 1 ]; then  # a new config: restart what runs on the old one
  for d in slurmctld slurmd; do
    [ -s "/run/$d.pid" ] && kill "$(cat "/run/$d.pid")" 2>/dev/null || true
  done
  sleep 1
fi
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 30); do
  sinfo -h -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated)' && break
  sleep 1
done
state=$(sinfo -h -o %T 2>/dev/null || true)
if ! echo "$state" | grep -Eq '^(idle|mixed|allocated)'; then
  scontrol update NodeName="$node" State=RESUME 2>/dev/null || true
  sleep 2
  state=$(sinfo -h -o %T 2>/dev/null || true)
fi
echo "$state" | grep -Eq '^(idle|mixed|allocated)' || {
  echo "slurm.sh: node $node is not up (state: ${state:-none}); logs:" >&2
  tail -5 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
  exit 1
}
echo "slurm: ready, partition ci on $node ($hw)"
