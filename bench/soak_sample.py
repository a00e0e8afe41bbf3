#!/usr/bin/env python3
"""Sampler and events follower of bench/soak.sh (not meant to be run by hand).

  soak_sample.py sample WORK CSV INTERVAL BIN INSTANCE VETH_PREFIX
      every INTERVAL seconds one CSV row: the agent's RSS, fds, threads, CPU, store and log
      sizes, monitors, veths, namespaces, firewall rules, mounts, `agent ps` latency, and the
      events follower's counters. Runs until killed (SIGTERM).
  soak_sample.py follow WORK BIN STATS
      `agent events -f -o json` throughout, reconnecting whenever the agent is gone; counts events,
      reconnects, duplicates and ids that never arrived (gaps). Writes its counters to STATS.
  soak_sample.py report CSV OUT_PREFIX WARMUP_S
      growth per hour of every column (least-squares fit over the samples after WARMUP_S), written
      to OUT_PREFIX.growth.md and printed; OUT_PREFIX.png plotted with gnuplot when installed.

Only the standard library; it reads /proc and runs `ip`, `nft`, `iptables-save` and the agent's
CLI, nothing else.
"""
import json
import os
import signal
import subprocess
import sys
import time

COLUMNS = [
    "t_s", "agent_pid", "rss_kib", "anon_kib", "arenas", "fds", "threads", "cpu_pct", "store_kib",
    "logs_kib", "agent_log_kib", "monitors", "monitors_rss_kib", "exec_dirs", "veths", "netns",
    "nft_rules", "ipt_rules", "mounts", "ps_ms", "containers", "running", "events", "event_gaps",
    "event_reconnects", "load1",
]
TICKS = os.sysconf("SC_CLK_TCK")
running = True


def stop(*_):
    global running
    running = False


def read(path, default=""):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return default


def status_kib(pid, key):
    for line in read("/proc/%s/status" % pid).splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def arenas(pid):
    """glibc malloc arenas besides the main one: anonymous heaps mapped at 64 MiB boundaries
    (HEAP_MAX_SIZE on 64-bit), each a read-write part followed by its reserved rest"""
    n = 0
    prev_end = None
    for line in read("/proc/%s/maps" % pid).splitlines():
        f = line.split()
        if len(f) > 5:
            prev_end = None
            continue
        lo, hi = (int(x, 16) for x in f[0].split("-"))
        if f[1].startswith("rw") and lo % (64 << 20) == 0 and (hi - lo) <= (64 << 20):
            prev_end = hi
            n += 1 if hi % (64 << 20) == 0 else 0
        elif prev_end == lo and f[1].startswith("---") and hi % (64 << 20) == 0:
            n += 1
            prev_end = None
        else:
            prev_end = None
    return n


def cpu_ticks(pid):
    s = read("/proc/%s/stat" % pid)
    if not s:
        return None
    f = s[s.rfind(")") + 2:].split()
    return int(f[11]) + int(f[12])


def file_kib(paths):
    total = 0
    for p in paths:
        try:
            total += os.stat(p).st_size
        except OSError:
            pass
    return total // 1024


def run(cmd, timeout=20):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def monitors(state):
    """pids of `agent monitor --state-dir STATE ...` processes"""
    out = []
    needle = "\0--state-dir\0%s\0" % state
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        c = read("/proc/%s/cmdline" % d)
        if "\0monitor\0" in c and needle in c:
            out.append(d)
    return out


