#!/usr/bin/env bash
# A real single-node Slurm on this machine, for the `slurm`-marked tests and for trying
# `snakemake --profile slurm` locally.  Usage:
#
#   scripts/slurm_local.sh start    # install (Debian packages), configure, start, wait for an idle node
#   scripts/slurm_local.sh stop     # stop exactly the daemons this script started (pid files)
#   scripts/slurm_local.sh status   # exit 0 when every daemon runs and the node takes jobs
#
# What it sets up (recipe: ../shared/reference/snakemake_and_slurm.md, section 6):
#   * Debian's Slurm 22.05 (slurm-wlm, slurmctld, slurmd, slurm-client), munge, and accounting
#     (slurmdbd + a private MariaDB) so that `sacct` lists jobs -- the Snakemake Slurm plugin
#     polls job states with sacct.
#   * one node "localhost" with the CPUs/memory `slurmd -C` reports (memory: 90 %) and two fake
#     GPUs (gres gpu:2 backed by symlinks to character devices), one partition and one account,
#     both named "gibench" -- the placeholders of slurm/config.yaml, so that profile runs here
#     unchanged.
#   * daemons started without systemd: munged (as user munge), mariadbd (private datadir, port
#     and socket under $BASE), slurmdbd, slurmctld, slurmd -N localhost.
#
# Idempotent: `start` skips daemons that already run (from our pid files) and only re-writes
# configs it owns (they carry the marker below; a foreign /etc/slurm/slurm.conf is never
# overwritten).  A daemon that was running before (e.g. a system munged) is used, not
# restarted, and `stop` leaves it alone: stop acts only on the "<name>.ours" records that
# start wrote.  Needs root and apt-get (exit 2 with the reason otherwise).
#
# Environment: GIBENCH_SLURM_BASE (default /var/lib/gibench-slurm) holds state, logs, pid files;
# GIBENCH_SLURM_NAME (default gibench) names the account and the partition;
# GIBENCH_SLURM_NO_INSTALL=1 fails instead of installing missing packages.
set -euo pipefail

BASE=${GIBENCH_SLURM_BASE:-/var/lib/gibench-slurm}
NAME=${GIBENCH_SLURM_NAME:-gibench}
RUN=$BASE/run
LOG=$BASE/log
ETC=/etc/slurm
MARK="# managed by gibench scripts/slurm_local.sh"
DB_PORT=3307
DB_RUN=$BASE/mysqld-run
DB_SOCK=$DB_RUN/mysqld.sock
DB_PASS=gibench-ci-only
CLUSTER=gibench
NODE=localhost
PACKAGES=(slurm-wlm slurmctld slurmd slurm-client munge slurmdbd mariadb-server mariadb-client)

say() { echo "[slurm_local] $*" >&2; }
die() { say "ERROR: $*"; exit 1; }
unavailable() { say "UNAVAILABLE: $*"; exit 2; }

# ---------------------------------------------------------------- process helpers
# alive PID: the process exists and is not a zombie (PID 1 in a container may not reap).
alive() {
    local pid=$1 state
    [[ -n "$pid" && -r /proc/$pid/stat ]] || return 1
    state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ "$state" != "Z" && "$state" != "X" ]]
}

# pid_of_comm PIDFILE COMM: the pid in PIDFILE if that process is alive and is COMM.
pid_of_comm() {
    local file=$1 comm=$2 pid
    [[ -r "$file" ]] || return 1
    pid=$(tr -dc '0-9' <"$file")
    alive "$pid" || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm" ]] || return 1
    echo "$pid"
}

# any_running COMM: some live process is COMM (read from /proc; procps may be missing).
any_running() {
    local d
    for d in /proc/[0-9]*; do
        [[ "$(cat "$d/comm" 2>/dev/null)" == "$1" ]] && alive "${d#/proc/}" && return 0
    done
    return 1
}

# wait_for SECONDS DESCRIPTION CMD...: poll CMD every 0.5 s.
wait_for() {
    local secs=$1 what=$2; shift 2
    local end=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || return 1
        sleep 0.5
    done
}

# record NAME PIDFILE COMM: remember that this script started NAME (stop acts on these only).
record() {
    local name=$1 file=$2 comm=$3 pid
    pid=$(pid_of_comm "$file" "$comm") || die "$name did not write a live pid to $file (see $LOG)"
    printf '%s %s\n' "$pid" "$comm" >"$RUN/$name.ours"
    say "$name started (pid $pid)"
}

