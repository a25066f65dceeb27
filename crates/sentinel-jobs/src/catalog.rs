//! The catalog of job kinds: which queue each kind travels on and how its payload is validated. The
//! gateway validates against it; workers register handlers for the kinds they run.

use std::collections::BTreeMap;

use sentinel_domain::{JobKind, QueueName, builtin};
use serde::Serialize;
use serde_json::{Value, json};

/// One invalid field of a payload, with the reason (becomes one entry of a 422 response).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }
}

/// A kind of job the system knows.
#[derive(Debug, Clone)]
pub struct KindSpec {
    pub kind: JobKind,
    pub queue: QueueName,
    pub description: &'static str,
    pub validate: fn(&Value) -> Result<(), Vec<FieldError>>,
    /// The JSON Schema of the payloads `validate` accepts (the API document states it).
    pub payload_schema: fn() -> Value,
    /// System work (retention, monitoring sweeps): only built-in schedules run it, never an API caller.
    pub internal: bool,
}

/// Every registered kind, by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    kinds: BTreeMap<JobKind, KindSpec>,
}

fn parse(kind: &str, queue: &str) -> (JobKind, QueueName) {
    // Built-in names are compile-time constants checked by the catalog's own test.
    (
        JobKind::parse(kind).unwrap_or_else(|e| panic!("built-in kind {kind}: {e}")),
        QueueName::parse(queue).unwrap_or_else(|e| panic!("built-in queue {queue}: {e}")),
    )
}

