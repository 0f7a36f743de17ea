#!/usr/bin/env bash
# Stop the one-node test cluster of scripts/slurm-up.sh and remove everything it wrote:
# queued/running jobs are cancelled, slurmd and slurmctld stopped (munged only if slurm-up
# started it), /etc/slurm/{slurm,gres}.conf removed when they carry slurm-up's header, the
# fake GPU devices and $NNOPT_SLURM_STATE (default /var/lib/nnopt-slurm) deleted.
# Idempotent (nothing up → nothing to do) and bounded (about 20 s at most).
set -euo pipefail

STATE=${NNOPT_SLURM_STATE:-/var/lib/nnopt-slurm}
HEADER="# nnopt test cluster: written by scripts/slurm-up.sh"
export PATH=$PATH:/usr/sbin:/sbin

say() { echo "slurm-down: $*" >&2; }

ours() { [[ -f $1 ]] && [[ $(head -n 1 "$1") == "$HEADER"* ]]; }

# SIGTERM, then SIGKILL after ~5 s; only the pid recorded in the given pid file.
stop_pidfile() {
    local pidfile=$1 pid i
    [[ -s $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    say "pid $pid ($pidfile) ignored SIGTERM: killing"
    kill -9 "$pid" 2>/dev/null || true
}

# Cancel our cluster's jobs so that no job step outlives its daemons (bounded: ~10 s).
cancel_jobs() {
    local i
    timeout 5 scancel --quiet --user="$(id -un)" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        [[ -z $(timeout 5 squeue -h -t RUNNING,COMPLETING -o %i 2>/dev/null) ]] && return 0
        sleep 0.2
    done
    say "jobs still running after 10 s; stopping the daemons anyway"
}

main() {
    if [[ $(id -u) != 0 ]]; then
        say "not root: nothing of slurm-up.sh (which needs root) can be running"
        return 0
    fi
    if ! ours /etc/slurm/slurm.conf && [[ ! -d $STATE ]]; then
        say "nothing to do (no test cluster up)"
        return 0
    fi
    ours /etc/slurm/slurm.conf && cancel_jobs
    stop_pidfile "$STATE/slurmd.pid"
    stop_pidfile "$STATE/slurmctld.pid"
    if [[ -f $STATE/munged.ours ]]; then
        stop_pidfile /run/munge/munged.pid
    fi
    ours /etc/slurm/gres.conf && rm -f /etc/slurm/gres.conf
    ours /etc/slurm/slurm.conf && rm -f /etc/slurm/slurm.conf
    rm -f /dev/nnopt-fake-gpu[0-9]*
    rm -rf "$STATE"
    say "stopped; removed the config, fake GPU devices and $STATE"
}

main "$@"
