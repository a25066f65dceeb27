//! Real servers on loopback for the checks to hit: one HTTP/1.1 handler (200 with JSON, 500, a hang
//! past any timeout, a redirect, a slow answer, a page behind a bearer token) served in plain text and behind TLS with
//! certificates of a test CA (one valid for ten days, one expired), and a DNS server that knows one
//! name and answers NXDOMAIN for every other.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// The bearer token `/private` wants.
pub const PRIVATE_TOKEN: &str = "s3cret-token-9f1c";

/// Requests served, by path; and the switch `/switch` answers by (503 when down, else 200).
#[derive(Clone, Default)]
pub struct Hits(Arc<Mutex<HashMap<String, u64>>>, Arc<std::sync::atomic::AtomicBool>);

impl Hits {
    pub fn of(&self, path: &str) -> u64 {
        self.0.lock().expect("hits").get(path).copied().unwrap_or(0)
    }

    pub fn set_down(&self, down: bool) {
        self.1.store(down, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, hits: Hits) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    // Routed by path; a query string only makes URLs distinct.
    let target = text.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/").to_owned();
    *hits.0.lock().expect("hits").entry(path.clone()).or_default() += 1;
    let (status, extra, body) = match path.as_str() {
        "/ok" => ("200 OK", "", r#"{"status": "ok", "db": {"latency_ms": 3}}"#.to_owned()),
        "/fail" => ("500 Internal Server Error", "", "broken".to_owned()),
        "/switch" if hits.1.load(std::sync::atomic::Ordering::SeqCst) => {
            ("503 Service Unavailable", "", "down".to_owned())
        }
        "/switch" => ("200 OK", "", "up".to_owned()),
        "/redirect" => ("302 Found", "Location: /ok\r\n", String::new()),
        // Answers only the request that carries the test's credential.
        "/private" if text.to_ascii_lowercase().contains(&format!("authorization: bearer {PRIVATE_TOKEN}")) => {
            ("200 OK", "", "welcome".to_owned())
        }
        "/private" => ("401 Unauthorized", "", "who are you".to_owned()),
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            ("200 OK", "", "slow but fine".to_owned())
        }
        "/hang" => {
            tokio::time::sleep(Duration::from_secs(300)).await;
            return;
        }
        _ => ("404 Not Found", "", "no such page".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A plain HTTP server; returns its port and its hit counts.
pub async fn http() -> (u16, Hits) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hits = Hits::default();
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, h.clone()));
        }
    });
    (port, hits)
}

/// A test certificate authority and what it signs.
pub struct TestCa {
    pub pem: String,
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    pub fn new() -> Self {
        let key = rcgen::KeyPair::generate().expect("ca key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "Sentinel test CA");
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("ca");
        Self { pem: cert.pem(), cert, key }
    }

    /// A certificate for 127.0.0.1 and localhost valid from `from` to `until`.
    fn leaf(&self, from: chrono::DateTime<chrono::Utc>, until: chrono::DateTime<chrono::Utc>) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params.subject_alt_names.push(rcgen::SanType::IpAddress(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let at = |t: chrono::DateTime<chrono::Utc>| {
            use chrono::Datelike;
            rcgen::date_time_ymd(t.year(), t.month() as u8, t.day() as u8)
        };
        params.not_before = at(from);
        params.not_after = at(until);
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("leaf");
        (cert.pem(), key.serialize_pem())
    }
}

/// An HTTPS server with a certificate of `ca` valid from `from` to `until`.
pub async fn https(
    ca: &TestCa,
    from: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
) -> (u16, Hits) {
    use rustls::pki_types::pem::PemObject;
    let (cert_pem, key_pem) = ca.leaf(from, until);
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .expect("certs");
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hits = Hits::default();
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, h) = (acceptor.clone(), h.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    serve(tls, h).await;
                }
            });
        }
    });
    (port, hits)
}

/// The one name the DNS server knows (it resolves to 127.0.0.1).
pub const KNOWN_NAME: &str = "up.sentinel.test";

/// A DNS server on a loopback UDP port: `KNOWN_NAME` has A 127.0.0.1, every other name is NXDOMAIN.
pub async fn dns() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            if let Some(reply) = answer(&buf[..n]) {
                let _ = socket.send_to(&reply, peer).await;
            }
        }
    });
    addr
}

fn answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut i = 12;
    let mut labels = Vec::new();
    while *query.get(i)? != 0 {
        let len = usize::from(query[i]);
        labels.push(String::from_utf8_lossy(query.get(i + 1..i + 1 + len)?).to_ascii_lowercase());
        i += 1 + len;
    }
    let question_end = i + 5;
    let qtype = u16::from_be_bytes([*query.get(i + 1)?, *query.get(i + 2)?]);
    let known = labels.join(".") == KNOWN_NAME;
    let mut reply = query[..2].to_vec();
    let rcode = if known { 0 } else { 3 };
    reply.extend_from_slice(&[0x81, 0x80 | rcode]);
    let answers: u16 = u16::from(known && qtype == 1);
    reply.extend_from_slice(&[0, 1]);
    reply.extend_from_slice(&answers.to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]);
    reply.extend_from_slice(query.get(12..question_end)?);
    if answers == 1 {
        reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    }
    Some(reply)
}