fn validate_demo_sleep(payload: &Value) -> Result<(), Vec<FieldError>> {
    let Some(obj) = payload.as_object() else {
        return Err(vec![FieldError::new("payload", "must be a JSON object such as {\"seconds\": 5}")]);
    };
    let mut errors = Vec::new();
    match obj.get("seconds") {
        None => errors.push(FieldError::new("payload.seconds", "is required")),
        Some(v) => match v.as_u64() {
            Some(s) if s <= 86_400 => {}
            _ => errors.push(FieldError::new("payload.seconds", "must be an integer from 0 to 86400")),
        },
    }
    for key in obj.keys().filter(|k| k.as_str() != "seconds") {
        errors.push(FieldError::new(format!("payload.{key}"), "is not a field of demo.sleep"));
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

fn demo_sleep_schema() -> Value {
    json!({
        "type": "object",
        "properties": { "seconds": { "type": "integer", "minimum": 0, "maximum": 86_400 } },
        "required": ["seconds"],
        "additionalProperties": false
    })
}

fn accept_any(_: &Value) -> Result<(), Vec<FieldError>> {
    Ok(())
}

fn any_schema() -> Value {
    json!({})
}

fn no_parameters_schema() -> Value {
    json!({ "type": ["object", "null"], "maxProperties": 0 })
}

/// Periodic system work takes no parameters: an empty object (or null).
fn validate_no_parameters(payload: &Value) -> Result<(), Vec<FieldError>> {
    match payload {
        Value::Null => Ok(()),
        Value::Object(obj) if obj.is_empty() => Ok(()),
        _ => Err(vec![FieldError::new("payload", "takes no parameters: send {}")]),
    }
}

fn validate_target_check(payload: &Value) -> Result<(), Vec<FieldError>> {
    match payload.get("target_id").and_then(Value::as_str).map(uuid::Uuid::parse_str) {
        Some(Ok(_)) if payload.as_object().is_some_and(|o| o.len() == 1) => Ok(()),
        _ => Err(vec![FieldError::new("payload.target_id", "the id (UUID) of the target to check, and nothing else")]),
    }
}

fn target_check_schema() -> Value {
    json!({ "type": "object", "required": ["target_id"], "additionalProperties": false,
            "properties": { "target_id": { "type": "string", "format": "uuid" } } })
}

fn validate_channel_test(payload: &Value) -> Result<(), Vec<FieldError>> {
    match payload.get("channel_id").and_then(Value::as_str).map(uuid::Uuid::parse_str) {
        Some(Ok(_)) if payload.as_object().is_some_and(|o| o.len() == 1) => Ok(()),
        _ => Err(vec![FieldError::new("payload.channel_id", "the id (UUID) of the channel to test, and nothing else")]),
    }
}

fn channel_test_schema() -> Value {
    json!({ "type": "object", "required": ["channel_id"], "additionalProperties": false,
            "properties": { "channel_id": { "type": "string", "format": "uuid" } } })
}

fn validate_run_payload(payload: &Value) -> Result<(), Vec<FieldError>> {
    match payload.get("run_id").and_then(Value::as_str).map(uuid::Uuid::parse_str) {
        Some(Ok(_)) if payload.as_object().is_some_and(|o| o.len() == 1) => Ok(()),
        _ => Err(vec![FieldError::new("payload", "is {\"run_id\": \"<uuid>\"}")]),
    }
}

fn run_payload_schema() -> Value {
    json!({
        "type": "object",
        "properties": { "run_id": { "type": "string", "format": "uuid" } },
        "required": ["run_id"],
        "additionalProperties": false
    })
}

type Validate = fn(&Value) -> Result<(), Vec<FieldError>>;
/// A kind's name, description, validation and payload schema.
type KindRow = (&'static str, &'static str, Validate, fn() -> Value);

/// The backup kinds: each payload names its objects by id (the gateway validated the rest).
fn backup_kinds() -> [KindRow; 7] {
    use sentinel_domain::backups as b;
    [
        (
            b::RUN_KIND,
            "Backs up one plan (fired by its schedule or POST /api/v1/backups/plans/{id}/run).",
            validate_backup_run,
            backup_run_schema,
        ),
        (
            b::RESTORE_KIND,
            "Restores one artifact into a target (POST /api/v1/backups/restores).",
            accept_object,
            any_object_schema,
        ),
        (
            b::PRUNE_KIND,
            "Applies a plan's retention, or deletes named backups' artifacts.",
            accept_object,
            any_object_schema,
        ),
        (
            b::TEST_TARGET_KIND,
            "Connects to a backup target and reports its server and client versions.",
            accept_object,
            any_object_schema,
        ),
        (
            b::TEST_DESTINATION_KIND,
            "Writes, reads back and deletes a probe object on a destination.",
            accept_object,
            any_object_schema,
        ),
        (
            b::JANITOR_KIND,
            "Removes the incomplete uploads and stray objects that killed or abandoned backups left, after a grace period.",
            accept_object,
            any_object_schema,
        ),
        (
            b::VERIFY_KIND,
            "Restores a backup into a scratch database and compares it, table by table, with the snapshot it was dumped from: {\"entry_id\"} names the backup, {\"plan_id\"} takes the plan's newest one (for a schedule).",
            validate_backup_verify,
            backup_verify_schema,
        ),
    ]
}

fn validate_backup_verify(payload: &Value) -> Result<(), Vec<FieldError>> {
    let uuid_at = |o: &serde_json::Map<String, Value>, k: &str| {
        o.get(k).and_then(Value::as_str).is_some_and(|s| uuid::Uuid::parse_str(s).is_ok())
    };
    let ok = payload.as_object().is_some_and(|o| o.len() == 1 && (uuid_at(o, "entry_id") || uuid_at(o, "plan_id")));
    if ok {
        Ok(())
    } else {
        Err(vec![FieldError::new("payload", "is {\"entry_id\": \"<uuid>\"} or {\"plan_id\": \"<uuid>\"}")])
    }
}

fn backup_verify_schema() -> Value {
    let one = |field: &str| {
        json!({
            "type": "object",
            "properties": { field: { "type": "string", "format": "uuid" } },
            "required": [field],
            "additionalProperties": false
        })
    };
    json!({ "oneOf": [one("entry_id"), one("plan_id")] })
}

fn validate_backup_run(payload: &Value) -> Result<(), Vec<FieldError>> {
    let ok = payload.as_object().is_some_and(|o| {
        o.get("plan_id").and_then(Value::as_str).is_some_and(|s| uuid::Uuid::parse_str(s).is_ok())
            && o.keys().all(|k| ["plan_id", "type", "compression"].contains(&k.as_str()))
    });
    if ok {
        Ok(())
    } else {
        Err(vec![FieldError::new("payload", "is {\"plan_id\": \"<uuid>\"} with optional type and compression")])
    }
}

fn backup_run_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "plan_id": { "type": "string", "format": "uuid" },
            "type": { "type": "string", "enum": ["full", "incremental", "differential"] },
            "compression": { "type": "object" }
        },
        "required": ["plan_id"],
        "additionalProperties": false
    })
}

fn accept_object(payload: &Value) -> Result<(), Vec<FieldError>> {
    if payload.is_object() { Ok(()) } else { Err(vec![FieldError::new("payload", "must be an object")]) }
}

fn any_object_schema() -> Value {
    json!({ "type": "object" })
}

