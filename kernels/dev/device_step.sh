# Sourced by the device scripts (run_*_device.sh): one step of a device call.
#   step NAME SECONDS LOG COMMAND...
# runs COMMAND under `timeout SECONDS`, its output to ${STEP_DIR:-$OUT}/LOG, and appends
# "NAME: rc R (T s)" to the call's summary file $S, so one failed or hung step never ends the call.
step() {
    n=$1 t=$2 log=$3
    shift 3
    t0=$(date +%s)
    timeout "$t" "$@" >"${STEP_DIR:-$OUT}/$log" 2>&1
    echo "$n: rc $? ($(($(date +%s) - t0)) s)" >>"$S"
}
