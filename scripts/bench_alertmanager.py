#!/usr/bin/env python3
"""Alertmanager on the same figures as `sentinel bench notify` (docs/benchmarks.md).

Starts Debian's prometheus-alertmanager on loopback with a webhook receiver (this script, keep-alive
HTTP/1.1, 200 at once), group_wait 0s and group_interval 1s like Sentinel's run, and measures:
1. latency from posting an alert (firing, then resolved 10 s later) to its webhook, at a steady rate;
2. a storm: S alerts of one server posted at once -> how many notifications, and when the last came;
3. throughput: M alerts each in its own group posted at once -> notifications/s.

Usage: scripts/bench_alertmanager.py [--per-minute 1000] [--seconds 120] [--storm 500] [--outbox 5000]
"""

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

arrivals = {}
requests = [0]
lock = threading.Lock()


class Hook(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        now = time.monotonic()
        payload = json.loads(body or b"{}")
        with lock:
            requests[0] += 1
            for a in payload.get("alerts", []):
                key = (a["labels"].get("id"), a["status"])
                arrivals.setdefault(key, now)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def free_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def post(port, alerts):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v2/alerts", data=json.dumps(alerts).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(req).read()


def alert(id_, server, resolved=False):
    now = datetime.now(timezone.utc)
    a = {"labels": {"alertname": "http_down", "id": id_, "server": server}, "startsAt": now.isoformat()}
    if resolved:
        a["endsAt"] = now.isoformat()
    else:
        a["endsAt"] = (now + timedelta(hours=1)).isoformat()
    return a


def wait_for(keys, timeout):
    deadline = time.monotonic() + timeout
    while True:
        with lock:
            missing = [k for k in keys if k not in arrivals]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(missing)} notifications never arrived")
        time.sleep(0.02)


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--per-minute", type=int, default=1000)
    p.add_argument("--seconds", type=int, default=120)
    p.add_argument("--storm", type=int, default=500)
    p.add_argument("--outbox", type=int, default=5000)
    args = p.parse_args()
    binary = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
    hook_port, am_port = free_port(), free_port()
    server = ThreadingHTTPServer(("127.0.0.1", hook_port), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    work = tempfile.mkdtemp()
    config = os.path.join(work, "am.yml")
    with open(config, "w") as f:
        f.write(f"""route:
  receiver: hook
  group_by: ['server']
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 24h
receivers:
  - name: hook
    webhook_configs:
      - url: http://127.0.0.1:{hook_port}/hook
        send_resolved: true
""")
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.path={work}/data", f"--web.listen-address=127.0.0.1:{am_port}",
         "--cluster.listen-address=", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{am_port}/-/ready").read()
                break
            except Exception:
                time.sleep(0.1)
        load = open("/proc/loadavg").read().strip()
        # 1. Latency: each "target" its own group (server = its id), firing then resolved 10 s later.
        n = max(1, args.per_minute * args.seconds // 60 // 2)
        spacing = args.seconds / n
        start = time.monotonic()
        committed = []
        next_resolve = 0
        for i in range(n):
            due = start + i * spacing
            time.sleep(max(0, due - time.monotonic()))
            post(am_port, [alert(f"s{i}", f"s{i}")])
            committed.append(((f"s{i}", "firing"), time.monotonic()))
            while next_resolve < i and start + next_resolve * spacing + 10 <= time.monotonic():
                post(am_port, [alert(f"s{next_resolve}", f"s{next_resolve}", resolved=True)])
                committed.append(((f"s{next_resolve}", "resolved"), time.monotonic()))
                next_resolve += 1
        time.sleep(10)
        for j in range(next_resolve, n):
            post(am_port, [alert(f"s{j}", f"s{j}", resolved=True)])
            committed.append(((f"s{j}", "resolved"), time.monotonic()))
        offered = time.monotonic() - start
        wait_for([k for k, _ in committed], 300)
        lat = [(arrivals[k] - t) * 1000 for k, t in committed]
        print(f"latency: {len(committed)} transitions in {offered:.0f} s ({len(committed) / offered * 60:.0f}/min): "
              f"p50 {pct(lat, 0.5):.0f} ms, p99 {pct(lat, 0.99):.0f} ms, max {max(lat):.0f} ms")
        # 2. Storm: S alerts of one server at once.
        before = requests[0]
        t0 = time.monotonic()
        post(am_port, [alert(f"storm{i}", "storm-host") for i in range(args.storm)])
        wait_for([(f"storm{i}", "firing") for i in range(args.storm)], 60)
        wall = time.monotonic() - t0
        time.sleep(2)
        print(f"storm: {args.storm} alerts of one server at once -> {requests[0] - before} notification(s), "
              f"the last {wall * 1000:.0f} ms after the post")
        # 3. Throughput: M groups at once.
        t0 = time.monotonic()
        for chunk in range(0, args.outbox, 1000):
            post(am_port, [alert(f"m{i}", f"m{i}") for i in range(chunk, min(args.outbox, chunk + 1000))])
        wait_for([(f"m{i}", "firing") for i in range(args.outbox)], 600)
        took = time.monotonic() - t0
        print(f"throughput: {args.outbox} groups at once delivered in {took:.1f} s: {args.outbox / took:.0f} notifications/s")
        print(f"load average before: {load}")
    finally:
        proc.terminate()
        proc.wait()
        server.shutdown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
