#!/usr/bin/env bash
# bench/run.sh — authgate's load benchmark (`make bench`). Not part of `make test`.
#
# Builds cmd/caddy (from the working tree, or from the commit BENCH_REF names) into a
# temporary folder and starts three Caddy processes on
# loopback, each a front site and a `respond "ok" 200` upstream site
# (bench/caddyfiles/):
#   (a) bare      reverse_proxy only
#   (b) authgate  + `authgate` (realm defaults)
#   (c) rules     + `authgate { require …; five header lines }`
# checks that (b) and (c) answer 200 with the session cookie and 401 without it (and
# that (c)'s require really runs: 403 for a user it refuses), then drives them with wrk,
# same connections and duration, alternating a,b,c,a,b,c… for BENCH_ROUNDS rounds.
# Then times authgate's session decode (Go) against NextAuth v4's and @auth/core's
# decode() (Node) for the same tokens.
#
# Prints a Markdown report on stdout (progress goes to stderr):
#   bash bench/run.sh > report.md
#   BENCH_REF=a0d841e bash bench/run.sh    # Caddy built from that commit (git archive)
#
# Knobs (environment):
#   BENCH_DURATION=5s  BENCH_CONNECTIONS=64  BENCH_THREADS=2  BENCH_ROUNDS=5
#   BENCH_WARMUP=1s                 wrk warm-up per configuration before the rounds
#   BENCH_SINGLE=3s                 then one run per configuration on one connection (0: skip)
#   BENCH_PIN=1                     1: Caddy on CPU 1 (GOMAXPROCS=1), wrk on CPU 0; 0: no pinning
#   BENCH_PORT_BASE=18400           (a) uses +0/+1, (b) +10/+11, (c) +20/+21
#   BENCH_DECODE_ITERATIONS=2000    Node decode() iterations (after a warm-up)
#   BENCH_REF=<commit>              build cmd/caddy (and run BenchmarkDecode) from this commit
#                                   instead of the working tree; bench/ itself always runs
#                                   from the working tree
#   BENCH_BASELINE=<commit>         also build that commit and run its (b) and (c) in the same
#                                   alternation (a, b, c, b', c'): a paired before/after
#                                   comparison that drifting background load cannot skew
#   BENCH_COOKIES=1                 >1: that many users' cookies, sent in turn (bench/cookies.lua);
#                                   a list ("20000 100000") runs the rounds for each, one section each
#   BENCH_LABEL=…                   the report's title (default: what Caddy was built from)
#
# Needs: go, wrk, curl, taskset (for BENCH_PIN=1), node with bench/node/node_modules
# (next-auth) and testdata/node/node_modules (@auth/core); `make bench` installs them.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD

duration=${BENCH_DURATION:-5s}
conns=${BENCH_CONNECTIONS:-64}
threads=${BENCH_THREADS:-2}
rounds=${BENCH_ROUNDS:-5}
warmup=${BENCH_WARMUP:-1s}
single=${BENCH_SINGLE:-3s}
pin=${BENCH_PIN:-1}
port_base=${BENCH_PORT_BASE:-18400}
iterations=${BENCH_DECODE_ITERATIONS:-2000}
ref=${BENCH_REF:-}
baseline=${BENCH_BASELINE:-}
read -ra counts <<<"${BENCH_COOKIES:-1}" # one or more numbers of users, each measured in turn
maxcookies=1
for n in "${counts[@]}"; do
	[[ $n =~ ^[1-9][0-9]*$ ]] || { echo "bench: BENCH_COOKIES: '$n' is not a positive number" >&2; exit 1; }
	[ "$n" -gt "$maxcookies" ] && maxcookies=$n
done
go=${GO:-go}

# A configuration: its Caddyfile (bench/caddyfiles/<kind>.Caddyfile), Caddy binary, ports.
configs=(bare authgate rules)
declare -A title=([bare]="(a) bare reverse_proxy" [authgate]="(b) authgate" [rules]="(c) authgate + require + 5 headers")
declare -A kind=([bare]=bare [authgate]=authgate [rules]=rules)
declare -A port=([bare]=$((port_base)) [authgate]=$((port_base + 10)) [rules]=$((port_base + 20)))
declare -A bin

