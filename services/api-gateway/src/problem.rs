//! RFC 9457 problem documents: every error the gateway returns, mapped in one place.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use sentinel_jobs::FieldError;
use serde::Serialize;

/// An HTTP error as `application/problem+json`, with a stable `type`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable problem type; serialized as `https://sentinel.dev/problems/<slug>`.
    #[serde(rename = "type", serialize_with = "problem_type_uri")]
    #[schema(value_type = String)]
    pub kind: &'static str,
    #[schema(value_type = String)]
    pub title: &'static str,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub detail: Option<Box<str>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<FieldErrorDoc>)]
    pub errors: Vec<FieldError>,
    /// Bad rows of an import (`{row, column, reason}`; the first 1000, `detail` counts them all).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<crate::routes::server_import::RowErrorView>>)]
    pub rows: Option<Box<Vec<crate::routes::server_import::RowErrorView>>>,
    /// Id of the existing resource a 409 conflicts with.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub conflicting_id: Option<Box<str>>,
    /// The same id under the name the monitoring seed's clients read (`POST /api/v1/http-targets`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub existing_id: Option<Box<str>>,
    #[serde(skip)]
    #[schema(ignore)]
    /// Seconds for `Retry-After`; 0 for none (a plain integer keeps the problem small).
    pub retry_after: u32,
    /// Caused by an unreachable database (the gateway then refuses requests until it answers).
    #[serde(skip)]
    #[schema(ignore)]
    pub database_down: bool,
}

fn problem_type_uri<S: serde::Serializer>(slug: &&'static str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("https://sentinel.dev/problems/{slug}"))
}

impl Problem {
    fn new(status: StatusCode, kind: &'static str, title: &'static str, detail: Option<String>) -> Self {
        Self {
            kind,
            title,
            status: status.as_u16(),
            detail: detail.map(String::into_boxed_str),
            errors: Vec::new(),
            rows: None,
            conflicting_id: None,
            existing_id: None,
            retry_after: 0,
            database_down: false,
        }
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
            Some("log in, or send `Authorization: Bearer <token>` or `X-API-Key: <key>`".to_owned()),
        )
    }
    pub fn unauthorized_with(detail: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Authentication required", Some(detail.to_owned()))
    }
    pub fn forbidden(detail: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", Some(detail.to_owned()))
    }
    pub fn too_many_requests(retry_after: std::time::Duration) -> Self {
        let mut p = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            Some(format!("retry in {} s", retry_after.as_secs().max(1))),
        );
        p.retry_after = retry_after.as_secs().clamp(1, 3600) as u32;
        p
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
    pub fn method_not_allowed(method: &str, allow: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            Some(format!("{method} is not allowed here; use {allow}")),
        )
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "Conflict", Some(detail.into()))
    }
    pub fn conflict_with(detail: impl Into<String>, id: impl ToString) -> Self {
        let mut p = Self::conflict(detail);
        p.conflicting_id = Some(id.to_string().into());
        p
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
    /// The database is unreachable: retry shortly (nothing was written).
    pub fn database_unavailable() -> Self {
        let mut p = Self::unavailable("the database is unreachable; nothing was changed, retry shortly");
        p.retry_after = crate::db_guard::RETRY_AFTER_SECS;
        p.database_down = true;
        p
    }
    /// A service Sentinel talks to (a storage) refused or failed; the detail says which and why.
    pub fn bad_gateway(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "upstream", "Upstream failure", Some(detail.into()))
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
        let mut res = HttpResponse::build(self.status_code());
        res.content_type("application/problem+json");
        if let secs @ 1.. = self.retry_after {
            res.insert_header(("Retry-After", secs.to_string()));
        }
        if self.status == 401 {
            res.insert_header(("WWW-Authenticate", "Bearer"));
        }
        let mut response = res.json(self);
        if self.database_down {
            response.extensions_mut().insert(crate::db_guard::DatabaseDown);
        }
        response
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

/// A known path asked with a method it has no route for: 405 with `Allow` (the documented methods).
pub async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let pattern = req.match_pattern().unwrap_or_else(|| req.path().to_owned());
    let allow = crate::openapi::allowed_methods(&pattern);
    let mut res = Problem::method_not_allowed(req.method().as_str(), &allow).error_response();
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allow) {
        res.headers_mut().insert(actix_web::http::header::ALLOW, value);
    }
    res
}

/// One invalid field of a request and why (documentation shape of `errors[]`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldErrorDoc {
    pub field: String,
    pub reason: String,
}
