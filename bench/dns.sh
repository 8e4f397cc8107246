#!/usr/bin/env bash
# dns.sh: queries per second of rhizome's authoritative DNS against PowerDNS
# (pdns-server, bind backend) serving the same zone, same run, with dnsperf.
#
#   apt-get install -y dnsperf pdns-server pdns-backend-bind
#   bash bench/dns.sh            # DURATION=10 CLIENTS=8 by default
#
# Both servers get the same queries (static A, MX, TXT, NXDOMAIN); rhizome also
# gets a proxied name (answered from the mesh's healthy nodes) in a second run.
# rhizome's response rate limiting is turned off (dns_rate_limit: -1): PowerDNS
# has none by default, and dnsperf sends everything from one address. PowerDNS
# runs with its defaults (packet cache on) and PDNS_RECEIVERS receiver threads
# (default 1, its own default; try 2). Writes results/dns.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
trap cleanup EXIT

DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-8}
PDNS_PORT=${PDNS_PORT:-15353}
RZ_DNS_PORT=${RZ_DNS_PORT:-15354}
RZ_ADMIN=${RZ_ADMIN:-19091}

command -v dnsperf >/dev/null || die "dnsperf missing: apt-get install -y dnsperf"
command -v pdns_server >/dev/null || die "pdns_server missing: apt-get install -y pdns-server pdns-backend-bind"
rm -rf "$WORK/dns" && mkdir -p "$WORK/dns"
D=$WORK/dns
build_rhizome

# The zone, once as a zone file for PowerDNS and once as bundle YAML for rhizome.
cat >"$D/bench.test.zone" <<'ZONE'
$ORIGIN bench.test.
$TTL 300
@	IN SOA ns1.bench.test. hostmaster.bench.test. 1 3600 600 1209600 300
@	IN NS ns1.bench.test.
ns1	IN A 192.0.2.53
www	IN A 192.0.2.1
@	IN MX 10 mail.bench.test.
mail	IN A 192.0.2.25
@	IN TXT "v=spf1 -all"
ZONE
cat >"$D/named.conf" <<CONF
zone "bench.test" { type master; file "$D/bench.test.zone"; };
CONF
cat >"$D/pdns.conf" <<CONF
launch=bind
bind-config=$D/named.conf
local-address=127.0.0.1
local-port=$PDNS_PORT
socket-dir=$D
daemon=no
guardian=no
disable-syslog=yes
loglevel=3
receiver-threads=${PDNS_RECEIVERS:-1}
reuseport=yes
CONF

"$WORK/rhizome" keygen --out "$D/op" >/dev/null
cat >"$D/node.yaml" <<YAML
name: bench
data_dir: $D/node
listen: 127.0.0.1:0
admin: 127.0.0.1:$RZ_ADMIN
dns: 127.0.0.1:$RZ_DNS_PORT
dns_rate_limit: -1
access_log: false
trust:
  keys: [$(cat "$D/op.pub")]
YAML
cat >"$D/zone.yaml" <<YAML
serial: 1
sites:
  - name: s
    hosts: ["*"]
    origins: [{url: "http://127.0.0.1:9"}]
dns:
  nodes:
    - {name: bench, addresses: [192.0.2.1]}
  zones:
    - name: bench.test
      ttl: 5m
      ns: [ns1.bench.test]
      records:
        - {name: ns1, type: A, value: 192.0.2.53}
        - {name: www, type: A, value: 192.0.2.1}
        - {name: "@", type: MX, value: "10 mail.bench.test."}
        - {name: mail, type: A, value: 192.0.2.25}
        - {name: "@", type: TXT, value: "v=spf1 -all"}
      proxied:
        - {name: cdn}
YAML

printf 'www.bench.test A\nbench.test MX\nbench.test TXT\nnope.bench.test A\n' >"$D/static.txt"
printf 'cdn.bench.test A\n' >"$D/proxied.txt"

start_bg "$D/pdns.log" pdns_server --config-dir="$D"
PDNS_PID=$LAST_PID
start_bg "$D/rhizome.log" "$WORK/rhizome" node --config "$D/node.yaml" --log-level warn
RZ_PID=$LAST_PID
wait_listen "$RZ_ADMIN" "$RZ_PID" || die "rhizome did not start: $(tail -n 5 "$D/rhizome.log")"
"$WORK/rhizome" bundle sign "$D/zone.yaml" --key "$D/op.key" >/dev/null
"$WORK/rhizome" push --admin "127.0.0.1:$RZ_ADMIN" --data-dir "$D/node" "$D/zone.bundle" >/dev/null
for _ in $(seq 50); do
	dig +short +norec @127.0.0.1 -p "$PDNS_PORT" www.bench.test A >/dev/null 2>&1 && break
	sleep 0.2
done
[[ $(dig +short +norec @127.0.0.1 -p "$PDNS_PORT" www.bench.test A) == 192.0.2.1 ]] || die "PowerDNS does not answer: $(tail -n 5 "$D/pdns.log")"
[[ $(dig +short +norec @127.0.0.1 -p "$RZ_DNS_PORT" www.bench.test A) == 192.0.2.1 ]] || die "rhizome does not answer"

# qps NAME PORT QUERYFILE: run dnsperf and print "qps lost".
qps() {
	local out
	out=$(dnsperf -s 127.0.0.1 -p "$2" -d "$3" -l "$DURATION" -c "$CLIENTS" -q 200 2>&1)
	printf '%s\n' "$out" >"$D/dnsperf-$1.log"
	printf '%s %s\n' "$(awk '/Queries per second/ {print $4}' <<<"$out")" "$(awk '/Queries lost/ {print $3}' <<<"$out")"
}

log "dnsperf ${DURATION}s, $CLIENTS clients: PowerDNS"
read -r pdns_qps pdns_lost < <(qps pdns "$PDNS_PORT" "$D/static.txt")
log "dnsperf: rhizome (static)"
read -r rz_qps rz_lost < <(qps rhizome "$RZ_DNS_PORT" "$D/static.txt")
log "dnsperf: rhizome (proxied name)"
read -r rzp_qps rzp_lost < <(qps rhizome-proxied "$RZ_DNS_PORT" "$D/proxied.txt")

ratio=$(awk -v a="$rz_qps" -v b="$pdns_qps" 'BEGIN { printf "%.2f", a / b }')
mkdir -p "$BENCH_DIR/results"
{
	echo "# DNS: rhizome vs PowerDNS ($(date -u +%Y-%m-%dT%H:%MZ))"
	echo
	echo "dnsperf ${DURATION}s, $CLIENTS clients, 200 outstanding; $(nproc) cores; $(first_line pdns_server --version)"
	echo
	echo "| server | queries | qps | lost |"
	echo "|---|---|---:|---:|"
	echo "| PowerDNS (bind backend, packet cache, ${PDNS_RECEIVERS:-1} receiver threads) | static A, MX, TXT, NXDOMAIN | $pdns_qps | $pdns_lost |"
	echo "| rhizome | static A, MX, TXT, NXDOMAIN | $rz_qps | $rz_lost |"
	echo "| rhizome | proxied name (steered per query) | $rzp_qps | $rzp_lost |"
	echo
	echo "rhizome / PowerDNS on the same queries: **$ratio**"
} | tee "$BENCH_DIR/results/dns.md"
