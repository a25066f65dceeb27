//! Building blocks of the route annotations: the problem responses routes share, and the schemas of
//! the constraints the handlers enforce (so the OpenAPI document states exactly what is accepted).

pub mod inventory;

use std::collections::BTreeMap;

use sentinel_jobs::Catalog;
use sentinel_jobs::domain::schedule::{MAX_INTERVAL_SECS, MIN_INTERVAL_SECS};
use sentinel_jobs::domain::{JobState, KeyScope, Priority, Role};
use serde_json::{Value, json};
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};

/// Default and bounds of every `limit` query parameter.
pub const LIMIT_DEFAULT: u64 = 100;
pub const LIMIT_MAX: u64 = 1000;

/// The handlers' side of [`limit`]: the error naming `limit` when it is out of bounds.
pub fn limit_error(limit: u64) -> Option<sentinel_jobs::FieldError> {
    (!(1..=LIMIT_MAX).contains(&limit))
        .then(|| sentinel_jobs::FieldError::new("limit", format!("must be from 1 to {LIMIT_MAX}")))
}

/// Like [`limit_error`], as a 422.
pub fn check_limit(limit: u64) -> Result<(), crate::Problem> {
    limit_error(limit).map_or(Ok(()), |e| Err(crate::Problem::invalid(vec![e])))
}

/// `#[serde(default = "doc::default_limit")]` of every `limit` query parameter.
pub fn default_limit() -> u64 {
    LIMIT_DEFAULT
}

/// A `cursor` that is the id of the last item of a previous page (422 naming `cursor` otherwise).
pub fn uuid_cursor(raw: Option<&str>) -> Result<Option<uuid::Uuid>, crate::Problem> {
    raw.map(|r| r.parse().map_err(|_| crate::Problem::invalid_field("cursor", "not a cursor from a previous page")))
        .transpose()
}

