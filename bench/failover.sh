#!/usr/bin/env bash
# failover.sh: kill an origin under steady load, with rhizome, nginx and
# HAProxy each load-balancing across two origins, and measure what clients
# see and how long the proxy keeps sending to the dead origin.
#
#   sudo bash bench/failover.sh
#   RATE=500 DURATION=30s PEERS="nginx rhizome" sudo -E bash bench/failover.sh
#
# For each peer in turn, and for each scenario, it starts origin A
# (127.0.0.1:18001, X-Origin: a) and origin B (127.0.0.1:18002, X-Origin: b)
# (bench/origin), starts the peer in front of both, and runs bench/loadgen:
# open-loop RATE req/s for DURATION, every request a unique /pass/... URL
# that no proxy caches. The event hits one origin, the target: with
# TARGET=busiest (the default) the one that has answered more requests just
# before the event (a round-robin peer splits evenly, so that is A or B at
# random; a peer that favours one origin, as rhizome's least-loaded choice
# does at low load, gets its loaded origin killed, not an idle one); TARGET=a
# or b fixes it. Scenarios:
#   kill       at KILL_AT (5 s) the target is killed with SIGKILL. Measured:
#              client errors (loadgen), and every TCP SYN sent to its port
#              after the kill (nftables counters on the output hook, read
#              every 100 ms): total, time to stop, and the rate of SYNs that
#              go on after that (nginx's retry after fail_timeout, health
#              checks).
#   blackhole  at STOP_AT (5 s) the target is frozen with SIGSTOP (the kernel
#              still accepts connections; nothing answers) and resumed with
#              SIGCONT at CONT_AT (15 s). Measured: client errors, answers
#              slower than 1 s, p99 latency; the proxy's response timeout and
#              its health checks decide.
# Then it prints the tables and writes bench/results/failover.md. A peer that
# is missing or fails to start is noted and skipped. Everything it starts is
# stopped on exit, SIGSTOPped origins resumed first, and the nftables table is
# deleted. Temporary files: /tmp/rhizome-bench/failover.
#
# Environment: RATE (300), DURATION (20s, whole seconds), PEERS ("nginx
# haproxy rhizome"; "rhizome-fbt2s" = rhizome with --first-byte-timeout 2s,
# added to the black-hole scenario by itself when rhizome has that flag),
# SCENARIOS ("kill blackhole"), TARGET (busiest, a or b), KILL_AT (5),
# STOP_AT (5), CONT_AT (15),
# KILL_TIMEOUT (5s) and BLACKHOLE_TIMEOUT (10s) (loadgen's per-request
# timeout), SYN_QUIET (WORKERS + 2: a second with more SYNs than this is
# traffic, not probing), WORKERS (nproc), RHIZOME_ARGS (extra flags for
# rhizome proxy), RHIZOME_BIN, and the ports ORIGIN_A_PORT (18001),
# ORIGIN_B_PORT (18002), NGINX_PORT (18081), HAPROXY_PORT (18083),
# RHIZOME_PORT (18084), RHIZOME_ADMIN_PORT (18094).
set -euo pipefail

RHIZOME_ADMIN_PORT=${RHIZOME_ADMIN_PORT:-18094}
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RATE=${RATE:-300}
DURATION=${DURATION:-20s}
PEERS=${PEERS:-nginx haproxy rhizome}
SCENARIOS=${SCENARIOS:-kill blackhole}
TARGET=${TARGET:-busiest}
KILL_AT=${KILL_AT:-5}
STOP_AT=${STOP_AT:-5}
CONT_AT=${CONT_AT:-15}
KILL_TIMEOUT=${KILL_TIMEOUT:-5s}
BLACKHOLE_TIMEOUT=${BLACKHOLE_TIMEOUT:-10s}
WORKERS=${WORKERS:-$(nproc)}
SYN_QUIET=${SYN_QUIET:-$((WORKERS + 2))}
RHIZOME_ARGS=${RHIZOME_ARGS:-}
ORIGIN_A_PORT=${ORIGIN_A_PORT:-18001}
ORIGIN_B_PORT=${ORIGIN_B_PORT:-18002}
NGINX_PORT=${NGINX_PORT:-18081}
HAPROXY_PORT=${HAPROXY_PORT:-18083}
SAMPLE_INTERVAL=0.1
NFT_TABLE=rhzbench
FW=$WORK/failover
RESULTS=$BENCH_DIR/results/failover.md

