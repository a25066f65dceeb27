//! One HTTP check: the request a target describes, on a fresh connection (a pooled one would hide
//! connect and TLS failures), timed, and its outcome classified — DNS, connect, TLS, timeout,
//! status, assertion, response time — with the server certificate's expiry read during the
//! handshake (even when the handshake then fails on it).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sentinel_jobs::domain::monitoring::{CheckStatus, ErrorClass, TargetSpec, evaluate_assertion};

use crate::cert;

/// What one check found.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub status: CheckStatus,
    pub status_code: Option<u16>,
    pub response_ms: f64,
    pub error_class: Option<ErrorClass>,
    pub message: Option<String>,
    pub cert_expires_at: Option<DateTime<Utc>>,
}

impl Probe {
    /// A check that could not be attempted, and why.
    pub fn failed(class: ErrorClass, message: String) -> Self {
        Self {
            status: CheckStatus::Down,
            status_code: None,
            response_ms: 0.0,
            error_class: Some(class),
            message: Some(message),
            cert_expires_at: None,
        }
    }
}

/// A name that did not resolve (found again in a request error's source chain).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct DnsFailure(String);

/// An address outside `monitor.allow_networks`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

/// A network checks may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// `10.0.0.0/8`, `::1/128`, or a bare address.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| format!("{s:?} is not a network (write 10.0.0.0/8)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("{s:?}: bad prefix length"))?,
        };
        Ok(Self { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32u32),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => (u128::from(u32::from(v4)), 32),
                None => (u128::from(v6), 128),
            },
        };
        let ((net, width), (host, host_width)) = (bits(self.addr), bits(ip));
        if width != host_width {
            return false;
        }
        let shift = width - u32::from(self.prefix);
        shift >= 128 || (net >> shift) == (host >> shift)
    }
}

/// Which addresses checks may reach (empty: any).
#[derive(Debug, Clone, Default)]
struct Allowed(Arc<Vec<Network>>);

impl Allowed {
    fn permits(&self, ip: IpAddr) -> bool {
        self.0.is_empty() || self.0.iter().any(|n| n.contains(ip))
    }

    /// Refuses a URL whose host is an address outside the allowed networks (names are checked
    /// when they resolve).
    fn check_url(&self, url: &reqwest::Url) -> Result<(), String> {
        let host = url.host_str().unwrap_or_default();
        let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() else { return Ok(()) };
        if self.permits(ip) { Ok(()) } else { Err(format!("{ip} is outside monitor.allow_networks")) }
    }
}

/// Resolves target names with the system resolver, or with the configured DNS server, keeping only
/// the allowed addresses.
struct TargetResolver {
    server: Option<hickory_resolver::TokioResolver>,
    allowed: Allowed,
}

