# shellcheck shell=bash
# lib.sh: helpers shared by bench/run.sh, bench/collapse.sh,
# bench/bigobject.sh and bench/failover.sh. Source it after
# `set -euo pipefail`; it only defines variables and functions and starts
# nothing by itself.
#
# Every process started with start_bg is recorded and killed by cleanup,
# which the scripts run from an EXIT trap. Nothing here sends traffic
# anywhere but 127.0.0.1.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
WORK=/tmp/rhizome-bench # every temporary file of the benchmarks lives here

ORIGIN_PORT=${ORIGIN_PORT:-18000}
RHIZOME_PORT=${RHIZOME_PORT:-18084}
RHIZOME_ADMIN_PORT=${RHIZOME_ADMIN_PORT:-19090}

PIDS=() # processes started by start_bg, oldest first

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# first_line CMD...: the first line CMD prints (stdout and stderr), or
# "unavailable"; never fails.
first_line() {
	local out
	out=$("$@" 2>&1) || true
	out=${out%%$'\n'*}
	printf '%s\n' "${out:-unavailable}"
}

# start_bg LOGFILE CMD...: start CMD in the background with its output in
# LOGFILE, record its PID for cleanup, and leave it in LAST_PID.
start_bg() {
	local logfile=$1
	shift
	"$@" >"$logfile" 2>&1 &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}

# stop_pid PID: stop one process started by start_bg: TERM, then KILL after 5 s.
stop_pid() {
	local pid=$1 i
	kill "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# cleanup stops every process started by start_bg, newest first.
cleanup() {
	local i
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		stop_pid "${PIDS[i]}"
	done
	PIDS=()
}

# port_free PORT: true if nothing listens on 127.0.0.1:PORT.
port_free() {
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_listen PORT PID [SECONDS]: wait until something accepts connections on
# 127.0.0.1:PORT; fail early if PID exits.
wait_listen() {
	local port=$1 pid=$2 secs=${3:-15} i
	for ((i = 0; i < secs * 10; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			return 1
		fi
		if ! port_free "$port"; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# build_origin: build bench/origin into $WORK/origin.
build_origin() {
	(cd "$ROOT" && go build -o "$WORK/origin" ./bench/origin)
}

# build_rhizome: build ./cmd/rhizome into $WORK/rhizome, output in
# $WORK/build-rhizome.log; with RHIZOME_BIN set, copy that binary instead.
build_rhizome() {
	if [[ -n ${RHIZOME_BIN:-} ]]; then
		cp "$RHIZOME_BIN" "$WORK/rhizome" >"$WORK/build-rhizome.log" 2>&1
		return
	fi
	(cd "$ROOT" && go build -o "$WORK/rhizome" ./cmd/rhizome) >"$WORK/build-rhizome.log" 2>&1
}

# raise_nofile: raise the open-files limit to the hard limit.
raise_nofile() {
	ulimit -n "$(ulimit -Hn)" 2>/dev/null || log "could not raise the open-files limit; it is $(ulimit -n)"
}

# start_origin: start the origin on ORIGIN_PORT and wait for it; sets ORIGIN_PID.
start_origin() {
	port_free "$ORIGIN_PORT" || die "port $ORIGIN_PORT (origin) is already in use; set ORIGIN_PORT"
	start_bg "$WORK/origin.log" "$WORK/origin" --listen "127.0.0.1:$ORIGIN_PORT"
	ORIGIN_PID=$LAST_PID
	wait_listen "$ORIGIN_PORT" "$ORIGIN_PID" || die "origin did not start: $(tail -n 5 "$WORK/origin.log")"
}

# start_rhizome [EXTRA ARGS...]: start rhizome on RHIZOME_PORT in front of the
# origin, logging off, and wait for it; sets RHIZOME_PID. Fails (does not
# exit) if it does not start, after printing why.
start_rhizome() {
	if ! port_free "$RHIZOME_PORT"; then
		log "rhizome: port $RHIZOME_PORT is already in use; set RHIZOME_PORT"
		return 1
	fi
	start_bg "$WORK/rhizome.log" "$WORK/rhizome" proxy \
		--listen "127.0.0.1:$RHIZOME_PORT" \
		--origin "http://127.0.0.1:$ORIGIN_PORT" \
		--admin "127.0.0.1:$RHIZOME_ADMIN_PORT" \
		--log-level error --access-log=false "$@"
	RHIZOME_PID=$LAST_PID
	if ! wait_listen "$RHIZOME_PORT" "$RHIZOME_PID"; then
		log "rhizome did not start; last lines of $WORK/rhizome.log:"
		tail -n 20 "$WORK/rhizome.log" >&2 || true
		return 1
	fi
}

# origin_count PATH: how many requests for PATH the origin has seen.
origin_count() {
	curl -fsS --max-time 5 "http://127.0.0.1:$ORIGIN_PORT/count?path=$1" |
		sed -n 's/.*"paths":{"[^"]*":\([0-9]*\)}.*/\1/p'
}

# origin_total: how many requests the origin has seen in all.
origin_total() {
	curl -fsS --max-time 5 "http://127.0.0.1:$ORIGIN_PORT/count?path=/" |
		sed -n 's/.*"total":\([0-9]*\).*/\1/p'
}

# forget_pid PID: drop PID from the processes cleanup stops, once the caller
# has stopped or killed it itself (so that cleanup never signals a reused PID).
forget_pid() {
	local i
	for i in "${!PIDS[@]}"; do
		if [[ ${PIDS[i]} == "$1" ]]; then
			unset 'PIDS[i]'
		fi
	done
	PIDS=("${PIDS[@]}")
}

# print_notes PEER...: the "## Notes" section of a results file, from the NOTES array the
# calling script fills (peer -> what went wrong or needs saying).
print_notes() {
	echo
	echo "## Notes"
	echo
	local any=0 peer
	for peer in "$@"; do
		if [[ -n ${NOTES[$peer]:-} ]]; then
			echo "- $peer: ${NOTES[$peer]}"
			any=1
		fi
	done
	((any)) || echo "- none"
}

# note PEER TEXT...: log TEXT and keep it for the results file's notes (NOTES, declared by
# the calling script).
note() {
	local peer=$1
	shift
	log "$peer: $*"
	NOTES[$peer]="${NOTES[$peer]:-}${NOTES[$peer]:+; }$*"
}

# stop_one PID: stop a process, frozen (SIGSTOP) ones included, and forget it.
stop_one() {
	[[ -n $1 ]] || return 0
	kill -CONT "$1" 2>/dev/null || true
	stop_pid "$1"
	forget_pid "$1"
}

# started PEER PID LOG: wait for PEER (on PORT[PEER]) to listen; on failure say why and
# stop it.
started() {
	local peer=$1 pid=$2 logfile=$3
	if wait_listen "${PORT[$peer]}" "$pid"; then
		return 0
	fi
	note "$peer" "did not start (see $logfile)"
	tail -n 20 "$logfile" >&2 || true
	stop_one "$pid"
	return 1
}

# ratio A B: A/B to two decimals, or "-".
ratio() {
	if [[ $1 == - || $2 == - ]]; then
		printf '%s' -
		return
	fi
	awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'
}