declare -A PORT=([nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT [rhizome]=$RHIZOME_PORT [rhizome-fbt2s]=$RHIZOME_PORT)
declare -A R=()     # R[peer.scenario.metric]: measured figures
declare -A NOTES=() # NOTES[peer]: what went wrong or is worth knowing
RUNS=()             # "peer scenario" pairs that produced figures, in order
NFT_READY=0
declare -A OPID=([a]= [b]=)                            # origin PIDs while they run
declare -A OPORT=([a]=$ORIGIN_A_PORT [b]=$ORIGIN_B_PORT) # origin ports
NAP_PID=
RHIZOME_HEALTH=()  # active-check flags, if this rhizome has them
RHIZOME_HAS_FBT=0  # 1 if rhizome has --first-byte-timeout

# seconds DURATION: "20s" or "20" as whole seconds.
seconds() {
	local d=${1%s}
	[[ $d =~ ^[0-9]+$ ]] || die "durations must be whole seconds (20s), not '$1'"
	printf '%s\n' "$d"
}

# fill TEMPLATE OUT PORT: copy a bench/conf template with its placeholders filled.
fill() {
	sed -e "s|@WORK@|$FW|g" -e "s|@PORT@|$3|g" -e "s|@ORIGIN_A_PORT@|$ORIGIN_A_PORT|g" \
		-e "s|@ORIGIN_B_PORT@|$ORIGIN_B_PORT|g" -e "s|@WORKERS@|$WORKERS|g" \
		"$BENCH_DIR/conf/$1" >"$2"
}

# --- nftables: count SYNs to origins A and B -------------------------------

nft_setup() {
	command -v nft >/dev/null || die "nft is not installed (apt-get install -y nftables)"
	nft delete table inet "$NFT_TABLE" 2>/dev/null || true
	nft -f - <<EOF || die "could not create the nftables table inet $NFT_TABLE"
table inet $NFT_TABLE {
	counter syn_a { }
	counter syn_b { }
	chain out {
		type filter hook output priority 0; policy accept;
		ip daddr 127.0.0.1 tcp dport $ORIGIN_A_PORT tcp flags & (syn | ack) == syn counter name syn_a
		ip daddr 127.0.0.1 tcp dport $ORIGIN_B_PORT tcp flags & (syn | ack) == syn counter name syn_b
	}
}
EOF
	NFT_READY=1
}

nft_teardown() {
	if ((NFT_READY)); then
		nft delete table inet "$NFT_TABLE" 2>/dev/null || true
		NFT_READY=0
	fi
}

# syn_counts: SYNs sent to origins A and B since the table was made, as "A B".
syn_counts() {
	nft list counters table inet "$NFT_TABLE" 2>/dev/null |
		awk '/counter syn_a/ { c = "a" } /counter syn_b/ { c = "b" } /packets/ { n[c] = $2 } END { printf "%s %s", n["a"], n["b"] }'
}

# sampler FILE: every SAMPLE_INTERVAL, append "unix_ns syns_a syns_b" to FILE.
sampler() {
	local file=$1
	while :; do
		printf '%s %s\n' "$(date +%s%N)" "$(syn_counts)"
		sleep "$SAMPLE_INTERVAL"
	done >"$file"
}

# --- processes -------------------------------------------------------------

on_exit() {
	local rc=$?
	((rc == 0)) || log "stopping everything (exit status $rc)"
	if [[ -n $NAP_PID ]]; then
		kill "$NAP_PID" 2>/dev/null || true
	fi
	# A SIGSTOPped origin would ignore cleanup's TERM: resume it first.
	local o
	for o in a b; do
		if [[ -n ${OPID[$o]} ]]; then
			kill -CONT "${OPID[$o]}" 2>/dev/null || true
		fi
	done
	cleanup
	nft_teardown
}

# start_origins: start origins A and B; sets OPID.
start_origins() {
	local name port
	for name in a b; do
		port=${OPORT[$name]}
		port_free "$port" || die "port $port (origin $name) is already in use; set ORIGIN_${name^^}_PORT"
		start_bg "$FW/origin-$name.log" "$WORK/origin" --listen "127.0.0.1:$port" --name "$name"
		wait_listen "$port" "$LAST_PID" || die "origin $name did not start: $(tail -n 5 "$FW/origin-$name.log")"
		OPID[$name]=$LAST_PID
	done
}

# origin_requests NAME: how many requests origin NAME has answered so far.
origin_requests() {
	curl -fsS --max-time 2 "http://127.0.0.1:${OPORT[$1]}/count?path=/" 2>/dev/null |
		sed -n 's/.*"total":\([0-9]*\).*/\1/p'
}

# pick_target: the origin the event hits: TARGET, or with TARGET=busiest the
# one that has answered more requests so far (A on a tie).
pick_target() {
	local a b
	case $TARGET in
	a | b) printf '%s\n' "$TARGET" ;;
	*)
		a=$(origin_requests a) b=$(origin_requests b)
		if ((${b:-0} > ${a:-0})); then echo b; else echo a; fi
		;;
	esac
}