def sample(work, csv, interval, binary, instance, prefix):
    state = work + "/state"
    stats_path = work + "/events.stats"
    client = ["--socket", work + "/agent.sock", "--state-dir", state]
    new = not os.path.exists(csv)
    out = open(csv, "a", buffering=1)
    if new:
        out.write(",".join(COLUMNS) + "\n")
    t0 = float(read(work + "/t0", str(time.time())).strip() or time.time())
    last = None  # (pid, ticks, time)
    while running:
        t = time.time()
        pid = read(work + "/agent.pid").strip()
        alive = pid.isdigit() and os.path.exists("/proc/" + pid)
        row = dict.fromkeys(COLUMNS, "")
        row["t_s"] = "%.1f" % (t - t0)
        row["load1"] = read("/proc/loadavg").split()[0]
        if alive:
            row["agent_pid"] = pid
            row["rss_kib"] = status_kib(pid, "VmRSS")
            row["anon_kib"] = status_kib(pid, "RssAnon")
            row["threads"] = status_kib(pid, "Threads")
            row["arenas"] = arenas(pid)
            try:
                row["fds"] = len(os.listdir("/proc/%s/fd" % pid))
            except OSError:
                pass
            ticks = cpu_ticks(pid)
            if ticks is not None and last and last[0] == pid and t > last[2]:
                row["cpu_pct"] = "%.2f" % (100.0 * (ticks - last[1]) / TICKS / (t - last[2]))
            last = (pid, ticks, t) if ticks is not None else None
        row["store_kib"] = file_kib([state + "/state.db" + s for s in ("", "-wal", "-shm")])
        logs = []
        dirs = 0
        try:
            for d in os.listdir(state + "/exec"):
                dirs += 1
                try:
                    logs += [state + "/exec/" + d + "/" + f for f in os.listdir(state + "/exec/" + d)
                             if ".log" in f]
                except OSError:
                    pass
        except OSError:
            pass
        row["exec_dirs"] = dirs
        row["logs_kib"] = file_kib(logs)
        row["agent_log_kib"] = file_kib([os.path.dirname(work) + "/agent.log"])
        mons = monitors(state)
        row["monitors"] = len(mons)
        row["monitors_rss_kib"] = sum(status_kib(m, "VmRSS") for m in mons)
        row["veths"] = sum(1 for l in run(["ip", "-o", "link", "show"]).splitlines()
                           if l.split(":")[1].strip().split("@")[0].startswith(prefix))
        try:
            row["netns"] = sum(1 for n in os.listdir("/run/netns") if n.startswith(instance + "-"))
        except OSError:
            row["netns"] = 0
        nft = run(["nft", "-a", "list", "table", "ip", instance])
        row["nft_rules"] = sum(1 for l in nft.splitlines() if "# handle" in l and not
                               l.strip().startswith(("table", "chain", "set", "map")))
        row["ipt_rules"] = sum(1 for l in run(["iptables-save"]).splitlines()
                               if l.startswith("-A") and instance in l.lower())
        row["mounts"] = sum(1 for l in read("/proc/mounts").splitlines() if work in l)
        t1 = time.time()
        ps = run(["timeout", "20", binary, "ps", "-o", "json"] + client)
        row["ps_ms"] = "%.1f" % ((time.time() - t1) * 1000)
        try:
            rows = json.loads(ps)
            row["containers"] = len(rows)
            row["running"] = sum(1 for r in rows if r.get("state") == "running")
        except ValueError:
            pass
        try:
            st = json.loads(read(stats_path, "{}") or "{}")
            row["events"] = st.get("events", "")
            row["event_gaps"] = st.get("gaps", "")
            row["event_reconnects"] = st.get("reconnects", "")
        except ValueError:
            pass
        out.write(",".join(str(row[c]) for c in COLUMNS) + "\n")
        end = t + interval
        while running and time.time() < end:
            time.sleep(min(0.5, max(0.0, end - time.time())))


