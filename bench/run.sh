#!/usr/bin/env bash
# run.sh: benchmark rhizome against nginx, Varnish and HAProxy on this machine.
#
#   sudo bash bench/run.sh
#   DURATION=30s CONNS=128 PEERS="nginx rhizome" sudo -E bash bench/run.sh
#
# For each peer in turn it starts the peer in front of one shared origin
# (bench/origin), warms it, checks that it caches, runs wrk for three
# scenarios and stops it:
#   hit-1k   cache hits of a 1 KiB object: req/s and p99 latency
#   hit-1m   cache hits of a 1 MiB object: MB/s (10^6 bytes per second)
#   miss     a unique URL per request, the origin answering in 20 ms: req/s, p99
# Then it prints a table with each peer's figures and rhizome/peer ratios and
# writes it to bench/results/latest.md. A peer that fails to start is
# reported and skipped. Everything it starts is stopped on exit; its
# temporary files are under /tmp/rhizome-bench.
#
# Environment: DURATION (10s), CONNS (64), THREADS (2, wrk threads),
# PEERS ("nginx varnish haproxy rhizome"), CACHE_MB (256), WORKERS (nproc),
# RHIZOME_ARGS (extra flags for rhizome proxy), RHIZOME_BIN (a prebuilt
# rhizome to use instead of building ./cmd/rhizome), and the ports ORIGIN_PORT
# (18000), NGINX_PORT (18081), VARNISH_PORT (18082), HAPROXY_PORT (18083),
# RHIZOME_PORT (18084), RHIZOME_ADMIN_PORT (19090).
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
PEERS=${PEERS:-nginx varnish haproxy rhizome}
CACHE_MB=${CACHE_MB:-256}
WORKERS=${WORKERS:-$(nproc)}
RHIZOME_ARGS=${RHIZOME_ARGS:-}
NGINX_PORT=${NGINX_PORT:-18081}
VARNISH_PORT=${VARNISH_PORT:-18082}
HAPROXY_PORT=${HAPROXY_PORT:-18083}
SCENARIOS=(hit-1k hit-1m miss)
RESULTS=$BENCH_DIR/results/latest.md

declare -A PORT=([nginx]=$NGINX_PORT [varnish]=$VARNISH_PORT [haproxy]=$HAPROXY_PORT [rhizome]=$RHIZOME_PORT)
declare -A R=()     # R[peer.metric]: measured figures
declare -A NOTES=() # NOTES[peer]: what went wrong or is worth knowing

# fill TEMPLATE OUT PORT: copy a bench/conf template with its placeholders filled.
fill() {
	sed -e "s|@WORK@|$WORK|g" -e "s|@PORT@|$3|g" -e "s|@ORIGIN_PORT@|$ORIGIN_PORT|g" \
		-e "s|@WORKERS@|$WORKERS|g" -e "s|@CACHE_MB@|$CACHE_MB|g" "$BENCH_DIR/conf/$1" >"$2"
}

start_nginx() {
	command -v nginx >/dev/null || { note nginx "not installed (apt-get install -y nginx)"; return 1; }
	mkdir -p "$WORK/nginx"
	fill nginx.conf "$WORK/conf/nginx.conf" "${PORT[nginx]}"
	start_bg "$WORK/nginx/stderr.log" nginx -p "$WORK/nginx/" -e "$WORK/nginx/error.log" -c "$WORK/conf/nginx.conf"
	PEER_PID=$LAST_PID
	started nginx "$PEER_PID" "$WORK/nginx/stderr.log"
}

start_varnish() {
	command -v varnishd >/dev/null || { note varnish "not installed (apt-get install -y varnish)"; return 1; }
	mkdir -p "$WORK/varnish"
	fill varnish.vcl "$WORK/conf/varnish.vcl" "${PORT[varnish]}"
	start_bg "$WORK/varnish/stderr.log" varnishd -F -n "$WORK/varnish" \
		-a "127.0.0.1:${PORT[varnish]}" -f "$WORK/conf/varnish.vcl" \
		-s "malloc,${CACHE_MB}m" -p "thread_pools=$WORKERS"
	PEER_PID=$LAST_PID
	started varnish "$PEER_PID" "$WORK/varnish/stderr.log"
}

start_haproxy() {
	command -v haproxy >/dev/null || { note haproxy "not installed (apt-get install -y haproxy)"; return 1; }
	mkdir -p "$WORK/haproxy"
	fill haproxy.cfg "$WORK/conf/haproxy.cfg" "${PORT[haproxy]}"
	start_bg "$WORK/haproxy/stderr.log" haproxy -db -f "$WORK/conf/haproxy.cfg"
	PEER_PID=$LAST_PID
	started haproxy "$PEER_PID" "$WORK/haproxy/stderr.log"
}

start_rhizome_peer() {
	if [[ ! -x $WORK/rhizome ]]; then
		note rhizome "not built: $(tail -n 3 "$WORK/build-rhizome.log" | tr '\n' ' ')"
		return 1
	fi
	local extra=()
	read -ra extra <<<"$RHIZOME_ARGS"
	if ! start_rhizome --data-dir "$WORK/rhizome-data" --cache-memory "${CACHE_MB}MiB" "${extra[@]}"; then
		note rhizome "did not start (see $WORK/rhizome.log)"
		return 1
	fi
	PEER_PID=$RHIZOME_PID
}

