//! The schemas of the inventory's fields, each the exact language the domain's checks accept
//! (`sentinel_domain::inventory`), so generated clients never build a request the server refuses.

use serde_json::json;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{Object, Schema};

use super::{WS, one_of, or_null, schema_of, string};
use sentinel_jobs::domain::inventory::{MAX_LABELS, MAX_NOTES, MAX_REGION, MAX_SERVER_NAME, ServerStatus};

const LABEL_KEY: &str = "[A-Za-z0-9][A-Za-z0-9._/-]{0,62}";
const LABEL_VALUE: &str = "[A-Za-z0-9._/:@+-]{0,128}";
/// C0 and C1 control characters (`char::is_control`).
const CONTROL: &str = r"\u0000-\u001F\u007F-\u009F";

pub fn server_status() -> Object {
    one_of(ServerStatus::ALL.map(ServerStatus::as_str))
}

/// The statuses an operator sets by hand (`reserved` and `provisioning` belong to reservations and runs).
pub fn settable_status_or_null() -> Object {
    or_null(one_of(ServerStatus::ALL.into_iter().filter(|s| !s.is_system_managed()).map(ServerStatus::as_str)))
}

pub fn labels() -> RefOr<Schema> {
    schema_of(json!({
        "type": "object",
        "maxProperties": MAX_LABELS,
        "propertyNames": { "type": "string", "pattern": format!("^{LABEL_KEY}$") },
        "additionalProperties": { "type": "string", "pattern": format!("^{LABEL_VALUE}$") },
        "description": "Label key → value. Keys: a letter or digit, then up to 62 of letters, digits and `. _ - /`. Values: up to 128 of letters, digits and `. _ - / : @ +`.",
    }))
}

pub fn labels_or_null() -> RefOr<Schema> {
    schema_of(json!({ "anyOf": [{ "type": "null" }, serde_json::to_value(labels()).unwrap_or_default()] }))
}

pub fn selector() -> Object {
    let term = format!("(!{LABEL_KEY}|{LABEL_KEY}(!?={LABEL_VALUE})?)");
    string()
        .pattern(Some(format!("^({term}(,{term}){{0,{}}})?$", MAX_LABELS - 1)))
        .description(Some(
            "Label selector: comma-separated terms, all of which must hold: `key=value`, `key!=value`, `key` (has the label), `!key` (lacks it). Example: `env=prod,role=web`.",
        ))
        .build()
}

pub fn ip() -> RefOr<Schema> {
    schema_of(json!({
        "anyOf": [{ "type": "string", "format": "ipv4" }, { "type": "string", "format": "ipv6" }],
        "description": "IPv4 or IPv6 address (stored in canonical form).",
    }))
}

pub fn ip_or_null() -> RefOr<Schema> {
    schema_of(json!({
        "anyOf": [{ "type": "null" }, { "type": "string", "format": "ipv4" }, { "type": "string", "format": "ipv6" }],
    }))
}

pub fn provider_ref() -> Object {
    string()
        .pattern(Some("^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$"))
        .description(Some("The provider's id of the server, unique in your organization: a letter or digit, then up to 127 of letters, digits and `. _ : / @ + -`."))
        .build()
}

pub fn provider_ref_or_null() -> Object {
    or_null(provider_ref())
}

pub fn server_name() -> Object {
    let edge = format!("[^{WS}{CONTROL}]");
    string()
        .pattern(Some(format!("^{edge}([^{CONTROL}]{{0,{}}}{edge})?$", MAX_SERVER_NAME - 2)))
        .description(Some("1 to 128 characters, no control characters, no surrounding whitespace."))
        .build()
}

pub fn server_name_or_null() -> Object {
    or_null(server_name())
}

pub fn region() -> Object {
    string().pattern(Some(format!("^[A-Za-z0-9._-]{{0,{MAX_REGION}}}$"))).build()
}

pub fn region_or_null() -> Object {
    or_null(region())
}

pub fn ssh_user_or_null() -> Object {
    or_null(
        string()
            .pattern(Some("^[a-z_][a-z0-9_.-]{0,31}$"))
            .description(Some(
                "Login name (default `root`): lowercase letters, digits, `_ . -`, starting with a letter or `_`.",
            ))
            .build(),
    )
}

pub fn notes_or_null() -> Object {
    or_null(string().max_length(Some(MAX_NOTES)).build())
}

pub fn host_keys_or_null() -> RefOr<Schema> {
    schema_of(json!({
        "type": ["array", "null"],
        "maxItems": 8,
        "items": {
            "type": "string",
            "description": "A public host key as in known_hosts: `ssh-ed25519 AAAA… [comment]`.",
        },
        "description": "Pinned SSH host keys (replaces the list). A run refuses a host presenting any other key.",
    }))
}

pub fn config_path_or_null() -> Object {
    or_null(string().pattern(Some(format!("^[^{CONTROL}]{{1,1024}}$"))).build())
}

pub fn selector_or_null() -> Object {
    or_null(selector())
}

pub fn purpose() -> Object {
    let edge = format!("[^{WS}{CONTROL}]");
    string()
        .pattern(Some(format!("^{edge}([^{CONTROL}]{{0,254}}{edge})?$")))
        .description(Some("1 to 256 characters, no control characters, no surrounding whitespace."))
        .build()
}

#[cfg(test)]
mod tests {
    /// `schema_of` falls back to "any value" on a schema it cannot read: these must not.
    #[test]
    fn the_composite_schemas_are_read_as_written() {
        for (name, schema) in [
            ("labels", super::labels()),
            ("labels_or_null", super::labels_or_null()),
            ("ip", super::ip()),
            ("ip_or_null", super::ip_or_null()),
            ("host_keys_or_null", super::host_keys_or_null()),
        ] {
            let json = serde_json::to_value(schema).expect("json");
            assert!(json.get("type").is_some() || json.get("anyOf").is_some(), "{name}: {json}");
        }
    }
}