/// A page from rows fetched with `limit + 1`: at most `limit` rows, and the cursor of the next page
/// (the last row's, when there was one more).
pub fn page<T, C>(mut rows: Vec<T>, limit: u64, cursor_of: impl Fn(&T) -> C) -> (Vec<T>, Option<C>) {
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next = if more { rows.last().map(cursor_of) } else { None };
    (rows, next)
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`), for patches.
pub fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    use serde::Deserialize;
    Option::<T>::deserialize(d).map(Some)
}

/// A problem response (`application/problem+json`) with `description`.
pub fn problem(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
        )
        .build()
        .into()
}

macro_rules! problems {
    ($($(#[$doc:meta])* $name:ident { $($status:literal => $description:literal),+ $(,)? })*) => {$(
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                [$(($status.to_owned(), problem($description))),+].into_iter().collect()
            }
        }
    )*};
}

problems! {
    /// Every authenticated route: no or bad credentials, or a role too low.
    Guarded { "401" => "Not authenticated", "403" => "Role too low" }
    /// Routes naming a resource (malformed ids included: they name nothing).
    NotFound { "404" => "No such resource in your organization" }
    /// Routes whose query or body fields are checked.
    Invalid { "422" => "Invalid fields (each named)" }
    /// Routes with a JSON body.
    BadBody { "400" => "Malformed request", "413" => "Body too large", "415" => "Not JSON" }
}

pub(crate) fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// Allows `null` too (for optional body fields, where `null` means absent).
pub(crate) fn or_null(mut schema: Object) -> Object {
    let base = match &schema.schema_type {
        SchemaType::Type(t) => t.clone(),
        _ => Type::String,
    };
    schema.schema_type = SchemaType::from_iter([base, Type::Null]);
    if let Some(values) = &mut schema.enum_values {
        values.push(Value::Null);
    }
    schema
}

pub(crate) fn one_of<'a>(values: impl IntoIterator<Item = &'a str>) -> Object {
    string().enum_values(Some(values)).build()
}

/// `limit`: 1 to 1000, default 100.
pub fn limit() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64)))
        .minimum(Some(1))
        .maximum(Some(LIMIT_MAX))
        .default(Some(json!(LIMIT_DEFAULT)))
        .description(Some("Page size, 1 to 1000 (default 100)."))
        .build()
}

pub fn job_state() -> Object {
    one_of(JobState::ALL.map(JobState::as_str))
}

pub fn priority() -> Object {
    or_null(one_of(Priority::ALL.map(Priority::as_str)))
}

pub fn role() -> Object {
    one_of(Role::ALL.map(Role::as_str))
}

pub fn role_or_null() -> Object {
    or_null(role())
}

pub fn key_scope_or_null() -> Object {
    or_null(one_of(KeyScope::ALL.map(KeyScope::as_str)))
}

pub fn misfire_policy() -> Object {
    or_null(one_of(["skip", "run_once"]))
}

/// The characters `JobKind`/`QueueName` allow.
fn token(max: usize) -> ObjectBuilder {
    string().min_length(Some(1)).max_length(Some(max)).pattern(Some("^[a-z0-9._-]+$"))
}

/// A kind to filter by (any well-formed kind; unknown ones match nothing).
pub fn kind_filter() -> Object {
    token(64).build()
}

pub fn queue_name() -> Object {
    token(48).build()
}

/// Kinds an API caller may enqueue or schedule: the catalog's, without system work.
pub fn public_kinds(catalog: &Catalog) -> Vec<String> {
    catalog.kinds().filter(|k| !k.internal).map(|k| k.kind.to_string()).collect()
}

/// The production catalog (no test-only fault kinds): what the committed document describes.
pub fn catalog() -> Catalog {
    Catalog::builtin(false)
}

pub fn kind() -> Object {
    string().enum_values(Some(public_kinds(&catalog()))).description(Some("A registered job kind.")).build()
}

pub fn kind_or_null() -> Object {
    or_null(kind())
}

/// Characters Rust's `str::trim` removes (Unicode White_Space), spelled out: regex `\s` differs.
pub(crate) const WS: &str = r"\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

/// A name that, once trimmed, is 1 to `max` characters.
fn trimmed_name(max: usize) -> ObjectBuilder {
    string().pattern(Some(format!("^[{WS}]*[^{WS}]([\\s\\S]{{0,{}}}[^{WS}])?[{WS}]*$", max - 2)))
}

pub fn key_name() -> Object {
    trimmed_name(128).description(Some("1 to 128 characters (surrounding whitespace is trimmed).")).build()
}

pub fn schedule_name() -> Object {
    trimmed_name(sentinel_jobs::MAX_NAME_LEN)
        .description(Some("Unique within your organization, 1 to 128 characters (surrounding whitespace is trimmed)."))
        .build()
}

pub fn schedule_name_or_null() -> Object {
    or_null(schedule_name())
}

/// `local@domain.tld` without whitespace, at most 254 characters.
/// An alert address, or null: an email without whitespace or control characters.
pub fn notification_email() -> Object {
    const CTRL: &str = r"\u0000-\u001F\u007F-\u009F";
    or_null(
        string()
            .max_length(Some(254))
            .pattern(Some(format!("^[^@{WS}{CTRL}]+@[^@{WS}{CTRL}]*\\.[^@{WS}{CTRL}]*$")))
            .build(),
    )
}

pub fn email() -> Object {
    string().max_length(Some(254)).pattern(Some(format!("^[^@{WS}]+@[^@{WS}]*\\.[^@{WS}]*$"))).build()
}

/// The macros the cron parser knows (`@annually` is not one).
const CRON_MACROS: [&str; 5] = ["yearly", "monthly", "weekly", "daily", "hourly"];

/// A cron expression the server always accepts: a macro, or five crontab fields made of `*`, `*/step`
/// or lists of values, with days of the month 1 to 28 (so every expression fires every month).
pub fn cron() -> Object {
    let list = |value: &str| format!("{value}(,{value})*");
    let field = |value: &str, step: &str| format!("(\\*|\\*/({step})|{})", list(value));
    let minute = field("[0-5]?[0-9]", "[1-9]|[1-5][0-9]");
    let hour = field("([01]?[0-9]|2[0-3])", "[1-9]|1[0-9]|2[0-3]");
    let day = field("([1-9]|1[0-9]|2[0-8])", "[1-9]|1[0-9]|2[0-8]");
    let month = field("([1-9]|1[0-2])", "[1-9]|1[0-2]");
    let weekday = field("[0-7]", "[1-7]");
    let pattern = format!("^(@({})|{minute} {hour} {day} {month} {weekday})$", CRON_MACROS.join("|"));
    or_null(string().pattern(Some(pattern)).build())
}

pub fn interval_secs() -> Object {
    or_null(
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64)))
            .minimum(Some(MIN_INTERVAL_SECS))
            .maximum(Some(MAX_INTERVAL_SECS))
            .build(),
    )
}

pub fn timezone_or_null() -> RefOr<Schema> {
    Schema::OneOf(
        utoipa::openapi::schema::OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .item(Ref::from_schema_name("TimeZone"))
            .build(),
    )
    .into()
}

/// Every IANA time-zone name the server knows.
pub fn timezones() -> Object {
    let mut names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
    names.sort_unstable();
    string().enum_values(Some(names)).description(Some("An IANA time-zone name.")).build()
}

/// The schema a JSON Schema value spells (object schemas must say `"type"`; `{}` is any value).
pub fn schema_of(value: Value) -> RefOr<Schema> {
    let any = || RefOr::T(Schema::Object(ObjectBuilder::new().schema_type(SchemaType::AnyValue).build()));
    if value.as_object().is_some_and(|o| o.is_empty()) {
        return any();
    }
    serde_json::from_value::<Schema>(value).map(RefOr::T).unwrap_or_else(|_| any())
}

/// JSON Schema counts `5.0` as an integer, so integer fields take integral floats too (`serde` alone
/// refuses them). For `#[serde(deserialize_with = "doc::integer")]`.
pub fn integer<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i128>,
{
    use serde::Deserialize;
    integral(&serde_json::Number::deserialize(d)?)
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| serde::de::Error::custom("expected an integer in range"))
}

