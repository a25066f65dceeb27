#!/usr/bin/env python3
"""Backup benchmark (issue 11, §5; issue 12, §5): Sentinel's backup of a PostgreSQL database (zstd 3,
age-encrypted, to the local disk and to the S3 emulator) against `pg_dump -Fc -Z0 | zstd -3 > file` run by
hand in the same run, and Sentinel's restore against `zstd -dc file | pg_restore` by hand. With --verify,
also a plan that verifies every backup: the backup with its snapshot statistics, and the verification
(restore into a scratch database and table-by-table comparison) against the backup's own time.

Each Sentinel measurement starts a fresh `sentinel up` (embedded: the gateway, the scheduler and every
worker in one process), so its peak RSS (VmHWM) is that run's, and the process's write_bytes
(/proc/PID/io: what it caused to be written to disk) shows what touched the local disk. Figures go to
docs/benchmarks.md.

Needs release binaries (`cargo build --release -p sentinel`), the machine's PostgreSQL (trust auth on
loopback), zstd, and moto from scripts/test.sh's venv (target/storage-venv). The databases are made
once (sentinel_bench_backup_<GB×10>) and kept for the next run; drop them by hand.

    python3 scripts/bench_backup.py --gigabytes 2.2 --gigabytes 0.5
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG = ["-h", "127.0.0.1", "-U", "postgres"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def psql(db, sql):
    out = subprocess.run(["psql", *PG, "-qtA", "-d", db, "-c", sql], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def ensure_dataset(gigabytes):
    """A database of about `gigabytes` GB of mixed rows (hex text, floats, timestamps, random bytes, an
    index): compressible about 2–3× like real data, unlike pgbench's blank filler (200×)."""
    db = f"sentinel_bench_backup_{round(gigabytes * 10)}"
    if psql("postgres", f"SELECT count(*) FROM pg_database WHERE datname = '{db}'") == "0":
        rows = int(gigabytes * 1e9 / 200)
        print(f"creating {db}: {rows:,} rows", flush=True)
        psql("postgres", f"CREATE DATABASE {db}")
        psql(db, "CREATE TABLE items (id bigint PRIMARY KEY, a text, b text, n double precision, "
                 "ts timestamptz, payload bytea); CREATE TABLE notes (id serial PRIMARY KEY, body text)")
        step = 2_000_000
        for start in range(1, rows + 1, step):
            end = min(rows, start + step - 1)
            psql(db, f"INSERT INTO items SELECT g, md5(g::text), md5((g * 7)::text) || ' item ' || g, "
                     f"random() * 1e6, now() - g * interval '1 second', decode(md5((g * 13)::text), 'hex') "
                     f"FROM generate_series({start}, {end}) g")
        psql(db, "INSERT INTO notes (body) SELECT repeat('note ' || g || ' ', 20) FROM generate_series(1, 100000) g")
        psql(db, "CREATE INDEX items_ts ON items (ts)")
        psql(db, "VACUUM ANALYZE")
    return db


