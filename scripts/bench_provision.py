#!/usr/bin/env python3
"""Provisioning benchmark (issue: provisioning §6), run by scripts/bench-provision.sh.

Starts N sshd hosts on loopback addresses and an embedded Sentinel (`sentinel up`), then measures:
  1. wall time of the apply-config playbook on N hosts through Sentinel (POST → run ended, and the
     run's own started→finished) against ansible-playbook run by hand with the same inventory, forks,
     SSH options and callback, alternating, several rounds;
  2. a chatty playbook: every output line carries the controller's time when ansible made it; an SSE
     client records when each line reached it (latency p50/p99/max) and the rate lines were stored at;
  3. the Sentinel process's peak RSS during the runs.
Prints one JSON document. Only loopback traffic.
"""
import json, os, re, shutil, signal, socket, subprocess, sys, tempfile, threading, time, urllib.request

N = int(os.environ.get("BENCH_HOSTS", "20"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CHATTY_ITEMS = int(os.environ.get("BENCH_CHATTY_ITEMS", "40"))
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
SENTINEL = os.environ.get("BENCH_SENTINEL", os.path.join(TARGET, "debug", "sentinel"))
ANSIBLE = os.environ.get("BENCH_ANSIBLE", os.path.join(TARGET, "ansible-venv", "bin", "ansible-playbook"))
USER = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def keygen(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", path], check=True)
    return open(path).read(), " ".join(open(path + ".pub").read().split()[:2])


def start_hosts(tmp, pub):
    os.makedirs("/run/sshd", exist_ok=True)
    hosts = []
    for i in range(N):
        d = os.path.join(tmp, f"h{i}"); os.makedirs(d)
        _, hostkey = keygen(os.path.join(d, "host_key"))
        open(os.path.join(d, "authorized_keys"), "w").write(pub + "\n")
        ip, port = f"127.88.0.{10 + i}", free_port()
        cfg = os.path.join(d, "sshd_config")
        open(cfg, "w").write(
            f"ListenAddress {ip}:{port}\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n"
            "PasswordAuthentication no\nUsePAM no\nStrictModes no\nPidFile none\nMaxStartups 100\n"
            "Subsystem sftp internal-sftp\n")
        p = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", cfg], stderr=open(os.path.join(d, "log"), "w"))
        hosts.append({"ip": ip, "port": port, "key": hostkey, "proc": p, "name": f"bench-{i}"})
    for h in hosts:
        for _ in range(100):
            try:
                socket.create_connection((h["ip"], h["port"]), 0.2).close(); break
            except OSError:
                time.sleep(0.05)
    return hosts


class Api:
    def __init__(self, base, token):
        self.base, self.token = base, token

    def call(self, method, path, body=None, ctype="application/json"):
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {self.token}", "Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def wait_run(self, rid):
        while True:
            _, r = self.call("GET", f"/api/v1/provisioning/runs/{rid}")
            if r["state"] in ("succeeded", "failed", "cancelled"):
                return r
            time.sleep(0.02)


def ts(s):
    from datetime import datetime
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def by_hand(tmp, hosts, playbook, vars_yaml, login_key):
    """ansible-playbook as an operator would run it: same inventory, forks, SSH options, callback."""
    d = os.path.join(tmp, "byhand"); shutil.rmtree(d, ignore_errors=True); os.makedirs(d)
    for sub in ("cp", "tmp", "home"):
        os.makedirs(os.path.join(d, sub))
    inv = "[all]\n" + "".join(
        f"{h['name']} ansible_host={h['ip']} ansible_port={h['port']} ansible_user={USER} "
        f"ansible_python_interpreter=/usr/bin/python3 ansible_ssh_extra_args='-o StrictHostKeyChecking=yes'\n" for h in hosts)
    open(os.path.join(d, "hosts.ini"), "w").write(inv)
    open(os.path.join(d, "known_hosts"), "w").write("".join(f"[{h['ip']}]:{h['port']} {h['key']}\n" for h in hosts))
    open(os.path.join(d, "vars.yml"), "w").write(vars_yaml)
    env = {
        "PATH": os.path.dirname(ANSIBLE) + ":/usr/bin:/bin", "HOME": os.path.join(d, "home"), "LANG": "C.UTF-8",
        "ANSIBLE_SSH_ARGS": f"-o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile={d}/known_hosts "
                            "-o GlobalKnownHostsFile=/dev/null -o HashKnownHosts=no -o BatchMode=yes -o ConnectTimeout=10",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": os.path.join(d, "cp"), "ANSIBLE_LOCAL_TEMP": os.path.join(d, "tmp"),
        "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_PIPELINING": "False", "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_STDOUT_CALLBACK": "sentinel_jsonl", "ANSIBLE_CALLBACK_PLUGINS": os.path.join(ROOT, "ansible/callback_plugins"),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
    }
    env.update(json.loads(os.environ.get("BENCH_HAND_ENV", "{}")))
    agent = subprocess.run(["ssh-agent", "-a", os.path.join(d, "agent.sock")], capture_output=True, text=True, env=env)
    env["SSH_AUTH_SOCK"] = os.path.join(d, "agent.sock")
    subprocess.run(["ssh-add", "-q", "-"], input=login_key, text=True, env=env, check=True)
    t0 = time.time()
    subprocess.run([ANSIBLE, "-i", os.path.join(d, "hosts.ini"), "--forks", str(N), "-e", "@" + os.path.join(d, "vars.yml"),
                    playbook], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=d)
    wall = time.time() - t0
    pid = re.search(r"SSH_AGENT_PID=(\d+)", agent.stdout)
    if pid:
        os.kill(int(pid.group(1)), signal.SIGTERM)
    for sock in os.listdir(os.path.join(d, "cp")):
        subprocess.run(["ssh", "-o", f"ControlPath={d}/cp/{sock}", "-O", "exit", "x"], capture_output=True)
    return wall


def rss_sampler(pid, out, stop):
    while not stop.is_set():
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    out.append(int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.1)


def sse_latencies(api, job, out):
    req = urllib.request.Request(f"{api.base}/api/v1/jobs/{job}/stream", headers={"Authorization": f"Bearer {api.token}"})
    with urllib.request.urlopen(req, timeout=300) as r:
        event = None
        for raw in r:
            line = raw.decode().rstrip("\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                now = time.time()
                data = json.loads(line[5:])
                m = re.search(r"t=(\d+\.\d+)", data.get("line", "") or "")
                if m:
                    out.append((float(m.group(1)), now))
                if event == "finished":
                    return


def main():
    tmp = tempfile.mkdtemp(prefix="bench-provision-")
    login_key, login_pub = keygen(os.path.join(tmp, "login"))
    hosts = start_hosts(tmp, login_pub)
    port = free_port()
    pbdir = os.path.join(tmp, "playbooks"); os.makedirs(pbdir)
    open(os.path.join(pbdir, "trickle.yml"), "w").write(
        "---\n# Bench only: one output line at a time, each with the controller time it was made at.\n"
        "- name: Trickle\n  hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Talk\n      ansible.builtin.debug:\n        msg: \"t={{ '%.6f' % now().timestamp() }}\"\n"
        "      loop: \"{{ range(300) | list }}\"\n")
    open(os.path.join(pbdir, "chatty.yml"), "w").write(
        "---\n# Bench only: bursts of output lines with the controller time they were made at.\n"
        "- name: Chatty\n  hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Talk\n      ansible.builtin.debug:\n"
        "        msg: \"{{ ['t=%.6f' % now().timestamp()] | product(range(500)) | map('join', ' ') | list }}\"\n"
        f"      loop: \"{{{{ range({CHATTY_ITEMS}) | list }}}}\"\n")
    env = dict(PATH=os.environ["PATH"], HOME=os.environ.get("HOME", "/root"),
               SENTINEL_PROVISION__ANSIBLE_PLAYBOOK=ANSIBLE, SENTINEL_PROVISION__PYTHON_INTERPRETER="/usr/bin/python3",
               SENTINEL_PROVISION__PLAYBOOK_DIRS=f"{ROOT}/ansible/playbooks,{pbdir}", SENTINEL_TELEMETRY__LOG_LEVEL="warn")
    data = os.path.join(tmp, "data")
    sentinel = subprocess.Popen([SENTINEL, "up", "--data-dir", data, "--listen", f"127.0.0.1:{port}"], env=env,
                                stdout=open(os.path.join(tmp, "sentinel.log"), "w"), stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1); break
            except Exception:
                time.sleep(0.1)
        api = Api(f"http://127.0.0.1:{port}", open(os.path.join(data, "api-token")).read().strip())
        assert api.call("POST", "/api/v1/provisioning/ssh-keys", {"name": "bench", "private_key": login_key, "default": True})[0] == 201
        csv = "provider_ref,name,ip,ssh_port,ssh_user,labels,host_key\n" + "".join(
            f"{h['name']},{h['name']},{h['ip']},{h['port']},{USER},role=bench,{h['key']}\n" for h in hosts)
        assert api.call("POST", "/api/v1/servers/import", csv.encode(), "text/csv")[0] == 200
        dest = os.path.join(tmp, "out", "%h", "app.ini")
        values = {"port": 8080, "mode": "bench"}
        vars_yaml = json.dumps({"config_dest": dest, "config_values": values})
        rss, stop = [], threading.Event()
        threading.Thread(target=rss_sampler, args=(sentinel.pid, rss, stop), daemon=True).start()
        body = {"playbook": "apply-config", "selector": "role=bench", "extra_vars": {"config_dest": dest, "config_values": values}}
        # Warm-up (first contact, files written), then steady-state rounds, alternating.
        api.wait_run(api.call("POST", "/api/v1/provisioning/runs", body)[1]["id"])
        by_hand(tmp, hosts, os.path.join(ROOT, "ansible/playbooks/apply-config.yml"), vars_yaml, login_key)
        rounds = []
        for _ in range(ROUNDS):
            hand = by_hand(tmp, hosts, os.path.join(ROOT, "ansible/playbooks/apply-config.yml"), vars_yaml, login_key)
            t0 = time.time()
            run = api.wait_run(api.call("POST", "/api/v1/provisioning/runs", body)[1]["id"])
            total = time.time() - t0
            if run["state"] != "succeeded":
                _, log = api.call("GET", f"/api/v1/jobs/{run['job_id']}/log?limit=1000")
                sys.exit("the run failed: " + "\n".join(l["line"] for l in log)[-3000:])
            # Sentinel's own time inside the run: lease taken → ansible-playbook spawned, and ansible's
            # last line → the run's outcome committed.
            _, evs = api.call("GET", f"/api/v1/jobs/{run['job_id']}/events?limit=1000")
            evs = evs if isinstance(evs, list) else evs.get("items", [])
            spawned = next(ts(e["at"]) for e in evs if "started ansible-playbook" in str(e.get("line", "")))
            last = max(ts(e["at"]) for e in evs if e["type"] in ("log", "host"))
            own = (spawned - ts(run["started_at"])) + (ts(run["finished_at"]) - last)
            rounds.append({"by_hand_s": round(hand, 3), "sentinel_api_to_end_s": round(total, 3),
                           "sentinel_run_s": round(ts(run["finished_at"]) - ts(run["started_at"]), 3),
                           "sentinel_own_s": round(own, 3)})
        if os.environ.get("BENCH_TRACE"):
            _, evs = api.call("GET", f"/api/v1/jobs/{run['job_id']}/events?limit=1000")
            t0 = ts(run["started_at"])
            for e in evs if isinstance(evs, list) else evs.get("items", []):
                print(f"{ts(e['at']) - t0:7.3f} {e['type']:10} {str(e.get('line', e.get('host', '')))[:70]}", file=sys.stderr)
            print(f"{ts(run['finished_at']) - t0:7.3f} finished_at", file=sys.stderr)
        # The chatty run, followed over SSE.
        lat = []
        # On one host: ansible's own pipeline is not starved of CPU, so the delay measured is mostly
        # Sentinel's (it still includes ansible's time from making a line to printing it).
        _, servers = api.call("GET", "/api/v1/servers?limit=1")
        first_host = servers["items"][0]["id"]

        def follow(playbook, out):
            _, r = api.call("POST", "/api/v1/provisioning/runs", {"playbook": playbook, "server_ids": [first_host]})
            t = threading.Thread(target=sse_latencies, args=(api, r["job_id"], out)); t.start()
            r = api.wait_run(r["id"]); t.join(timeout=60)
            return r

        trickle_lat = []
        trickle = follow("trickle", trickle_lat)
        chatty = follow("chatty", lat)
        stop.set()
        dt = sorted(now - made for made, now in trickle_lat)
        pct_t = lambda q: round(dt[min(len(dt) - 1, int(q * len(dt)))] * 1000, 1) if dt else None
        d = sorted(now - made for made, now in lat)
        pct = lambda q: round(d[min(len(d) - 1, int(q * len(d)))] * 1000, 1) if d else None
        made = [m for m, _ in lat]
        hand_mean = sum(r["by_hand_s"] for r in rounds) / max(1, len(rounds)) or 1
        sen_mean = sum(r["sentinel_api_to_end_s"] for r in rounds) / max(1, len(rounds))
        print(json.dumps({
            "hosts": N, "forks": N, "rounds": rounds,
            "by_hand_mean_s": round(hand_mean, 3), "sentinel_mean_s": round(sen_mean, 3),
            "overhead_pct": round((sen_mean / hand_mean - 1) * 100, 1),
            "sentinel_own_pct_of_by_hand": round(sum(r["sentinel_own_s"] for r in rounds) / max(1, len(rounds)) / hand_mean * 100, 2),
            "trickle": {"state": trickle["state"], "lines": len(trickle_lat), "latency_ms_p50": pct_t(0.5),
                        "latency_ms_p99": pct_t(0.99), "latency_ms_max": pct_t(1.0)},
            "chatty": {"state": chatty["state"], "timestamped_lines_seen": len(lat),
                       "lines_per_s_received": round(len(lat) / (max(n for _, n in lat) - min(n for _, n in lat)), 1) if len(lat) > 1 else None,
                       "latency_ms_p50": pct(0.5), "latency_ms_p99": pct(0.99), "latency_ms_max": pct(1.0)},
            "sentinel_peak_rss_mb": round(max(rss) / 1024, 1) if rss else None,
            "sentinel_rss_before_runs_mb": round(rss[0] / 1024, 1) if rss else None,
        }, indent=2))
    finally:
        sentinel.send_signal(signal.SIGTERM)
        try:
            sentinel.wait(10)
        except subprocess.TimeoutExpired:
            sentinel.kill()
        for h in hosts:
            h["proc"].kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
