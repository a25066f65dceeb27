//! Provisioning end to end in the embedded mode (`sentinel up`): real ansible-playbook over real SSH
//! to sshd instances on loopback addresses, plus an address where nothing listens and a host that
//! never answers. Import → reserve → runs followed over SSE → idempotence → the allow-list →
//! serialized and overlapping runs → cancel and timeout leave nothing → a planted secret is found
//! nowhere → a swapped host key → the worker SIGKILLed mid-run.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use sentinel_testkit::ssh_hosts::{Blackhole, SshHost, ansible_playbook, current_user, keygen, loopback_ip};
use serde_json::{Value, json};

use crate::procs::{Proc, client, get_json, stream_client, wait_ready};

struct Api {
    base: String,
    token: String,
}

impl Api {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = client()
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("post");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let r = client()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
    /// A job's SSE stream from `after` (a `Last-Event-ID`), at most `max` events or to `finished`.
    async fn events(&self, job: &str, after: Option<&str>, max: usize) -> Vec<sentinel_testkit::SseEvent> {
        let mut req = stream_client().get(format!("{}/api/v1/jobs/{job}/stream", self.base)).bearer_auth(&self.token);
        if let Some(id) = after {
            req = req.header("Last-Event-ID", id);
        }
        let mut reader = sentinel_testkit::SseReader::new(req.send().await.expect("sse"));
        let mut out = Vec::new();
        while out.len() < max {
            let ev = reader.next(Duration::from_secs(60)).await.expect("the stream ends with the job");
            let end = ev.event.as_deref() == Some("finished");
            out.push(ev);
            if end {
                break;
            }
        }
        out
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        get_json(&format!("{}{path}", self.base), Some(&self.token)).await
    }
    async fn run(&self, body: Value) -> Value {
        let (status, run) = self.post("/api/v1/provisioning/runs", body.clone()).await;
        assert_eq!(status, 202, "{body} → {run}");
        run
    }
    async fn wait_run(&self, id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, run) = self.get(&format!("/api/v1/provisioning/runs/{id}")).await;
            if ["succeeded", "failed", "cancelled"].contains(&run["state"].as_str().unwrap_or("")) {
                return run;
            }
            assert!(Instant::now() < deadline, "run {id} did not end in {timeout:?}: {run}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    async fn wait_run_state(&self, id: &str, state: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, run) = self.get(&format!("/api/v1/provisioning/runs/{id}")).await;
            if run["state"] == state {
                return run;
            }
            assert!(Instant::now() < deadline, "run {id} did not reach {state} in {timeout:?}: {run}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    async fn server(&self, id: &str) -> Value {
        self.get(&format!("/api/v1/servers/{id}")).await.1
    }
    async fn log(&self, job: &str) -> String {
        let (_, lines) = self.get(&format!("/api/v1/jobs/{job}/log?limit=1000")).await;
        lines
            .as_array()
            .map(|l| l.iter().filter_map(|x| x["line"].as_str()).collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }
}

fn up(tmp: &Path, port: u16, playbooks: &str) -> Proc {
    let env: HashMap<String, String> = [
        ("SENTINEL_WORKER__SHUTDOWN_GRACE_MS", "300".to_owned()),
        ("SENTINEL_WORKER__CANCEL_GRACE_MS", "1000".to_owned()),
        ("SENTINEL_PROVISION__ANSIBLE_PLAYBOOK", ansible_playbook().expect("ansible").display().to_string()),
        ("SENTINEL_PROVISION__PLAYBOOK_DIRS", playbooks.to_owned()),
        ("SENTINEL_PROVISION__PYTHON_INTERPRETER", "/usr/bin/python3".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let listen = format!("127.0.0.1:{port}");
    let dir = tmp.join("data");
    Proc::spawn("sentinel", &["up", "--data-dir", dir.to_str().expect("utf-8"), "--listen", &listen], &env, port, tmp)
}

/// Processes (other than zombies) whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        if e.file_name().to_str().is_some_and(|n| n.parse::<u32>().is_ok()) {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                // With its parent, so a stray match says where it comes from.
                let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                let parent = stat.rsplit(')').next().and_then(|s| s.split_whitespace().nth(1)).unwrap_or("?");
                out.push(format!("{} (parent {parent}): {cmd}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}

fn marked(run: &str) -> usize {
    let needle = format!("SENTINEL_PROVISION_RUN={run}");
    std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == needle.as_bytes()))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ansible_runs_on_real_hosts_end_to_end() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("root");
    let playbooks = format!(
        "{},{}",
        root.join("ansible/playbooks").display(),
        root.join("services/sentinel/tests/playbooks").display()
    );
    let user = current_user();
    let login = keygen(tmp.path(), "login").expect("login key");
    let hosts: Vec<SshHost> = (0..3)
        .map(|i| {
            SshHost::start(&loopback_ip(10 + i), &tmp.path().join(format!("host{i}")), &login.public).expect("sshd")
        })
        .collect();
    let dead_ip = loopback_ip(20);
    let hang = Blackhole::start(&loopback_ip(21)).expect("blackhole");

    let port = sentinel_testkit::free_port();
    let mut sentinel = up(tmp.path(), port, &playbooks);
    wait_ready(&mut sentinel, "/ready", Duration::from_secs(30)).await;
    let token = std::fs::read_to_string(tmp.path().join("data/api-token")).expect("token");
    let api = Api { base: sentinel.url(""), token };

    // The allow-list names the shipped playbooks with their hashes.
    let (status, list) = api.get("/api/v1/provisioning/playbooks").await;
    assert_eq!(status, 200, "{list}");
    let names: Vec<&str> = list["items"].as_array().expect("items").iter().filter_map(|p| p["name"].as_str()).collect();
    for name in ["apply-config", "base", "harden-ssh", "ping", "sleep"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert_eq!(list["ansible"]["found"], true);

    // The login key, as the organization's default; servers imported with their pinned host keys.
    let (status, key) = api
        .post("/api/v1/provisioning/ssh-keys", json!({"name": "ops", "private_key": login.private, "default": true}))
        .await;
    assert_eq!(status, 201, "{key}");
    let mut csv = String::from("provider_ref,name,ip,ssh_port,ssh_user,labels,host_key\n");
    for (i, h) in hosts.iter().enumerate() {
        let role = if i == 2 { "spare" } else { "web" };
        csv.push_str(&format!("h{i},web-{i},{},{},{user},role={role},{}\n", h.ip, h.port, h.host_key));
    }
    csv.push_str(&format!("dead,dead,{dead_ip},2222,{user},role=broken,\n"));
    csv.push_str(&format!("hang,hang,{},{},{user},role=broken,\n", hang.ip, hang.port));
    let r = client()
        .post(format!("{}/api/v1/servers/import", api.base))
        .bearer_auth(&api.token)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .expect("import");
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap_or_default());
    let (_, page) = api.get("/api/v1/servers?limit=100").await;
    let ids: HashMap<String, String> = page["items"]
        .as_array()
        .expect("servers")
        .iter()
        .map(|s| (s["provider_ref"].as_str().expect("ref").to_owned(), s["id"].as_str().expect("id").to_owned()))
        .collect();

    // Reserve the spare one: a run without its reservation cannot touch it.
    let (status, reservation) =
        api.post("/api/v1/servers/reserve", json!({"purpose": "deploy", "labels": {"role": "spare"}})).await;
    assert_eq!(status, 201, "{reservation}");
    let (status, refused) =
        api.post("/api/v1/provisioning/runs", json!({"playbook": "ping", "server_ids": [ids["h2"]]})).await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["detail"].as_str().unwrap_or("").contains("reserved"), "{refused}");

    // The recipe is a name from the allow-list, never a path.
    let (status, bad) =
        api.post("/api/v1/provisioning/runs", json!({"playbook": "../x", "selector": "role=web"})).await;
    assert_eq!(status, 422, "{bad}");
    assert!(bad.to_string().contains("apply-config"), "the allowed ones are named: {bad}");

    // The config playbook on the web servers, followed over SSE to the end.
    let dest = tmp.path().join("out/%h/app.ini");
    let (status, config) = api
        .post("/api/v1/configs", json!({"name": "app", "payload": {"config_dest": dest.display().to_string(), "config_values": {"port": 8080, "mode": "fast"}}}))
        .await;
    assert_eq!(status, 201, "{config}");
    let run = api.run(json!({"playbook": "apply-config", "selector": "role=web", "config_id": config["id"]})).await;
    let job = run["job_id"].as_str().expect("job").to_owned();
    let sse = stream_client()
        .get(format!("{}/api/v1/jobs/{job}/stream", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("sse");
    let mut events = sentinel_testkit::SseReader::new(sse);
    let mut host_events = Vec::new();
    let mut saw_recap = false;
    loop {
        let ev = events.next(Duration::from_secs(60)).await.expect("the stream ends with the job");
        let data = ev.data.clone();
        match ev.event.as_deref().unwrap_or("") {
            "host" => host_events.push(data),
            "log" if data["line"].as_str().is_some_and(|l| l.contains("PLAY RECAP")) => saw_recap = true,
            "finished" => break,
            _ => {}
        }
    }
    assert!(saw_recap, "the recap reached the stream: {}", api.log(&job).await);
    assert!(host_events.iter().any(|e| e["host"] == "web-0" && e["status"] == "changed"), "{host_events:?}");
    let done = api.wait_run(run["id"].as_str().expect("id"), Duration::from_secs(30)).await;
    assert_eq!(done["state"], "succeeded", "{done}\n{}", api.log(&job).await);
    assert_eq!(done["config_version"], 1);
    assert!(done["ansible_version"].as_str().unwrap_or("").starts_with("2.19"), "{done}");
    assert_eq!(done["extra_var_names"], json!([]));
    for h in done["hosts"].as_array().expect("hosts") {
        assert_eq!(h["status"], "changed", "{done}");
        assert_eq!(h["counts"]["failures"], 0);
    }
    let written = std::fs::read_to_string(tmp.path().join("out/web-0/app.ini")).expect("the file was written");
    assert!(written.contains("mode = fast\nport = 8080"), "{written}");
    let web0 = api.server(&ids["h0"]).await;
    assert_eq!(web0["status"], "configured", "{web0}");
    let (_, history) = api.get(&format!("/api/v1/servers/{}/history", ids["h0"])).await;
    assert!(history.to_string().contains(&job), "a history row links the run's job: {history}");
    assert!(api.log(&job).await.contains("PLAY RECAP"));

    // Again: nothing to change.
    let again = api.run(json!({"playbook": "apply-config", "selector": "role=web", "config_id": config["id"]})).await;
    let again = api.wait_run(again["id"].as_str().expect("id"), Duration::from_secs(60)).await;
    assert_eq!(again["state"], "succeeded", "{again}");
    for h in again["hosts"].as_array().expect("hosts") {
        assert_eq!(h["status"], "ok", "second run: {again}");
        assert_eq!(h["counts"]["changed"], 0);
    }

    // A check run of a new config version shows the diff and changes nothing; `apply` runs that very
    // bundle; once the config moves on, applying the old check is refused.
    let (status, v2) = api
        .send(reqwest::Method::PUT, &format!("/api/v1/configs/{}", config["id"].as_str().expect("id")), json!({"name": "app", "payload": {"config_dest": dest.display().to_string(), "config_values": {"port": 8080, "mode": "slow"}}}))
        .await;
    assert_eq!((status, v2["version"].clone()), (200, json!(2)), "{v2}");
    let check = api
        .run(json!({"playbook": "apply-config", "selector": "role=web", "config_id": config["id"], "check": true}))
        .await;
    let check = api.wait_run(check["id"].as_str().expect("id"), Duration::from_secs(60)).await;
    assert_eq!(check["state"], "succeeded", "{check}");
    assert_eq!(check["hosts"][0]["status"], "changed", "{check}");
    assert!(check["hosts"][0]["diff"].as_str().unwrap_or("").contains("mode = slow"), "{check}");
    let unchanged = std::fs::read_to_string(tmp.path().join("out/web-0/app.ini")).expect("file");
    assert!(unchanged.contains("mode = fast"), "a check run changes nothing: {unchanged}");
    let (status, applied) =
        api.post(&format!("/api/v1/provisioning/runs/{}/apply", check["id"].as_str().expect("id")), json!({})).await;
    assert_eq!(status, 202, "{applied}");
    assert_eq!(
        (applied["applies_run"].clone(), applied["check"].clone(), applied["playbook_hash"].clone()),
        (check["id"].clone(), json!(false), check["playbook_hash"].clone())
    );
    let applied = api.wait_run(applied["id"].as_str().expect("id"), Duration::from_secs(60)).await;
    assert_eq!(applied["state"], "succeeded", "{applied}");
    assert_eq!(applied["config_version"], 2);
    let now = std::fs::read_to_string(tmp.path().join("out/web-0/app.ini")).expect("file");
    assert!(now.contains("mode = slow"), "{now}");
    let (status, _) = api
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/configs/{}", config["id"].as_str().expect("id")),
            json!({"name": "app", "payload": {"config_dest": "/nowhere", "config_values": {}}}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, stale) =
        api.post(&format!("/api/v1/provisioning/runs/{}/apply", check["id"].as_str().expect("id")), json!({})).await;
    assert_eq!(status, 409, "{stale}");
    assert!(stale["detail"].as_str().unwrap_or("").contains("version 2 → 3"), "{stale}");

    // Base and harden-ssh change this machine itself: check mode only.
    for playbook in ["base", "harden-ssh"] {
        let check = api.run(json!({"playbook": playbook, "server_ids": [ids["h0"]], "check": true})).await;
        let check = api.wait_run(check["id"].as_str().expect("id"), Duration::from_secs(120)).await;
        assert_eq!(check["check"], true);
        assert_ne!(check["hosts"][0]["status"], "unreachable", "{playbook}: {check}");
        assert_eq!(api.server(&ids["h0"]).await["status"], "configured", "a check run leaves the status");
    }

    // Two runs on one host serialize (FIFO, with a queue position); a disjoint one overlaps.
    let first =
        api.run(json!({"playbook": "sleep", "server_ids": [ids["h0"]], "extra_vars": {"sleep_seconds": 3}})).await;
    let second =
        api.run(json!({"playbook": "sleep", "server_ids": [ids["h0"]], "extra_vars": {"sleep_seconds": 1}})).await;
    let disjoint =
        api.run(json!({"playbook": "sleep", "server_ids": [ids["h1"]], "extra_vars": {"sleep_seconds": 1}})).await;
    let waiting = api.wait_run_state(second["id"].as_str().expect("id"), "waiting", Duration::from_secs(20)).await;
    assert_eq!(waiting["queue_position"], 1, "{waiting}");
    // Disconnect from the first run's stream mid-run and resume it: no gap, no duplicate.
    let first_job = first["job_id"].as_str().expect("job").to_owned();
    let head = api.events(&first_job, None, 3).await;
    let last = head.last().and_then(|e| e.id.clone()).expect("an event id");
    let tail = api.events(&first_job, Some(&last), 10_000).await;
    let seqs: Vec<u64> =
        head.iter().chain(&tail).filter_map(|e| e.id.as_deref().and_then(|i| i.parse().ok())).collect();
    assert_eq!(seqs, (seqs[0]..seqs[0] + seqs.len() as u64).collect::<Vec<_>>(), "contiguous once each: {seqs:?}");
    assert_eq!(tail.last().and_then(|e| e.event.clone()).as_deref(), Some("finished"));
    let (first, second, disjoint) = (
        api.wait_run(first["id"].as_str().expect("id"), Duration::from_secs(60)).await,
        api.wait_run(second["id"].as_str().expect("id"), Duration::from_secs(60)).await,
        api.wait_run(disjoint["id"].as_str().expect("id"), Duration::from_secs(60)).await,
    );
    let at = |r: &Value, f: &str| chrono::DateTime::parse_from_rfc3339(r[f].as_str().expect("time")).expect("rfc3339");
    assert!(at(&second, "started_at") >= at(&first, "finished_at"), "serialized: {first} {second}");
    assert!(at(&disjoint, "started_at") < at(&first, "finished_at"), "disjoint runs overlap: {first} {disjoint}");

    // Cancel during `sleep 300` on two hosts: within 5 s nothing of the run is left.
    let long =
        api.run(json!({"playbook": "sleep", "selector": "role=web", "extra_vars": {"sleep_seconds": 300}})).await;
    let long_id = long["id"].as_str().expect("id").to_owned();
    api.wait_run_state(&long_id, "running", Duration::from_secs(20)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while processes_with("sleep 300").len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sleeping = processes_with("sleep 300");
    assert_eq!(sleeping.len(), 2, "both remote sleeps run, once each: {sleeping:?}");
    let (status, _) =
        api.post(&format!("/api/v1/jobs/{}/cancel", long["job_id"].as_str().expect("job")), json!({})).await;
    assert!(status < 300, "cancel: {status}");
    let stopped = Instant::now();
    let cancelled = api.wait_run(&long_id, Duration::from_secs(10)).await;
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    while (marked(&long_id) > 0 || !processes_with("sleep 300").is_empty())
        && stopped.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(marked(&long_id), 0, "no process of the run is left");
    assert!(processes_with("sleep 300").is_empty(), "no sleep is left on the hosts: {:?}", processes_with("sleep 300"));
    assert_eq!(api.server(&ids["h0"]).await["status"], "configured", "a cancelled run gives the server back as it was");

    // Timeout: the run fails with reason timeout, and so do its hosts.
    let slow = api.run(json!({"playbook": "sleep", "server_ids": [ids["h1"]], "timeout_seconds": 3})).await;
    let slow = api.wait_run(slow["id"].as_str().expect("id"), Duration::from_secs(30)).await;
    assert_eq!(slow["state"], "failed");
    assert!(slow["reason"].as_str().unwrap_or("").starts_with("timeout"), "{slow}");
    let web1 = api.server(&ids["h1"]).await;
    assert_eq!((web1["status"].as_str(), web1["status_reason"].as_str()), (Some("error"), Some("timeout")), "{web1}");

    // A planted secret, printed by a careless playbook, is found nowhere.
    let planted = "PlantedSecret-7f3a9c";
    let echo = api.run(json!({"playbook": "echo-secret", "server_ids": [ids["h0"]], "extra_vars": {"planted": {"secret": planted}}})).await;
    let echo_id = echo["id"].as_str().expect("id").to_owned();
    let echo_job = echo["job_id"].as_str().expect("job").to_owned();
    let stream_api = Api { base: api.base.clone(), token: api.token.clone() };
    let capture = tokio::spawn(async move { stream_api.events(&echo_job, None, 100_000).await });
    let mut seen_in_proc = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for e in std::fs::read_dir("/proc").expect("proc").flatten() {
            for f in ["cmdline", "environ"] {
                if std::fs::read(e.path().join(f)).is_ok_and(|b| String::from_utf8_lossy(&b).contains(planted)) {
                    seen_in_proc.push(format!("{:?}/{f}", e.path()));
                }
            }
        }
        let (_, r) = api.get(&format!("/api/v1/provisioning/runs/{echo_id}")).await;
        if ["succeeded", "failed"].contains(&r["state"].as_str().unwrap_or("")) || Instant::now() > deadline {
            break;
        }
    }
    let echo = api.wait_run(&echo_id, Duration::from_secs(5)).await;
    assert_eq!(echo["state"], "succeeded", "{echo}");
    let streamed = capture.await.expect("capture");
    let streamed: String = streamed.iter().map(|e| e.data.to_string()).collect();
    assert!(
        streamed.contains("********") && !streamed.contains(planted),
        "the SSE stream carries the mask, never the secret"
    );
    assert!(seen_in_proc.is_empty(), "secret in {seen_in_proc:?}");
    let log = api.log(echo["job_id"].as_str().expect("job")).await;
    assert!(log.contains("the value is ********"), "the printed secret is masked: {log}");
    assert!(!log.contains(planted));
    assert!(!echo.to_string().contains(planted));
    assert_eq!(echo["extra_var_names"], json!(["planted"]));
    let db = std::fs::read(tmp.path().join("data/sentinel.sqlite")).expect("db");
    let wal = std::fs::read(tmp.path().join("data/sentinel.sqlite-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(planted.len()).any(|w| w == planted.as_bytes()), "the secret is in the database file");
    }

    // Unreachable hosts: refused and hung; a swapped host key is told apart.
    let mut hosts = hosts;
    hosts[1].swap_host_key().expect("swap");
    let ping =
        api.run(json!({"playbook": "ping", "server_ids": [ids["h0"], ids["h1"], ids["dead"], ids["hang"]]})).await;
    let ping = api.wait_run(ping["id"].as_str().expect("id"), Duration::from_secs(90)).await;
    assert_eq!(ping["state"], "failed", "{ping}");
    let reason = |h: &str| {
        ping["hosts"].as_array().expect("hosts").iter().find(|x| x["server_id"] == ids[h]).map(|x| x["reason"].clone())
    };
    assert_eq!(reason("h0"), Some(Value::Null), "{ping}");
    assert_eq!(reason("h1"), Some(json!("host_key_changed")), "{ping}");
    assert_eq!(reason("dead"), Some(json!("unreachable")), "{ping}");
    assert_eq!(reason("hang"), Some(json!("unreachable")), "{ping}");
    assert_eq!(api.server(&ids["h1"]).await["status_reason"], "host_key_changed");
    assert_eq!(api.server(&ids["h0"]).await["status"], "configured");

    // Retry only what failed.
    let (status, retry) = api
        .post(&format!("/api/v1/provisioning/runs/{}/retry-failed", ping["id"].as_str().expect("id")), json!({}))
        .await;
    assert_eq!(status, 202, "{retry}");
    assert_eq!(retry["retry_of"], ping["id"]);
    let mut retried: Vec<&str> =
        retry["hosts"].as_array().expect("hosts").iter().filter_map(|h| h["server_id"].as_str()).collect();
    retried.sort_unstable();
    let mut failed: Vec<&str> = vec![ids["h1"].as_str(), ids["dead"].as_str(), ids["hang"].as_str()];
    failed.sort_unstable();
    assert_eq!(retried, failed);
    api.wait_run(retry["id"].as_str().expect("id"), Duration::from_secs(90)).await;

    // A server without a pinned key: refused, until the operator allows the first contact to pin it.
    let fresh = SshHost::start(&loopback_ip(12), &tmp.path().join("host-fresh"), &login.public).expect("sshd");
    let (status, server) = api
        .post(
            "/api/v1/servers",
            json!({"provider_ref": "fresh", "name": "fresh", "ip": fresh.ip, "ssh_port": fresh.port, "ssh_user": user}),
        )
        .await;
    assert_eq!(status, 201, "{server}");
    let fresh_id = server["id"].as_str().expect("id").to_owned();
    let first_try = api.run(json!({"playbook": "ping", "server_ids": [fresh_id]})).await;
    let first_try = api.wait_run(first_try["id"].as_str().expect("id"), Duration::from_secs(60)).await;
    assert_eq!(first_try["hosts"][0]["reason"], "host_key_unknown", "{first_try}");
    let (status, _) = api
        .send(reqwest::Method::PATCH, &format!("/api/v1/servers/{fresh_id}"), json!({"accept_new_host_key": true}))
        .await;
    assert_eq!(status, 200);
    let pinning = api.run(json!({"playbook": "ping", "server_ids": [fresh_id]})).await;
    let pinning = api.wait_run(pinning["id"].as_str().expect("id"), Duration::from_secs(60)).await;
    assert_eq!(pinning["state"], "succeeded", "{pinning}");
    let pinned = api.server(&fresh_id).await;
    assert_eq!(pinned["host_keys"][0]["key"], json!(fresh.host_key), "{pinned}");
    assert_eq!(pinned["accept_new_host_key"], false, "first contact is over");

    // The worker SIGKILLed mid-run: after the restart the run is not left running, its lease is gone,
    // and no process of it survives.
    let doomed =
        api.run(json!({"playbook": "sleep", "server_ids": [ids["h0"]], "extra_vars": {"sleep_seconds": 300}})).await;
    let doomed_id = doomed["id"].as_str().expect("id").to_owned();
    api.wait_run_state(&doomed_id, "running", Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    sentinel.signal("-KILL");
    sentinel.wait_exit(Duration::from_secs(10));
    let mut sentinel = up(tmp.path(), port, &playbooks);
    wait_ready(&mut sentinel, "/ready", Duration::from_secs(30)).await;
    let interrupted = api.wait_run(&doomed_id, Duration::from_secs(30)).await;
    assert_eq!(interrupted["state"], "failed", "{interrupted}");
    assert!(interrupted["reason"].as_str().unwrap_or("").starts_with("interrupted"), "{interrupted}");
    let web0 = api.server(&ids["h0"]).await;
    assert_eq!(web0["lease"], Value::Null, "{web0}");
    assert_eq!(web0["status_reason"], "interrupted");
    let deadline = Instant::now() + Duration::from_secs(10);
    while marked(&doomed_id) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(marked(&doomed_id), 0, "no process of the killed run survives the restart");
    drop(hosts);
}