stop_origins() {
	stop_one "${OPID[a]}"
	stop_one "${OPID[b]}"
	OPID[a]= OPID[b]=
NAP_PID=
}

start_nginx() {
	command -v nginx >/dev/null || { note nginx "not installed (apt-get install -y nginx)"; return 1; }
	mkdir -p "$FW/nginx"
	fill nginx-failover.conf "$FW/conf/nginx.conf" "${PORT[nginx]}"
	start_bg "$FW/nginx/stderr.log" nginx -p "$FW/nginx/" -e "$FW/nginx/error.log" -c "$FW/conf/nginx.conf"
	PEER_PID=$LAST_PID
	started nginx "$PEER_PID" "$FW/nginx/stderr.log"
}

start_haproxy() {
	command -v haproxy >/dev/null || { note haproxy "not installed (apt-get install -y haproxy)"; return 1; }
	mkdir -p "$FW/haproxy"
	fill haproxy-failover.cfg "$FW/conf/haproxy.cfg" "${PORT[haproxy]}"
	start_bg "$FW/haproxy/stderr.log" haproxy -db -f "$FW/conf/haproxy.cfg"
	PEER_PID=$LAST_PID
	started haproxy "$PEER_PID" "$FW/haproxy/stderr.log"
}

# rhizome_flags PEER: the flags rhizome runs with for PEER, one per line.
rhizome_flags() {
	printf '%s\n' --listen "127.0.0.1:$RHIZOME_PORT" \
		--origin "http://127.0.0.1:$ORIGIN_A_PORT" --origin "http://127.0.0.1:$ORIGIN_B_PORT" \
		--admin "127.0.0.1:$RHIZOME_ADMIN_PORT" --access-log=false --log-level error
	if ((${#RHIZOME_HEALTH[@]})); then
		printf '%s\n' "${RHIZOME_HEALTH[@]}"
	fi
	if [[ $1 == rhizome-fbt2s ]]; then
		printf '%s\n' --first-byte-timeout 2s
	fi
	local extra=()
	read -ra extra <<<"$RHIZOME_ARGS"
	if ((${#extra[@]})); then
		printf '%s\n' "${extra[@]}"
	fi
}

start_rhizome_peer() {
	local peer=$1 flags=()
	if [[ ! -x $WORK/rhizome ]]; then
		note "$peer" "not built: $(tail -n 3 "$WORK/build-rhizome.log" 2>/dev/null | tr '\n' ' ')"
		return 1
	fi
	if [[ $peer == rhizome-fbt2s ]] && ((!RHIZOME_HAS_FBT)); then
		note "$peer" "rhizome proxy has no --first-byte-timeout flag; skipped"
		return 1
	fi
	mapfile -t flags < <(rhizome_flags "$peer")
	start_bg "$FW/$peer.log" "$WORK/rhizome" proxy "${flags[@]}"
	PEER_PID=$LAST_PID
	started "$peer" "$PEER_PID" "$FW/$peer.log"
}

start_peer() {
	case $1 in
	nginx | haproxy) "start_$1" ;;
	rhizome | rhizome-fbt2s) start_rhizome_peer "$1" ;;
	esac
}

# probe_rhizome: find out which of the failover flags this rhizome has.
probe_rhizome() {
	local help
	help=$("$WORK/rhizome" proxy --help 2>&1) || true
	if grep -q -- '-health-path' <<<"$help"; then
		RHIZOME_HEALTH=(--health-path /healthz --health-interval 2s --health-fall 3 --health-rise 2)
	else
		note rhizome "rhizome proxy has no --health-path: run without active health checks"
	fi
	if grep -q -- '-first-byte-timeout' <<<"$help"; then
		RHIZOME_HAS_FBT=1
	else
		note rhizome "rhizome proxy has no --first-byte-timeout: its default response timeout applies and the 2 s variant is not run"
	fi
}

# warm PEER: a few requests through PEER must all answer 200; notes which
# origins answered.
warm() {
	local peer=$1 i code hdr seen=""
	for i in 1 2 3 4 5 6; do
		hdr=$(curl -s -o /dev/null -D - --max-time 5 "http://127.0.0.1:${PORT[$peer]}/pass/warm-$RANDOM-$i") || hdr=""
		code=$(sed -n '1s/^HTTP[^ ]* \([0-9]*\).*/\1/p' <<<"$hdr")
		if [[ $code != 200 ]]; then
			note "$peer" "GET /pass/warm answered ${code:-nothing}; skipped"
			return 1
		fi
		seen+=$(sed -n 's/^[Xx]-[Oo]rigin: *\([a-z]*\).*/\1/p' <<<"$hdr")
	done
	if [[ $seen != *a* || $seen != *b* ]]; then
		log "$peer: warm-up requests reached only origin(s) '$seen' (load balancing may not be round-robin)"
	fi
}

# --- one run -----------------------------------------------------------------

# analyze_syn FILE KILL_NS END_NS ORIGIN: SYN figures for ORIGIN (a or b)
# after the event, as "total=N stop=S stopped=0|1 burst=0|1 periodic=P
# first=S last=S persec=n,n,..." (see the README).
analyze_syn() {
	local col=2
	[[ $4 == b ]] && col=3
	awk -v k="$2" -v e="$3" -v q="$SYN_QUIET" -v col="$col" '
	NF == 3 && $col != "" { n++; ns[n] = $1; c[n] = $col }
	END {
		base = -1
		for (i = 1; i <= n; i++) if (ns[i] <= k) base = c[i]
		if (base < 0) base = (n ? c[1] : 0)
		m = 0
		for (i = 1; i <= n; i++) if (ns[i] > k && ns[i] <= e) { m++; t[m] = (ns[i] - k) / 1e9; v[m] = c[i] - base }
		tend = (e - k) / 1e9
		total = m ? v[m] : 0
		stop = -1; first = -1; last = -1; prev = 0; j = 0
		for (i = 1; i <= m; i++) {
			d = v[i] - prev; prev = v[i]
			while (j + 1 < i && t[j + 1] <= t[i] - 1) j++
			w = v[i] - (j ? v[j] : 0)   # SYNs in the second up to this sample
			if (d > 0) { last = t[i]; if (first < 0) first = t[i]; if (w > q) { stop = t[i]; vstop = v[i] } }
		}
		burst = (stop >= 0)
		if (!burst) { stop = (first < 0 ? 0 : first); vstop = 0; for (i = 1; i <= m; i++) if (t[i] <= stop) vstop = v[i] }
		if (tend - stop < 1) periodic = "-"
		else periodic = sprintf("%.1f", (total - vstop) * 10 / (tend - stop))
		stopped = (tend - stop >= 1) ? 1 : 0
		persec = ""
		for (s = 0; s < tend; s++) {
			a = 0; b = 0
			for (i = 1; i <= m; i++) { if (t[i] <= s) a = v[i]; if (t[i] <= s + 1) b = v[i] }
			persec = persec (s ? "," : "") (b - a)
		}
		printf "total=%d stop=%.1f stopped=%d burst=%d periodic=%s first=%.1f last=%.1f persec=%s\n", total, stop, stopped, burst, periodic, first, last, persec
	}' "$1"
}

# run_one PEER SCENARIO: start origins and PEER, load it, break the target,
# record the figures in R.
run_one() {
	local peer=$1 scen=$2 key="$1.$2" timeout json err samples lg_pid sampler_pid
	local t0 kill_ns cont_ns="" end_ns line kv k v tgt tpid
	timeout=$KILL_TIMEOUT
	[[ $scen == blackhole ]] && timeout=$BLACKHOLE_TIMEOUT
	json=$FW/loadgen-$peer-$scen.json
	err=$FW/loadgen-$peer-$scen.txt
	samples=$FW/syn-$peer-$scen.txt

	start_origins
	log "$peer: $scen: starting on 127.0.0.1:${PORT[$peer]}"
	if ! start_peer "$peer"; then
		stop_origins
		return 0
	fi
	if ! warm "$peer"; then
		stop_one "$PEER_PID"
		stop_origins
		return 0
	fi
	sleep 1 # let first health checks pass, connections settle

	sampler "$samples" &
	sampler_pid=$!
	PIDS+=("$sampler_pid")
	log "$peer: $scen: loadgen --rate $RATE --duration ${DUR_S}s --timeout $timeout"
	"$WORK/loadgen" --url "http://127.0.0.1:${PORT[$peer]}/pass/" --prefix "$peer-$scen-" \
		--rate "$RATE" --duration "${DUR_S}s" --timeout "$timeout" \
		--raw "$FW/requests-$peer-$scen.csv" >"$json" 2>"$err" &
	lg_pid=$!
	PIDS+=("$lg_pid")
	t0=$(date +%s%N)
	if [[ $scen == kill ]]; then
		sleep_until "$t0" "$(awk -v s="$KILL_AT" 'BEGIN { print s - 0.05 }')"
		tgt=$(pick_target) tpid=${OPID[$tgt]}
		sleep_until "$t0" "$KILL_AT"
		kill_ns=$(date +%s%N)
		kill -KILL "$tpid"
		wait "$tpid" 2>/dev/null || true
		forget_pid "$tpid"
		OPID[$tgt]=
		log "$peer: $scen: killed origin ${tgt^^} (SIGKILL)"
	else
		sleep_until "$t0" "$(awk -v s="$STOP_AT" 'BEGIN { print s - 0.05 }')"
		tgt=$(pick_target) tpid=${OPID[$tgt]}
		sleep_until "$t0" "$STOP_AT"
		kill_ns=$(date +%s%N)
		kill -STOP "$tpid"
		log "$peer: $scen: froze origin ${tgt^^} (SIGSTOP)"
		sleep_until "$t0" "$CONT_AT"
		cont_ns=$(date +%s%N)
		kill -CONT "$tpid"
		log "$peer: $scen: resumed origin ${tgt^^} (SIGCONT)"
	fi
	R[$key.target]=$tgt
	wait "$lg_pid" || note "$peer" "$scen: loadgen exited with an error (see $err)"
	forget_pid "$lg_pid"
	sleep 0.3
	stop_one "$sampler_pid"
	stop_one "$PEER_PID"
	stop_origins

	line=$(grep '^RESULT ' "$err" || true)
	if [[ -z $line ]]; then
		note "$peer" "$scen: loadgen printed no result (see $err)"
		return 0
	fi
	# shellcheck disable=SC2086 # splitting the RESULT line into words is intended
	for kv in ${line#RESULT }; do
		k=${kv%%=*} v=${kv#*=}
		R[$key.$k]=$v
	done
	t0=${R[$key.start_unix_ns]}
	end_ns=$((t0 + DUR_S * 1000000000))
	R[$key.event_s]=$(awk -v a="$kill_ns" -v s="${R[$key.start_unix_ns]}" 'BEGIN { printf "%.2f", (a - s) / 1e9 }')
	if [[ -n $cont_ns ]]; then
		R[$key.cont_s]=$(awk -v a="$cont_ns" -v s="${R[$key.start_unix_ns]}" 'BEGIN { printf "%.2f", (a - s) / 1e9 }')
	fi
	line=$(analyze_syn "$samples" "$kill_ns" "${cont_ns:-$end_ns}" "$tgt")
	R[$key.syn_window]=$(awk -v a="$kill_ns" -v b="${cont_ns:-$end_ns}" 'BEGIN { printf "%.0f", (b - a) / 1e9 }')
	for kv in $line; do
		k=${kv%%=*} v=${kv#*=}
		R[$key.syn_$k]=$v
	done
	while read -r _ k v; do
		R[$key.tl_$k]=$v
	done < <(grep '^TIMELINE ' "$err")
	check_share "$peer" "$scen"
	RUNS+=("$peer $scen")
	log "$peer: $scen: errors ${R[$key.errors]} ($(kinds "$key")), slow ${R[$key.slow]}, p99 ${R[$key.p99_ms]} ms, SYNs to ${tgt^^} after the event ${R[$key.syn_total]}, time to stop $(stop_cell "$key")"
}

# check_share PEER SCENARIO: record how many of the answers before the event
# came from the origin it hit, and note it when that is much less than half:
# then the run did not test the failover of a loaded origin.
check_share() {
	local key=$1.$2 a b t
	read -r a b < <(awk -v sa="${R[$key.tl_origin=a]:-}" -v sb="${R[$key.tl_origin=b]:-}" -v ev="${R[$key.event_s]}" '
		BEGIN {
			na = split(sa, A, ","); split(sb, B, ",")
			for (i = 1; i <= int(ev) && i <= na; i++) { a += A[i]; b += B[i] }
			printf "%d %d\n", a, b
		}')
	t=$a
	[[ ${R[$key.target]} == b ]] && t=$b
	R[$key.share]="${R[$key.target]^^}: $t/$((a + b))"
	if ((a + b > 0 && t * 4 < a + b)); then
		note "$1" "$2: origin ${R[$key.target]^^}, which the event hit, answered only $t of $((a + b)) requests before it (round-robin would give half): this run did not test the failover of a loaded origin"
	fi
}

# sleep_until T0_NS SECONDS: sleep until SECONDS after T0_NS. The sleep runs
# in the background so that INT and TERM stop the script at once.
sleep_until() {
	local left
	left=$(awk -v t0="$1" -v s="$2" -v now="$(date +%s%N)" 'BEGIN { d = (t0 + s * 1e9 - now) / 1e9; printf "%.3f", (d > 0 ? d : 0) }')
	sleep "$left" &
	NAP_PID=$!
	wait "$NAP_PID"
	NAP_PID=
}

# --- report ------------------------------------------------------------------

get() { printf '%s' "${R[$1]:--}"; }

# kinds KEY: the non-zero error kinds of a run, or "none".
kinds() {
	local key=$1 out="" k
	for k in status_5xx status_other timeout conn dropped; do
		if [[ ${R[$key.$k]:-0} != 0 ]]; then
			out+="${out:+, }${k/status_/}: ${R[$key.$k]}"
		fi
	done
	printf '%s' "${out:-none}"
}

# stop_cell KEY: "time to stop" as reported.
stop_cell() {
	local key=$1
	if [[ -z ${R[$key.syn_total]:-} ]]; then
		printf -- '-'
	elif [[ ${R[$key.syn_total]} == 0 ]]; then
		printf '0 (no SYN)'
	elif [[ ${R[$key.syn_burst]} == 0 ]]; then
		printf '%s (no burst)' "${R[$key.syn_stop]}"
	elif [[ ${R[$key.syn_stopped]} == 0 ]]; then
		printf 'did not stop in %s s' "${R[$key.syn_window]}"
	else
		printf '%s' "${R[$key.syn_stop]}"
	fi
}

# timeout_of PEER: the response timeout in effect for PEER.
timeout_of() {
	case $1 in
	nginx) printf 'proxy_read_timeout 60s (default)' ;;
	haproxy) printf 'timeout server 60s (config; no default)' ;;
	rhizome) printf 'first-byte timeout: default (30s)%s' "${RHIZOME_ARGS:+; RHIZOME_ARGS: $RHIZOME_ARGS}" ;;
	rhizome-fbt2s) printf -- '--first-byte-timeout 2s' ;;
	esac
}

rhizome_revision() {
	local rev
	rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) || rev="no commit"
	if [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null) ]]; then
		rev="$rev, uncommitted changes"
	fi
	printf '%s\n' "$rev"
}

report() {
	local run peer scen key flags
	echo "# rhizome failover benchmark: latest run"
	echo
	echo "Generated by \`bench/failover.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
	echo
	echo "## Machine"
	echo
	echo "- nproc: $(nproc); kernel: $(uname -r); CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | sed -n 1p)"
	echo "- memory: $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "- nginx: $(first_line nginx -v)"
	echo "- haproxy: $(first_line haproxy -v)"
	if [[ -n ${RHIZOME_BIN:-} ]]; then
		echo "- rhizome: prebuilt binary RHIZOME_BIN=$RHIZOME_BIN (tree: $(rhizome_revision))"
	else
		echo "- rhizome: $(rhizome_revision) ($(first_line go version))"
	fi
	echo "- nft: $(first_line nft --version)"
	echo
	echo "## Settings"
	echo
	echo "- Two origins (bench/origin): A on 127.0.0.1:$ORIGIN_A_PORT, B on 127.0.0.1:$ORIGIN_B_PORT; each peer load-balances across both."
	echo "- Load: bench/loadgen, open-loop, $RATE req/s for ${DUR_S} s, a unique /pass/... URL per request (Cache-Control: no-store)."
	echo "- Target (TARGET=$TARGET): the origin the event hits; busiest = the one that answered more requests until just before it."
	echo "- kill: the target gets SIGKILL at ${KILL_AT} s; loadgen timeout $KILL_TIMEOUT."
	echo "- blackhole: the target gets SIGSTOP at ${STOP_AT} s and SIGCONT at ${CONT_AT} s; loadgen timeout $BLACKHOLE_TIMEOUT."
	echo "- SYNs to the target counted by nftables (output hook, tcp dport, SYN without ACK), read every ${SAMPLE_INTERVAL} s."
	echo "  Health checks count too. A second with more than $SYN_QUIET SYNs (SYN_QUIET) is traffic; time to stop is the"
	echo "  time from the kill to the last SYN of such a second (0.1 s resolution); SYNs after it are probes (nginx retrying"
	echo "  after fail_timeout, per worker) or active health checks, reported per 10 s. \"(no burst)\": no second had more"
	echo "  than $SYN_QUIET SYNs; the time given is that of the first SYN."
	echo "- nginx: bench/conf/nginx-failover.conf ($WORKERS workers, max_fails=1 fail_timeout=10s, proxy_next_upstream error timeout http_502 http_503 http_504)."
	echo "- haproxy: bench/conf/haproxy-failover.cfg (check inter 2s fall 3 rise 2, option httpchk GET /healthz, retries 3, option redispatch,"
	echo "  retry-on conn-failure empty-response response-timeout, timeout server 60s)."
	mapfile -t flags < <(rhizome_flags rhizome)
	echo "- rhizome: rhizome proxy ${flags[*]}"
	echo
	echo "## Kill: the target origin gets SIGKILL under load"
	echo
	echo "| peer | target: its answers before kill | client errors | error kinds | SYNs to dead origin after kill | time to stop (s) | SYNs per 10 s after that | p99 latency (ms) |"
	echo "|---|---:|---:|---|---:|---:|---:|---:|"
	for run in "${RUNS[@]}"; do
		read -r peer scen <<<"$run"
		[[ $scen == kill ]] || continue
		key=$peer.$scen
		echo "| $peer | $(get "$key.share") | $(get "$key.errors") | $(kinds "$key") | $(get "$key.syn_total") | $(stop_cell "$key") | $(get "$key.syn_periodic") | $(get "$key.p99_ms") |"
	done
	echo
	echo "## Black hole: the target origin frozen (SIGSTOP) from ${STOP_AT} s to ${CONT_AT} s"
	echo
	echo "Slow: successful answers that took more than 1 s. Time to stop: as above, counted from SIGSTOP to SIGCONT"
	echo "(new connections to the frozen origin still complete: the kernel accepts them)."
	echo "Target: its answers to requests started in the whole seconds before the event, of all answers"
	echo "(round-robin gives about half; far less means the event hit an origin that carried little load)."
	echo
	echo "| peer | target: its answers before freeze | client errors | error kinds | slow answers | p99 latency (ms) | max latency (ms) | SYNs to target while frozen | time to stop (s) | response timeout |"
	echo "|---|---:|---:|---|---:|---:|---:|---:|---:|---|"
	for run in "${RUNS[@]}"; do
		read -r peer scen <<<"$run"
		[[ $scen == blackhole ]] || continue
		key=$peer.$scen
		echo "| $peer | $(get "$key.share") | $(get "$key.errors") | $(kinds "$key") | $(get "$key.slow") | $(get "$key.p99_ms") | $(get "$key.max_ms") | $(get "$key.syn_total") | $(stop_cell "$key") | $(timeout_of "$peer") |"
	done
	echo
	echo "## Timelines"
	echo
	echo "Per second of the run (by request start): answers from origin A, from origin B, client errors, and SYNs to the"
	echo "target per second after the event (the first value is the second that follows it). The event is at the given offset."
	echo
	for run in "${RUNS[@]}"; do
		read -r peer scen <<<"$run"
		key=$peer.$scen
		echo "- $peer, $scen (target ${R[$key.target]^^}; event at $(get "$key.event_s") s${R[$key.cont_s]:+, SIGCONT at ${R[$key.cont_s]} s}):"
		echo "  - a: $(get "$key.tl_origin=a")"
		echo "  - b: $(get "$key.tl_origin=b")"
		echo "  - errors: $(get "$key.tl_errors")"
		echo "  - SYNs to the target per second after the event: $(get "$key.syn_persec")"
	done
	print_notes $ALL_PEERS
}

main() {
	[[ $EUID -eq 0 ]] || die "run as root (sudo bash bench/failover.sh): nftables and nginx need it"
	command -v curl >/dev/null || die "curl is not installed"
	if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
		PATH=$PATH:/usr/local/go/bin
	fi
	command -v go >/dev/null || die "go is not on PATH (sudo may reset PATH: sudo env PATH=\"\$PATH\" bash bench/failover.sh)"
	DUR_S=$(seconds "$DURATION")
	((DUR_S > CONT_AT && DUR_S > KILL_AT)) || die "DURATION ($DUR_S s) must be longer than KILL_AT ($KILL_AT) and CONT_AT ($CONT_AT)"
	((STOP_AT < CONT_AT)) || die "STOP_AT must be before CONT_AT"

	trap on_exit EXIT
	trap 'exit 130' INT TERM
	rm -rf "$FW"
	mkdir -p "$FW/conf" "$BENCH_DIR/results"
	raise_nofile
	nft_setup

	log "building the origin, loadgen and rhizome"
	build_origin || die "could not build bench/origin"
	(cd "$ROOT" && go build -o "$WORK/loadgen" ./bench/loadgen) || die "could not build bench/loadgen"
	rm -f "$WORK/rhizome"
	if [[ " $PEERS " == *" rhizome"* ]]; then
		if build_rhizome; then
			probe_rhizome
			if ((RHIZOME_HAS_FBT)) && [[ " $PEERS " == *" rhizome "* && " $PEERS " != *" rhizome-fbt2s "* ]]; then
				PEERS="$PEERS rhizome-fbt2s"
				AUTO_FBT=1
			fi
		else
			log "rhizome does not build; the other peers still run. Last lines of $WORK/build-rhizome.log:"
			tail -n 10 "$WORK/build-rhizome.log" >&2 || true
		fi
	fi
	ALL_PEERS=$PEERS

	local peer scen
	for peer in $PEERS; do
		if [[ -z ${PORT[$peer]:-} ]]; then
			note "$peer" "unknown peer (known: nginx haproxy rhizome rhizome-fbt2s)"
			continue
		fi
		for scen in $SCENARIOS; do
			case $scen in
			kill | blackhole) ;;
			*) die "unknown scenario $scen (known: kill blackhole)" ;;
			esac
			# The 2 s variant only matters when an origin hangs.
			[[ $peer == rhizome-fbt2s && ${AUTO_FBT:-0} == 1 && $scen == kill ]] && continue
			if ! port_free "${PORT[$peer]}"; then
				note "$peer" "port ${PORT[$peer]} is already in use; skipped"
				continue 2
			fi
			run_one "$peer" "$scen"
		done
	done

	report >"$RESULTS"
	echo
	cat "$RESULTS"
	log "written to $RESULTS; loadgen output, SYN samples and logs in $FW"
}

main "$@"
