#!/usr/bin/env bash
# security.sh: what rhizome's request stages (rate limiting, WAF, bot classification) cost
# on cache hits, and how its WAF compares with nginx + ModSecurity v3 + the OWASP CRS.
#
#   sudo bash bench/security.sh
#   DURATION=30s ROUNDS=3 sudo -E bash bench/security.sh
#
# 1. rhizome node: one standalone node (no mesh) in front of bench/origin. Bundles with
#    rising serials are signed with a fresh operator key and pushed to it, one per variant:
#      off      the site, no stages
#      all      a per-IP rate limit far above the load (counts, never blocks), waf: {} (CRS
#               4, paranoia 1, blocking), bots: blocking ai-training and automated
#      waf      waf: {} only
#      rl+bots  the rate limit and the bot policy, no WAF
#    For each: warm /obj/1k and check that it is a hit, check that the stages act (a SQL
#    injection gets 403 where the WAF is on, 200 where it is off; curl's default user agent
#    and GPTBot get 403 where the bot policy is on), then wrk on the hit; the node's stage
#    counters must show every request run through each stage and none blocked.
# 2. nginx (bench/conf/nginx-modsec.conf, as run.sh's nginx peer) with the ModSecurity v3
#    connector loaded, once with `modsecurity off` and once `on` with Debian's CRS 3.3 at
#    paranoia 1, blocking (bench/conf/nginx-modsec-rules.conf). Needs the Debian packages
#    libnginx-mod-http-modsecurity and modsecurity-crs: installed with apt-get when missing
#    and the script runs as root; otherwise the peer is reported unavailable. The connector
#    must report loaded rules and the SQL injection must get 403, or the peer fails loudly.
# 3. The WAF's CPU cost per request from Go's benchmarks (internal/waf), and the rate
#    limiter's memory at 1M keys (internal/ratelimit).
# Every measured run is wrk with a browser's User-Agent, Accept, Accept-Language and
# Accept-Encoding and Host: www.example.com (a name, as real traffic has: a numeric Host
# matches CRS rule 920350), so that the bot stage scores it human and the WAF finds it
# clean. Variants run in the order above, ROUNDS times; figures are means over the rounds.
# Results: a table printed and written to bench/results/security.md. The exit status is 1
# if any check failed (the results file says which). Everything started is stopped on
# exit; temporary files are under /tmp/rhizome-bench/security.
#
# Environment: DURATION (10s), CONNS (64), THREADS (2), ROUNDS (1), CACHE_MB (256),
# WORKERS (nproc, nginx workers), GO_BENCH (1; 0 skips parts 3 and 4), BENCHTIME (2s),
# STAGE_BUDGET (default: rhizome's budgets; or a duration such as 1s set on every stage),
# RHIZOME_BIN (a prebuilt rhizome), and the ports NODE_PORT (18090), NODE_ADMIN_PORT
# (18091), NGINX_PORT (18092), ORIGIN_PORT (18093).
set -euo pipefail

ORIGIN_PORT=${ORIGIN_PORT:-18093}
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-1}
CACHE_MB=${CACHE_MB:-256}
WORKERS=${WORKERS:-$(nproc)}
GO_BENCH=${GO_BENCH:-1}
BENCHTIME=${BENCHTIME:-2s}
STAGE_BUDGET=${STAGE_BUDGET:-default}
NODE_PORT=${NODE_PORT:-18090}
NODE_ADMIN_PORT=${NODE_ADMIN_PORT:-18091}
NGINX_PORT=${NGINX_PORT:-18092}
SW=$WORK/security
RESULTS=$BENCH_DIR/results/security.md

MODSEC_MODULE=/usr/lib/nginx/modules/ngx_http_modsecurity_module.so
CRS_RULES=/usr/share/modsecurity-crs/rules
CRS_SETUP=/etc/modsecurity/crs/crs-setup.conf
UNICODE_MAP=/etc/nginx/unicode.mapping
MODSEC_PACKAGES=(libnginx-mod-http-modsecurity modsecurity-crs)