/// [`integer`] for optional fields (`null` is absent).
pub fn integer_or_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i128>,
{
    use serde::Deserialize;
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => integral(&n)
            .and_then(|n| T::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("expected an integer in range")),
    }
}

fn integral(n: &serde_json::Number) -> Option<i128> {
    if let Some(i) = n.as_i64() {
        return Some(i.into());
    }
    if let Some(u) = n.as_u64() {
        return Some(u.into());
    }
    n.as_f64().filter(|f| f.is_finite() && f.fract() == 0.0 && f.abs() < 1e19).map(|f| f as i128)
}

/// Rewrites integral floats (`5.0`) in a payload as integers, so handlers reading integers accept
/// what JSON Schema calls one.
pub fn integral_numbers(value: &mut Value) {
    match value {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => {
            if let Some(i) = integral(n) {
                if let Ok(i) = i64::try_from(i) {
                    *value = Value::from(i);
                } else if let Ok(u) = u64::try_from(i) {
                    *value = Value::from(u);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        Value::Object(fields) => fields.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// Monitoring filters: a target's latest status, an alert's state, an incident's state, a severity.
pub fn check_status() -> Object {
    one_of(["up", "down"])
}

pub fn alert_state() -> Object {
    one_of(["firing", "resolved"])
}

pub fn incident_state() -> Object {
    one_of(["open", "acknowledged", "resolved"])
}

pub fn severity() -> Object {
    one_of(["warning", "critical"])
}

/// A JSON body read through [`integral_numbers`]; a shape error is a 422 naming `body`.
pub fn read_body<T: serde::de::DeserializeOwned>(mut value: serde_json::Value) -> Result<T, crate::Problem> {
    integral_numbers(&mut value);
    serde_json::from_value(value).map_err(|e| crate::Problem::invalid_field("body", e.to_string()))
}

#[cfg(test)]
mod tests {
    use sentinel_jobs::domain::schedule::CronTrigger;

    #[test]
    fn the_documented_cron_forms_are_accepted() {
        let samples = ["* * * * *", "*/59 */23 */28 */12 */7", "0,59 0,23 1,28 1,12 0,7", "05 9 28 2 7"];
        let macros = super::CRON_MACROS.map(|m| format!("@{m}"));
        for expr in samples.iter().copied().chain(macros.iter().map(String::as_str)) {
            assert!(CronTrigger::new(expr, "UTC").is_ok(), "{expr}");
        }
    }
}
