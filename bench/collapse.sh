#!/usr/bin/env bash
# collapse.sh: show that rhizome collapses concurrent misses.
#
#   bash bench/collapse.sh
#
# Starts the origin (bench/origin) and rhizome in front of it, fires N
# (default 1,000) concurrent requests for one cold key, /cold/x, which the
# origin answers after 200 ms, then asks the origin how many requests for
# /cold/x it saw. Prints "origin requests for /cold/x: N" and exits non-zero
# unless N is exactly 1 and every client got a 200.
#
# Environment: N (1000), RHIZOME_BIN (a prebuilt rhizome), ORIGIN_PORT,
# RHIZOME_PORT, RHIZOME_ADMIN_PORT (see bench/lib.sh).
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=${N:-1000}

trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$WORK"
rm -rf "$WORK/collapse-data"
raise_nofile

log "building the origin, the client and rhizome"
build_origin || die "could not build bench/origin"
(cd "$ROOT" && go build -o "$WORK/collapse" ./bench/collapse) || die "could not build bench/collapse"
build_rhizome || die "could not build rhizome: $(tail -n 10 "$WORK/build-rhizome.log")"

start_origin
start_rhizome --data-dir "$WORK/collapse-data" || die "rhizome did not start"

clients_ok=1
"$WORK/collapse" --n "$N" --url "http://127.0.0.1:$RHIZOME_PORT/cold/x" || clients_ok=0
count=$(origin_count /cold/x)
echo "origin requests for /cold/x: ${count:-unknown}"

if [[ $count != 1 ]]; then
	log "FAIL: $N concurrent requests for a cold key should reach the origin exactly once"
	exit 1
fi
if ((!clients_ok)); then
	log "FAIL: some client requests failed"
	exit 1
fi
log "PASS"
