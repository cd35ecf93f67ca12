#!/usr/bin/env bash
# A real single-node Slurm (Debian's slurm-wlm, munge, slurmdbd + MariaDB) for the tests, started as root without
# systemd, private to this script: its own config, munge socket, database and ports under $COMPANION_SLURM_DIR, so
# it never touches /etc/slurm or a Slurm, munge or MariaDB the machine already runs.
#
#   .ci/slurm/cluster.sh up       install what is missing (apt), start the daemons, wait until the node is idle and
#                                 accounting answers; prints the `export SLURM_CONF=...` clients need
#   .ci/slurm/cluster.sh down     cancel its jobs and stop every daemon it started (pass --purge to delete its state)
#   .ci/slurm/cluster.sh status   exit 0 when the cluster is up and answering
#   .ci/slurm/cluster.sh env      print the `export SLURM_CONF=...` line
#
# Both `up` and `down` are idempotent. Settings (environment):
#   COMPANION_SLURM_DIR   state, config and logs                       [/tmp/companion-slurm]
#   COMPANION_SLURM_PORT  first of four consecutive TCP ports on 127.0.0.1: slurmctld, slurmd, slurmdbd, MariaDB
#                                                                      [16817]
#   COMPANION_SLURM_CPUS  CPUs the node offers                         [what `slurmd -C` detects]
#   COMPANION_SLURM_NO_INSTALL=1   fail instead of running apt-get when a package is missing
#
# Why these settings (measured on Debian 12, Slurm 22.05, in a container without systemd):
# - proctrack/linuxproc and task/none, no cgroup.conf: the cgroup plugins fail without a mounted freezer cgroup
#   and srun then prints nothing yet exits 0.
# - accounting through slurmdbd: without it sacct cannot see a cancelled job and submitit's result() waits forever.
# - DefMemPerCPU: without a default memory request every job claims the whole node and jobs run one at a time.
# - KillWait=5 and batch_sched_delay=0,sched_min_interval=0: a trivial submitit round trip takes ~1-2 s.
set -euo pipefail

STATE=${COMPANION_SLURM_DIR:-/tmp/companion-slurm}
PORT=${COMPANION_SLURM_PORT:-16817}
CTLD_PORT=$PORT SLURMD_PORT=$((PORT + 1)) DBD_PORT=$((PORT + 2)) DB_PORT=$((PORT + 3))
CLUSTER=companion
PACKAGES=(slurm-wlm munge slurmdbd mariadb-server)
export SLURM_CONF=$STATE/etc/slurm.conf
MUNGE_SOCKET=$STATE/munge/munge.socket
DB_SOCKET=$STATE/db/mysqld.sock
RUN=$STATE/run
LOG=$STATE/log

say() { echo "slurm-ci: $*" >&2; }
die() { say "$*"; exit 1; }
# Daemons get no inherited descriptors: not the lock (fd 9, a later `down` would wait on it forever) and not the
# caller's stdout/stderr (a test capturing the output of `up` would wait for them to close). They log to $LOG.
daemon() { "$@" </dev/null >/dev/null 2>&1 9>&-; }

# Whether a process runs (a zombie does not: here nobody may reap a daemon's exit promptly).
running() { local st; st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) && [ -n "$st" ] && [ "${st%% *}" != Z ]; }

# The pid in a pid file, if that process is alive and runs the expected program.
alive_pid() {
    local pidfile=$1 prog=$2 pid
    [ -s "$pidfile" ] || return 1
    pid=$(tr -dc 0-9 <"$pidfile")
    [ -n "$pid" ] && running "$pid" || return 1
    grep -qa -- "$prog" "/proc/$pid/cmdline" 2>/dev/null || return 1
    echo "$pid"
}

# wait_for SECONDS WHAT LOGFILE COMMAND...: poll COMMAND every 0.1 s until it succeeds; else show LOGFILE, fail.
wait_for() {
    local secs=$1 what=$2 logfile=$3; shift 3
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge "$deadline" ]; then
            say "$what did not come up within ${secs}s; last lines of $logfile:"
            tail -n 20 "$logfile" >&2 2>/dev/null || true
            exit 1
        fi
        sleep 0.1
    done
}

install_missing() {
    local missing=()
    for bin in slurmctld slurmd slurmdbd sbatch sacct munged mariadbd mariadb-install-db; do
        command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "${COMPANION_SLURM_NO_INSTALL:-0}" = 1 ] && die "missing ${missing[*]}: install ${PACKAGES[*]} (apt-get)"
    command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get: install Slurm, munge and MariaDB"
    say "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    local t0=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >"$STATE/apt.log" 2>&1; then
        apt-get update -qq >>"$STATE/apt.log" 2>&1 || true
        apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >>"$STATE/apt.log" 2>&1 \
            || { tail -n 20 "$STATE/apt.log" >&2; die "apt-get install ${PACKAGES[*]} failed (log: $STATE/apt.log)"; }
    fi
    say "installed in $((SECONDS - t0))s"
}