HOST_NAME=www.example.com
BROWSER_UA="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
HEADERS=(-H "Host: $HOST_NAME" -H "User-Agent: $BROWSER_UA"
	-H "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	-H "Accept-Language: en-US,en;q=0.9" -H "Accept-Encoding: gzip, deflate, br")
HIT_PATH=/obj/1k
ATTACK="?id=1%27%20OR%20%271%27%3D%271" # id=1' OR '1'='1

RHIZOME_VARIANTS=(off all waf rlbots)
NGINX_VARIANTS=(modsec-off modsec-on)
declare -A LABEL=([off]="rhizome, no stages" [all]="rhizome, all stages" [waf]="rhizome, WAF only"
	[rlbots]="rhizome, rate limit + bots" [modsec-off]="nginx, modsecurity off" [modsec-on]="nginx + ModSecurity, CRS 3.3")
declare -A R=()     # R[variant.metric] and R[variant.rN.metric]: measured figures
declare -A NOTES=() # NOTES[peer]: what went wrong or is worth knowing
FAILED=()           # checks that failed, for the results file and the exit status
SERIAL=0            # the last bundle serial pushed
NODE_PID=
NGINX_UNAVAILABLE=

# fail PEER TEXT...: a check failed: note it loudly and remember it for the exit status.
fail() {
	local peer=$1
	shift
	log "CHECK FAILED: $peer: $*"
	note "$peer" "**check failed**: $*"
	FAILED+=("$peer: $*")
}

# fill TEMPLATE OUT PORT [SED ARGS...]: copy a bench/conf template with its placeholders filled.
fill() {
	local template=$1 out=$2 port=$3
	shift 3
	sed -e "s|@WORK@|$SW|g" -e "s|@PORT@|$port|g" -e "s|@ORIGIN_PORT@|$ORIGIN_PORT|g" \
		-e "s|@WORKERS@|$WORKERS|g" -e "s|@CACHE_MB@|$CACHE_MB|g" "$@" "$BENCH_DIR/conf/$template" >"$out"
}

# status_of URL [CURL ARGS...]: "CODE CACHE-STATUS" of a GET.
status_of() {
	local url=$1 hdr code cs
	shift
	hdr=$(curl -s -o /dev/null -D - --max-time 10 "$@" "$url") || hdr=""
	code=$(sed -n '1s/^HTTP[^ ]* \([0-9]*\).*/\1/p' <<<"$hdr")
	cs=$(sed -n 's/^[Cc]ache-[Ss]tatus: *//p' <<<"$hdr" | tr -d '\r')
	printf '%s %s\n' "${code:-000}" "$cs"
}

# warm PEER PORT: fetch the object until the peer serves it as a hit with the benchmark's
# headers; fails (after noting why) otherwise.
warm() {
	local peer=$1 url="http://127.0.0.1:$2$HIT_PATH" i out=""
	for i in 1 2 3 4 5; do
		out=$(status_of "$url" "${HEADERS[@]}")
		if [[ ${out%% *} == 200 && ${out,,} == *hit* ]]; then
			return 0
		fi
		sleep 0.2
	done
	fail "$peer" "$HIT_PATH with the benchmark's headers is not a cache hit: $out"
	return 1
}

# expect PEER WHAT WANT-CODE WANT-DETAIL URL [CURL ARGS...]: one request must get WANT-CODE
# with WANT-DETAIL (a substring, may be empty) in Cache-Status.
expect() {
	local peer=$1 what=$2 code=$3 detail=$4 url=$5 out
	shift 5
	out=$(status_of "$url" "$@")
	if [[ ${out%% *} != "$code" || ${out#* } != *"$detail"* ]]; then
		fail "$peer" "$what: got \"$out\", want $code${detail:+ with \"$detail\"}"
		return 1
	fi
	log "$peer: $what: $out"
}

# bench VARIANT ROUND PORT: run wrk on the hit and record its figures under VARIANT.rROUND.
bench() {
	local v=$1 rnd=$2 port=$3 out line before after kv k v2
	out=$SW/wrk-$v-r$rnd.txt
	before=$(origin_count "$HIT_PATH")
	log "${LABEL[$v]}: round $rnd: wrk -t$THREADS -c$CONNS -d$DURATION --latency"
	if ! wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${HEADERS[@]}" -s "$BENCH_DIR/wrk/report.lua" \
		"http://127.0.0.1:$port$HIT_PATH" >"$out" 2>&1; then
		fail "$v" "wrk failed (see $out)"
		return 1
	fi
	after=$(origin_count "$HIT_PATH")
	line=$(grep '^RESULT ' "$out" || true)
	if [[ -z $line ]]; then
		fail "$v" "wrk printed no result (see $out)"
		return 1
	fi
	# RESULT requests=N duration_us=N bytes=N errors=N non2xx=N p50_us=N p99_us=N
	local requests=0 duration_us=1 errors=0 non2xx=0 p99_us=0 key=$v.r$rnd
	# shellcheck disable=SC2086 # splitting the RESULT line into words is intended
	for kv in ${line#RESULT }; do
		k=${kv%%=*} v2=${kv#*=}
		case $k in
		requests) requests=$v2 ;; duration_us) duration_us=$v2 ;; errors) errors=$v2 ;;
		non2xx) non2xx=$v2 ;; p99_us) p99_us=$v2 ;;
		esac
	done
	R[$key.rps]=$(awk -v n="$requests" -v d="$duration_us" 'BEGIN { printf "%.0f", n / (d / 1e6) }')
	R[$key.p99]=$(awk -v u="$p99_us" 'BEGIN { printf "%.2f", u / 1000 }')
	R[$key.requests]=$requests
	R[$key.errors]=$errors
	R[$key.non2xx]=$non2xx
	R[$key.origin]=$((after - before))
	((errors == 0)) || fail "$v" "round $rnd: $errors wrk errors, $non2xx of them HTTP >= 400 (a 429 or 403 would be one)"
	((after - before <= 2)) || fail "$v" "round $rnd: $((after - before)) requests reached the origin: not cache hits"
	log "${LABEL[$v]}: round $rnd: ${R[$key.rps]} req/s, p99 ${R[$key.p99]} ms, non-2xx $non2xx, origin requests $((after - before))"
}

# --- rhizome node ------------------------------------------------------------------

# stage_counts: the node's stage driver counters, one "STAGE RUNS BLOCKS FAILURES" line per
# stage (failures: errors + timeouts + panics + bypasses).
stage_counts() {
	"$WORK/rhizome" status --admin "127.0.0.1:$NODE_ADMIN_PORT" --data-dir "$SW/node" 2>/dev/null |
		awk '$1 ~ /^(ratelimit|waf|bots)$/ && NF == 8 && $2 ~ /^[0-9]+$/ { print $1, $2, $3, $4 + $5 + $6 + $7 }'
}

# stages_of VARIANT: the stages a variant turns on.
stages_of() {
	case $1 in
	off) echo "" ;;
	all) echo "ratelimit waf bots" ;;
	waf) echo "waf" ;;
	rlbots) echo "ratelimit bots" ;;
	esac
}

