#!/usr/bin/env bash
# Runs every benchmark of the agent and writes bench/results/: results.md (the table, with the
# machine described), results.tsv (every figure), latency.png (bring-up and tear-down time vs
# container count, next to bare runc), and each benchmark's own output (*.txt).
#
#   bench/run-all.sh            ROUNDS=5 rounds, counts 1,10,50, 30 s idle measurement
#   ROUNDS=10 COUNTS=1,10,25,50 IDLE_SECONDS=60 bench/run-all.sh
#   REPORT_ONLY=1 bench/run-all.sh   only rebuild results.md/.tsv/.png from the raw outputs
#   SKIP_CORE=1 bench/run-all.sh      without bench/core.sh (the reconcile-core scenarios, ~20 min
#                                     with docker compose and podman side by side)
#
# Root, on the host the figures are for. Needs the busybox test images
# (scripts/build-test-images.sh, run here), runc (scripts/apt/exec.list) and gnuplot
# (scripts/apt/bench.list). Medians over the rounds; see tests/benches/daemon.rs for what each
# figure measures. Containers run in NETWORK_MODE (default `bridge`: each gets its veth, address
# and firewall rules on the agent's default network before its process starts; or `none`).
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/results
mkdir -p "$out"
export ROUNDS="${ROUNDS:-5}"
export COUNTS="${COUNTS:-1,10,50}"
export IDLE_SECONDS="${IDLE_SECONDS:-30}"
export NETWORK_MODE="${NETWORK_MODE:-bridge}"
[ "$(id -u)" = 0 ] || { echo "run-all: needs root" >&2; exit 1; }

if [ -z "${REPORT_ONLY:-}" ]; then
  load_start=$(cut -d' ' -f1-3 /proc/loadavg)
  bash scripts/build-test-images.sh >/dev/null
  echo "== building (release)"
  cargo build --release -p agent --locked
  export AGENT_BIN="$PWD/target/release/agent"

  echo "== daemon: file-to-running, bring-up, no-op reconcile, tear-down, idle, monitor memory"
  BENCH_TSV="$PWD/$out/daemon.tsv" cargo bench -p agent-e2e --bench daemon --locked | tee "$out/daemon.txt"

  echo "== exec driver: start latency (spec written -> running) next to runc, monitor memory"
  ROUNDS=20 MONITORS=5 cargo bench -p agent-e2e --bench exec --locked | tee "$out/exec.txt"

  echo "== planner: plan time for 100 / 1,000 / 10,000 containers"
  cargo bench -p agent --bench plan --locked | tee "$out/plan.txt"

  import_note="bench/import.sh is not on this branch yet: no figure"
  if [ -x bench/import.sh ]; then
    echo "== image import throughput next to sha256sum"
    bench/import.sh | tee "$out/import.txt"
    import_note=""
  fi
  if [ -z "${SKIP_CORE:-}" ]; then
    echo "== reconcile core: tear-down, restarts, latency under load, idle wake-ups (bench/core.sh;"
    echo "   next to docker compose and podman kube play when installed: bench/core.sh install)"
    bench/core.sh
  fi
  load_end=$(cut -d' ' -f1-3 /proc/loadavg)
  echo "$load_start|$load_end" > "$out/load.txt"
fi
load_start=$(cut -d'|' -f1 "$out/load.txt" 2>/dev/null || echo "?")
load_end=$(cut -d'|' -f2 "$out/load.txt" 2>/dev/null || echo "?")
import_note="bench/import.sh did not run: no figure"
[ -s "$out/import.txt" ] && import_note=""

# --- results.tsv: every figure in one table -----------------------------------------------------
{
  cat "$out/daemon.tsv"
  # exec bench: "agent (monitor + libcontainer): median 12.3 ms", "bare `runc run --detach`: median"
  awk '/agent \(monitor \+ libcontainer\): median/ {print "exec_driver_start\t1\t" $(NF-1) "\t\t\tms\t20"}
       /bare `runc run --detach`: *median/ {print "exec_runc_start\t1\t" $(NF-1) "\t\t\tms\t20"}
       /median Private_Dirty/ {print "exec_monitor_private_dirty\t5\t" $3 "\t\t\tKiB\t5"}' "$out/exec.txt"
  # plan bench: the row of n = 10000, columns "median (min x)": no change, 20% changed, build
  awk '$1 == "10000" {gsub(/[()]/, ""); print "plan_10k_no_change\t10000\t" $2 "\t" $5 "\t\t" $3 "\t"
                      print "plan_10k_20pct_changed\t10000\t" $7 "\t" $10 "\t\t" $8 "\t"}' "$out/plan.txt"
  if [ -f "$out/import.txt" ] && [ -z "$import_note" ]; then
    # "agent image load : median 1.23 s  195.1 MB/s   (runs: ...)", the same for sha256sum
    awk '/^agent image load *:/ {for (i = 1; i < NF; i++) if ($(i+1) == "MB/s") print "import_agent_image_load\t\t" $i "\t\t\tMB/s\t"}
         /^sha256sum *:/ {for (i = 1; i < NF; i++) if ($(i+1) == "MB/s") print "import_sha256sum\t\t" $i "\t\t\tMB/s\t"}' "$out/import.txt"
  fi
} > "$out/results.tsv"