log() { echo "bench: $*" >&2; }
us() { awk -v n="$1" 'BEGIN {printf "%.1f", n / 1000}'; }      # ns → µs
ms() { awk -v n="$1" 'BEGIN {printf "%.2f ms", n / 1000}'; }   # µs → ms
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
die() {
	echo "bench: FAIL: $*" >&2
	exit 1
}

for tool in "$go" wrk curl node; do
	command -v "$tool" >/dev/null || die "$tool not found (make bench installs wrk and node)"
done
ncpu=$(nproc)
if [ "$pin" = 1 ] && [ "$ncpu" -lt 2 ]; then
	log "only $ncpu CPU: not pinning"
	pin=0
fi
if [ "$pin" = 1 ]; then
	command -v taskset >/dev/null || die "taskset not found (util-linux); or set BENCH_PIN=0"
	server_cpu=1 client_cpu=0
	# Prefixes that exec the command, so that $! is Caddy's own pid.
	on_server=(env GOMAXPROCS=1 taskset -c "$server_cpu")
	on_client=(taskset -c "$client_cpu")
else
	on_server=()
	on_client=()
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/authgate-bench.XXXXXX")
pids=()
declare -A pid
cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

# --- build -------------------------------------------------------------------------
# build_caddy <commit or ""> <binary>: builds cmd/caddy from that commit (git archive into
# the temporary folder) or from the working tree, and sets src, short_from and built_from.
build_caddy() {
	if [ -n "$1" ]; then
		local rev
		rev=$(git rev-parse --verify --short "$1^{commit}") || die "$1 is not a commit"
		src=$tmp/src-$rev
		mkdir -p "$src"
		git archive "$rev" | tar -x -C "$src"
		short_from="commit $rev"
		built_from="commit $rev ($(git log -1 --format='%cd, %s' --date=format:'%Y-%m-%d %H:%M' "$rev" | cut -c1-90))"
	else
		src=$root
		built_from="the working tree"
		short_from=$built_from
		if git rev-parse --verify -q HEAD >/dev/null 2>&1; then
			built_from+=" at $(git rev-parse --short HEAD)"
			git diff --quiet HEAD -- . ':!bench' ':!BENCH.md' 2>/dev/null || built_from+=" with uncommitted changes"
		fi
	fi
	log "building cmd/caddy from $built_from into $2"
	(cd "$src" && "$go" build -o "$2" ./cmd/caddy)
}
if [ -n "$baseline" ]; then
	build_caddy "$baseline" "$tmp/caddy-baseline"
	baseline_from=$built_from baseline_short=$short_from
	configs+=(authgate-baseline rules-baseline)
	kind+=([authgate-baseline]=authgate [rules-baseline]=rules)
	title+=([authgate-baseline]="(b′) authgate, baseline" [rules-baseline]="(c′) authgate + require + 5 headers, baseline")
	port+=([authgate-baseline]=$((port_base + 30)) [rules-baseline]=$((port_base + 40)))
	bin+=([authgate-baseline]=$tmp/caddy-baseline [rules-baseline]=$tmp/caddy-baseline)
fi
build_caddy "$ref" "$tmp/caddy" # last, so that src is this build's (BenchmarkDecode runs there)
bin+=([bare]=$tmp/caddy [authgate]=$tmp/caddy [rules]=$tmp/caddy)
label=${BENCH_LABEL:-$short_from${baseline:+ vs $baseline_short}}
"$go" build -o "$tmp/mkcookie" ./bench/mkcookie
"$go" build -o "$tmp/decodeop" ./bench/decodeop
caddy_version=$("$tmp/caddy" version | awk '{print $1}')