# bundle_source VARIANT SERIAL: the bundle for a variant.
bundle_source() {
	local stages s
	stages=" $(stages_of "$1") "
	cat <<EOF
serial: $2
sites:
  - name: bench
    hosts: ["*"]
    origins: [{url: "http://127.0.0.1:$ORIGIN_PORT"}]
EOF
	if [[ $stages == *" ratelimit "* ]]; then
		# 1,000,000 a second per client address (the maximum): every request is counted,
		# none is refused at the ~100k req/s this machine can send.
		cat <<EOF
    rate_limits:
      - {name: per-ip, key: ip, limit: 1000000, period: 1s, burst: 1000000}
EOF
	fi
	if [[ $stages == *" waf "* ]]; then
		echo "    waf: {}"
	fi
	if [[ $stages == *" bots "* ]]; then
		cat <<EOF
    bots:
      rules:
        - {category: ai-training, action: block}
        - {category: automated, action: block}
EOF
	fi
	if [[ $STAGE_BUDGET != default && $stages != "  " ]]; then
		# Only when asked: the stages run inline, so a check past its budget is counted
		# as slow and its verdict stands either way.
		echo "    stage_modes:"
		for s in $stages; do
			echo "      - {stage: $s, budget: $STAGE_BUDGET}"
		done
	fi
}

# push_variant VARIANT: sign and push the variant's bundle with the next serial.
push_variant() {
	local v=$1 src out
	SERIAL=$((SERIAL + 1))
	src=$SW/bundle-$SERIAL-$v.yaml
	bundle_source "$v" "$SERIAL" >"$src"
	if ! "$WORK/rhizome" bundle sign "$src" --key "$SW/operator.key" >"$SW/sign-$SERIAL.log" 2>&1; then
		fail "$v" "bundle sign failed: $(tr '\n' ' ' <"$SW/sign-$SERIAL.log")"
		return 1
	fi
	if ! out=$("$WORK/rhizome" push --admin "127.0.0.1:$NODE_ADMIN_PORT" --data-dir "$SW/node" "${src%.yaml}.bundle" 2>&1); then
		fail "$v" "push of serial $SERIAL refused: $out"
		return 1
	fi
	log "${LABEL[$v]}: pushed: $out"
}

start_node() {
	[[ -x $WORK/rhizome ]] || { note rhizome "not built: $(tail -n 3 "$WORK/build-rhizome.log" | tr '\n' ' ')"; return 1; }
	port_free "$NODE_PORT" || { note rhizome "port $NODE_PORT is already in use; set NODE_PORT"; return 1; }
	port_free "$NODE_ADMIN_PORT" || { note rhizome "port $NODE_ADMIN_PORT is already in use; set NODE_ADMIN_PORT"; return 1; }
	"$WORK/rhizome" keygen --out "$SW/operator" >"$SW/keygen.log" 2>&1 || { note rhizome "keygen failed"; return 1; }
	fill security-node.yaml "$SW/conf/node.yaml" "$NODE_PORT" -e "s|@ADMIN_PORT@|$NODE_ADMIN_PORT|g" \
		-e "s|@OPERATOR_KEY@|$(cat "$SW/operator.pub")|g"
	start_bg "$SW/node.log" "$WORK/rhizome" node --config "$SW/conf/node.yaml" --log-level error --log-format text
	NODE_PID=$LAST_PID
	if ! wait_listen "$NODE_ADMIN_PORT" "$NODE_PID" || ! wait_listen "$NODE_PORT" "$NODE_PID"; then
		note rhizome "the node did not start (see $SW/node.log)"
		tail -n 20 "$SW/node.log" >&2 || true
		return 1
	fi
}

