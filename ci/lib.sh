# Helpers sourced by .ci/run and ci/*.sh (bash).

# step NAME CMD...: run CMD, print its wall time; the run stops on failure (set -e).
step() {
    local name="$1"; shift
    local t0 t1
    t0=$(date +%s.%N)
    echo "==> ${name}: $*"
    "$@"
    t1=$(date +%s.%N)
    local dt
    dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    echo "==> ${name}: done in ${dt} s"
    STEP_TIMES+=("$(printf '%-28s %8s s' "$name" "$dt")")
}

# print_times: the table of step timings collected so far.
print_times() {
    echo "==> timings"
    local line
    for line in "${STEP_TIMES[@]}"; do
        echo "    ${line}"
    done
}

STEP_TIMES=()