# --- tokens ------------------------------------------------------------------------
cookie_name=authgate.session-token # no __Secure- prefix on http
secret=$(head -c 33 /dev/urandom | base64 | tr '+/' '-_')
# One user's cookie per line, the same secret for all: each count takes the first n.
log "making $maxcookies session cookie(s)"
"$tmp/mkcookie" -secret "$secret" -name "$cookie_name" -n "$maxcookies" | sed "s/^/$cookie_name=/" >"$tmp/cookies-all.txt"
for n in "${counts[@]}"; do head -n "$n" "$tmp/cookies-all.txt" >"$tmp/cookies-$n.txt"; done
token=$(head -1 "$tmp/cookies-all.txt" | cut -d= -f2-)
refused_token=$("$tmp/mkcookie" -secret "$secret" -name "$cookie_name" -email mallory@example.org)
v4_token=$("$tmp/mkcookie" -secret "$secret" -format next-auth-v4)
# One character of the ciphertext changed (not the last character of a part, whose low
# bits are base64 padding that a decoder may ignore).
IFS=. read -r h k iv ct tag <<<"$token"
c=${ct:5:1}
[ "$c" = A ] && c=B || c=A
tampered_token=$h.$k.$iv.${ct:0:5}$c${ct:6}.$tag

# --- start the Caddy processes, one per configuration ------------------------------------------------
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for c in "${configs[@]}"; do
	p=${port[$c]}
	for q in "$p" $((p + 1)); do
		if port_open "$q"; then die "port $q is in use (set BENCH_PORT_BASE)"; fi
	done
	mkdir -p "$tmp/$c/data" "$tmp/$c/config"
	# Caddy's own storage (and nothing else) goes to the temporary folder.
	BENCH_PORT=$p BENCH_UPPORT=$((p + 1)) BENCH_SECRET=$secret BENCH_USERS=$root/bench/users.txt \
		XDG_DATA_HOME=$tmp/$c/data XDG_CONFIG_HOME=$tmp/$c/config \
		"${on_server[@]}" "${bin[$c]}" run --adapter caddyfile --config "bench/caddyfiles/${kind[$c]}.Caddyfile" \
		>"$tmp/$c.log" 2>&1 &
	pid[$c]=$!
	pids+=($!)
done
for c in "${configs[@]}"; do
	for _ in $(seq 100); do
		port_open "${port[$c]}" && port_open $((port[$c] + 1)) && break
		sleep 0.1
	done
	port_open "${port[$c]}" || {
		cat "$tmp/$c.log" >&2
		die "$c: Caddy did not start"
	}
done

# --- verify: a benchmark of 401s proves nothing -------------------------------------
# status <config> <cookie or ""> prints "<status> <body> <set-cookie count>".
status() {
	local args=(-s -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' -H 'Accept: application/json')
	[ -n "$2" ] && args+=(-H "Cookie: $cookie_name=$2")
	local code
	code=$(curl "${args[@]}" "http://127.0.0.1:${port[$1]}/")
	echo "$code $(tr -d '\n' <"$tmp/body") $(grep -ci '^set-cookie:' "$tmp/headers" || true)"
}
expect() { # expect <config> <what> <want status> <cookie>
	local got
	got=$(status "$1" "$4")
	[ "${got%% *}" = "$3" ] || die "$1 $2: want HTTP $3, got '$got' (log: $(tail -3 "$tmp/$1.log"))"
	log "ok: $1 $2 -> $3"
	[ "$3" != 200 ] || [ "$got" = "200 ok 0" ] || die "$1 $2: want body 'ok' and no Set-Cookie, got '$got'"
}
for c in "${configs[@]}"; do
	expect "$c" "with the cookie" 200 "$token"
	case ${kind[$c]} in
	bare) continue ;;
	authgate) expect "$c" "as a user require would refuse" 200 "$refused_token" ;;
	rules) expect "$c" "as a user require refuses" 403 "$refused_token" ;;
	esac
	expect "$c" "without a cookie" 401 ""
	expect "$c" "with a tampered cookie" 401 "$tampered_token"
done