# check_node_variant VARIANT: the stages of the variant act on real requests.
check_node_variant() {
	local v=$1 stages base="http://127.0.0.1:$NODE_PORT" ok=0
	stages=" $(stages_of "$v") "
	if [[ $stages == *" waf "* ]]; then
		expect "$v" "SQL injection $ATTACK" 403 "waf:" "$base$HIT_PATH$ATTACK" "${HEADERS[@]}" || ok=1
	else
		expect "$v" "SQL injection $ATTACK (no WAF)" 200 "" "$base$HIT_PATH$ATTACK" "${HEADERS[@]}" || ok=1
	fi
	if [[ $stages == *" bots "* ]]; then
		expect "$v" "curl's default user agent" 403 "bots:automated" "$base$HIT_PATH" -H "Host: $HOST_NAME" || ok=1
		expect "$v" "GPTBot" 403 "bots:GPTBot" "$base$HIT_PATH" -H "Host: $HOST_NAME" \
			-A "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.1; +https://openai.com/gptbot)" || ok=1
	fi
	return $ok
}

# run_node_variant VARIANT ROUND
run_node_variant() {
	local v=$1 rnd=$2 before after s line runs blocks fails b_runs b_blocks b_fails active
	push_variant "$v" || return 0
	warm "$v" "$NODE_PORT" || return 0
	check_node_variant "$v" || true
	before=$(stage_counts)
	bench "$v" "$rnd" "$NODE_PORT" || return 0
	after=$(stage_counts)
	for s in $(stages_of "$v"); do
		line=$(grep "^$s " <<<"$before" || true)
		read -r _ b_runs b_blocks b_fails <<<"${line:-x 0 0 0}"
		line=$(grep "^$s " <<<"$after" || true)
		if [[ -z $line ]]; then
			fail "$v" "the node's status shows no counters for stage $s"
			continue
		fi
		read -r _ runs blocks fails <<<"$line"
		R[$v.r$rnd.$s.runs]=$((runs - b_runs))
		R[$v.r$rnd.$s.fails]=$((fails - b_fails))
		if ((runs - b_runs < ${R[$v.r$rnd.requests]})); then
			fail "$v" "round $rnd: stage $s ran $((runs - b_runs)) times for ${R[$v.r$rnd.requests]} requests"
		fi
		if ((blocks - b_blocks != 0)); then
			fail "$v" "round $rnd: stage $s blocked $((blocks - b_blocks)) of the benchmark's requests"
		fi
		# Failures (timeouts, errors) are bypassed, fail open: those requests were not
		# checked. The node itself calls more than 1% unhealthy.
		if ((fails - b_fails > 0)); then
			if ((100 * (fails - b_fails) > ${R[$v.r$rnd.requests]})); then
				fail "$v" "round $rnd: stage $s failed (timed out or erred: bypassed) on $((fails - b_fails)) of ${R[$v.r$rnd.requests]} requests, over 1%"
			else
				note "$v" "round $rnd: stage $s failed (timed out or erred: bypassed) on $((fails - b_fails)) of ${R[$v.r$rnd.requests]} requests"
			fi
		fi
	done
	# A node that judges itself unhealthy on a bundle goes back to the previous one: then
	# the figures above are not those of this variant.
	active=$("$WORK/rhizome" status --admin "127.0.0.1:$NODE_ADMIN_PORT" --data-dir "$SW/node" 2>/dev/null |
		sed -n 's/^active bundle: serial \([0-9]*\).*/\1/p')
	if [[ $active != "$SERIAL" ]]; then
		fail "$v" "round $rnd: after the run the node runs serial ${active:-?}, not the $SERIAL pushed (rolled back as unhealthy? see $SW/node.log)"
	fi
}

# --- nginx + ModSecurity ----------------------------------------------------------

# ensure_modsec: the connector and the CRS are installed, or NGINX_UNAVAILABLE says why.
ensure_modsec() {
	if ! command -v nginx >/dev/null; then
		NGINX_UNAVAILABLE="nginx is not installed (apt-get install -y nginx)"
		return 1
	fi
	if [[ -f $MODSEC_MODULE && -d $CRS_RULES && -f $CRS_SETUP ]]; then
		return 0
	fi
	if [[ $EUID -ne 0 ]] || ! command -v apt-get >/dev/null; then
		NGINX_UNAVAILABLE="ModSecurity is not installed and this is not root with apt-get (apt-get install -y ${MODSEC_PACKAGES[*]})"
		return 1
	fi
	log "nginx: installing ${MODSEC_PACKAGES[*]} with apt-get"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "${MODSEC_PACKAGES[@]}" >"$SW/apt-get.log" 2>&1; then
		DEBIAN_FRONTEND=noninteractive apt-get update >>"$SW/apt-get.log" 2>&1 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y "${MODSEC_PACKAGES[@]}" >>"$SW/apt-get.log" 2>&1 || true
	fi
	if [[ -f $MODSEC_MODULE && -d $CRS_RULES && -f $CRS_SETUP ]]; then
		note nginx "installed ${MODSEC_PACKAGES[*]} with apt-get (this also enables the module for the system's nginx, /etc/nginx/modules-enabled)"
		return 0
	fi
	NGINX_UNAVAILABLE="apt-get install ${MODSEC_PACKAGES[*]} failed (see $SW/apt-get.log)"
	return 1
}