impl reqwest::dns::Resolve for TargetResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let server = self.server.clone();
        let allowed = self.allowed.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = match server {
                Some(r) => r
                    .lookup_ip(host.as_str())
                    .await
                    .map_err(|e| DnsFailure(format!("{host} does not resolve: {e}")))?
                    .iter()
                    .map(|ip| SocketAddr::new(ip, 0))
                    .collect(),
                None => tokio::net::lookup_host((host.as_str(), 0))
                    .await
                    .map_err(|e| DnsFailure(format!("{host} does not resolve: {e}")))?
                    .collect(),
            };
            if addrs.is_empty() {
                return Err(Box::new(DnsFailure(format!("{host} has no address"))) as Box<_>);
            }
            let addrs: Vec<SocketAddr> = addrs.into_iter().filter(|a| allowed.permits(a.ip())).collect();
            if addrs.is_empty() {
                return Err(Box::new(Refused(format!("{host} resolves only outside monitor.allow_networks"))) as Box<_>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The system's verification, noting each server certificate's expiry by server name first.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    expiries: Arc<Mutex<HashMap<String, DateTime<Utc>>>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(at) = cert::not_after(end_entity.as_ref())
            && let Ok(mut map) = self.expiries.lock()
        {
            map.insert(server_name.to_str().to_ascii_lowercase(), at);
        }
        self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The clients of every distinct trust and redirect setting, built once, and the certificate
/// expiries seen.
pub struct Prober {
    system_roots: Vec<CertificateDer<'static>>,
    resolver: Arc<TargetResolver>,
    clients: Mutex<HashMap<(Option<String>, bool), reqwest::Client>>,
    expiries: Arc<Mutex<HashMap<String, DateTime<Utc>>>>,
    max_body: usize,
    allowed: Allowed,
}

impl Prober {
    /// A prober resolving through `dns_server` (the system's resolver if none), reaching only
    /// `allowed` networks (any if empty).
    pub fn new(dns_server: Option<SocketAddr>, max_body: usize, allowed: Vec<Network>) -> Self {
        let allowed = Allowed(Arc::new(allowed));
        let system_roots = rustls_native_certs::load_native_certs().certs;
        let server = dns_server.map(|addr| {
            use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
            let group = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
            hickory_resolver::Resolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], group),
                hickory_resolver::name_server::TokioConnectionProvider::default(),
            )
            .build()
        });
        Self {
            system_roots,
            resolver: Arc::new(TargetResolver { server, allowed: allowed.clone() }),
            clients: Mutex::new(HashMap::new()),
            expiries: Arc::new(Mutex::new(HashMap::new())),
            max_body,
            allowed,
        }
    }

    fn client(&self, spec: &TargetSpec) -> Result<reqwest::Client, String> {
        let key = (spec.ca_certificate.clone(), spec.follow_redirects);
        if let Some(c) = self.clients.lock().map_err(|e| e.to_string())?.get(&key) {
            return Ok(c.clone());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(self.system_roots.iter().cloned());
        if let Some(pem) = &spec.ca_certificate {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("ca_certificate: {e}"))?;
                roots.add(cert).map_err(|e| format!("ca_certificate: {e}"))?;
            }
        }
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("no usable trust roots: {e}"))?;
        let verifier = Arc::new(RecordingVerifier { inner, expiries: self.expiries.clone() });
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let allowed = self.allowed.clone();
        let redirect = if spec.follow_redirects {
            reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 10 {
                    attempt.error("more than 10 redirects")
                } else if let Err(e) = allowed.check_url(attempt.url()) {
                    attempt.error(e)
                } else {
                    attempt.follow()
                }
            })
        } else {
            reqwest::redirect::Policy::none()
        };
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .dns_resolver(self.resolver.clone())
            .pool_max_idle_per_host(0)
            .redirect(redirect)
            .user_agent(concat!("Sentinel-Monitor/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        if let Ok(mut map) = self.clients.lock() {
            map.insert(key, client.clone());
        }
        Ok(client)
    }

    fn expiry_of(&self, spec: &TargetSpec) -> Option<DateTime<Utc>> {
        if !spec.url.trim_start().to_ascii_lowercase().starts_with("https:") {
            return None;
        }
        let host = sentinel_jobs::domain::monitoring::targets::host_of(&spec.url)?;
        self.expiries.lock().ok()?.get(&host).copied()
    }

    /// Runs the check `spec` describes, within its timeout.
    pub async fn probe(&self, spec: &TargetSpec) -> Probe {
        let started = Instant::now();
        let timeout = Duration::from_secs(u64::from(spec.timeout_seconds.max(1)));
        let outcome = match self.client(spec) {
            Err(e) => Err((ErrorClass::Tls, e)),
            Ok(client) => match tokio::time::timeout(timeout, self.exchange(&client, spec)).await {
                Err(_) => Err((ErrorClass::Timeout, format!("no response within {}s", timeout.as_secs()))),
                Ok(r) => r,
            },
        };
        let response_ms = started.elapsed().as_secs_f64() * 1000.0;
        let cert_expires_at = self.expiry_of(spec);
        let (status_code, failure) = match outcome {
            Err(failure) => (None, Some(failure)),
            Ok((code, body)) => (Some(code), self.judge(spec, code, response_ms, body.as_deref())),
        };
        Probe {
            status: if failure.is_none() { CheckStatus::Up } else { CheckStatus::Down },
            status_code,
            response_ms,
            error_class: failure.as_ref().map(|f| f.0),
            message: failure.map(|f| f.1),
            cert_expires_at,
        }
    }

    fn judge(&self, spec: &TargetSpec, code: u16, ms: f64, body: Option<&str>) -> Option<(ErrorClass, String)> {
        if !spec.accepts(code) {
            let want = match &spec.accepted_status_codes {
                None => "2xx".to_owned(),
                Some(c) => c.iter().map(u16::to_string).collect::<Vec<_>>().join(", "),
            };
            return Some((ErrorClass::Status, format!("status {code}, expected {want}")));
        }
        if let Some(max) = spec.max_response_ms
            && ms > f64::from(max)
        {
            return Some((ErrorClass::ResponseTime, format!("answered in {ms:.0} ms, over the {max} ms allowed")));
        }
        if let Some(assertion) = &spec.assertion
            && let Err(e) = evaluate_assertion(assertion, body.unwrap_or(""))
        {
            return Some((ErrorClass::Assertion, e));
        }
        None
    }

    /// Sends the request; reads the body (up to the limit) only when an assertion needs it.
    async fn exchange(
        &self,
        client: &reqwest::Client,
        spec: &TargetSpec,
    ) -> Result<(u16, Option<String>), (ErrorClass, String)> {
        let method = reqwest::Method::from_bytes(spec.method.as_str().as_bytes()).unwrap_or(reqwest::Method::GET);
        let url = reqwest::Url::parse(spec.url.trim()).map_err(|e| (ErrorClass::Other, format!("bad URL: {e}")))?;
        self.allowed.check_url(&url).map_err(|e| (ErrorClass::Connect, e))?;
        let mut req = client.request(method, url);
        for (k, v) in &spec.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(body) = &spec.body {
            req = req.body(body.clone());
        }
        let mut resp = req.send().await.map_err(|e| classify(&e))?;
        let code = resp.status().as_u16();
        if spec.assertion.is_none() {
            return Ok((code, None));
        }
        let mut body = Vec::new();
        while body.len() < self.max_body {
            match resp.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => return Err(classify(&e)),
            }
        }
        body.truncate(self.max_body);
        Ok((code, Some(String::from_utf8_lossy(&body).into_owned())))
    }
}

