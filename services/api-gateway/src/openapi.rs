//! The OpenAPI 3.1 document, generated from the route annotations, and the offline docs UI.

use serde_json::{Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AllOfBuilder, AnyOfBuilder, OneOfBuilder, Schema};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::doc;
use crate::problem::{FieldErrorDoc, Problem};
use crate::routes::{
    access, backup_destinations, backup_journal, backup_plan_actions, backup_plans, backup_restores, backup_targets,
    backup_uploads, configs, dead_letters, jobs, jobs_batch, monitor_dashboard, monitor_heartbeats, monitor_incidents,
    monitor_ingest, monitor_machines, monitor_results, monitor_settings, monitor_stream, monitor_targets,
    monitor_thresholds, notify_channels, notify_log, notify_mutes, notify_policy, pings, playbooks, previews,
    provision_run_create, provision_runs, reservations, schedules, server_history, server_import, servers, ssh_keys,
    streams, tasks,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sentinel API",
        description = "Jobs, schedules, access control and live updates of the Sentinel ops control plane. Errors are RFC 9457 problem documents.",
        license(name = "Apache-2.0")
    ),
    paths(
        access::login, access::logout, access::me,
        access::list_users, access::create_user, access::update_user, access::delete_user,
        access::list_keys, access::create_key, access::revoke_key, access::audit,
        jobs::enqueue, jobs_batch::enqueue_batch, jobs::list, jobs::counts, jobs::get_job, jobs::cancel, jobs::retry, jobs::events, jobs::log,
        dead_letters::dead_letters, dead_letters::requeue_dead_letter, dead_letters::discard_dead_letter,
        schedules::create, schedules::list, schedules::get_schedule, schedules::replace, schedules::patch,
        schedules::delete, previews::preview_definition, previews::preview_schedule, schedules::firings,
        servers::list, servers::create, servers::get_server, servers::patch, servers::delete, server_history::history,
        server_import::import, reservations::reserve, reservations::release,
        configs::create, configs::list, configs::get_config, configs::replace, configs::delete,
        configs::versions, configs::get_version,
        ssh_keys::create, ssh_keys::list, ssh_keys::get_key, ssh_keys::patch, ssh_keys::delete,
        playbooks::list, provision_run_create::create, provision_runs::list, provision_runs::get_run,
        provision_run_create::retry_failed, provision_run_create::apply,
        backup_targets::create, backup_targets::list, backup_targets::get_target, backup_targets::replace,
        backup_targets::delete, backup_targets::test,
        backup_destinations::create, backup_destinations::list, backup_destinations::get_destination,
        backup_destinations::replace, backup_destinations::delete, backup_destinations::test,
        backup_plans::create, backup_plans::list, backup_plans::get_plan, backup_plans::replace,
        backup_plan_actions::delete, backup_plan_actions::run, backup_plan_actions::prune,
        backup_journal::list, backup_journal::get_entry, backup_journal::verify, backup_restores::create, backup_uploads::upload,
        monitor_targets::create, monitor_targets::list, monitor_targets::get_target, monitor_targets::replace,
        monitor_targets::delete, monitor_targets::check_now, monitor_results::results,
        monitor_settings::get_settings, monitor_settings::replace, monitor_incidents::alerts, monitor_incidents::incidents,
        monitor_incidents::get_incident, monitor_incidents::acknowledge, monitor_incidents::resolve, monitor_incidents::add_note,
        monitor_ingest::ingest, monitor_machines::list_machines, monitor_machines::get_machine, monitor_machines::machine_metrics,
        monitor_machines::list_metrics, monitor_machines::series, monitor_machines::patch_metric, monitor_dashboard::dashboard,
        monitor_stream::stream, monitor_thresholds::list, monitor_thresholds::put, monitor_thresholds::remove,
        monitor_thresholds::put_default,
        monitor_heartbeats::create, monitor_heartbeats::list, monitor_heartbeats::get_heartbeat, monitor_heartbeats::replace,
        monitor_heartbeats::delete, monitor_heartbeats::new_token, monitor_heartbeats::pings,
        notify_channels::create, notify_channels::list, notify_channels::get_channel, notify_channels::replace,
        notify_channels::delete, notify_channels::test, notify_policy::get_policy, notify_policy::put_policy,
        notify_policy::reset_policy, notify_mutes::create_silence, notify_mutes::silences, notify_mutes::get_silence,
        notify_mutes::expire_silence, notify_mutes::create_window, notify_mutes::windows, notify_mutes::get_window,
        notify_mutes::delete_window, notify_log::list, notify_log::get_notification,
        pings::success, pings::signal,
        streams::job_stream, streams::org_stream,
        tasks::enqueue, tasks::status, tasks::counts,
    ),
    components(schemas(Problem, FieldErrorDoc)),
    modifiers(&SecuritySchemes, &CrossFieldRules),
    security(("bearer" = []), ("api_key" = []), ("session" = []))
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::auth::SESSION_COOKIE))),
        );
    }
}

/// The rules that tie fields of one body together, which field attributes cannot state: which fields
/// exclude each other, and the payload each job kind takes.
struct CrossFieldRules;

/// Matches when `field` is absent or `null`.
fn absent(field: &str) -> RefOr<Schema> {
    doc::schema_of(json!({ "type": "object", "properties": { field: { "type": "null" } } }))
}