ours_running() {  # ours_running NAME -> 0 if our recorded daemon is alive
    local rec=$RUN/$1.ours pid comm
    [[ -r "$rec" ]] || return 1
    read -r pid comm <"$rec"
    alive "$pid" && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm" ]]
}

stop_one() {  # stop_one NAME: SIGTERM the recorded pid, wait <= 30 s, then SIGKILL
    local rec=$RUN/$1.ours pid comm
    [[ -r "$rec" ]] || return 0
    read -r pid comm <"$rec"
    if alive "$pid" && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm" ]]; then
        say "stopping $1 (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_for 30 "$1 exit" bash -c "! [[ -r /proc/$pid/stat ]] || grep -qE '^[0-9]+ \\(.*\\) [ZX]' /proc/$pid/stat"; then
            say "$1 ignored SIGTERM for 30 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$rec"
}

# ---------------------------------------------------------------- install
need_root() {
    [[ $(id -u) -eq 0 ]] || unavailable "must run as root (installs packages, starts daemons as root/munge/mysql); current uid $(id -u)"
}

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    [[ "${GIBENCH_SLURM_NO_INSTALL:-0}" == 1 ]] && unavailable "packages missing and GIBENCH_SLURM_NO_INSTALL=1: ${missing[*]}"
    command -v apt-get >/dev/null || unavailable "apt-get not found (needs a Debian/Ubuntu machine); missing: ${missing[*]}"
    say "installing ${missing[*]}"
    # keep package scripts from starting services (no systemd here; on a systemd machine this
    # avoids half-configured daemons competing with ours)
    local rcd=/usr/sbin/policy-rc.d tmp_rcd=0
    if [[ ! -e $rcd ]]; then
        printf '#!/bin/sh\nexit 101\n' >$rcd && chmod 755 $rcd && tmp_rcd=1
    fi
    local rc=0
    {
        apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"
    } >"$LOG/apt.log" 2>&1 || rc=$?
    ((tmp_rcd)) && rm -f $rcd
    ((rc == 0)) || { tail -20 "$LOG/apt.log" >&2; unavailable "apt-get install failed (rc $rc, log $LOG/apt.log)"; }
}

# ---------------------------------------------------------------- configuration
check_owned() {  # never overwrite a config this script did not write
    local f=$1
    if [[ -s "$f" ]] && ! head -1 "$f" | grep -qF "$MARK"; then
        unavailable "$f exists and was not written by this script (a Slurm is configured here); move it away to use the local test cluster"
    fi
}

write_configs() {
    mkdir -p "$ETC" "$BASE/ctld" "$BASE/spool" "$BASE/gpu" "$RUN" "$LOG"
    check_owned "$ETC/slurm.conf"; check_owned "$ETC/gres.conf"; check_owned "$ETC/slurmdbd.conf"
    # node hardware as slurmd detects it; advertise 90 % of its memory (more -> node INVAL)
    local hw cpus boards sockets cores threads mem
    hw=$(slurmd -C | head -1)
    field() { sed -nE "s/.*\\b$1=([0-9]+).*/\\1/p" <<<"$hw"; }
    cpus=$(field CPUs); boards=$(field Boards); sockets=$(field SocketsPerBoard)
    cores=$(field CoresPerSocket); threads=$(field ThreadsPerCore); mem=$(field RealMemory)
    [[ -n "$cpus" && -n "$mem" ]] || die "could not parse 'slurmd -C': $hw"
    mem=$((mem * 9 / 10))
    # fake GPUs: slurmd drops file-less GPUs and rejects regular files; symlinks to char devices work
    ln -sfn /dev/null "$BASE/gpu/gpu0"
    ln -sfn /dev/zero "$BASE/gpu/gpu1"

    cat >"$ETC/slurm.conf.new" <<EOF
$MARK -- regenerated on every start
ClusterName=$CLUSTER
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
MinJobAge=600
InactiveLimit=0
KillWait=5
Waittime=0
SlurmctldTimeout=30
SlurmdTimeout=60
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
StateSaveLocation=$BASE/ctld
SlurmdSpoolDir=$BASE/spool
GresTypes=gpu
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus Boards=${boards:-1} SocketsPerBoard=${sockets:-1} CoresPerSocket=${cores:-$cpus} ThreadsPerCore=${threads:-1} RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=$NAME Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$ETC/gres.conf.new" <<EOF
$MARK -- regenerated on every start
AutoDetect=off
NodeName=$NODE Name=gpu File=$BASE/gpu/gpu[0-1]
EOF
    cat >"$ETC/slurmdbd.conf.new" <<EOF
$MARK -- regenerated on every start
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
LogFile=$LOG/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=$DB_PASS
EOF
    chmod 600 "$ETC/slurmdbd.conf.new"
    local f changed=0
    for f in slurm.conf gres.conf slurmdbd.conf; do
        if ! cmp -s "$ETC/$f.new" "$ETC/$f"; then changed=1; fi
        mv -f "$ETC/$f.new" "$ETC/$f"
    done
    # running daemons keep their old config: a change needs a restart of the slurm daemons
    if ((changed)) && { ours_running slurmd || ours_running slurmctld || ours_running slurmdbd; }; then
        say "config changed: restarting the slurm daemons"
        stop_one slurmd; stop_one slurmctld; stop_one slurmdbd
    fi
}