# --- load --------------------------------------------------------------------------
# The machine may be shared (other builds and tests), so beside wrk's figures each run
# records Caddy's own CPU time per request (from /proc/<pid>/stat), which other work
# disturbs much less than throughput, and how many CPUs other processes kept busy.
tck=$(getconf CLK_TCK)
proc_cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }              # utime + stime, ticks
children_cpu() { awk '{print $16 + $17}' "/proc/$$/stat"; }        # the main shell's waited-for children (wrk)
machine_cpu() { awk '$1 == "cpu" {print $2 + $3 + $4}' /proc/stat; } # user + nice + system, ticks
now_s() { date +%s.%N; }

# wrk_run <config> <connections> <duration> <output file>: runs wrk, fails on non-2xx
# answers, and appends "cpu_us_per_request other_cpus" to the output file.
wrk_run() {
	local c0 w0 m0 t0 c1 w1 m1 t1
	c0=$(proc_cpu "${pid[$1]}") w0=$(children_cpu) m0=$(machine_cpu) t0=$(now_s)
	local how=(-H "Cookie: $cookie_name=$token")
	[ "$ncookies" = 1 ] || how=(-s bench/cookies.lua)
	BENCH_COOKIE_FILE=$tmp/cookies-$ncookies.txt "${on_client[@]}" wrk -t"$threads" -c"$2" -d"$3" --timeout 5s --latency \
		-H 'Accept: application/json' "${how[@]}" "http://127.0.0.1:${port[$1]}/" >"$4" 2>&1 || {
		cat "$4" >&2
		die "$1: wrk failed"
	}
	c1=$(proc_cpu "${pid[$1]}") w1=$(children_cpu) m1=$(machine_cpu) t1=$(now_s)
	if grep -q 'Non-2xx' "$4"; then
		cat "$4" >&2
		die "$1: wrk saw non-2xx answers"
	fi
	awk -v c="$((c1 - c0))" -v w="$((w1 - w0))" -v m="$((m1 - m0))" -v t="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" -v tck="$tck" \
		'/ requests in / {n = $1} END {o = (m - c - w) / tck / t; if (o < 0) o = 0; printf "bench-cpu %.1f %.2f\n", c / tck * 1e6 / n, o}' "$4" >>"$4"
}
# to_us converts wrk's "812.00us", "1.23ms", "1.02s" to microseconds.
to_us() { awk -v v="$1" 'BEGIN {
	if (sub(/us$/, "", v)) m = 1; else if (sub(/ms$/, "", v)) m = 1000; else if (sub(/m$/, "", v)) m = 60e6; else if (sub(/s$/, "", v)) m = 1e6; else m = 1
	printf "%.0f", v * m }'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR] = $1} END {
	if (NR % 2) printf "%s", v[(NR + 1) / 2]; else printf "%s", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# parse <wrk output> sets rps, p50, p99 (µs), cpu (µs/request), others (CPUs).
parse() {
	rps=$(awk '/^Requests\/sec:/ {print $2}' "$1")
	p50=$(to_us "$(awk '$1 == "50%" {print $2}' "$1")")
	p99=$(to_us "$(awk '$1 == "99%" {print $2}' "$1")")
	read -r cpu others < <(awk '$1 == "bench-cpu" {print $2, $3}' "$1") || die "no CPU figures in $1"
	[ -n "$rps" ] && [ -n "$p50" ] && [ -n "$p99" ] || die "could not read wrk's output $1"
	sock=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' "$1")
}

