#!/usr/bin/env bash
# Benchmark: the networks' DNS server (`agent dns-server`, issue 17 item 6) against Podman's
# aardvark-dns, both run standalone on loopback addresses with the same records (a network with
# names `srv`/`db` and a client), queried from the host over UDP by a small Python client:
#   - first lookup: from spawning the server to its first answer (queries sent every 1 ms;
#     includes the process start, reading the records and binding);
#   - steady state: median and p99 of N sequential queries of a container name;
#   - forwarded (agent only): a name no container has, answered by a stub upstream on
#     127.0.0.1 (aardvark would forward to the host's resolvers: not measured, so that no query
#     leaves 127.0.0.0/8);
#   - reload (agent only): records rewritten + SIGHUP until the new name answers.
# Run as root (port 53 on 127.0.0.201 for the agent's server) after `cargo build --release`
# (target/release/agent, else target/debug/agent).
#   bench/dns.sh [N]
# aardvark-dns: AARDVARK=/path, else /usr/lib/podman/aardvark-dns (Debian package aardvark-dns,
# which pulls in netavark: that switches a podman without CNI networks to netavark, so install
# it only where that does not matter); skipped with a note when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-2000}
bin=target/release/agent
[ -x "$bin" ] || bin=target/debug/agent
[ -x "$bin" ] || { echo "build the agent first (cargo build --release)" >&2; exit 1; }
aardvark=${AARDVARK:-/usr/lib/podman/aardvark-dns}

work=$(mktemp -d /tmp/agent-bench-dns-XXXXXX)
cleanup() {
  for f in "$work/agent/server.pid" "$work/aardvark/aardvark.pid"; do
    [ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/agent" "$work/aardvark"

python3 - "$bin" "$aardvark" "$work" "$n" <<'PY'
import os, random, socket, statistics, struct, subprocess, sys, threading, time, json

binary, aardvark, work, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def query(name):
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return qid, q + b"\0\0\1\0\1"

def answer_ip(reply):
    # The last 4 bytes of a reply with at least one answer (one A record).
    if len(reply) < 16 or struct.unpack(">H", reply[6:8])[0] == 0:
        return None
    return socket.inet_ntoa(reply[-4:])

def ask(sock, server, name, timeout=1.0):
    qid, q = query(name)
    sock.settimeout(timeout)
    sock.sendto(q, server)
    while True:
        data, _ = sock.recvfrom(4096)
        if data[:2] == struct.pack(">H", qid):
            return answer_ip(data)

def client(src):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    return s

def first_answer(start, server, src, name, expect):
    s = client(src)
    t0 = time.perf_counter()
    proc = start()
    deadline = t0 + 10
    while time.perf_counter() < deadline:
        try:
            if ask(s, server, name, timeout=0.001) == expect:
                return (time.perf_counter() - t0) * 1000, proc
        except (socket.timeout, ConnectionRefusedError, OSError):
            pass
    raise SystemExit(f"no answer from {server} within 10 s")

def steady(server, src, name, expect):
    s = client(src)
    for _ in range(50):
        ask(s, server, name)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        got = ask(s, server, name)
        times.append((time.perf_counter() - t0) * 1e6)
        if got != expect:
            raise SystemExit(f"{server}: {name} answered {got}, expected {expect}")
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99)]

def stub():
    # Answers every A query with 192.0.2.7 (TEST-NET-1: data only).
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    def loop():
        while True:
            q, peer = s.recvfrom(4096)
            end = q.index(b"\0", 12) + 5
            s.sendto(q[:2] + b"\x81\x80\0\1\0\1\0\0\0\0" + q[12:end]
                     + b"\xc0\x0c\0\1\0\1\0\0\0\x1e\0\4" + socket.inet_aton("192.0.2.7"), peer)
    threading.Thread(target=loop, daemon=True).start()
    return s.getsockname()[1]

def show(what, med, p99):
    print(f"  {what}: median {med:.0f} us, p99 {p99:.0f} us ({n} queries)")

# ---------------------------------------------------------------- agent dns-server
port = stub()
adir = os.path.join(work, "agent")
records = lambda extra: {"version": 1, "upstreams": [f"127.0.0.1:{port}"], "networks": [
    {"name": "bench", "gateway": "127.0.0.201", "hosts": [
        {"ip": "127.0.0.202", "names": ["srv", "db"]},
        {"ip": "127.0.0.203", "names": ["client"]}] + extra}]}
def write(r):
    with open(os.path.join(adir, ".tmp"), "w") as f:
        json.dump(r, f)
    os.rename(os.path.join(adir, ".tmp"), os.path.join(adir, "records.json"))
write(records([]))
log = open(os.path.join(adir, "server.log"), "w")
start = lambda: subprocess.Popen([binary, "dns-server", "--dir", adir], stdout=log, stderr=log)
server = ("127.0.0.201", 53)
print(f"agent dns-server ({binary}):")
ms, proc = first_answer(start, server, "127.0.0.203", "srv", "127.0.0.202")
print(f"  first lookup: {ms:.1f} ms from spawn to the first answer")
show("steady state, container name", *steady(server, "127.0.0.203", "srv", "127.0.0.202"))
show("forwarded to the stub upstream", *steady(server, "127.0.0.203", "outside.test", "192.0.2.7"))
s = client("127.0.0.203")
write(records([{"ip": "127.0.0.204", "names": ["late"]}]))
t0 = time.perf_counter()
proc.send_signal(1)
while ask(s, server, "late") != "127.0.0.204":
    time.sleep(0.0002)
print(f"  reload: {(time.perf_counter() - t0) * 1000:.2f} ms from SIGHUP to the new name answering")
rss = int([l for l in open(f"/proc/{proc.pid}/status") if l.startswith("VmRSS")][0].split()[1])
print(f"  RSS after the runs: {rss / 1024:.1f} MiB")
proc.terminate(); proc.wait()

# ---------------------------------------------------------------- aardvark-dns
if not os.access(aardvark, os.X_OK):
    print(f"aardvark-dns: not found at {aardvark} (set AARDVARK=...): not compared")
    sys.exit(0)
vdir = os.path.join(work, "aardvark")
with open(os.path.join(vdir, "bench"), "w") as f:
    f.write("127.0.0.211\nid1 127.0.0.212  srv,db\nid2 127.0.0.213  client\n")
version = subprocess.run([aardvark, "--version"], capture_output=True, text=True).stdout.strip()
print(f"{version} ({aardvark}, port 5354; it daemonizes: the time includes that):")
start = lambda: subprocess.Popen([aardvark, "-c", vdir, "-p", "5354", "run"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
ms, _ = first_answer(start, ("127.0.0.211", 5354), "127.0.0.213", "srv", "127.0.0.212")
print(f"  first lookup: {ms:.1f} ms from spawn to the first answer")
show("steady state, container name", *steady(("127.0.0.211", 5354), "127.0.0.213", "srv", "127.0.0.212"))
pid = int(open(os.path.join(vdir, "aardvark.pid")).read().strip())
rss = int([l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0].split()[1])
print(f"  RSS after the runs: {rss / 1024:.1f} MiB")
PY
