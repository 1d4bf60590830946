# shellcheck shell=bash
# Shared by torchrun.sh and mpirun.sh (sourced, not run): the config argument and GPU counting.

# require_config HELP_LAST_LINE "$@": with no argument or -h/--help print the calling script's
# header comment (lines 2..HELP_LAST_LINE) and exit; otherwise check that the config file exists
# and set CONFIG. The caller then shifts it off.
require_config() {
    local help_end=$1
    shift
    if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
        sed -n "2,${help_end}p" "$0" | sed 's/^# \{0,1\}//'
        exit 2
    fi
    if [[ ! -f "$1" ]]; then
        echo "error: config file $1 not found" >&2
        exit 2
    fi
    # shellcheck disable=SC2034  # read by the sourcing script
    CONFIG=$1
}

# GPUs on this host (nvidia-smi), or 1 process on a CPU machine.
gpu_count() {
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi -L | grep -c '^GPU' || echo 1
    else
        echo 1
    fi
}
