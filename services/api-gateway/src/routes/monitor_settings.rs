//! `/api/v1/monitoring/settings`: the organization's monitoring settings (the seed's client
//! settings) — notification email, heartbeat threshold, failures before an alert opens, successes
//! before it resolves, alert grouping — read and replaced whole.

use actix_web::{HttpResponse, web};
use sentinel_jobs::Spine;
use sentinel_jobs::domain::Role;
use sentinel_jobs::domain::monitoring::alerts::ClientSettings;
use serde::{Deserialize, Serialize};

use super::backup_shared::field_errors;
use super::resource;
use crate::Problem;
use crate::auth::Principal;
use crate::doc;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/monitoring/settings").route(web::get().to(get_settings)).route(web::put().to(replace)));
}

/// The settings, as read and as replaced (every field required on replace).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    /// Where alert mail goes; null for none.
    #[schema(schema_with = doc::notification_email)]
    pub notification_email: Option<String>,
    /// A machine silent for longer than this raises "machine silent" (1 to 10080).
    #[schema(minimum = 1, maximum = 10080)]
    pub heartbeat_threshold_minutes: u32,
    /// Failures in a row before a target's alert opens (1 to 100).
    #[schema(minimum = 1, maximum = 100)]
    pub consecutive_failures_threshold: u32,
    /// Successes in a row before it resolves (1 to 100).
    #[schema(minimum = 1, maximum = 100)]
    pub consecutive_successes_threshold: u32,
    /// The alerts of one target or machine share one incident.
    pub alert_grouping_enabled: bool,
}

impl From<ClientSettings> for SettingsBody {
    fn from(s: ClientSettings) -> Self {
        Self {
            notification_email: s.notification_email,
            heartbeat_threshold_minutes: s.heartbeat_threshold_minutes,
            consecutive_failures_threshold: s.consecutive_failures_threshold,
            consecutive_successes_threshold: s.consecutive_successes_threshold,
            alert_grouping_enabled: s.alert_grouping_enabled,
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/monitoring/settings",
    tag = "monitoring",
    summary = "Get the organization's monitoring settings (the defaults until first replaced)",
    responses((status = 200, description = "The settings", body = SettingsBody), doc::Guarded)
)]
pub(crate) async fn get_settings(principal: Principal, spine: web::Data<Spine>) -> Result<HttpResponse, Problem> {
    principal.require(Role::Viewer)?;
    let s = spine.db().monitoring().settings(principal.org_id).await?;
    Ok(HttpResponse::Ok().json(SettingsBody::from(s)))
}

#[utoipa::path(
    put,
    path = "/api/v1/monitoring/settings",
    tag = "monitoring",
    summary = "Replace the organization's monitoring settings",
    request_body = SettingsBody,
    responses((status = 200, description = "Replaced", body = SettingsBody), doc::Guarded, doc::Invalid, doc::BadBody)
)]
pub(crate) async fn replace(
    principal: Principal,
    spine: web::Data<Spine>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, Problem> {
    principal.require(Role::Operator)?;
    let b: SettingsBody = doc::read_body(body.into_inner())?;
    let settings = ClientSettings {
        notification_email: b.notification_email.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()),
        heartbeat_threshold_minutes: b.heartbeat_threshold_minutes,
        consecutive_failures_threshold: b.consecutive_failures_threshold,
        consecutive_successes_threshold: b.consecutive_successes_threshold,
        alert_grouping_enabled: b.alert_grouping_enabled,
    };
    let problems = settings.check();
    if !problems.is_empty() {
        return Err(Problem::invalid(field_errors(problems)));
    }
    spine.db().monitoring().replace_settings(principal.org_id, &settings, &principal.label()).await?;
    Ok(HttpResponse::Ok().json(SettingsBody::from(settings)))
}