/// The class of a failed request, from the error and its sources, and the whole chain as the message.
fn classify(e: &reqwest::Error) -> (ErrorClass, String) {
    let mut chain = vec![e.to_string()];
    let mut class = None;
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if chain.last() != Some(&text) {
            chain.push(text);
        }
        let inner = s.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|i| i as &dyn std::error::Error);
        for candidate in std::iter::once(s).chain(inner) {
            if candidate.downcast_ref::<DnsFailure>().is_some() {
                class = class.or(Some(ErrorClass::Dns));
            } else if candidate.downcast_ref::<Refused>().is_some() {
                class = class.or(Some(ErrorClass::Connect));
            } else if candidate.downcast_ref::<rustls::Error>().is_some() {
                class = class.or(Some(ErrorClass::Tls));
            }
        }
        source = s.source();
    }
    // hyper-util boxes the connector's error, which hides rustls's error type from a downcast:
    // rustls's messages name what failed.
    let tls_words = ["invalid peer certificate", "peer is incompatible", "received fatal alert", "tls handshake"];
    if class.is_none() && chain.iter().any(|m| tls_words.iter().any(|w| m.to_ascii_lowercase().contains(w))) {
        class = Some(ErrorClass::Tls);
    }
    let class = class.unwrap_or(if e.is_timeout() {
        ErrorClass::Timeout
    } else if e.is_redirect() {
        ErrorClass::Other
    } else if e.is_connect() {
        ErrorClass::Connect
    } else {
        ErrorClass::Other
    });
    (class, chain.join(": "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_contain_what_they_should() {
        let lo = Network::parse("127.0.0.0/8").expect("v4");
        assert!(lo.contains("127.1.2.3".parse().expect("ip")));
        assert!(!lo.contains("10.0.0.1".parse().expect("ip")));
        assert!(lo.contains("::ffff:127.0.0.1".parse().expect("mapped")));
        let one = Network::parse("::1").expect("v6");
        assert!(one.contains("::1".parse().expect("ip")) && !one.contains("::2".parse().expect("ip")));
        assert!(Network::parse("0.0.0.0/0").expect("all").contains("8.8.8.8".parse().expect("ip")));
        assert!(Network::parse("10.0.0.0/33").is_err() && Network::parse("example.com").is_err());
        let allowed = Allowed(Arc::new(vec![lo]));
        assert!(allowed.check_url(&reqwest::Url::parse("http://127.0.0.1:9/").expect("url")).is_ok());
        assert!(allowed.check_url(&reqwest::Url::parse("http://[::2]/").expect("url")).is_err());
        assert!(allowed.check_url(&reqwest::Url::parse("http://10.1.1.1/").expect("url")).is_err());
        assert!(allowed.check_url(&reqwest::Url::parse("http://name.example/").expect("url")).is_ok());
    }
}