write_config() {
    local host detected cpus mem defmem
    host=$(hostname -s)
    detected=$(slurmd -C | head -n 1)
    cpus=${COMPANION_SLURM_CPUS:-$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$detected")}
    mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$detected")
    mem=$((mem * 95 / 100))           # a little headroom: a node configured above its memory is drained
    defmem=$((mem / cpus / 2))         # a job that asks for nothing gets half its CPUs' share, so they pack
    mkdir -p "$STATE/etc"
    cat >"$SLURM_CONF.new" <<EOF
# Written by .ci/slurm/cluster.sh: a private single-node cluster for the tests.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire is also how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=10
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# For slurmdbd connections the munge socket is named here, not by AuthInfo.
AccountingStoragePass=$MUNGE_SOCKET
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=2,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$defmem
KillWait=5
InactiveLimit=0
ReturnToService=2
SlurmdParameters=config_overrides
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    (umask 077 && cat >"$STATE/etc/slurmdbd.conf.new" <<EOF
# Written by .ci/slurm/cluster.sh.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=$host
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=companion-ci
StorageLoc=slurm_acct_db
EOF
    )
}

start_munge() {
    alive_pid "$STATE/munge/munged.pid" munged >/dev/null && return 0
    id munge >/dev/null 2>&1 || die "no 'munge' user: reinstall the munge package"
    [ -r /etc/munge/munge.key ] || die "no /etc/munge/munge.key: reinstall the munge package (it creates the key)"
    install -d -o munge -g munge -m 0755 "$STATE/munge"
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock"
    # munged refuses to run as root; the Debian package made the key readable by `munge` only.
    daemon runuser -u munge -- munged --socket="$MUNGE_SOCKET" --pid-file="$STATE/munge/munged.pid" \
        --log-file="$STATE/munge/munged.log" --seed-file="$STATE/munge/munged.seed" \
        || die "munged failed: $(tail -n 5 "$STATE/munge/munged.log" 2>/dev/null)"
    wait_for 10 munged "$STATE/munge/munged.log" bash -c "munge -S '$MUNGE_SOCKET' -n | unmunge -S '$MUNGE_SOCKET'"
}

db() { mariadb --no-defaults --socket="$DB_SOCKET" -u root "$@"; }

start_db() {
    if ! alive_pid "$RUN/mariadbd.pid" mariadbd >/dev/null; then
        if [ ! -d "$STATE/db/data/mysql" ]; then
            rm -rf "$STATE/db/data"
            mkdir -p "$STATE/db"
            mariadb-install-db --no-defaults --datadir="$STATE/db/data" --user=root --skip-test-db \
                --auth-root-authentication-method=socket >"$LOG/mariadb-install.log" 2>&1 \
                || { tail -n 20 "$LOG/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
        fi
        rm -f "$DB_SOCKET"
        setsid mariadbd --no-defaults --datadir="$STATE/db/data" --socket="$DB_SOCKET" --port="$DB_PORT" \
            --bind-address=127.0.0.1 --user=root --pid-file="$RUN/mariadbd.pid" --log-error="$LOG/mariadb.log" \
            --innodb-buffer-pool-size=64M --skip-name-resolve </dev/null >/dev/null 2>&1 9>&- &
        wait_for 60 MariaDB "$LOG/mariadb.log" db -e "SELECT 1"
    fi
    db -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'companion-ci';
           GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" \
        || die "could not create the accounting database user"
}

start_slurmdbd() {
    alive_pid "$RUN/slurmdbd.pid" slurmdbd >/dev/null && return 0
    daemon slurmdbd || die "slurmdbd failed: $(tail -n 5 "$LOG/slurmdbd.log" 2>/dev/null)"
    # The cluster must exist in the database before slurmctld registers; adding it twice is harmless.
    wait_for 30 slurmdbd "$LOG/slurmdbd.log" sacctmgr -n list cluster
    sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true
}

start_slurmctld() {
    alive_pid "$RUN/slurmctld.pid" slurmctld >/dev/null && return 0
    daemon slurmctld || die "slurmctld failed: $(tail -n 5 "$LOG/slurmctld.log" 2>/dev/null)"
    wait_for 30 slurmctld "$LOG/slurmctld.log" scontrol ping
}

start_slurmd() {
    alive_pid "$RUN/slurmd.pid" slurmd >/dev/null && return 0
    daemon slurmd -N "$(hostname -s)" || die "slurmd failed: $(tail -n 5 "$LOG/slurmd.log" 2>/dev/null)"
}

node_idle() { [ "$(sinfo -h -o %t 2>/dev/null)" = idle ]; }

healthy() {
    for d in munge/munged:munged run/mariadbd:mariadbd run/slurmdbd:slurmdbd run/slurmctld:slurmctld run/slurmd:slurmd; do
        alive_pid "$STATE/${d%%:*}.pid" "${d##*:}" >/dev/null || return 1
    done
    scontrol ping >/dev/null 2>&1 && sacct -n -X -S now-1minute >/dev/null 2>&1
}

up() {
    [ "$(id -u)" = 0 ] || die "starting the test cluster needs root (run: sudo $0 up)"
    mkdir -p "$STATE" "$RUN" "$LOG" "$STATE/ctld" "$STATE/slurmd"
    exec 9>"$STATE/.lock"
    flock -w 300 9 || die "another up/down holds $STATE/.lock for 5 min"  # concurrent ups (parallel test workers) start it once
    rm -f "$STATE/started-by-tests"  # started by hand: a test session that finds it running leaves it running
    install_missing
    write_config
    if cmp -s "$SLURM_CONF.new" "$SLURM_CONF" && cmp -s "$STATE/etc/slurmdbd.conf.new" "$STATE/etc/slurmdbd.conf" \
            && healthy; then
        rm -f "$SLURM_CONF.new" "$STATE/etc/slurmdbd.conf.new"
        say "already up ($SLURM_CONF)"
    else
        local t1=$SECONDS
        if [ -f "$SLURM_CONF" ] && ! cmp -s "$SLURM_CONF.new" "$SLURM_CONF"; then
            say "configuration changed: restarting the Slurm daemons"
            stop_slurm
        fi
        mv "$SLURM_CONF.new" "$SLURM_CONF"
        mv "$STATE/etc/slurmdbd.conf.new" "$STATE/etc/slurmdbd.conf"
        local ctld_was_up=0
        alive_pid "$RUN/slurmctld.pid" slurmctld >/dev/null && ctld_was_up=1
        start_munge
        start_db
        start_slurmdbd
        start_slurmctld
        start_slurmd
        wait_for 30 "slurmd registration" "$LOG/slurmd.log" bash -c "sinfo -h -o %t | grep -qv '^unk'"
        if [ $ctld_was_up = 0 ]; then
            # The daemons were killed (not stopped by `down`): the controller recovers the jobs it last saw running,
            # whose processes died with it, and keeps the node allocated to them for minutes. They are a past
            # session's; cancel them so the node frees now.
            local stale
            stale=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
            if [ -n "${stale// /}" ]; then
                say "cancelling jobs left from before the daemons last stopped: $stale"
                # shellcheck disable=SC2086
                scancel --quiet $stale 2>/dev/null || true
            fi
        fi
        # A node that was down when the controller last saw it stays down until told otherwise.
        wait_for 30 "a node out of the recovered jobs" "$LOG/slurmctld.log" \
            bash -c "sinfo -h -o %t | grep -Eqv '^(alloc|mix|comp)'"
        node_idle || scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
        wait_for 30 "an idle node" "$LOG/slurmd.log" node_idle
        wait_for 30 "accounting (sacct)" "$LOG/slurmdbd.log" sacct -n -X -S now-1minute
        say "up in $((SECONDS - t1))s ($(sinfo -h -o '%P %D node(s) %c CPUs %m MB %t'))"
    fi
    echo "export SLURM_CONF=$SLURM_CONF"
}

# stop NAME PIDFILE PROGRAM: TERM, wait up to 20 s, then KILL.
stop() {
    local name=$1 pid
    pid=$(alive_pid "$2" "$3") || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 200); do running "$pid" || { say "stopped $name"; return 0; }; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    say "killed $name (did not stop within 20s)"
}

stop_slurm() {
    stop slurmd "$RUN/slurmd.pid" slurmd
    stop slurmctld "$RUN/slurmctld.pid" slurmctld
    stop slurmdbd "$RUN/slurmdbd.pid" slurmdbd
}

down() {
    [ -d "$STATE" ] || { say "nothing to stop ($STATE does not exist)"; return 0; }
    exec 9>"$STATE/.lock"
    flock -w 300 9 || die "another up/down holds $STATE/.lock for 5 min"
    if alive_pid "$RUN/slurmctld.pid" slurmctld >/dev/null; then
        # Cancel every job first, so no job step outlives the daemons that manage it.
        if [ -n "$(squeue -h -o %i 2>/dev/null)" ]; then
            # shellcheck disable=SC2046
            scancel --quiet $(squeue -h -o %i 2>/dev/null) 2>/dev/null || true
            for _ in $(seq 150); do [ -z "$(squeue -h -t R,CG -o %i 2>/dev/null)" ] && break; sleep 0.1; done
        fi
    fi
    stop_slurm
    stop MariaDB "$RUN/mariadbd.pid" mariadbd
    stop munged "$STATE/munge/munged.pid" munged
    if [ "${1:-}" = --purge ]; then rm -rf "$STATE"; say "removed $STATE"; fi
}

case "${1:-}" in
    up) up ;;
    down) shift; down "$@" ;;
    status) healthy ;;
    env) echo "export SLURM_CONF=$SLURM_CONF" ;;
    *) echo "usage: $0 up | down [--purge] | status | env" >&2; exit 2 ;;
esac