# warm PEER: fetch each object until the peer has it, then check that
# fetching it again does not reach the origin.
warm() {
	local peer=$1 base="http://127.0.0.1:${PORT[$1]}" path code before after i
	for path in /obj/1k /obj/1m; do
		for i in 1 2; do
			code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$base$path") || code=000
			if [[ $code != 200 ]]; then
				note "$peer" "GET $path answered $code"
				return 1
			fi
		done
		before=$(origin_count "$path")
		for i in 1 2 3; do
			curl -s -o /dev/null --max-time 10 "$base$path" || true
		done
		after=$(origin_count "$path")
		if ((after > before)); then
			note "$peer" "does not cache $path: $((after - before)) of 3 warm requests reached the origin"
		fi
	done
}

# bench PEER SCENARIO: run wrk for one scenario and record its figures.
bench() {
	local peer=$1 scenario=$2 path unique=0 out line before after
	case $scenario in
	hit-1k) path=/obj/1k ;;
	hit-1m) path=/obj/1m ;;
	miss) path=/ unique=1 ;;
	esac
	out=$WORK/wrk-$peer-$scenario.txt
	before=$(origin_total)
	log "$peer: $scenario: wrk -t$THREADS -c$CONNS -d$DURATION --latency"
	if ! BENCH_UNIQUE=$unique BENCH_PREFIX="$peer-$(date +%s)" \
		wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$BENCH_DIR/wrk/report.lua" \
		"http://127.0.0.1:${PORT[$peer]}$path" >"$out" 2>&1; then
		note "$peer" "wrk failed for $scenario (see $out)"
		return 0
	fi
	after=$(origin_total)
	line=$(grep '^RESULT ' "$out" || true)
	if [[ -z $line ]]; then
		note "$peer" "wrk printed no result for $scenario (see $out)"
		return 0
	fi
	# RESULT requests=N duration_us=N bytes=N errors=N non2xx=N p50_us=N p99_us=N
	local kv k v requests=0 duration_us=1 bytes=0 errors=0 p99_us=0
	# shellcheck disable=SC2086 # splitting the RESULT line into words is intended
	for kv in ${line#RESULT }; do
		k=${kv%%=*} v=${kv#*=}
		case $k in
		requests) requests=$v ;; duration_us) duration_us=$v ;; bytes) bytes=$v ;;
		errors) errors=$v ;; p99_us) p99_us=$v ;;
		esac
	done
	R[$peer.$scenario.rps]=$(awk -v n="$requests" -v d="$duration_us" 'BEGIN { printf "%.0f", n / (d / 1e6) }')
	R[$peer.$scenario.mbs]=$(awk -v b="$bytes" -v d="$duration_us" 'BEGIN { printf "%.0f", b / d }')
	R[$peer.$scenario.p99]=$(awk -v u="$p99_us" 'BEGIN { printf "%.2f", u / 1000 }')
	R[$peer.$scenario.errors]=$errors
	R[$peer.$scenario.origin]=$((after - before))
	R[$peer.$scenario.requests]=$requests
	if ((errors > 0)); then
		note "$peer" "$scenario: $errors wrk errors (timeouts, resets or HTTP >= 400)"
	fi
	if [[ $scenario == hit-* ]] && ((after - before > requests / 100 + 2)); then
		note "$peer" "$scenario: $((after - before)) of $requests requests reached the origin: these are not cache hits"
	fi
	log "$peer: $scenario: ${R[$peer.$scenario.rps]} req/s, ${R[$peer.$scenario.mbs]} MB/s, p99 ${R[$peer.$scenario.p99]} ms, origin requests $((after - before))"
}

# rhizome_revision: the commit rhizome was built from, marked if the tree differs.
rhizome_revision() {
	local rev
	rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) || rev="no commit"
	if [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null) ]]; then
		rev="$rev, uncommitted changes"
	fi
	printf '%s\n' "$rev"
}

# get PEER METRIC: a recorded figure or "-".
get() { printf '%s' "${R[$1.$2]:--}"; }

