//! Credential headers of HTTP targets through `sentinel up`: given in `secret_headers`, sent with
//! every check, sealed at rest (the secret appears in no file of the data directory), never
//! returned (only their names), kept by a replace that leaves them out, removed by `{}`; a
//! credential in plain `headers` is a 422 that says where it goes.

use serde_json::{Value, json};

use crate::servers::{self, PRIVATE_TOKEN};

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)) {
                out.push(path.display().to_string());
            }
        }
    }
    out
}

async fn check(api: &sentinel_testkit::product::Api, id: &str) -> Value {
    let (status, result) = api.post(&format!("/api/v1/monitoring/targets/{id}/check"), json!({})).await;
    assert_eq!(status, 200, "{result}");
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_headers_are_sealed_sent_and_never_returned() {
    let (http, hits) = servers::http().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_sentinel, api) = sentinel_testkit::product::start(tmp.path(), &[]).await;
    let url = format!("http://127.0.0.1:{http}/private");
    let bearer = format!("Bearer {PRIVATE_TOKEN}");

    // In plain headers: refused, saying where it goes.
    let (status, problem) = api
        .post("/api/v1/monitoring/targets", json!({"name": "p", "url": url, "headers": {"Authorization": bearer}}))
        .await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("headers.Authorization")), "{problem}");
    assert!(problem.to_string().contains("secret_headers"), "{problem}");
    let (status, problem) = api
        .post(
            "/api/v1/monitoring/targets",
            json!({"name": "p", "url": url, "headers": {"X-Trace": "1"}, "secret_headers": {"x-trace": "2"}}),
        )
        .await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (422, Some("secret_headers.x-trace")), "{problem}");

    let (status, created) = api
        .post(
            "/api/v1/monitoring/targets",
            json!({"name": "private", "url": url, "headers": {"Accept": "text/plain"},
                   "secret_headers": {"Authorization": bearer}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["secret_headers"], json!(["Authorization"]));
    assert_eq!(created["headers"], json!({"Accept": "text/plain"}));
    let id = created["id"].as_str().expect("id").to_owned();
    let result = check(&api, &id).await;
    assert_eq!((result["status"].as_str(), result["status_code"].as_u64()), (Some("up"), Some(200)), "{result}");
    assert!(hits.of("/private") >= 1);

    // A replace that leaves them out keeps them; `{}` removes them.
    let body = |secret: Option<Value>| {
        let mut b = json!({"name": "private", "url": url, "headers": {"Accept": "text/plain"}});
        if let Some(s) = secret {
            b["secret_headers"] = s;
        }
        b
    };
    let path = format!("/api/v1/monitoring/targets/{id}");
    let (status, kept) = api.send(reqwest::Method::PUT, &path, Some(body(None))).await;
    assert_eq!((status, &kept["secret_headers"]), (200, &json!(["Authorization"])), "{kept}");
    assert_eq!(check(&api, &id).await["status"], "up");
    let (_, read) = api.get(&path).await;
    let (_, list) = api.get("/api/v1/monitoring/targets").await;
    for shown in [&created, &kept, &read, &list] {
        assert!(!shown.to_string().contains(PRIVATE_TOKEN), "a response shows the secret: {shown}");
    }
    // Sealed at rest: no file of the data directory holds it.
    assert_eq!(files_containing(tmp.path(), PRIVATE_TOKEN.as_bytes()), Vec::<String>::new());

    let (status, cleared) = api.send(reqwest::Method::PUT, &path, Some(body(Some(json!({}))))).await;
    assert_eq!((status, &cleared["secret_headers"]), (200, &json!([])), "{cleared}");
    let result = check(&api, &id).await;
    assert_eq!((result["status"].as_str(), result["status_code"].as_u64()), (Some("down"), Some(401)), "{result}");
}