# ---------------------------------------------------------------- daemons
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    if munge_ok; then
        ours_running munged || say "munged already running (not ours): using it"
        return 0
    fi
    [[ -s /etc/munge/munge.key ]] || {
        say "creating /etc/munge/munge.key"
        if command -v mungekey >/dev/null; then mungekey --create --force >/dev/null; else
            dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; fi
    }
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 755 /run/munge
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock /run/munge/munged.pid
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid >"$LOG/munged.out" 2>&1 9>&- ||
        die "munged failed: $(cat "$LOG/munged.out")"
    wait_for 20 munge munge_ok || die "munge does not answer (see /var/log/munge/munged.log)"
    record munged /run/munge/munged.pid munged
}

db() { mariadb --protocol=socket --socket="$DB_SOCK" -uroot "$@"; }
db_ok() { mariadb-admin --protocol=socket --socket="$DB_SOCK" -uroot ping; }

start_mariadb() {
    if ours_running mariadbd && db_ok >/dev/null 2>&1; then return 0; fi
    local data=$BASE/mysql
    mkdir -p "$data" "$DB_RUN"
    chown mysql:mysql "$data" "$DB_RUN"
    if [[ ! -d "$data/mysql" ]]; then
        say "initialising the accounting database in $data"
        mariadb-install-db --user=mysql --datadir="$data" --auth-root-authentication-method=socket \
            >"$LOG/mariadb-install.log" 2>&1 || die "mariadb-install-db failed (see $LOG/mariadb-install.log)"
    fi
    # private server: own datadir, port and socket, so it never collides with a system MySQL/MariaDB
    (setsid mariadbd --no-defaults --user=mysql --datadir="$data" --socket="$DB_SOCK" \
        --pid-file="$DB_RUN/mariadbd.pid" --port=$DB_PORT --bind-address=127.0.0.1 \
        --log-error="$LOG/mariadbd.log" --innodb-buffer-pool-size=256M \
        --innodb-lock-wait-timeout=900 </dev/null >/dev/null 2>&1 9>&- &)
    wait_for 60 mariadb db_ok || die "mariadbd did not start (see $LOG/mariadbd.log)"
    wait_for 10 "mariadb pid" pid_of_comm "$DB_RUN/mariadbd.pid" mariadbd || true
    record mariadbd "$DB_RUN/mariadbd.pid" mariadbd
    db -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
           CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
           CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
           GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
           GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
           FLUSH PRIVILEGES;" || die "could not create the slurm database user"
}

start_slurm_daemon() {  # start_slurm_daemon NAME READY_CMD... ; NAME is also the binary/comm
    local name=$1; shift
    if ours_running "$name"; then return 0; fi
    if any_running "$name"; then
        unavailable "a $name not started by this script is running; stop it first (this script only manages its own)"
    fi
    case $name in
        slurmd) slurmd -N "$NODE" >"$LOG/$name.out" 2>&1 9>&- || die "$name failed: $(tail -5 "$LOG/$name.out")" ;;
        *) "$name" >"$LOG/$name.out" 2>&1 9>&- || die "$name failed: $(tail -5 "$LOG/$name.out")" ;;
    esac
    wait_for 30 "$name" pid_of_comm "$RUN/$name.pid" "$name" || die "$name wrote no pid file (see $LOG/$name.log)"
    record "$name" "$RUN/$name.pid" "$name"
    if (($#)); then wait_for 60 "$name ready" "$@" || die "$name not ready after 60 s (see $LOG/$name.log)"; fi
}

node_state() { sinfo -h -N -n "$NODE" -o '%t' 2>/dev/null | head -1; }
node_ready() { [[ "$(node_state)" =~ ^(idle|mix|alloc)$ ]]; }

wait_node() {
    local end=$((SECONDS + 90)) st
    while ((SECONDS < end)); do
        st=$(node_state)
        case "$st" in
            idle|mix|alloc) return 0 ;;
            *drain*|*inval*|*down*|drng)
                # a DRAIN persists across restarts (saved state): resume the node
                scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
        esac
        sleep 0.5
    done
    die "node $NODE not idle after 90 s (state '$(node_state)'; see $LOG/slurmd.log and $LOG/slurmctld.log)"
}