# --- the machine ----------------------------------------------------------------------------------
cgroup_fs=$(stat -fc %T /sys/fs/cgroup)
if [ "$cgroup_fs" = cgroup2fs ]; then
  cgroup_mode="v2 (unified)"
elif [ -d /sys/fs/cgroup/unified ]; then
  cgroup_mode="v1 hybrid (cgroup2 also mounted at /sys/fs/cgroup/unified)"
else
  cgroup_mode="v1 (legacy)"
fi
tmp_src=$(findmnt -no SOURCE,FSTYPE -T "${TMPDIR:-/tmp}" | head -n1)
dev=$(findmnt -no SOURCE -T "${TMPDIR:-/tmp}" | head -n1 | sed 's|/dev/||; s|[0-9]*$||')
disk=$(lsblk -dno NAME,SIZE,ROTA,MODEL "/dev/$dev" 2>/dev/null | awk '{printf "%s, %s, %s%s", $1, $2, ($3 == 1 ? "rotational flag set" : "non-rotational"), (NF > 3 ? ", " substr($0, index($0, $4)) : "")}')

fig() { # fig METRIC N -> median
  awk -F'\t' -v m="$1" -v n="$2" '$1 == m && $2 == n {print $3; exit}' "$out/results.tsv"
}
range() { # range METRIC N -> "min-max"
  awk -F'\t' -v m="$1" -v n="$2" '$1 == m && $2 == n {print $4 "-" $5; exit}' "$out/results.tsv"
}
maxn=$(echo "$COUNTS" | tr ',' '\n' | sort -n | tail -n1)

