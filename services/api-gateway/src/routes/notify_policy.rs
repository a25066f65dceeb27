//! `/api/v1/monitoring/notification-policy`: the organization's routing policy — which channels
//! each alert goes to (by its labels), grouped how, and Alertmanager's timers. Read, replace, and
//! delete (back to the default: every active channel, grouped by server or else by incident).

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use sentinel_jobs::db::notify::PolicyRecord;
use sentinel_jobs::domain::Role;
use sentinel_jobs::domain::notify::{MatchOp, Matcher, Policy, Route, Timers, routing::KNOWN_LABELS};
use sentinel_jobs::{FieldError, Spine};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::backup_shared::field_errors;
use super::resource;
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/monitoring/notification-policy")
            .route(web::get().to(get_policy))
            .route(web::put().to(put_policy))
            .route(web::delete().to(reset_policy)),
    );
}

/// One condition on an alert label (a missing label reads as the empty string).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MatcherBody {
    /// alertname, severity, source, source_id, name, incident, server or group.
    #[schema(schema_with = label_name)]
    pub label: String,
    /// `=` or `!=`.
    #[schema(schema_with = match_op)]
    pub op: String,
    #[schema(max_length = 256)]
    pub value: String,
}

pub(crate) fn label_name() -> utoipa::openapi::Object {
    doc::one_of(KNOWN_LABELS)
}

fn match_op() -> utoipa::openapi::Object {
    doc::one_of(["=", "!="])
}

/// The body's matchers for the domain (each bad one named under `field`).
pub(crate) fn matchers_of(field: &str, body: Vec<MatcherBody>, errors: &mut Vec<FieldError>) -> Vec<Matcher> {
    body.into_iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let op = match m.op.as_str() {
                "=" => MatchOp::Equal,
                "!=" => MatchOp::NotEqual,
                _ => {
                    errors.push(FieldError::new(format!("{field}[{i}].op"), "= or !="));
                    return None;
                }
            };
            Some(Matcher { label: m.label, op, value: m.value })
        })
        .collect()
}

pub(crate) fn matcher_views(m: &[Matcher]) -> Vec<MatcherBody> {
    m.iter()
        .map(|m| MatcherBody {
            label: m.label.clone(),
            op: match m.op {
                MatchOp::Equal => "=",
                MatchOp::NotEqual => "!=",
            }
            .to_owned(),
            value: m.value.clone(),
        })
        .collect()
}

/// A route below the root: the first whose matchers all match takes the alert (the next ones too
/// with `continue`); fields left out are the root's.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteBody {
    #[serde(default)]
    #[schema(max_items = 20)]
    pub matchers: Vec<MatcherBody>,
    /// Channel ids; absent: the root's channels.
    #[serde(default)]
    pub channels: Option<Vec<Uuid>>,
    /// Labels alerts are grouped by; absent: the root's.
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 604_800)]
    pub group_wait_seconds: Option<u32>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 604_800)]
    pub group_interval_seconds: Option<u32>,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 604_800)]
    pub repeat_interval_seconds: Option<u32>,
    /// Also try the routes after this one.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
}

/// Body of `PUT /api/v1/monitoring/notification-policy` (and its answer, with who saved it).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    /// The root's channels; absent or null: every active channel of the organization.
    #[serde(default)]
    pub channels: Option<Vec<Uuid>>,
    /// Labels alerts are grouped by (default `["group"]`: the alerts of one inventory server
    /// together, else one group per incident).
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    /// Wait before a new group's first notification (default 30).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 604_800)]
    pub group_wait_seconds: Option<u32>,
    /// Wait between two notifications of a changed group (default 300).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 604_800)]
    pub group_interval_seconds: Option<u32>,
    /// An unchanged, unacknowledged group is notified again after this long (default 14400; at
    /// least `group_interval_seconds`).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 604_800)]
    pub repeat_interval_seconds: Option<u32>,
    /// Alerts of a server a provisioning run or backup works on are not paged while it runs and
    /// this long after (default 300).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 86_400)]
    pub job_margin_seconds: Option<u32>,
    #[serde(default)]
    #[schema(max_items = 100)]
    pub routes: Vec<RouteBody>,
}

/// The policy in force.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PolicyView {
    pub channels: Option<Vec<Uuid>>,
    pub group_by: Vec<String>,
    pub group_wait_seconds: u32,
    pub group_interval_seconds: u32,
    pub repeat_interval_seconds: u32,
    pub job_margin_seconds: u32,
    pub routes: Vec<RouteBody>,
    /// True until a policy is saved.
    pub is_default: bool,
    pub updated_by: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
}