# load runs the warm-up, the rounds and the single-connection runs with the
# cookies of $ncookies users, and records the figures for section.
load() {
	log "load with $ncookies user(s)' cookies"
	load_before=$(cut -d' ' -f1-3 /proc/loadavg)
	log "warm-up: $warmup per configuration"
	for c in "${configs[@]}"; do wrk_run "$c" "$conns" "$warmup" "$tmp/warmup-$c.txt"; done

	unset rps_list p50_list p99_list cpu_list errors round_rps round_cpu single_p99
		declare -gA rps_list p50_list p99_list cpu_list errors round_rps round_cpu single_p99
	for c in "${configs[@]}"; do errors[$c]=0; done
	rounds_table=""
	for r in $(seq "$rounds"); do
		for c in "${configs[@]}"; do
			out=$tmp/round$r-$c.txt
			wrk_run "$c" "$conns" "$duration" "$out"
			parse "$out"
			errors[$c]=$((errors[$c] + ${sock:-0}))
			rps_list[$c]+="$rps " p50_list[$c]+="$p50 " p99_list[$c]+="$p99 " cpu_list[$c]+="$cpu "
			round_rps[$c,$r]=$rps round_cpu[$c,$r]=$cpu
			rounds_table+=$(printf '| %s | %s | %.0f | %s | %s | %s | %s |' "$r" "${title[$c]}" "$rps" "$(ms "$p50")" "$(ms "$p99")" "$cpu" "$others")$'\n'
			log "round $r $c: $rps req/s, p50 ${p50}us, p99 ${p99}us, Caddy ${cpu} CPU-us/request, other processes ${others} CPUs"
		done
	done

	single_table=""
	if [ "$single" != 0 ]; then
		log "one connection: $single per configuration"
		for c in "${configs[@]}"; do
			out=$tmp/single-$c.txt
			threads=1 wrk_run "$c" 1 "$single" "$out"
			parse "$out"
			single_p99[$c]=$p99
			single_table+=$(printf '| %s | %.0f | %s | %s | %s | %s |' "${title[$c]}" "$rps" "$(ms "$p50")" "$(ms "$p99")" "$cpu" "$others")$'\n'
		done
	fi
	load_after=$(cut -d' ' -f1-3 /proc/loadavg)
}