{
  echo "# Benchmark results"
  echo
  echo "Written by \`bench/run-all.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), agent $(git rev-parse --short HEAD 2>/dev/null || echo '?'),"
  echo "release build, ${ROUNDS} rounds per figure (median, min-max), counts ${COUNTS}."
  echo
  echo "## Machine"
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| CPU | $(lscpu | sed -n 's/^Model name: *//p' | head -n1), $(nproc) CPUs available |"
  echo "| Memory | $(free -m | awk '/^Mem:/ {print $2}') MiB |"
  echo "| OS, kernel | $(. /etc/os-release; echo "$PRETTY_NAME"), Linux $(uname -r) |"
  echo "| cgroups | $cgroup_mode |"
  echo "| Disk (state directories under ${TMPDIR:-/tmp}) | $tmp_src; $disk |"
  echo "| runc | $(runc --version 2>/dev/null | head -n1) |"
  echo "| Load average (1/5/15 min) | $load_start at start, $load_end at the end (the machine is shared) |"
  echo
  echo "## Figures"
  echo
  echo "Containers run the busybox test image in network mode \`$NETWORK_MODE\`$( [ "$NETWORK_MODE" = bridge ] && echo " (veth, address and firewall rules on the agent's default network are set up before the process starts)")."
  echo "\"File to running\" starts when the manifest files are written and ends when every container's"
  echo "process has written its marker into a shared volume; it includes the watcher's debounce (200 ms)"
  echo "and settle check (150 ms). Bare runc: \`runc run --detach\` on the same unpacked root filesystem"
  echo "(a new network namespace with loopback only), N containers one after the other."
  echo
  echo "| Figure | Median | Range |"
  echo "|---|---|---|"
  for n in $(echo "$COUNTS" | tr ',' ' '); do
    echo "| File to running, $n container(s) (agent) | $(fig agent_file_to_running "$n") ms | $(range agent_file_to_running "$n") ms |"
    if [ -n "$(fig runc_run_sequential "$n")" ]; then
      echo "| Bare \`runc run\`, $n container(s), same rootfs | $(fig runc_run_sequential "$n") ms | $(range runc_run_sequential "$n") ms |"
    fi
    echo "| Tear-down of $n (files removed -> none listed) | $(fig agent_teardown "$n") ms | $(range agent_teardown "$n") ms |"
  done
  echo "| No-op reconcile with $maxn running (\`agent apply\`, CLI round trip) | $(fig agent_noop_apply_cli "$maxn") ms | $(range agent_noop_apply_cli "$maxn") ms |"
  echo "| No-op reconcile with $maxn running (the pass itself, incl. 150 ms settle check) | $(fig agent_noop_pass "$maxn") ms | $(range agent_noop_pass "$maxn") ms |"
  echo "| Agent CPU while idle with $maxn containers (${IDLE_SECONDS} s) | $(fig agent_idle_cpu "$maxn") % of one core | |"
  echo "| Agent RSS while idle with $maxn containers | $(fig agent_idle_rss "$maxn") MiB (peak $(fig agent_peak_rss "$maxn") MiB) | |"
  echo "| Monitor private memory (Private_Dirty, per container, $maxn monitors) | $(fig monitor_private_dirty "$maxn") KiB | $(range monitor_private_dirty "$maxn") KiB |"
  echo "| Exec driver start, spec written -> running (agent monitor) | $(fig exec_driver_start 1) ms | |"
  echo "| Exec driver start, same bundle, bare \`runc run --detach\` | $(fig exec_runc_start 1) ms | |"
  echo "| Plan time, 10,000 containers, nothing to do | $(fig plan_10k_no_change 10000) ms | min $(awk -F'\t' '$1 == "plan_10k_no_change" {print $4}' "$out/results.tsv") ms |"
  echo "| Plan time, 10,000 containers, 20% changed | $(fig plan_10k_20pct_changed 10000) ms | min $(awk -F'\t' '$1 == "plan_10k_20pct_changed" {print $4}' "$out/results.tsv") ms |"
  if [ -z "$import_note" ]; then
    echo "| Image import throughput, \`agent image load\` of an OCI layout ($(sed -n 's/^image: //p' "$out/import.txt")) | $(fig import_agent_image_load "") MB/s | |"
    echo "| sha256sum over the same layer files | $(fig import_sha256sum "") MB/s | |"
  else
    echo "| Image import throughput | $import_note | |"
  fi
  echo
  if [ -s "$out/core.md" ]; then
    echo "## Reconcile core (bench/core.sh)"
    echo
    echo "Medians (min-max, n rounds); ratio = agent / other. See docs/benchmarks.md for what each row measures."
    echo
    cat "$out/core.md"
    echo
  fi
  echo "![latency vs container count](latency.png)"
  echo
  echo "Raw outputs: daemon.txt, exec.txt, plan.txt$( [ -z "$import_note" ] && echo ", import.txt"); every figure: results.tsv."
} > "$out/results.md"

# --- the plot -------------------------------------------------------------------------------------
if command -v gnuplot >/dev/null 2>&1; then
  for m in agent_file_to_running runc_run_sequential agent_teardown; do
    awk -F'\t' -v m="$m" '$1 == m {print $2 "\t" $3 "\t" $4 "\t" $5}' "$out/daemon.tsv" | sort -n > "$out/.plot-$m.dat"
  done
  gnuplot <<GP
set terminal pngcairo size 900,560 noenhanced font ",11"
set output "$out/latency.png"
set title "agent: time until N containers run / are gone (median, min-max), network mode $NETWORK_MODE"
set xlabel "containers"
set ylabel "milliseconds"
set key top left
set grid
set xrange [0:*]
set yrange [0:*]
plot "$out/.plot-agent_file_to_running.dat" using 1:2:3:4 with yerrorlines lw 2 title "agent: manifest files written -> all running", \
     "$out/.plot-runc_run_sequential.dat" using 1:2:3:4 with yerrorlines lw 2 title "bare runc run, one after the other", \
     "$out/.plot-agent_teardown.dat" using 1:2:3:4 with yerrorlines lw 2 title "agent: files removed -> all gone"
GP
  rm -f "$out"/.plot-*.dat
else
  echo "run-all: gnuplot is not installed (scripts/apt/bench.list): no plot" >&2
fi
echo "== wrote $out/results.md, $out/results.tsv, $out/latency.png"
cat "$out/results.md"