impl Catalog {
    /// The built-in kinds; the `fault.*` kinds only when fault injection is enabled (tests).
    pub fn builtin(fault_injection: bool) -> Self {
        let mut c = Self::default();
        let (kind, queue) = parse(builtin::DEMO_SLEEP, builtin::DEFAULT_QUEUE);
        c.register(KindSpec {
            kind,
            queue,
            description: "Sleeps `seconds` seconds, reporting progress every second (the seed's demo task).",
            validate: validate_demo_sleep,
            payload_schema: demo_sleep_schema,
            internal: false,
        });
        for (name, queue, description) in [
            (
                builtin::SYSTEM_RETENTION,
                builtin::DEFAULT_QUEUE,
                "Deletes finished jobs and schedule firings older than worker.retention_days.",
            ),
            (
                builtin::INVENTORY_EXPIRE_RESERVATIONS,
                builtin::DEFAULT_QUEUE,
                "Ends server reservations whose TTL ran out (each with a history row).",
            ),
            (builtin::MONITOR_EVALUATE_METRICS, builtin::MONITOR_QUEUE, "Evaluates the metric alert rules."),
            (builtin::MONITOR_CHECK_HEARTBEATS, builtin::MONITOR_QUEUE, "Flags machines whose heartbeat is overdue."),
            (
                builtin::MONITOR_DISPATCH_HTTP_CHECKS,
                builtin::MONITOR_QUEUE,
                "Runs the HTTP checks that are due, each target on its own interval.",
            ),
            (
                sentinel_domain::monitoring::ROLLUP_KIND,
                builtin::MONITOR_QUEUE,
                "Rolls HTTP check results up into hourly and daily rows and trims raw results past monitor.raw_result_hours.",
            ),
        ] {
            let (kind, queue) = parse(name, queue);
            c.register(KindSpec {
                kind,
                queue,
                description,
                validate: validate_no_parameters,
                payload_schema: no_parameters_schema,
                internal: true,
            });
        }
        let (kind, queue) = parse(sentinel_domain::provisioning::RUN_KIND, sentinel_domain::provisioning::QUEUE);
        c.register(KindSpec {
            kind,
            queue,
            description: "Runs one provisioning run (created by POST /api/v1/provisioning/runs).",
            validate: validate_run_payload,
            payload_schema: run_payload_schema,
            internal: true,
        });
        let (kind, queue) = parse(sentinel_domain::monitoring::CHECK_TARGET_KIND, builtin::MONITOR_QUEUE);
        c.register(KindSpec {
            kind,
            queue,
            description: "Checks one HTTP target now (POST /api/v1/monitoring/targets/{id}/check) and records the result.",
            validate: validate_target_check,
            payload_schema: target_check_schema,
            internal: true,
        });
        let (kind, queue) = parse(sentinel_domain::notify::TEST_CHANNEL_KIND, builtin::MONITOR_QUEUE);
        c.register(KindSpec {
            kind,
            queue,
            description: "Sends a test message through one notification channel (POST /api/v1/monitoring/channels/{id}/test) and reports the receiver's answer.",
            validate: validate_channel_test,
            payload_schema: channel_test_schema,
            internal: true,
        });
        for (name, description, validate, payload_schema) in backup_kinds() {
            let (kind, queue) = parse(name, sentinel_domain::backups::QUEUE);
            // A verification reads only the caller's organization's backups: it may be queued or
            // scheduled by anyone who may run jobs ("verify plan X every Sunday").
            let internal = name != sentinel_domain::backups::VERIFY_KIND;
            c.register(KindSpec { kind, queue, description, validate, payload_schema, internal });
        }
        if fault_injection {
            for (name, description) in [
                (builtin::FAULT_CRASH, "Test only: aborts the worker process that runs it."),
                (builtin::FAULT_FAIL, "Test only: fails with a handler error on every attempt."),
                (builtin::FAULT_SUBPROCESS, "Test only: runs a subprocess tree until cancelled."),
            ] {
                let (kind, queue) = parse(name, builtin::DEFAULT_QUEUE);
                c.register(KindSpec {
                    kind,
                    queue,
                    description,
                    validate: accept_any,
                    payload_schema: any_schema,
                    internal: false,
                });
            }
        }
        c
    }

    pub fn register(&mut self, spec: KindSpec) {
        self.kinds.insert(spec.kind.clone(), spec);
    }

    pub fn get(&self, kind: &JobKind) -> Option<&KindSpec> {
        self.kinds.get(kind)
    }

    pub fn kinds(&self) -> impl Iterator<Item = &KindSpec> {
        self.kinds.values()
    }

    /// Every queue some kind travels on.
    pub fn queues(&self) -> Vec<QueueName> {
        let mut q: Vec<QueueName> = self.kinds.values().map(|k| k.queue.clone()).collect();
        q.sort();
        q.dedup();
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_builds_and_validates_demo_payloads() {
        let c = Catalog::builtin(true);
        let spec = c.get(&JobKind::parse(builtin::DEMO_SLEEP).expect("valid")).expect("registered");
        assert!((spec.validate)(&json!({"seconds": 3})).is_ok());
        let errs = (spec.validate)(&json!({"seconds": "x", "extra": 1})).expect_err("invalid");
        assert_eq!(errs.len(), 2);
        assert!((spec.validate)(&json!([])).is_err());
        assert!(Catalog::builtin(false).get(&JobKind::parse(builtin::FAULT_CRASH).expect("valid")).is_none());
    }

    #[test]
    fn the_demo_payload_schema_states_what_validate_enforces() {
        let c = Catalog::builtin(false);
        let spec = c.get(&JobKind::parse(builtin::DEMO_SLEEP).expect("valid")).expect("registered");
        let schema = (spec.payload_schema)();
        let max = schema["properties"]["seconds"]["maximum"].as_u64().expect("maximum");
        assert!((spec.validate)(&json!({"seconds": max})).is_ok());
        assert!((spec.validate)(&json!({"seconds": max + 1})).is_err());
        assert!((spec.validate)(&json!({})).is_err(), "seconds is required");
        assert_eq!(schema["additionalProperties"], json!(false));
    }
}
