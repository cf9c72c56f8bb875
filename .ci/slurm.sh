#!/usr/bin/env bash
# Install and start a one-node Slurm cluster on this machine (slurmctld + slurmd + munge, all on
# localhost), partition `ci` holding this node's CPUs, for the hydra/launcher=slurm tests.
# With accounting (slurmdbd on MariaDB): submitit learns a job's end state (TIMEOUT, OOM) from
# sacct, and a killed job writes no result, so without sacct the sweep driver would wait forever.
# Debian/Ubuntu, as root (CI), no systemd needed, no cgroups (containers rarely allow them).
# Safe to run again: it only starts what is down.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "slurm.sh: run as root (sudo bash .ci/slurm.sh)" >&2; exit 1; }
if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null; then
  [ -n "${CHARMLP_APT_UPDATED:-}" ] || apt-get update -qq   # .ci/run updates once for all
  # policy-rc.d in containers may refuse to start services: we start the daemons ourselves.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm slurmdbd munge mariadb-server >/dev/null
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

# MariaDB for slurmdbd (root logs in through the unix socket).
if ! mysqladmin ping >/dev/null 2>&1; then
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  (mysqld_safe >/dev/null 2>&1 &)
  for _ in $(seq 30); do mysqladmin ping >/dev/null 2>&1 && break; sleep 1; done
fi
mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
  CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'charmlp';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"

# The configs: this node as slurmd -C sees it (CPUs, memory), one partition, no time limit.
node=$(hostname -s)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
hw=$(slurmd -C | head -1 | sed -e 's/^NodeName=[^ ]* //' -e 's/ UpTime=.*//')
cat > /etc/slurm/slurmdbd.conf.new <<EOF
# Written by charmlp's .ci/slurm.sh.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=charmlp
StorageLoc=slurm_acct_db
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
EOF
cat > /etc/slurm/slurm.conf.new <<EOF
# Written by charmlp's .ci/slurm.sh: one node on localhost, no cgroups.
ClusterName=charmlp
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
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
for f in slurm.conf slurmdbd.conf; do
  cmp -s "/etc/slurm/$f.new" "/etc/slurm/$f" || { mv "/etc/slurm/$f.new" "/etc/slurm/$f"; changed=1; }
  rm -f "/etc/slurm/$f.new"
done
chmod 600 /etc/slurm/slurmdbd.conf

if [ "$changed" = 1 ]; then  # a new config: restart what runs on the old one
  for d in slurmctld slurmd slurmdbd; do
    if [ -s "/run/$d.pid" ]; then kill "$(cat "/run/$d.pid")" 2>/dev/null || true; fi
  done
  sleep 2
fi
pgrep -x slurmdbd >/dev/null || slurmdbd
for _ in $(seq 30); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 1; done
sacctmgr -n list cluster format=cluster | grep -qw charmlp || sacctmgr -i add cluster charmlp >/dev/null
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
up() { sinfo -h -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; }
for _ in $(seq 30); do up && break; sleep 1; done
if ! up; then  # a node left DOWN by an earlier run comes back on request
  scontrol update NodeName="$node" State=RESUME 2>/dev/null || true
  sleep 2
fi
up || {
  echo "slurm.sh: node $node is not up (state: $(sinfo -h -o %T 2>/dev/null || echo none)); logs:" >&2
  tail -5 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log /var/log/slurm/slurmdbd.log >&2 || true
  exit 1
}
sacct -n -X -S now >/dev/null || { echo "slurm.sh: sacct cannot reach slurmdbd" >&2; exit 1; }
echo "slurm: ready, partition ci on $node ($hw), accounting in slurmdbd"