# start_nginx on|off: start nginx with ModSecurity on or off; sets NGINX_PID.
start_nginx() {
	local mode=$1
	port_free "$NGINX_PORT" || { fail nginx "port $NGINX_PORT is already in use; set NGINX_PORT"; return 1; }
	rm -rf "$SW/nginx"
	mkdir -p "$SW/nginx/modsec"
	fill nginx-modsec.conf "$SW/conf/nginx-modsec.conf" "$NGINX_PORT" -e "s|@MODSEC@|$mode|g" \
		-e "s|@MODSEC_MODULE@|$MODSEC_MODULE|g"
	fill nginx-modsec-rules.conf "$SW/conf/nginx-modsec-rules.conf" "$NGINX_PORT" -e "s|@CRS_RULES@|$CRS_RULES|g" \
		-e "s|@CRS_SETUP@|$CRS_SETUP|g" -e "s|@UNICODE_MAP@|$UNICODE_MAP|g"
	start_bg "$SW/nginx-stderr.log" nginx -p "$SW/nginx/" -e "$SW/nginx/error.log" -c "$SW/conf/nginx-modsec.conf"
	NGINX_PID=$LAST_PID
	if ! wait_listen "$NGINX_PORT" "$NGINX_PID"; then
		fail nginx "nginx (modsecurity $mode) did not start: $(tail -n 5 "$SW/nginx-stderr.log" "$SW/nginx/error.log" 2>/dev/null | tr '\n' ' ')"
		stop_one "$NGINX_PID"
		return 1
	fi
}

# run_nginx_variant VARIANT ROUND
run_nginx_variant() {
	local v=$1 rnd=$2 mode=off base="http://127.0.0.1:$NGINX_PORT" rules lines_before lines_after
	[[ $v == modsec-on ]] && mode=on
	start_nginx "$mode" || return 0
	# "ModSecurity-nginx v1.0.3 (rules loaded inline/local/remote: 0/767/0)"
	rules=$(sed -n 's|.*ModSecurity-nginx \(v[0-9.]*\) (rules loaded inline/local/remote: \([0-9]*\)/\([0-9]*\)/\([0-9]*\)).*|\1 \2 \3 \4|p' "$SW/nginx/error.log" | tail -n 1)
	if [[ -n $rules ]]; then
		local connector loaded
		read -r connector _ loaded _ <<<"$rules"
		R[nginx.connector]=$connector R[nginx.rules]=$loaded
	fi
	if [[ $mode == on ]] && ((${R[nginx.rules]:-0} < 100)); then
		fail "$v" "the ModSecurity connector reports ${R[nginx.rules]:-no} rules loaded (see $SW/nginx/error.log)"
		stop_one "$NGINX_PID"
		return 0
	fi
	if warm "$v" "$NGINX_PORT"; then
		if [[ $mode == on ]]; then
			expect "$v" "SQL injection $ATTACK" 403 "" "$base$HIT_PATH$ATTACK" "${HEADERS[@]}" || true
		else
			expect "$v" "SQL injection $ATTACK (modsecurity off)" 200 "" "$base$HIT_PATH$ATTACK" "${HEADERS[@]}" || true
		fi
		lines_before=$(wc -l <"$SW/nginx/error.log")
		if bench "$v" "$rnd" "$NGINX_PORT"; then
			lines_after=$(wc -l <"$SW/nginx/error.log")
			if ((lines_after > lines_before + 2)); then
				note "$v" "round $rnd: nginx's error log grew by $((lines_after - lines_before)) lines during the run (a rule logging on clean requests?)"
			fi
		fi
	fi
	stop_one "$NGINX_PID"
}

# --- Go benchmarks ---------------------------------------------------------------------

