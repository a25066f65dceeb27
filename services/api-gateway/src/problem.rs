//! RFC 9457 problem documents: every error the gateway returns, mapped in one place.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use sentinel_jobs::FieldError;
use serde::Serialize;

/// An HTTP error as `application/problem+json`, with a stable `type`.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    fn new(status: StatusCode, kind: &str, title: &str, detail: Option<String>) -> Self {
        Self {
            kind: format!("https://sentinel.dev/problems/{kind}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            errors: Vec::new(),
        }
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
            Some("send `Authorization: Bearer <token>`".to_owned()),
        )
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", Some(format!("{what} does not exist")))
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", "Malformed request", Some(detail.into()))
    }
    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            Some(detail.into()),
        )
    }
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Request body too large",
            Some(format!("the limit is {limit} bytes")),
        )
    }
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let mut p = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", "Invalid request", None);
        p.errors = errors;
        p
    }
    pub fn invalid_field(field: &str, reason: impl Into<String>) -> Self {
        Self::invalid(vec![FieldError::new(field, reason)])
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "Conflict", Some(detail.into()))
    }
    /// Opaque to the client; the cause is logged with its whole chain.
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        let mut chain = cause.to_string();
        let mut source = cause.source();
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(error = %chain, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error", None)
    }
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable", Some(detail.into()))
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.title)
    }
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).content_type("application/problem+json").json(self)
    }
}

/// JSON bodies: size limit, content type and syntax errors become problems naming what is wrong.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default().limit(limit).error_handler(move |err, _req: &HttpRequest| {
        use actix_web::error::JsonPayloadError as E;
        let problem = match &err {
            E::OverflowKnownLength { .. } | E::Overflow { .. } => Problem::payload_too_large(limit),
            E::ContentType => Problem::unsupported_media_type("send the body as `Content-Type: application/json`"),
            E::Deserialize(e) if e.is_data() => {
                // Type and unknown-field errors: the body is JSON but not the expected shape.
                Problem::invalid_field("body", e.to_string())
            }
            other => Problem::bad_request(format!("malformed JSON body: {other}")),
        };
        problem.into()
    })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| Problem::invalid_field("query", err.to_string()).into())
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, _req| Problem::not_found(&format!("the resource ({err})")).into())
}

pub async fn not_found(req: HttpRequest) -> HttpResponse {
    Problem::not_found(&format!("route {} {}", req.method(), req.path())).error_response()
}
