//! `sentinel up`: one process, SQLite, in-process bus; jobs survive a restart.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::procs::{Proc, client, get_json, wait_job_state, wait_ready};

fn up(data: &std::path::Path, port: u16) -> Proc {
    let env: HashMap<String, String> = [("SENTINEL_WORKER__SHUTDOWN_GRACE_MS", "300")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let listen = format!("127.0.0.1:{port}");
    let dir = data.join("data");
    Proc::spawn("sentinel", &["up", "--data-dir", dir.to_str().expect("utf-8"), "--listen", &listen], &env, port, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_mode_runs_the_demo_task_and_resumes_jobs_after_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = sentinel_testkit::free_port();
    let mut sentinel = up(tmp.path(), port);
    wait_ready(&mut sentinel, "/ready", Duration::from_secs(30)).await;
    assert!(
        sentinel.output().contains(&format!("Sentinel is up: API on http://127.0.0.1:{port}")),
        "{}",
        sentinel.output()
    );
    let token = std::fs::read_to_string(tmp.path().join("data/api-token")).expect("generated token");
    let base = sentinel.url("");

    // Unauthenticated requests are refused with a problem document.
    let (status, body) = get_json(&format!("{base}/api/v1/jobs/counts"), None).await;
    assert_eq!(status, 401);
    assert_eq!(body["status"], 401);

    // The seed's demo task through the seed's endpoints.
    let r = client().post(format!("{base}/tasks/enqueue?seconds=1")).bearer_auth(&token).send().await.expect("enqueue");
    assert_eq!(r.status().as_u16(), 201);
    let id = r.json::<Value>().await.expect("json")["jobId"].as_str().expect("id").to_owned();
    let job = wait_job_state(&base, &token, &id, "succeeded", Duration::from_secs(15)).await;
    assert_eq!(job["result"], json!({ "slept_seconds": 1 }));
    let (_, status) = get_json(&format!("{base}/tasks/status/{id}"), Some(&token)).await;
    assert_eq!(status["state"], "succeeded");
    assert_eq!(status["progress"]["step"], 1);

    // A running job and a delayed one are interrupted by a stop...
    let post = |body: Value| {
        let token = token.clone();
        let base = base.clone();
        async move {
            let r =
                client().post(format!("{base}/api/v1/jobs")).bearer_auth(token).json(&body).send().await.expect("post");
            assert_eq!(r.status().as_u16(), 201);
            r.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_owned()
        }
    };
    let running = post(json!({ "kind": "demo.sleep", "payload": { "seconds": 3 } })).await;
    let delayed = post(json!({ "kind": "demo.sleep", "payload": { "seconds": 0 }, "delay_seconds": 2 })).await;
    wait_job_state(&base, &token, &running, "running", Duration::from_secs(10)).await;
    sentinel.signal("-TERM");
    let status = sentinel.wait_exit(Duration::from_secs(15)).expect("sentinel stops on SIGTERM");
    assert!(status.success(), "exit status {status:?}:\n{}", sentinel.output());

    // ...and both finish after the next start.
    let mut sentinel = up(tmp.path(), port);
    wait_ready(&mut sentinel, "/ready", Duration::from_secs(30)).await;
    let resumed = wait_job_state(&base, &token, &running, "succeeded", Duration::from_secs(20)).await;
    assert_eq!(resumed["result"], json!({ "slept_seconds": 3 }));
    wait_job_state(&base, &token, &delayed, "succeeded", Duration::from_secs(20)).await;
    let (_, counts) = get_json(&format!("{base}/api/v1/jobs/counts"), Some(&token)).await;
    assert_eq!(counts["by_state"]["succeeded"], 3);
    assert_eq!(counts["by_state"]["running"], 0);
    assert_eq!(counts["by_kind"]["demo.sleep"]["succeeded"], 3);
}

#[tokio::test]
async fn invalid_configuration_stops_the_binary_with_the_key_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let env: HashMap<String, String> =
        [("SENTINEL_WORKER__CONCURRENCY".to_owned(), "lots".to_owned())].into_iter().collect();
    let mut p =
        Proc::spawn("sentinel", &["up", "--data-dir", tmp.path().to_str().expect("utf-8")], &env, 0, tmp.path());
    let status = p.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(!status.success());
    let out = p.output();
    assert!(out.contains("worker.concurrency"), "{out}");
}