go_benches() {
	local out=$SW/go-bench-waf.txt name ns alloc allocs line
	log "go test -run xxx -bench 'CleanGET|CleanPOSTForm|AttackGET' -benchtime $BENCHTIME -benchmem ./internal/waf"
	if (cd "$ROOT" && go test -run xxx -bench 'CleanGET|CleanPOSTForm|AttackGET' -benchtime "$BENCHTIME" -benchmem ./internal/waf) >"$out" 2>&1; then
		# BenchmarkCleanGET-2   47871   50130 ns/op   28761 B/op   362 allocs/op
		while read -r name _ ns _ alloc _ allocs _; do
			name=${name#Benchmark}
			name=${name%-*}
			R[go.$name.ns]=$ns R[go.$name.bytes]=$alloc R[go.$name.allocs]=$allocs
		done < <(grep '^Benchmark' "$out")
	else
		note go "the internal/waf benchmarks failed (see $out)"
	fi
	out=$SW/go-bench-ratelimit.txt
	log "go test -run xxx -bench Memory1M -benchtime 1x ./internal/ratelimit"
	if (cd "$ROOT" && go test -run xxx -bench Memory1M -benchtime 1x ./internal/ratelimit) >"$out" 2>&1; then
		line=$(grep '^BenchmarkMemory1M' "$out" | tail -n 1)
		# BenchmarkMemory1M-2   1   1234 ns/op   110.9 MiB   116.3 B/key   996707 keys
		R[go.mem.mib]=$(awk '{ for (i = 2; i <= NF; i++) if ($i == "MiB") print $(i - 1) }' <<<"$line")
		R[go.mem.bkey]=$(awk '{ for (i = 2; i <= NF; i++) if ($i == "B/key") print $(i - 1) }' <<<"$line")
		R[go.mem.keys]=$(awk '{ for (i = 2; i <= NF; i++) if ($i == "keys") print $(i - 1) }' <<<"$line")
	else
		note go "the internal/ratelimit benchmark failed (see $out)"
	fi
}

# --- report ----------------------------------------------------------------------------

# aggregate VARIANT: means over the rounds that produced figures.
aggregate() {
	local v=$1 rnd n=0 rps=0 p99=0 list=""
	for ((rnd = 1; rnd <= ROUNDS; rnd++)); do
		[[ -n ${R[$v.r$rnd.rps]:-} ]] || continue
		n=$((n + 1))
		rps=$(awk -v a="$rps" -v b="${R[$v.r$rnd.rps]}" 'BEGIN { print a + b }')
		p99=$(awk -v a="$p99" -v b="${R[$v.r$rnd.p99]}" 'BEGIN { print a + b }')
		list+="${list:+, }${R[$v.r$rnd.rps]}"
	done
	((n > 0)) || return 0
	R[$v.rps]=$(awk -v a="$rps" -v n="$n" 'BEGIN { printf "%.0f", a / n }')
	R[$v.p99]=$(awk -v a="$p99" -v n="$n" 'BEGIN { printf "%.2f", a / n }')
	R[$v.rounds]=$list
}

get() { printf '%s' "${R[$1]:--}"; }

# cost ON OFF: machine time added per request, in µs of all cores together:
# (1/ON - 1/OFF) * nproc. Approximate: wrk and the origin share the cores.
cost() {
	if [[ $1 == - || $2 == - ]]; then
		printf '%s' -
		return
	fi
	awk -v a="$1" -v b="$2" -v c="$(nproc)" 'BEGIN { if (a == 0 || b == 0) print "-"; else printf "%.1f", (1e6 / a - 1e6 / b) * c }'
}

# added VARIANT BASELINE: cost of VARIANT over BASELINE, "-" for the baseline itself.
added() {
	if [[ $1 == "$2" ]]; then
		printf '%s' -
	else
		cost "$(get "$1.rps")" "$(get "$2.rps")"
	fi
}

# thousands N: N with thousands separators (integers only; anything else as is).
thousands() {
	if [[ $1 =~ ^[0-9]+$ ]]; then
		printf '%s' "$1" | rev | sed 's/\([0-9]\{3\}\)/\1,/g; s/,$//' | rev
	else
		printf '%s' "$1"
	fi
}

rhizome_revision() {
	local rev
	rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) || rev="no commit"
	if [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null) ]]; then
		rev="$rev, uncommitted changes"
	fi
	printf '%s\n' "$rev"
}

pkg_version() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || printf 'not installed'; }