fn view(r: PolicyRecord) -> PolicyView {
    let p = r.policy;
    PolicyView {
        channels: p.channels,
        group_by: p.group_by,
        group_wait_seconds: p.timers.group_wait_seconds,
        group_interval_seconds: p.timers.group_interval_seconds,
        repeat_interval_seconds: p.timers.repeat_interval_seconds,
        job_margin_seconds: p.job_margin_seconds,
        routes: p
            .routes
            .into_iter()
            .map(|r| RouteBody {
                matchers: matcher_views(&r.matchers),
                channels: r.channels,
                group_by: r.group_by,
                group_wait_seconds: r.group_wait_seconds,
                group_interval_seconds: r.group_interval_seconds,
                repeat_interval_seconds: r.repeat_interval_seconds,
                continue_matching: r.continue_matching,
            })
            .collect(),
        is_default: r.is_default,
        updated_by: r.updated_by,
        updated_at: r.updated_at,
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/notification-policy",
    tag = "monitoring",
    summary = "The routing policy of notifications",
    responses((status = 200, description = "The policy in force", body = PolicyView), doc::Guarded)
)]
pub(crate) async fn get_policy(principal: Principal, spine: web::Data<Spine>) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    Ok(HttpResponse::Ok().json(view(spine.db().notify().policy(principal.org_id).await?)))
}

#[utoipa::path(
    put,
    path = "/api/v1/monitoring/notification-policy",
    tag = "monitoring",
    summary = "Replace the routing policy of notifications (channels must exist)",
    request_body = PolicyBody,
    responses((status = 200, description = "The policy in force", body = PolicyView), doc::Guarded, doc::Invalid, doc::BadBody)
)]
pub(crate) async fn put_policy(
    principal: Principal,
    spine: web::Data<Spine>,
    body: web::Json<Value>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Admin)?;
    let b = doc::read_body::<PolicyBody>(body.into_inner())?;
    let defaults = Policy::default();
    let mut errors = Vec::new();
    let routes = b
        .routes
        .into_iter()
        .enumerate()
        .map(|(i, r)| Route {
            matchers: matchers_of(&format!("routes[{i}].matchers"), r.matchers, &mut errors),
            channels: r.channels,
            group_by: r.group_by,
            group_wait_seconds: r.group_wait_seconds,
            group_interval_seconds: r.group_interval_seconds,
            repeat_interval_seconds: r.repeat_interval_seconds,
            continue_matching: r.continue_matching,
        })
        .collect();
    let policy = Policy {
        channels: b.channels,
        group_by: b.group_by.unwrap_or(defaults.group_by),
        timers: Timers {
            group_wait_seconds: b.group_wait_seconds.unwrap_or(defaults.timers.group_wait_seconds),
            group_interval_seconds: b.group_interval_seconds.unwrap_or(defaults.timers.group_interval_seconds),
            repeat_interval_seconds: b.repeat_interval_seconds.unwrap_or(defaults.timers.repeat_interval_seconds),
        },
        routes,
        job_margin_seconds: b.job_margin_seconds.unwrap_or(defaults.job_margin_seconds),
    };
    errors.extend(field_errors(policy.check()));
    let named = policy.named_channels();
    let ids: Vec<Uuid> = named.iter().map(|(_, id)| *id).collect();
    let missing = spine.db().notify().missing_channels(principal.org_id, &ids).await?;
    for (field, id) in named {
        if missing.contains(&id) {
            errors.push(FieldError::new(field, format!("no channel {id} in this organization")));
        }
    }
    if !errors.is_empty() {
        return Err(Problem::invalid(errors));
    }
    let saved = spine.db().notify().set_policy(principal.org_id, Some(&policy), &principal.label()).await?;
    Ok(HttpResponse::Ok().json(view(saved)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/monitoring/notification-policy",
    tag = "monitoring",
    summary = "Go back to the default routing policy",
    responses((status = 200, description = "The policy in force (the default)", body = PolicyView), doc::Guarded)
)]
pub(crate) async fn reset_policy(principal: Principal, spine: web::Data<Spine>) -> Result<HttpResponse, Problem> {
    principal.require(Role::Admin)?;
    let saved = spine.db().notify().set_policy(principal.org_id, None, &principal.label()).await?;
    Ok(HttpResponse::Ok().json(view(saved)))
}