report() {
	local peer
	echo "# rhizome benchmark: latest run"
	echo
	echo "Generated by \`bench/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
	echo
	echo "## Machine"
	echo
	echo "- nproc: $(nproc); kernel: $(uname -r); CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | sed -n 1p)"
	echo "- memory: $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "- wrk: $(first_line wrk -v)"
	echo "- nginx: $(first_line nginx -v)"
	echo "- varnish: $(first_line varnishd -V)"
	echo "- haproxy: $(first_line haproxy -v)"
	echo "- rhizome: $(rhizome_revision) ($(first_line go version))"
	echo
	echo "## Settings"
	echo
	echo "- wrk -t$THREADS -c$CONNS -d$DURATION --latency, one peer at a time, each in front of the same origin (bench/origin)."
	echo "- wrk, the peer and the origin share the same $(nproc) cores: nothing is pinned. Figures are"
	echo "  lower than on separate machines and noisy; compare the ratios, not the absolutes."
	echo "- Each peer: $WORKERS workers/threads, a ${CACHE_MB} MiB cache, logging off (configs in bench/conf/)."
	echo "  nginx's cache is files under $WORK (served from the page cache); Varnish uses malloc;"
	echo "  HAProxy's cache is memory only; rhizome: --cache-memory ${CACHE_MB}MiB --data-dir $WORK/rhizome-data${RHIZOME_ARGS:+ $RHIZOME_ARGS}."
	echo "- hit-1k, hit-1m: /obj/1k and /obj/1m, warmed first. miss: a unique /slow/... path per"
	echo "  request; the origin waits 20 ms before answering 1 KiB."
	echo "- MB/s is 10^6 bytes of response (headers and body) per second, as counted by wrk."
	echo
	echo "## Results"
	echo
	echo "| peer | hit 1 KiB req/s | hit 1 KiB p99 ms | hit 1 MiB MB/s | miss req/s | miss p99 ms |"
	echo "|---|---:|---:|---:|---:|---:|"
	for peer in $PEERS; do
		echo "| $peer | $(get "$peer" hit-1k.rps) | $(get "$peer" hit-1k.p99) | $(get "$peer" hit-1m.mbs) | $(get "$peer" miss.rps) | $(get "$peer" miss.p99) |"
	done
	echo
	echo "## rhizome / peer"
	echo
	echo "Above 1 is better for req/s and MB/s; below 1 is better for p99."
	echo
	echo "| peer | hit 1 KiB req/s | hit 1 KiB p99 | hit 1 MiB MB/s | miss req/s | miss p99 |"
	echo "|---|---:|---:|---:|---:|---:|"
	for peer in $PEERS; do
		[[ $peer == rhizome ]] && continue
		echo "| $peer | $(ratio "$(get rhizome hit-1k.rps)" "$(get "$peer" hit-1k.rps)") | $(ratio "$(get rhizome hit-1k.p99)" "$(get "$peer" hit-1k.p99)") | $(ratio "$(get rhizome hit-1m.mbs)" "$(get "$peer" hit-1m.mbs)") | $(ratio "$(get rhizome miss.rps)" "$(get "$peer" miss.rps)") | $(ratio "$(get rhizome miss.p99)" "$(get "$peer" miss.p99)") |"
	done
	echo
	echo "## Checks"
	echo
	echo "Origin requests during each run (hits should reach the origin about 0 times, misses once per"
	echo "request) and wrk errors (connect, read, write, timeout, HTTP >= 400)."
	echo
	echo "| peer | hit 1 KiB requests / origin / errors | hit 1 MiB requests / origin / errors | miss requests / origin / errors |"
	echo "|---|---:|---:|---:|"
	for peer in $PEERS; do
		local cells=() s
		for s in "${SCENARIOS[@]}"; do
			cells+=("$(get "$peer" "$s.requests") / $(get "$peer" "$s.origin") / $(get "$peer" "$s.errors")")
		done
		echo "| $peer | ${cells[0]} | ${cells[1]} | ${cells[2]} |"
	done
	print_notes $PEERS
}

main() {
	[[ $EUID -eq 0 ]] || die "run as root (sudo bash bench/run.sh): nginx and varnishd are started as root and drop privileges"
	command -v wrk >/dev/null || die "wrk is not installed (apt-get install -y wrk)"
	command -v curl >/dev/null || die "curl is not installed"
	if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
		PATH=$PATH:/usr/local/go/bin
	fi
	command -v go >/dev/null || die "go is not on PATH (sudo may reset PATH: sudo env PATH=\"\$PATH\" bash bench/run.sh)"

	trap cleanup EXIT
	trap 'exit 130' INT TERM
	rm -rf "$WORK"
	mkdir -p "$WORK/conf" "$BENCH_DIR/results"
	raise_nofile

	log "building the origin and rhizome"
	build_origin || die "could not build bench/origin"
	if [[ " $PEERS " == *" rhizome "* ]] && ! build_rhizome; then
		log "rhizome does not build; the other peers still run. Last lines of $WORK/build-rhizome.log:"
		tail -n 10 "$WORK/build-rhizome.log" >&2 || true
	fi
	start_origin

	local peer scenario
	for peer in $PEERS; do
		if [[ -z ${PORT[$peer]:-} ]]; then
			note "$peer" "unknown peer (known: nginx varnish haproxy rhizome)"
			continue
		fi
		if ! port_free "${PORT[$peer]}"; then
			note "$peer" "port ${PORT[$peer]} is already in use; skipped"
			continue
		fi
		log "$peer: starting on 127.0.0.1:${PORT[$peer]}"
		case $peer in
		rhizome) start_rhizome_peer || continue ;;
		*) "start_$peer" || continue ;;
		esac
		if warm "$peer"; then
			for scenario in "${SCENARIOS[@]}"; do
				bench "$peer" "$scenario"
			done
		fi
		stop_pid "$PEER_PID"
	done

	report >"$RESULTS"
	echo
	cat "$RESULTS"
	log "written to $RESULTS; wrk output and logs in $WORK"
}

main "$@"