ensure_account() {
    wait_for 60 "cluster registered" bash -c "sacctmgr -n -P list cluster format=cluster | grep -qx $CLUSTER" ||
        die "cluster $CLUSTER never registered in slurmdbd (see $LOG/slurmdbd.log)"
    sacctmgr -n -P list account "$NAME" format=account | grep -qx "$NAME" ||
        sacctmgr -i add account "$NAME" Cluster="$CLUSTER" Description="gibench local test account" >/dev/null
    local u
    for u in root ${SUDO_USER:-}; do
        sacctmgr -n -P list assoc where user="$u" account="$NAME" format=account | grep -qx "$NAME" ||
            sacctmgr -i add user "$u" Account="$NAME" >/dev/null
        sacctmgr -i modify user "$u" set DefaultAccount="$NAME" >/dev/null 2>&1 || true
    done
}

# ---------------------------------------------------------------- commands
cmd_start() {
    need_root
    mkdir -p "$RUN" "$LOG"
    exec 9>"$BASE/lock"; flock 9
    install_packages
    write_configs
    start_munge
    start_mariadb
    start_slurm_daemon slurmdbd sacctmgr -n list cluster
    start_slurm_daemon slurmctld scontrol ping
    start_slurm_daemon slurmd
    wait_node
    ensure_account
    say "up: partition $NAME, account $NAME, node $NODE with gres gpu:2 (logs in $LOG)"
}

cmd_stop() {
    [[ -d "$RUN" ]] || { say "nothing to stop"; return 0; }
    exec 9>"$BASE/lock"; flock 9
    # jobs of this private cluster would outlive slurmd as orphaned slurmstepd processes
    if ours_running slurmctld && command -v squeue >/dev/null; then
        local jobs
        jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
        if [[ -n "${jobs// /}" ]]; then
            say "cancelling jobs still queued/running: $jobs"
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            wait_for 30 "jobs gone" bash -c '[[ -z "$(squeue -h -o %i -t R,CG,PD 2>/dev/null)" ]]' || true
        fi
    fi
    # reverse start order; only what this script started
    stop_one slurmd; stop_one slurmctld; stop_one slurmdbd; stop_one mariadbd; stop_one munged
    quiet_stopped_config
    say "stopped"
}

# Slurm clients keep reading our slurm.conf after stop and wait MessageTimeout (default 10 s:
# about 9 s here) for the controller that is gone.  The Snakemake Slurm executor plugin runs
# `scontrol show config` whenever it is imported, and Snakemake imports every installed executor
# plugin at start, whatever the executor: every snakemake command -- local runs and tests
# included -- waited those 9 s.  The stopped cluster's config says MessageTimeout=1 (clients
# fail at once); start regenerates the config with the default.
quiet_stopped_config() {
    local f=$ETC/slurm.conf
    [[ -s "$f" ]] && head -1 "$f" | grep -qF "$MARK" || return 0      # not ours: leave it alone
    local pid
    for pid in $(pgrep -x slurmctld 2>/dev/null); do                 # some controller still reads it
        alive "$pid" && return 0                                      # (a zombie one does not)
    done
    grep -q '^MessageTimeout=1$' "$f" && return 0
    sed -i '/^MessageTimeout=/d; /^# stopped by scripts\/slurm_local.sh/d' "$f"
    printf '%s\n' "# stopped by scripts/slurm_local.sh: Slurm clients fail at once; start regenerates this file" \
        "MessageTimeout=1" >>"$f"
}

cmd_status() {
    local n rc=0 comm pid
    for n in munged mariadbd slurmdbd slurmctld slurmd; do
        if ours_running "$n"; then read -r pid comm <"$RUN/$n.ours"; echo "$n: running (pid $pid, started by this script)"
        elif [[ $n == munged ]] && munge_ok; then echo "$n: running (not started by this script)"
        else echo "$n: not running"; rc=1; fi
    done
    if command -v sinfo >/dev/null && ((rc == 0)); then
        echo "node $NODE: $(node_state)"
        node_ready || rc=1
    fi
    return $rc
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    restart) cmd_stop; cmd_start ;;
    *) echo "usage: $0 {start|stop|status|restart}" >&2; exit 64 ;;
esac