# section prints the tables of the last load.
section() {
	bare_rps=$(median <<<"${rps_list[bare]}")
	bare_cpu=$(median <<<"${cpu_list[bare]}")

	if [ "${#counts[@]}" -gt 1 ]; then
		echo
		echo "### $ncookies user(s)' cookies"
		echo
	fi
	echo "- \`wrk -t$threads -c$conns -d$duration --latency\`, keep-alive, loopback, the same requests for every configuration (Accept: application/json and $([ "$ncookies" = 1 ] && echo "one user's session cookie" || echo "$ncookies users' session cookies in turn, bench/cookies.lua")); $rounds round(s) alternating $(for c in "${configs[@]}"; do printf '%s ' "${title[$c]%% *}"; done)after a $warmup warm-up each; $pinning."
	echo "- Load average (1, 5, 15 min) before the rounds: $load_before; after: $load_after."
	echo
	echo "| configuration | req/s (median) | req/s vs (a) | p50 | p99 | Caddy CPU µs/request | CPU vs (a) |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	for c in "${configs[@]}"; do
		rps=$(median <<<"${rps_list[$c]}")
		cpu=$(median <<<"${cpu_list[$c]}")
		printf '| %s | %.0f | %s | %s | %s | %.1f | %s |\n' "${title[$c]}" "$rps" "$(ratio "$rps" "$bare_rps")" \
			"$(ms "$(median <<<"${p50_list[$c]}")")" "$(ms "$(median <<<"${p99_list[$c]}")")" "$cpu" "$(ratio "$cpu" "$bare_cpu")"
	done
	echo
	echo "Medians over the rounds. Caddy CPU µs/request is the Caddy process's CPU time (front site + upstream site) divided by the requests wrk completed."
	for c in "${configs[@]:1}"; do
		echo "- ${title[$c]} costs $(awk -v a="$bare_cpu" -v b="$(median <<<"${cpu_list[$c]}")" 'BEGIN {printf "%.1f", b - a}') CPU-µs per request more than (a)."
	done
	for c in "${configs[@]}"; do
		[ "${errors[$c]}" = 0 ] || echo "- ${title[$c]}: wrk reported ${errors[$c]} socket errors."
	done
	p99s=$(awk -v a="${single_p99[bare]:-0}" -v b="${single_p99[authgate]:-0}" 'BEGIN {if (a > 0) printf "%.2f", b / a; else printf "-"}')
	echo "- Against issue 12's targets, (b) authgate: $(ratio "$(median <<<"${rps_list[authgate]}")" "$bare_rps") × (a)'s req/s (≥ 0.90), $(awk -v a="$bare_cpu" -v b="$(median <<<"${cpu_list[authgate]}")" 'BEGIN {printf "%+.1f", b - a}') CPU-µs per request (≤ +15), single-connection p99 $p99s × (a)'s (≤ 2)."
	# The same, round by round: (b) against the (a) run just before it, then the median
	# of those (the figure that drifting load on a shared machine skews least).
	local pr="" pc=""
	for r in $(seq "$rounds"); do
		pr+="$(ratio "${round_rps[authgate,$r]}" "${round_rps[bare,$r]}") "
		pc+="$(awk -v a="${round_cpu[bare,$r]}" -v b="${round_cpu[authgate,$r]}" 'BEGIN {printf "%.1f", b - a}') "
	done
	echo "- Paired round by round with (a) (median of the rounds; each round: $pr/ $pc): (b) authgate $(median <<<"$pr") × (a)'s req/s, $(median <<<"$pc" | awk '{printf "%+.1f", $1}') CPU-µs per request."
	if [ -n "$baseline" ]; then
		echo
		echo "Paired with the baseline, round by round (the median of the rounds' ratios; below 1 = less CPU or fewer req/s than the baseline):"
		echo
		echo "| configuration | req/s ÷ baseline | CPU µs/request ÷ baseline | guard CPU-µs/request over (a): baseline → this build |"
		echo "|---|---:|---:|---:|"
		for c in authgate rules; do
			b=$c-baseline rr="" rc=""
			for r in $(seq "$rounds"); do
				rr+="$(ratio "${round_rps[$c,$r]}" "${round_rps[$b,$r]}") "
				rc+="$(ratio "${round_cpu[$c,$r]}" "${round_cpu[$b,$r]}") "
			done
			over() { awk -v a="$bare_cpu" -v b="$(median <<<"${cpu_list[$1]}")" 'BEGIN {printf "%.1f", b - a}'; }
			printf '| %s | %.2f | %.2f | %s → %s |\n' "${title[$c]}" "$(median <<<"$rr")" "$(median <<<"$rc")" "$(over "$b")" "$(over "$c")"
		done
	fi
	echo
	echo "Every round (other CPUs = CPUs kept busy by other processes during the run):"
	echo
	echo "| round | configuration | req/s | p50 | p99 | Caddy CPU µs/request | other CPUs |"
	echo "|---:|---|---:|---:|---:|---:|---:|"
	printf '%s' "$rounds_table"
	if [ -n "$single_table" ]; then
		echo
		echo "One connection (\`wrk -t1 -c1 -d$single\`, one run each): latency without queueing."
		echo
		echo "| configuration | req/s | p50 | p99 | Caddy CPU µs/request | other CPUs |"
		echo "|---|---:|---:|---:|---:|---:|"
		printf '%s' "$single_table"
	fi
}

cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
if [ "$pin" = 1 ]; then
	pinning="Caddy pinned to CPU $server_cpu with GOMAXPROCS=1, wrk to CPU $client_cpu"
else
	pinning="no pinning: Caddy (GOMAXPROCS=$ncpu) and wrk share the $ncpu CPUs"
fi
for ncookies in "${counts[@]}"; do
	load
	section >"$tmp/section-$ncookies.md"
done

# --- decode per operation ------------------------------------------------------------
log "timing decode: go test -bench BenchmarkDecode ./session/"
go_bench_ns=$(cd "$src" && "$go" test -run '^$' -bench '^BenchmarkDecode$' -benchtime 1s -count 3 ./session/ |
	awk '$1 ~ /^BenchmarkDecode(-[0-9]+)?$/ {for (i = 1; i <= NF; i++) if ($(i + 1) == "ns/op") print $i}' | median)