def api(base, token, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def proc_field(pid, name, field):
    with open(f"/proc/{pid}/{name}") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class Sentinel:
    """A fresh embedded `sentinel up` in its own data directory."""

    def __init__(self, tmp):
        self.dir = tempfile.mkdtemp(dir=tmp, prefix="sentinel-")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, SENTINEL_TELEMETRY__LOG_LEVEL="warn")
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.proc = subprocess.Popen(
            [os.path.join(ROOT, "target/release/sentinel"), "up", "--data-dir", os.path.join(self.dir, "data"),
             "--listen", f"127.0.0.1:{self.port}"], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(300):
            try:
                urllib.request.urlopen(self.base + "/ready", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        else:
            raise SystemExit("sentinel did not become ready; see " + self.log.name)
        with open(os.path.join(self.dir, "data/api-token")) as f:
            self.token = f.read().strip()

    def call(self, method, path, body=None, expect=None):
        status, out = api(self.base, self.token, method, path, body)
        if expect is not None and status != expect:
            raise SystemExit(f"{method} {path} → {status} {out}")
        return out

    def wait(self, job_id):
        while True:
            job = self.call("GET", f"/api/v1/jobs/{job_id}", expect=200)
            if job["state"] in ("succeeded", "failed", "cancelled", "dead"):
                return job
            time.sleep(0.05)

    def work_dir_entries(self):
        work = os.path.join(self.dir, "data", "backup")
        return sum(len(files) for _, _, files in os.walk(work)) if os.path.isdir(work) else 0

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def timed(cmd):
    start = time.monotonic()
    subprocess.run(cmd, shell=True, check=True, executable="/bin/bash")
    return time.monotonic() - start


def start_moto(tmp):
    moto = os.path.join(ROOT, "target/storage-venv/bin/moto_server")
    if not os.path.exists(moto):
        raise SystemExit("moto is not installed: run `bash scripts/test.sh` once (it installs target/storage-venv)")
    port = free_port()
    proc = subprocess.Popen([moto, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except urllib.error.HTTPError:
            break
        except Exception:
            time.sleep(0.1)
    req = urllib.request.Request(endpoint + "/sentinel-bench", method="PUT")
    urllib.request.urlopen(req, timeout=10)
    return proc, endpoint


def bench_backup(tmp, db, kind, dest_config, credentials):
    s = Sentinel(tmp)
    try:
        target = s.call("POST", "/api/v1/backups/targets", {
            "name": "bench", "engine": "postgres", "host": "127.0.0.1", "user": "postgres", "databases": [db],
        }, expect=201)
        body = {"name": kind, "config": dest_config}
        if credentials:
            body["credentials"] = credentials
        dest = s.call("POST", "/api/v1/backups/destinations", body, expect=201)
        plan = s.call("POST", "/api/v1/backups/plans", {
            "name": "bench", "target_id": target["id"], "destination_ids": [dest["id"]],
            "compression": {"format": "zstd", "level": 3}, "encryption": {"mode": "age"},
        }, expect=201)
        written_before = proc_field(s.proc.pid, "io", "write_bytes")
        start = time.monotonic()
        job = s.call("POST", f"/api/v1/backups/plans/{plan['id']}/run", {}, expect=202)
        job = s.wait(job["id"])
        wall = time.monotonic() - start
        if job["state"] != "succeeded":
            raise SystemExit(f"backup {kind}: {job}")
        written = proc_field(s.proc.pid, "io", "write_bytes") - written_before
        peak_rss = proc_field(s.proc.pid, "status", "VmHWM") * 1024
        entry = s.call("GET", f"/api/v1/backups/journal?plan_id={plan['id']}", expect=200)["items"][0]
        result = {
            "wall": wall, "peak_rss": peak_rss, "written": written, "stored": entry["stored_bytes"],
            "plain": entry["plain_bytes"], "work_files_left": s.work_dir_entries(), "entry": entry,
            "sentinel": s, "target_id": target["id"], "dest_id": dest["id"],
        }
        return result
    except BaseException:
        s.stop()
        raise


def bench_verify(tmp, db, local_dir):
    """One backup of a plan with verify_every=1 to the local disk, then its verification job."""
    s = Sentinel(tmp)
    try:
        target = s.call("POST", "/api/v1/backups/targets", {
            "name": "bench", "engine": "postgres", "host": "127.0.0.1", "user": "postgres", "databases": [db],
        }, expect=201)
        dest = s.call("POST", "/api/v1/backups/destinations",
                      {"name": "local", "config": {"kind": "local", "path": local_dir}}, expect=201)
        plan = s.call("POST", "/api/v1/backups/plans", {
            "name": "bench", "target_id": target["id"], "destination_ids": [dest["id"]],
            "compression": {"format": "zstd", "level": 3}, "encryption": {"mode": "age"}, "verify_every": 1,
        }, expect=201)
        start = time.monotonic()
        job = s.call("POST", f"/api/v1/backups/plans/{plan['id']}/run", {}, expect=202)
        job = s.wait(job["id"])
        backup = time.monotonic() - start
        if job["state"] != "succeeded":
            raise SystemExit(f"backup with statistics: {job}")
        start = time.monotonic()
        verified = s.wait(job["result"]["verification_job"])
        verify = time.monotonic() - start
        if verified["state"] != "succeeded":
            raise SystemExit(f"verification: {verified}")
        entry = s.call("GET", f"/api/v1/backups/journal/{job['result']['journal_id']}", expect=200)
        return {"backup": backup, "verify": verify, "rto": entry["rto_seconds"], "tables": entry["tables_recorded"],
                "peak_rss": proc_field(s.proc.pid, "status", "VmHWM") * 1024}
    finally:
        s.stop()


def bench_restore(result, db_into):
    s = result["sentinel"]
    target = s.call("POST", "/api/v1/backups/targets", {
        "name": "scratch", "engine": "postgres", "host": "127.0.0.1", "user": "postgres", "databases": [db_into],
    }, expect=201)
    start = time.monotonic()
    job = s.call("POST", "/api/v1/backups/restores", {
        "journal_id": result["entry"]["id"], "destination_id": result["dest_id"], "target_id": target["id"],
    }, expect=202)
    job = s.wait(job["id"])
    wall = time.monotonic() - start
    if job["state"] != "succeeded":
        raise SystemExit(f"restore: {job}")
    return wall, proc_field(s.proc.pid, "status", "VmHWM") * 1024


def mib(n):
    return f"{n / (1 << 20):,.0f} MiB"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gigabytes", type=float, action="append", help="database size in GB (default 2.2); repeatable")
    parser.add_argument("--no-restore", action="store_true", help="skip the restore comparison")
    parser.add_argument("--destination", action="append", choices=["local", "s3"], help="default: both")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each backup (medians are reported)")
    parser.add_argument("--verify", action="store_true", help="also time a verifying plan's backup and verification")
    args = parser.parse_args()
    scales = args.gigabytes or [2.2]
    for tool in ("pg_dump", "pg_restore", "zstd"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing")
    if not os.path.exists(os.path.join(ROOT, "target/release/sentinel")):
        raise SystemExit("build first: cargo build --release -p sentinel")
    tmp = tempfile.mkdtemp(prefix="sentinel-bench-backup-")
    moto, endpoint = start_moto(tmp)
    rows = []
    verifications = []
    try:
        for scale in scales:
            db = ensure_dataset(scale)
            size = int(psql(db, "SELECT pg_database_size(current_database())"))
            print(f"\n== {db}: {size / 1e9:.2f} GB (pg_database_size) ==", flush=True)
            hand_file = os.path.join(tmp, "hand.dump.zst")
            local_dir = os.path.join(tmp, "store")
            os.makedirs(local_dir, exist_ok=True)
            # What the seed did by hand for S3 (`aws s3 cp -`): the same pipe into boto3's streaming
            # multipart upload, to the same emulator.
            boto = os.path.join(ROOT, "target/storage-venv/bin/python")
            upload = (f"{boto} -c \"import boto3, sys; boto3.client('s3', endpoint_url='{endpoint}', "
                      f"aws_access_key_id='bench', aws_secret_access_key='bench-secret', region_name='us-east-1')"
                      f".upload_fileobj(sys.stdin.buffer, 'sentinel-bench', 'by-hand/{db}.dump.zst')\"")
            dump = f"pg_dump {' '.join(PG)} -Fc -Z0 {db} | zstd -3 -q"
            cases = [
                ("local", {"kind": "local", "path": local_dir}, None, f"{dump} > {hand_file}"),
                ("s3", {"kind": "s3", "bucket": "sentinel-bench", "region": "us-east-1", "endpoint": endpoint,
                        "prefix": db, "force_path_style": True},
                 {"access_key_id": "bench", "secret_access_key": "bench-secret"}, f"{dump} | {upload}"),
            ]
            for kind, config, creds, by_hand_cmd in cases:
                if args.destination and kind not in args.destination:
                    continue
                hands, walls, rss, written, last = [], [], [], [], None
                # Interleaved, so that a drift of the machine hits both sides alike.
                for _ in range(args.repeat):
                    hands.append(timed(by_hand_cmd))
                    r = bench_backup(tmp, db, kind, config, creds)
                    walls.append(r["wall"])
                    rss.append(r["peak_rss"])
                    written.append(r["written"])
                    print(f"  by hand {hands[-1]:.1f} s, sentinel → {kind} {r['wall']:.1f} s, peak RSS "
                          f"{mib(r['peak_rss'])}, wrote {mib(r['written'])}, {r['work_files_left']} file(s) left "
                          f"in its work directory", flush=True)
                    if last is not None:
                        last["sentinel"].stop()
                    last = r
                    if kind == "local":
                        shutil.rmtree(local_dir, ignore_errors=True)
                        os.makedirs(local_dir, exist_ok=True)
                r = last
                try:
                    row = {"size": size, "kind": kind, "hand": statistics.median(hands),
                           "wall": statistics.median(walls), "peak_rss": max(rss), "written": max(written),
                           "plain": r["plain"], "stored": r["stored"], "runs": len(walls)}
                    print(f"sentinel → {kind}: median {row['wall']:.1f} s vs {row['hand']:.1f} s by hand "
                          f"({row['wall'] / row['hand']:.2f}×), plain {mib(r['plain'])}, stored {mib(r['stored'])}",
                          flush=True)
                    if kind == "local" and not args.no_restore:
                        into = f"{db}_restore"
                        # The last backup's artifact is gone with the local directory: back up once more.
                        r["sentinel"].stop()
                        r = bench_backup(tmp, db, kind, config, creds)
                        psql("postgres", f"DROP DATABASE IF EXISTS {into}")
                        psql("postgres", f"CREATE DATABASE {into}")
                        wall, restore_rss = bench_restore(r, into)
                        psql("postgres", f"DROP DATABASE {into}")
                        psql("postgres", f"CREATE DATABASE {into}")
                        by_hand = timed(f"zstd -dc {hand_file} | pg_restore {' '.join(PG)} --single-transaction "
                                        f"--exit-on-error --no-owner -d {into}")
                        psql("postgres", f"DROP DATABASE {into}")
                        print(f"restore: sentinel {wall:.1f} s (peak RSS {mib(restore_rss)}), by hand {by_hand:.1f} s "
                              f"({wall / by_hand:.2f}×)", flush=True)
                        row.update(restore=wall, restore_hand=by_hand, restore_rss=restore_rss)
                    rows.append(row)
                finally:
                    r["sentinel"].stop()
                shutil.rmtree(local_dir, ignore_errors=True)
                os.makedirs(local_dir, exist_ok=True)
            if args.verify:
                runs = []
                for _ in range(args.repeat):
                    runs.append(bench_verify(tmp, db, local_dir))
                    shutil.rmtree(local_dir, ignore_errors=True)
                    os.makedirs(local_dir, exist_ok=True)
                    v = runs[-1]
                    print(f"  verifying plan: backup {v['backup']:.1f} s, verification {v['verify']:.1f} s "
                          f"(restore {v['rto']:.1f} s), {v['tables']} table(s), peak RSS {mib(v['peak_rss'])}",
                          flush=True)
                verifications.append({"size": size, "backup": statistics.median(r["backup"] for r in runs),
                                      "verify": statistics.median(r["verify"] for r in runs),
                                      "rto": statistics.median(r["rto"] for r in runs),
                                      "peak_rss": max(r["peak_rss"] for r in runs), "runs": len(runs)})
    finally:
        moto.terminate()
        moto.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\n| database | destination | by hand (median) | Sentinel (median) | ratio | peak RSS (max) "
          "| disk written by Sentinel | plain | stored |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['size'] / 1e9:.2f} GB | {r['kind']} | {r['hand']:.1f} s | {r['wall']:.1f} s "
              f"| {r['wall'] / r['hand']:.2f} | {mib(r['peak_rss'])} | {mib(r['written'])} | {mib(r['plain'])} "
              f"| {mib(r['stored'])} |")
    for r in rows:
        if "restore" in r:
            print(f"restore {r['size'] / 1e9:.2f} GB: sentinel {r['restore']:.1f} s, by hand {r['restore_hand']:.1f} s, "
                  f"ratio {r['restore'] / r['restore_hand']:.2f}, peak RSS {mib(r['restore_rss'])}")
    for v in verifications:
        print(f"verify {v['size'] / 1e9:.2f} GB: backup with statistics {v['backup']:.1f} s, verification "
              f"{v['verify']:.1f} s (of which restore {v['rto']:.1f} s), ratio verification/backup "
              f"{v['verify'] / v['backup']:.2f}, peak RSS {mib(v['peak_rss'])} (medians of {v['runs']})")
    json.dump(rows + verifications, sys.stderr)


if __name__ == "__main__":
    main()
