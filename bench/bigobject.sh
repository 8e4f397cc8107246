#!/usr/bin/env bash
# bigobject.sh: show that rhizome streams a 1 GiB object in bounded memory.
#
#   bash bench/bigobject.sh
#
# Starts the origin and rhizome with --cache-memory 64MiB and a data
# directory, downloads /obj/1g (1 GiB, made on the fly by the origin) through
# rhizome with curl into /dev/null twice: first a miss (from the origin), then
# a hit (from rhizome's disk). During each download it samples rhizome's VmRSS
# from /proc/PID/status every SAMPLE_INTERVAL seconds and prints the peak;
# at the end it also prints VmHWM, the kernel's own peak. It exits non-zero
# if a download fails or if either peak exceeds 64 MiB (the memory cache) +
# 64 MiB (allowed overhead: Go runtime, buffers, connections).
#
# Environment: SAMPLE_INTERVAL (0.2), CACHE_DISK (8GiB: rhizome stores
# objects up to a quarter of --cache-disk, so that a 1 GiB
# object fits the disk cache), RHIZOME_BIN (a prebuilt rhizome), ORIGIN_PORT,
# RHIZOME_PORT, RHIZOME_ADMIN_PORT (see bench/lib.sh).
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SAMPLE_INTERVAL=${SAMPLE_INTERVAL:-0.2}
CACHE_DISK=${CACHE_DISK:-8GiB}
CACHE_MIB=64                         # --cache-memory
OVERHEAD_MIB=64                      # allowed above the memory cache
BOUND_KIB=$(((CACHE_MIB + OVERHEAD_MIB) * 1024))
SIZE=1073741824                      # bytes in /obj/1g
DATA=$WORK/data

# sample_rss PID OUT: append PID's VmRSS in KiB to OUT every SAMPLE_INTERVAL
# until PID exits or this sampler is killed.
sample_rss() {
	local pid=$1 out=$2
	while [[ -r /proc/$pid/status ]]; do
		awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" >>"$out" 2>/dev/null || true
		sleep "$SAMPLE_INTERVAL"
	done
}

# proc_kib PID FIELD: a field of /proc/PID/status, in KiB.
proc_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

failed=0

# pass NAME: download /obj/1g once through rhizome while sampling its RSS.
pass() {
	local name=$1 samples=$WORK/bigobject-rss-$1.txt headers=$WORK/bigobject-$1.headers
	local sampler result code size speed secs peak cstatus
	: >"$samples"
	start_bg /dev/null sample_rss "$RHIZOME_PID" "$samples"
	sampler=$LAST_PID
	result=$(curl -sS -o /dev/null -D "$headers" --max-time 600 \
		-w '%{http_code} %{size_download} %{speed_download} %{time_total}' \
		"http://127.0.0.1:$RHIZOME_PORT/obj/1g") || result="000 0 0 0"
	stop_pid "$sampler"
	read -r code size speed secs <<<"$result"
	# One last sample, so that a download shorter than the interval still has one.
	proc_kib "$RHIZOME_PID" VmRSS >>"$samples" 2>/dev/null || true
	peak=$(sort -n "$samples" | tail -n 1)
	cstatus=$(sed -n 's/^[Cc]ache-[Ss]tatus: *//p' "$headers" | tr -d '\r')
	printf '%s: HTTP %s, %s bytes in %ss (%s MB/s), Cache-Status: %s\n' "$name" "$code" "$size" "$secs" \
		"$(awk -v s="$speed" 'BEGIN { printf "%.0f", s / 1e6 }')" "${cstatus:-(none)}"
	printf '%s: peak VmRSS %s over %s samples; bound %s (%s MiB cache + %s MiB overhead)\n' "$name" \
		"$(mib "${peak:-0}")" "$(wc -l <"$samples")" "$(mib "$BOUND_KIB")" "$CACHE_MIB" "$OVERHEAD_MIB"
	if [[ $code != 200 || $size != "$SIZE" ]]; then
		log "FAIL: $name: expected HTTP 200 and $SIZE bytes"
		failed=1
	fi
	if ((${peak:-0} > BOUND_KIB)); then
		log "FAIL: $name: peak VmRSS $(mib "$peak") is above the bound $(mib "$BOUND_KIB")"
		failed=1
	fi
}

trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$WORK"
rm -rf "$DATA"

log "building the origin and rhizome"
build_origin || die "could not build bench/origin"
build_rhizome || die "could not build rhizome: $(tail -n 10 "$WORK/build-rhizome.log")"

start_origin
start_rhizome --cache-memory "${CACHE_MIB}MiB" --cache-disk "$CACHE_DISK" --data-dir "$DATA" ||
	die "rhizome did not start"
echo "rhizome (pid $RHIZOME_PID) at start: VmRSS $(mib "$(proc_kib "$RHIZOME_PID" VmRSS)")"

pass miss
pass hit

hwm=$(proc_kib "$RHIZOME_PID" VmHWM)
echo "rhizome VmHWM (kernel-recorded peak RSS since start): $(mib "$hwm")"
if ((hwm > BOUND_KIB)); then
	log "FAIL: VmHWM $(mib "$hwm") is above the bound $(mib "$BOUND_KIB")"
	failed=1
fi
fetched=$(origin_count /obj/1g)
echo "origin requests for /obj/1g: ${fetched:-unknown} (1 means the second download was served by rhizome)"
if [[ $fetched != 1 ]]; then
	log "note: the second download was not a cache hit; the memory bound is still checked"
fi
if ((failed)); then
	exit 1
fi
log "PASS"