[ -n "$go_bench_ns" ] || die "could not read BenchmarkDecode's ns/op"
log "timing decode: authgate (Go) and NextAuth / @auth/core (Node), same tokens"
# Each prints "<wall ns/op median> <CPU ns/op> <fastest ns/op> <slowest ns/op> <operations>".
read -r go_authjs_ns go_authjs_cpu go_authjs_min go_authjs_max _ < <("$tmp/decodeop" -secret "$secret" -name "$cookie_name" -format authjs -token "$token")
read -r go_v4_ns go_v4_cpu go_v4_min go_v4_max _ < <("$tmp/decodeop" -secret "$secret" -format next-auth-v4 -token "$v4_token")
read -r node_v4_ns node_v4_cpu node_v4_min node_v4_max _ < <(node bench/node/decode.mjs next-auth-v4 "$secret" "$v4_token" "$iterations")
read -r node_authjs_ns node_authjs_cpu node_authjs_min node_authjs_max _ < <(node bench/node/decode.mjs authjs "$secret" "$cookie_name" "$token" "$iterations")
next_auth_version=$(node -p 'require("./bench/node/node_modules/next-auth/package.json").version')
auth_core_version=$(node -p 'require("./testdata/node/node_modules/@auth/core/package.json").version')

# --- report --------------------------------------------------------------------------
echo "## authgate load benchmark — $label"
echo
echo "- Caddy built from $built_from${baseline:+; the baseline (b′, c′) from $baseline_from}."
echo "- $(date -u '+%Y-%m-%d %H:%M UTC'); $ncpu × $cpu_model ($ncpu CPUs); $("$go" version | awk '{print $3}'); Caddy $caddy_version; $(wrk --version 2>&1 | awk 'NR == 1 {print $1, $2}'); Node $(node --version)."
for ncookies in "${counts[@]}"; do
	cat "$tmp/section-$ncookies.md"
done
echo
echo "### Session token decode, per operation (one thread)"
echo
echo "| token | authgate \`Codec.Decode\` (Go): wall | CPU | JS library \`decode()\` (Node $(node --version)): wall | CPU | JS / Go (wall) | JS / Go (CPU) |"
echo "|---|---:|---:|---:|---:|---:|---:|"
echo "| Auth.js (\`A256CBC-HS512\`, kid) | $(us "$go_authjs_ns") µs ($(us "$go_authjs_min")–$(us "$go_authjs_max")) | $(us "$go_authjs_cpu") µs | @auth/core $auth_core_version: $(us "$node_authjs_ns") µs ($(us "$node_authjs_min")–$(us "$node_authjs_max")) | $(us "$node_authjs_cpu") µs | $(ratio "$node_authjs_ns" "$go_authjs_ns") | $(ratio "$node_authjs_cpu" "$go_authjs_cpu") |"
echo "| NextAuth v4 (\`A256GCM\`) | $(us "$go_v4_ns") µs ($(us "$go_v4_min")–$(us "$go_v4_max")) | $(us "$go_v4_cpu") µs | next-auth $next_auth_version: $(us "$node_v4_ns") µs ($(us "$node_v4_min")–$(us "$node_v4_max")) | $(us "$node_v4_cpu") µs | $(ratio "$node_v4_ns" "$go_v4_ns") | $(ratio "$node_v4_cpu" "$go_v4_cpu") |"
echo
echo "- Wall: median of 5 batches (fastest–slowest batch in brackets). CPU: the process's user + system time per operation over the 5 batches (Go: garbage collection included; Node: every thread, WebCrypto runs on libuv's pool)."
echo "- Go: bench/decodeop, 5 batches of ~0.4 s after a warm-up, over the same token strings as Node. Node: $iterations awaited decode() calls after a warm-up."
echo "- Both JS libraries derive the key with HKDF on every call (@auth/core also hashes the key for the kid thumbprint); authgate derives its keys once, at provision."
echo "- \`go test -bench BenchmarkDecode -count 3 ./session/\` (the test's own claims, Auth.js format): $(us "$go_bench_ns") µs/op (median)."
