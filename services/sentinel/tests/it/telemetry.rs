//! Trace export and propagation across processes: a request's trace id reaches the gateway's and the
//! worker's exported spans (OTLP/HTTP to a receiver on loopback).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sentinel_testkit::TEST_TOKEN;
use serde_json::{Value, json};

use crate::distributed::Cluster;
use crate::procs::{client, wait_job_state, wait_ready};

/// Request line and body of each request received.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A minimal OTLP/HTTP receiver: stores each request body, answers 200.
struct Receiver {
    port: u16,
    bodies: Received,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let bodies: Received = Arc::new(Mutex::new(Vec::new()));
        let store = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream);
                    loop {
                        let mut request_line = String::new();
                        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut length = 0usize;
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            let line = line.trim_end();
                            if line.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = line.split_once(':')
                                && k.eq_ignore_ascii_case("content-length")
                            {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; length];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        if let Ok(mut s) = store.lock() {
                            s.push((request_line.trim().to_owned(), body));
                        }
                        let reply =
                            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                        if reader.get_mut().write_all(reply).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { port, bodies }
    }

    fn bodies_containing(&self, needle: &[u8]) -> usize {
        let bodies = self.bodies.lock().map(|b| b.clone()).unwrap_or_default();
        bodies
            .iter()
            .filter(|(line, body)| line.contains("/v1/traces") && body.windows(needle.len()).any(|w| w == needle))
            .count()
    }
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_the_gateway_and_the_worker() {
    let receiver = Receiver::start();
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let cluster = Cluster::new(&[("SENTINEL_TELEMETRY__OTLP_ENDPOINT", endpoint.as_str())]).await;
    cluster.migrate();
    let mut gateway = cluster.start("api-gateway", &[("SENTINEL_HTTP__API_TOKEN", TEST_TOKEN)]);
    let mut worker = cluster.start("backup-worker", &[]);
    wait_ready(&mut gateway, "/ready", Duration::from_secs(30)).await;
    wait_ready(&mut worker, "/ready", Duration::from_secs(30)).await;

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let r = client()
        .post(gateway.url("/api/v1/jobs"))
        .bearer_auth(TEST_TOKEN)
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .json(&json!({ "kind": "demo.sleep", "payload": { "seconds": 0 } }))
        .send()
        .await
        .expect("enqueue");
    let id = r.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_owned();
    wait_job_state(&gateway.url(""), TEST_TOKEN, &id, "succeeded", Duration::from_secs(20)).await;

    // Stopping flushes the exporters.
    gateway.signal("-TERM");
    worker.signal("-TERM");
    assert!(gateway.wait_exit(Duration::from_secs(20)).is_some_and(|s| s.success()), "{}", gateway.output());
    assert!(worker.wait_exit(Duration::from_secs(30)).is_some_and(|s| s.success()), "{}", worker.output());

    let raw = hex_bytes(trace_id);
    assert!(receiver.bodies_containing(&raw) >= 2, "the trace id did not reach both services' exported spans");
}