/// Matches when `field` is present with a value of `ty`.
fn present(field: &str, ty: &str) -> RefOr<Schema> {
    doc::schema_of(json!({ "type": "object", "required": [field], "properties": { field: { "type": ty } } }))
}

/// One branch per kind: that kind with its payload (required when the kind rejects the default).
/// For a patch (`kind_required` false), `null` payloads (unchanged) are allowed too.
fn kinds(default_payload: &Value, kind_required: bool) -> Vec<RefOr<Schema>> {
    let catalog = doc::catalog();
    catalog
        .kinds()
        .filter(|k| !k.internal)
        .map(|k| {
            let mut required = Vec::new();
            if kind_required {
                required.push("kind");
            }
            if kind_required && (k.validate)(default_payload).is_err() {
                required.push("payload");
            }
            let payload = (k.payload_schema)();
            let payload = if kind_required { payload } else { json!({ "anyOf": [{ "type": "null" }, payload] }) };
            doc::schema_of(json!({
                "type": "object",
                "properties": { "kind": { "type": "string", "enum": [k.kind.as_str()] }, "payload": payload },
                "required": required,
            }))
        })
        .collect()
}

fn exactly_one(items: Vec<RefOr<Schema>>) -> RefOr<Schema> {
    let mut b = OneOfBuilder::new();
    for i in items {
        b = b.item(i);
    }
    Schema::OneOf(b.build()).into()
}

fn at_least_one(items: Vec<RefOr<Schema>>) -> RefOr<Schema> {
    let mut b = AnyOfBuilder::new();
    for i in items {
        b = b.item(i);
    }
    Schema::AnyOf(b.build()).into()
}

impl Modify for CrossFieldRules {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.schemas.insert("TimeZone".to_owned(), Schema::Object(doc::timezones()).into());
        let trigger = || exactly_one(vec![present("cron", "string"), present("interval_secs", "integer")]);
        let kind_is = |kind: &str| {
            doc::schema_of(json!({ "type": "object", "properties": { "kind": { "type": "string", "enum": [kind] } } }))
        };
        let all_of = |items: Vec<RefOr<Schema>>| {
            let mut b = AllOfBuilder::new();
            for i in items {
                b = b.item(i);
            }
            RefOr::T(Schema::AllOf(b.build()))
        };
        let numeric_threshold = all_of(vec![
            kind_is("numeric"),
            absent("expected"),
            at_least_one(vec![present("warning", "number"), present("critical", "number")]),
        ]);
        let expected_threshold = all_of(vec![
            kind_is("expected"),
            at_least_one(vec![present("expected", "boolean"), present("expected", "string")]),
            absent("comparison"),
            absent("warning"),
            absent("critical"),
        ]);
        let heartbeat_schedule = exactly_one(vec![
            all_of(vec![present("period_seconds", "integer"), absent("cron"), absent("timezone")]),
            all_of(vec![present("cron", "string"), absent("period_seconds")]),
        ]);
        let rules: [(&str, Vec<RefOr<Schema>>); 6] = [
            (
                "EnqueueBody",
                vec![
                    at_least_one(vec![absent("delay_seconds"), absent("run_at")]),
                    exactly_one(kinds(&Value::Null, true)),
                ],
            ),
            ("ScheduleBody", vec![trigger(), exactly_one(kinds(&json!({}), true))]),
            (
                "SchedulePatch",
                vec![
                    at_least_one(vec![absent("cron"), absent("interval_secs")]),
                    at_least_one(kinds(&json!({}), false)),
                ],
            ),
            ("PreviewBody", vec![trigger()]),
            ("ThresholdBody", vec![exactly_one(vec![numeric_threshold, expected_threshold])]),
            ("HeartbeatBody", vec![heartbeat_schedule]),
        ];
        for (name, rules) in rules {
            let Some(base) = components.schemas.remove(name) else { continue };
            let mut all = AllOfBuilder::new().item(base);
            for rule in rules {
                all = all.item(rule);
            }
            components.schemas.insert(name.to_owned(), Schema::AllOf(all.build()).into());
        }
    }
}

/// The document as served at `/api/v1/openapi.json` (and committed as `docs/openapi.json`).
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Pretty JSON of the document, with a trailing newline (the committed file's exact form).
pub fn document_json() -> String {
    let mut json = document().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    json.push('\n');
    json
}

/// The methods the document lists for a route pattern (`/api/v1/jobs/{id}`), as an `Allow` value.
pub fn allowed_methods(pattern: &str) -> String {
    static ALLOWED: std::sync::OnceLock<std::collections::HashMap<String, String>> = std::sync::OnceLock::new();
    let allowed = ALLOWED.get_or_init(|| {
        let value = serde_json::to_value(document()).unwrap_or_default();
        let paths = value["paths"].as_object().cloned().unwrap_or_default();
        paths
            .into_iter()
            .map(|(path, item)| {
                let methods = ["GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"]
                    .into_iter()
                    .filter(|m| item.get(m.to_lowercase()).is_some())
                    .collect::<Vec<_>>();
                (path, methods.join(", "))
            })
            .collect()
    });
    allowed.get(pattern).cloned().unwrap_or_default()
}
