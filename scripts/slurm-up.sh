#!/usr/bin/env bash
# Bring up a one-node Slurm test cluster on loopback, for tests/workflow/test_slurm.py and CI.
#
#   bash scripts/slurm-up.sh [--gpus N] [--no-install]
#
# As root: installs Debian's slurmctld, slurmd, slurm-client and munge when missing, writes
# /etc/slurm/slurm.conf (the Snakemake Slurm plugin's job step drops SLURM_* variables, so
# SLURM_CONF elsewhere would break jobs), starts munged, slurmctld and slurmd in the
# background and waits until the node is idle. --gpus N (default 1) declares N fake GPUs
# (character devices made with mknod) so GRES requests can be scheduled; nothing can run
# CUDA on them. State and logs live in $NNOPT_SLURM_STATE (default /var/lib/nnopt-slurm).
#
# Idempotent: a cluster that is already up is left as it is. Bounded: gives up with the
# daemons' last log lines after $NNOPT_SLURM_TIMEOUT_S seconds (default 60; the install has
# its own bound of $NNOPT_SLURM_INSTALL_TIMEOUT_S, default 180).
# Exit codes: 0 up, 1 failed, 77 Slurm cannot be used on this machine (not root, no
# apt-get or the install failed, or a foreign /etc/slurm/slurm.conf): callers skip.
# scripts/slurm-down.sh stops it and removes every file written here.
set -euo pipefail

STATE=${NNOPT_SLURM_STATE:-/var/lib/nnopt-slurm}
TIMEOUT_S=${NNOPT_SLURM_TIMEOUT_S:-60}
INSTALL_TIMEOUT_S=${NNOPT_SLURM_INSTALL_TIMEOUT_S:-180}
CONF=/etc/slurm/slurm.conf
GRES_CONF=/etc/slurm/gres.conf
HEADER="# nnopt test cluster: written by scripts/slurm-up.sh"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PACKAGES=(slurmctld slurmd slurm-client munge)
COMMANDS=(slurmctld slurmd sbatch squeue scontrol sinfo munged munge)
GPUS=1
INSTALL=1

say() { echo "slurm-up: $*" >&2; }
skip() { say "SKIP: $*"; exit 77; }
fail() { say "FAILED: $*"; exit 1; }

parse_args() {
    while [[ $# -gt 0 ]]; do
        case $1 in
            --gpus) GPUS=${2:?--gpus needs a number}; shift 2 ;;
            --no-install) INSTALL=0; shift ;;
            -h | --help) sed -n '2,19p' "${BASH_SOURCE[0]}"; exit 0 ;;
            *) fail "unknown argument '$1'; allowed: --gpus N, --no-install" ;;
        esac
    done
    [[ $GPUS =~ ^[0-9]+$ ]] || fail "--gpus: expected an integer >= 0, got '$GPUS'"
}

# The commands of COMMANDS not found, on one line ("" when none is missing).
missing_commands() {
    local cmd missing=()
    for cmd in "${COMMANDS[@]}"; do
        PATH=$PATH:/usr/sbin:/sbin command -v "$cmd" >/dev/null || missing+=("$cmd")
    done
    echo "${missing[*]}"
}

# Install without letting the packages start their own services (policy-rc.d answers
# "denied"), because this script starts the daemons itself with its own configuration.
install_packages() {
    local missing
    missing=$(missing_commands)
    [[ -z $missing ]] && return 0
    [[ $INSTALL == 1 ]] || skip "missing $missing and --no-install given"
    command -v apt-get >/dev/null || skip "missing $missing and no apt-get here"
    say "installing ${PACKAGES[*]} (missing: $missing)"
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT  # also when the install is interrupted
    fi
    local deadline_s=$((SECONDS + INSTALL_TIMEOUT_S)) ok=0 log=/tmp/nnopt-slurm-apt.log
    apt_get() {  # each call gets what is left of the one install budget
        local left_s=$((deadline_s - SECONDS))
        ((left_s > 0)) && timeout "$left_s" env DEBIAN_FRONTEND=noninteractive apt-get -y -q \
            -o Dpkg::Options::=--force-confold "$@" >>"$log" 2>&1
    }
    : >"$log"
    apt_get install --no-install-recommends "${PACKAGES[@]}" && ok=1
    if [[ $ok == 0 ]]; then  # a stale package index is the usual cause: refresh once
        apt_get update && apt_get install --no-install-recommends "${PACKAGES[@]}" && ok=1
    fi
    if [[ $made_policy == 1 ]]; then rm -f "$policy" && trap - EXIT; fi
    [[ $ok == 1 ]] || skip "apt-get install ${PACKAGES[*]} failed or took over ${INSTALL_TIMEOUT_S}s: $(tail -n 3 "$log" | tr '\n' ' ')"
    missing=$(missing_commands)
    [[ -z $missing ]] || skip "still missing after install: $missing"
}

munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

# Reuse a running munged (e.g. one started by systemd); otherwise start one as the munge
# user and note that we did, so slurm-down.sh stops only what this script started.
start_munge() {
    munge_works && return 0
    [[ -s /etc/munge/munge.key ]] || {
        mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null ||
            dd if=/dev/urandom of=/etc/munge/munge.key bs=128 count=1 status=none
        chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
    }
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    runuser -u munge -- munged --force || fail "munged did not start (see /var/log/munge)"
    touch "$STATE/munged.ours"
    wait_until "munge answers" munge_works
}

ctld_answers() { scontrol ping >/dev/null 2>&1; }
node_state() { sinfo -h -n "$HOST" -o %T 2>/dev/null | head -n 1; }
node_ready() { [[ $(node_state) =~ ^(idle|mixed|allocated)$ ]]; }

cluster_up() {
    [[ -f $STATE/slurmctld.pid && -f $STATE/slurmd.pid ]] || return 1
    kill -0 "$(cat "$STATE/slurmctld.pid")" 2>/dev/null || return 1
    kill -0 "$(cat "$STATE/slurmd.pid")" 2>/dev/null || return 1
    munge_works && node_ready
}

# Poll a check until it passes or the overall deadline passes; on timeout show the logs.
wait_until() {
    local what=$1
    shift
    until "$@"; do
        if ((SECONDS >= DEADLINE_S)); then
            tail -n 15 "$STATE"/log/*.log >&2 2>/dev/null || true
            fail "timed out after ${TIMEOUT_S}s waiting until $what (logs above, in $STATE/log)"
        fi
        sleep 0.2
    done
}

memory_mb() {
    # RealMemory a little below the total, so slurmd never reports the node as short.
    awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo
}

write_config() {
    local gres="" i
    install -d -m 0755 /etc/slurm "$STATE/ctld" "$STATE/spool" "$STATE/log"
    rm -f "$GRES_CONF"
    if ((GPUS > 0)); then
        gres="Gres=gpu:$GPUS"
        echo "$HEADER (fake GPUs: character devices, no CUDA)" >"$GRES_CONF"
        for ((i = 0; i < GPUS; i++)); do
            # Slurm accepts only character devices as GPU files; 1:3 is /dev/null's number.
            [[ -c /dev/nnopt-fake-gpu$i ]] || mknod -m 0666 "/dev/nnopt-fake-gpu$i" c 1 3
            echo "NodeName=$HOST Name=gpu File=/dev/nnopt-fake-gpu$i" >>"$GRES_CONF"
        done
    fi
    sed -e "s|@HOST@|$HOST|g" -e "s|@STATE@|$STATE|g" -e "s|@CPUS@|$(nproc)|g" \
        -e "s|@MEM_MB@|$(memory_mb)|g" -e "s|@GRES@|$gres|g" \
        "$HERE/slurm/slurm.conf.in" >"$CONF"
}

main() {
    parse_args "$@"
    [[ $(id -u) == 0 ]] || skip "needs root (runs slurmctld/slurmd and writes /etc/slurm)"
    HOST=$(hostname -s)
    install_packages
    export PATH=$PATH:/usr/sbin:/sbin
    if [[ -e $CONF ]] && [[ $(head -n 1 "$CONF") != "$HEADER"* ]]; then
        skip "$CONF exists and was not written by this script; not touching a real cluster"
    fi
    if [[ -e $CONF ]] && cluster_up; then
        say "already up: node $HOST $(node_state) (state in $STATE)"
        return 0
    fi
    [[ -e $CONF ]] && { say "half-up cluster found: restarting"; bash "$HERE/slurm-down.sh"; }
    DEADLINE_S=$((SECONDS + TIMEOUT_S))
    install -d -m 0755 "$STATE"
    start_munge
    write_config
    slurmctld -i || fail "slurmctld did not start (see $STATE/log/slurmctld.log)"
    wait_until "slurmctld answers" ctld_answers
    slurmd || fail "slurmd did not start (see $STATE/log/slurmd.log)"
    wait_until "node $HOST is idle" node_ready
    say "up in ${SECONDS}s: node $HOST ($(nproc) CPUs, $(memory_mb) MB, $GPUS fake GPUs)," \
        "partitions main (default) and gpu; state in $STATE"
}

main "$@"