def follow(work, binary, stats_path):
    client = ["--socket", work + "/agent.sock", "--state-dir", work + "/state"]
    # reconnects: connections after the first that delivered anything (a stale socket after a
    # SIGKILL refuses at once and is not counted)
    st = {"events": 0, "gaps": 0, "dups": 0, "reconnects": -1, "last_id": 0, "kinds": {}}
    proc = None

    def save():
        tmp = stats_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st, f)
        os.replace(tmp, stats_path)

    def term(*_):
        if proc and proc.poll() is None:
            proc.terminate()
        save()
        sys.exit(0)

    signal.signal(signal.SIGTERM, term)
    signal.signal(signal.SIGINT, term)
    last_save = 0.0
    while True:
        if not os.path.exists(work + "/agent.sock"):
            time.sleep(1)
            continue
        # The newest 1000 first: what happened while the follower was away must be among them.
        proc = subprocess.Popen([binary, "events", "-f", "-o", "json", "-n", "1000"] + client,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        connected = False
        for line in proc.stdout:
            if not connected:
                connected = True
                st["reconnects"] += 1
            try:
                e = json.loads(line)
                i = int(e["id"])
            except (ValueError, KeyError, TypeError):
                continue
            if i <= st["last_id"]:
                st["dups"] += 1
                continue
            if st["last_id"] and i > st["last_id"] + 1:
                st["gaps"] += i - st["last_id"] - 1
            st["last_id"] = i
            st["events"] += 1
            k = e.get("kind", "?")
            st["kinds"][k] = st["kinds"].get(k, 0) + 1
            if time.time() - last_save > 2:
                save()
                last_save = time.time()
        proc.wait()
        save()
        time.sleep(1)


def report(csv, prefix, warmup):
    import math
    lines = [l.rstrip("\n").split(",") for l in open(csv) if l.strip()]
    head, rows = lines[0], lines[1:]
    col = {c: i for i, c in enumerate(head)}
    units = {"rss_kib": ("MiB", 1024), "anon_kib": ("MiB", 1024), "store_kib": ("MiB", 1024),
             "logs_kib": ("MiB", 1024), "agent_log_kib": ("MiB", 1024),
             "monitors_rss_kib": ("MiB", 1024)}
    skip = {"t_s", "agent_pid", "events", "event_gaps", "event_reconnects", "load1"}
    t_all = [float(r[col["t_s"]]) for r in rows if r[col["t_s"]]]
    if not t_all:
        print("no samples")
        return
    span = t_all[-1] - t_all[0]
    out = ["| quantity | after warm-up: first | last | min | max | median | growth per hour (fit) |",
           "|---|---|---|---|---|---|---|"]
    for c in head:
        if c in skip:
            continue
        pts = []
        for r in rows:
            try:
                t, v = float(r[col["t_s"]]), float(r[col[c]])
            except (ValueError, IndexError):
                continue
            if t >= warmup:
                pts.append((t, v))
        if len(pts) < 3:
            out.append("| %s | - | - | - | - | - | too few samples after warm-up |" % c)
            continue
        unit, div = units.get(c, ("", 1))
        n = len(pts)
        mt = sum(p[0] for p in pts) / n
        mv = sum(p[1] for p in pts) / n
        sxx = sum((p[0] - mt) ** 2 for p in pts)
        slope = sum((p[0] - mt) * (p[1] - mv) for p in pts) / sxx if sxx else 0.0
        vs = sorted(p[1] for p in pts)
        med = vs[n // 2] if n % 2 else (vs[n // 2 - 1] + vs[n // 2]) / 2
        f = lambda x: ("%.2f" % (x / div)) if div != 1 else ("%.1f" % x if x % 1 else "%d" % x)
        out.append("| %s%s | %s | %s | %s | %s | %s | %+.3f%s/h |" % (
            c, " (%s)" % unit if unit else "", f(pts[0][1]), f(pts[-1][1]), f(vs[0]), f(vs[-1]),
            f(med), slope * 3600 / div, " " + unit if unit else ""))
    last = rows[-1]
    out.append("")
    out.append("%d samples over %.1f h; warm-up %.0f min excluded from the fits; events followed: %s,"
               " ids missing: %s, reconnects: %s." % (
                   len(rows), span / 3600, warmup / 60, last[col["events"]] or "?",
                   last[col["event_gaps"]] or "?", last[col["event_reconnects"]] or "?"))
    text = "\n".join(out)
    with open(prefix + ".growth.md", "w") as f:
        f.write(text + "\n")
    print(text)
    # PNG: an SVG of a multi-hour run holds every sample (megabytes)
    plot(csv, prefix + ".png", col, warmup)


def plot(csv, png, col, warmup):
    if subprocess.run(["sh", "-c", "command -v gnuplot"], capture_output=True).returncode:
        print("gnuplot not installed: no plot (bench/soak.sh install)")
        return
    panels = [
        ("agent RSS / anon (MiB)", [("rss_kib", 1024), ("anon_kib", 1024)]),
        ("agent fds, threads, malloc arenas", [("fds", 1), ("threads", 1), ("arenas", 1)]),
        ("agent CPU (% of one core)", [("cpu_pct", 1)]),
        ("store, container logs (MiB)", [("store_kib", 1024), ("logs_kib", 1024)]),
        ("monitors, veths, netns, mounts", [("monitors", 1), ("veths", 1), ("netns", 1), ("mounts", 1)]),
        ("firewall rules (nft, iptables)", [("nft_rules", 1), ("ipt_rules", 1)]),
        ("agent ps latency (ms)", [("ps_ms", 1)]),
        ("containers listed / running", [("containers", 1), ("running", 1)]),
    ]
    g = ["set terminal pngcairo size 1200,1400 font 'sans,9'", "set termoption noenhanced", "set output '%s'" % png,
         "set datafile separator ','", "set multiplot layout 4,2 title 'bench/soak.sh: %s'" %
         os.path.basename(os.path.dirname(os.path.abspath(csv))), "set key top left",
         "set xlabel 'hours'", "set grid"]
    if warmup > 0:
        g.append("set arrow 1 from %f, graph 0 to %f, graph 1 nohead dt 2" % (warmup / 3600, warmup / 3600))
    for title, series in panels:
        g.append("set title '%s'" % title)
        g.append("plot " + ", ".join(
            "'%s' using ($%d/3600):($%d/%d) every ::1 with lines title '%s'" % (
                csv, col["t_s"] + 1, col[c] + 1, d, c) for c, d in series))
    g.append("unset multiplot")
    r = subprocess.run(["gnuplot"], input="\n".join(g), text=True, capture_output=True)
    if r.returncode:
        print("gnuplot failed: " + r.stderr.strip()[:500])
    else:
        print("plot: " + png)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    what = sys.argv[1]
    if what == "sample":
        sample(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7])
    elif what == "follow":
        follow(sys.argv[2], sys.argv[3], sys.argv[4])
    elif what == "report":
        report(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        sys.exit("usage: see the docstring")
