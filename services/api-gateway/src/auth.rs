//! Interim access control: one bearer token guards every API route until user accounts, roles and
//! API keys arrive. Compared in constant time.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use secrecy::{ExposeSecret, SecretString};

use crate::Problem;

#[derive(Clone)]
pub struct BearerGuard {
    token: SecretString,
}

impl BearerGuard {
    pub fn new(token: SecretString) -> Self {
        Self { token }
    }

    fn accepts(&self, presented: &str) -> bool {
        let expected = self.token.expose_secret().as_bytes();
        let presented = presented.as_bytes();
        // Constant time over the expected length: no early exit on the first differing byte.
        let mut diff = expected.len() ^ presented.len();
        for (i, b) in expected.iter().enumerate() {
            diff |= usize::from(b ^ presented.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }
}

/// Who made the request (recorded as the job's requester).
#[derive(Clone, Debug)]
pub struct Caller(pub String);

pub async fn require_bearer(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let ok = {
        let guard = req.app_data::<web::Data<BearerGuard>>();
        let header = req.headers().get(actix_web::http::header::AUTHORIZATION).and_then(|h| h.to_str().ok());
        match (guard, header.and_then(|h| h.strip_prefix("Bearer "))) {
            (Some(guard), Some(token)) => guard.accepts(token.trim()),
            _ => false,
        }
    };
    if !ok {
        return Err(Problem::unauthorized().into());
    }
    req.extensions_mut().insert(Caller("api-token".to_owned()));
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_is_accepted() {
        let g = BearerGuard::new(SecretString::from("0123456789abcdef"));
        assert!(g.accepts("0123456789abcdef"));
        assert!(!g.accepts("0123456789abcdeF"));
        assert!(!g.accepts("0123456789abcdef0"));
        assert!(!g.accepts(""));
    }
}