report() {
	local v cells
	echo "# rhizome security stages: cost on cache hits, and the WAF against nginx + ModSecurity"
	echo
	echo "Generated by \`bench/security.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
	echo
	echo "Command: \`$COMMAND\`"
	echo
	echo "## Machine"
	echo
	echo "- nproc: $(nproc); kernel: $(uname -r); CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | sed -n 1p)"
	echo "- memory: $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "- load average (1, 5, 15 min) when the run started: $LOAD_START; when the measurements ended: $LOAD_END"
	echo "  (above 0 before the start: something else was using the cores, and the figures are noisier)"
	echo "- wrk: $(first_line wrk -v)"
	echo "- nginx: $(first_line nginx -v); ModSecurity-nginx connector ${R[nginx.connector]:-?} (libnginx-mod-http-modsecurity $(pkg_version libnginx-mod-http-modsecurity)), libmodsecurity3 $(pkg_version libmodsecurity3)"
	echo "- nginx's CRS: modsecurity-crs $(pkg_version modsecurity-crs) (OWASP CRS 3.3.x), ${R[nginx.rules]:-?} rules loaded (the connector's count)"
	echo "- rhizome: $(rhizome_revision) ($(first_line go version)); WAF: Coraza $(awk '$1 == "github.com/corazawaf/coraza/v3" { print $2 }' "$ROOT/go.mod") with OWASP CRS $(awk '$1 == "github.com/corazawaf/coraza-coreruleset/v4" { print $2 }' "$ROOT/go.mod") embedded"
	echo
	echo "## Settings"
	echo
	echo "- Load: \`wrk -t$THREADS -c$CONNS -d$DURATION --latency\` on $HIT_PATH (1 KiB, cacheable), warmed and checked to be a hit"
	echo "  first, with headers: Host: $HOST_NAME, a Chrome User-Agent, Accept, Accept-Language, Accept-Encoding."
	echo "  $ROUNDS round(s); figures are means over the rounds (each round's req/s in the last column)."
	echo "- wrk, the proxy and the origin (bench/origin) share the $(nproc) cores; nothing is pinned. Compare ratios."
	echo "- rhizome: one \`rhizome node\`, standalone (bench/conf/security-node.yaml: ${CACHE_MB} MiB memory cache, 1 GiB"
	echo "  disk tier, access log off); each variant is a signed bundle pushed with a higher serial. Stages:"
	echo "  rate limit \`{key: ip, limit: 1000000, period: 1s, burst: 1000000}\` (counts every request, blocks none),"
	echo "  \`waf: {}\` (CRS 4, paranoia 1, threshold 5, blocking), \`bots:\` blocking ai-training and automated."
	if [[ $STAGE_BUDGET != default ]]; then
		echo "  Each stage's time budget is set to $STAGE_BUDGET (\`stage_modes\`)."
	else
		echo "  rhizome's default budgets (WAF 500 ms, bots 1 s, rate limit 50 ms). At this load checks queue for the"
		echo "  CPU and many finish past their budget: they count as slow, their verdict stands, nothing is bypassed."
	fi
	echo "- nginx: bench/conf/nginx-modsec.conf (run.sh's nginx peer: $WORKERS workers, ${CACHE_MB} MiB file cache, logging off)"
	echo "  with the ModSecurity v3 module loaded; \`modsecurity off\` or \`on\` with bench/conf/nginx-modsec-rules.conf:"
	echo "  SecRuleEngine On, CRS 3.3 paranoia 1, threshold 5, request rule files only, no response body access, no audit log."
	echo
	echo "## Results"
	echo
	echo "| variant | req/s | p99 ms | / its baseline | added machine µs per request | req/s per round |"
	echo "|---|---:|---:|---:|---:|---|"
	for v in "${RHIZOME_VARIANTS[@]}"; do
		echo "| ${LABEL[$v]} | $(thousands "$(get "$v.rps")") | $(get "$v.p99") | $(ratio "$(get "$v.rps")" "$(get off.rps)") | $(added "$v" off) | $(get "$v.rounds") |"
	done
	for v in "${NGINX_VARIANTS[@]}"; do
		echo "| ${LABEL[$v]} | $(thousands "$(get "$v.rps")") | $(get "$v.p99") | $(ratio "$(get "$v.rps")" "$(get modsec-off.rps)") | $(added "$v" modsec-off) | $(get "$v.rounds") |"
	done
	echo
	echo "\"/ its baseline\": req/s over the same proxy's req/s without the stages (rhizome: no stages; nginx:"
	echo "modsecurity off). \"Added machine µs per request\": (1/req/s with - 1/req/s without) x $(nproc) cores, the"
	echo "machine time the stages add to a request while every core is busy (rough: wrk's share of the cores moves too)."
	echo
	echo "## Ratios"
	echo
	echo "| ratio | value |"
	echo "|---|---:|"
	echo "| rhizome all stages on / off (req/s) | $(ratio "$(get all.rps)" "$(get off.rps)") |"
	echo "| rhizome WAF only / off | $(ratio "$(get waf.rps)" "$(get off.rps)") |"
	echo "| rhizome rate limit + bots / off | $(ratio "$(get rlbots.rps)" "$(get off.rps)") |"
	echo "| WAF's share of the added cost of all stages | $(ratio "$(cost "$(get waf.rps)" "$(get off.rps)")" "$(cost "$(get all.rps)" "$(get off.rps)")") |"
	echo "| nginx ModSecurity on / off | $(ratio "$(get modsec-on.rps)" "$(get modsec-off.rps)") |"
	echo "| **rhizome with WAF only / nginx with ModSecurity** | $(ratio "$(get waf.rps)" "$(get modsec-on.rps)") |"
	echo "| rhizome with all stages / nginx with ModSecurity | $(ratio "$(get all.rps)" "$(get modsec-on.rps)") |"
	echo "| rhizome / nginx, both without a WAF (context) | $(ratio "$(get off.rps)" "$(get modsec-off.rps)") |"
	echo
	echo "## WAF and rate limiter, from Go's benchmarks"
	echo
	echo "- WAF CPU per request, one core (\`go test -run xxx -bench 'CleanGET|CleanPOSTForm|AttackGET' -benchtime $BENCHTIME -benchmem ./internal/waf\`):"
	echo "  clean GET $(thousands "$(get go.CleanGET.ns)") ns/op ($(get go.CleanGET.allocs) allocs), clean POST form $(thousands "$(get go.CleanPOSTForm.ns)") ns/op ($(get go.CleanPOSTForm.allocs) allocs),"
	echo "  SQL-injection GET (blocked) $(thousands "$(get go.AttackGET.ns)") ns/op ($(get go.AttackGET.allocs) allocs)."
	echo "- Rate limiter at 1M client addresses (\`go test -run xxx -bench Memory1M -benchtime 1x ./internal/ratelimit\`):"
	echo "  $(get go.mem.mib) MiB of heap, $(get go.mem.bkey) bytes per key, $(thousands "$(get go.mem.keys)") keys kept."
	echo
	echo "## Checks"
	echo
	echo "Per run: requests, wrk errors (HTTP >= 400 included: a 429 or 403 would count), requests that reached the"
	echo "origin (hits: about 0), and for rhizome the runs of each stage counted by the node (at least the requests;"
	echo "blocks must be 0; failures, i.e. timeouts bypassed fail-open, in brackets, at most 1%). Before each run: the SQL injection \`$ATTACK\` got 403 where a WAF is on"
	echo "and 200 where it is off; curl's default user agent and GPTBot got 403 where the bot policy is on."
	echo
	echo "| variant | round | requests | errors | origin | stage runs |"
	echo "|---|---:|---:|---:|---:|---|"
	local rnd s runs
	for v in "${RHIZOME_VARIANTS[@]}" "${NGINX_VARIANTS[@]}"; do
		for ((rnd = 1; rnd <= ROUNDS; rnd++)); do
			cells=""
			for s in ratelimit waf bots; do
				runs=${R[$v.r$rnd.$s.runs]:-}
				[[ -n $runs ]] && cells+="${cells:+, }$s $(thousands "$runs") ($(get "$v.r$rnd.$s.fails") failed)"
			done
			echo "| ${LABEL[$v]} | $rnd | $(thousands "$(get "$v.r$rnd.requests")") | $(get "$v.r$rnd.errors") | $(get "$v.r$rnd.origin") | ${cells:--} |"
		done
	done
	echo
	if ((${#FAILED[@]})); then
		echo "**${#FAILED[@]} check(s) failed**: see the notes."
	else
		echo "All checks passed."
	fi
	print_notes rhizome off all waf rlbots nginx modsec-off modsec-on go
}

on_exit() {
	cleanup
}

main() {
	command -v wrk >/dev/null || die "wrk is not installed (apt-get install -y wrk)"
	command -v curl >/dev/null || die "curl is not installed"
	if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
		PATH=$PATH:/usr/local/go/bin
	fi
	command -v go >/dev/null || die "go is not on PATH (sudo may reset PATH: sudo env PATH=\"\$PATH\" bash bench/security.sh)"
	[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not '$ROUNDS'"
	COMMAND="DURATION=$DURATION CONNS=$CONNS THREADS=$THREADS ROUNDS=$ROUNDS STAGE_BUDGET=$STAGE_BUDGET bash bench/security.sh"
	[[ -n ${SUDO_USER:-} ]] && COMMAND="sudo $COMMAND"
	LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

	trap on_exit EXIT
	trap 'exit 130' INT TERM
	rm -rf "$SW"
	mkdir -p "$SW/conf" "$BENCH_DIR/results"
	raise_nofile
	port_free "$ORIGIN_PORT" || die "port $ORIGIN_PORT (origin) is already in use; set ORIGIN_PORT"

	log "building the origin and rhizome"
	build_origin || die "could not build bench/origin"
	build_rhizome || log "rhizome does not build: $(tail -n 5 "$WORK/build-rhizome.log" | tr '\n' ' ')"
	ensure_modsec || { log "nginx + ModSecurity: unavailable: $NGINX_UNAVAILABLE"; note nginx "unavailable: $NGINX_UNAVAILABLE"; }
	start_origin

	local rnd v node_ok=0
	start_node && node_ok=1
	for ((rnd = 1; rnd <= ROUNDS; rnd++)); do
		if ((node_ok)); then
			for v in "${RHIZOME_VARIANTS[@]}"; do
				run_node_variant "$v" "$rnd"
			done
		fi
		if [[ -z $NGINX_UNAVAILABLE ]]; then
			for v in "${NGINX_VARIANTS[@]}"; do
				run_nginx_variant "$v" "$rnd"
			done
		fi
	done
	LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
	cleanup # nothing else runs while Go benchmarks run

	if ((GO_BENCH)); then
		go_benches
	fi
	for v in "${RHIZOME_VARIANTS[@]}" "${NGINX_VARIANTS[@]}"; do
		aggregate "$v"
	done

	report >"$RESULTS"
	echo
	cat "$RESULTS"
	log "written to $RESULTS; wrk output, bundles, configs and logs in $SW"
	if ((${#FAILED[@]})); then
		die "${#FAILED[@]} check(s) failed: ${FAILED[*]}"
	fi
}

main "$@"
