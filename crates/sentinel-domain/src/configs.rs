//! Configs (named parameter sets): field rules, and the secret values inside a payload — how a caller
//! writes them (`{"secret": "…"}` sets one, `{"secret": true}` keeps the stored one), how they are stored
//! (`{"$secret": "<id>"}`, a reference into the vault) and how the API shows them (`{"secret": true}`).

use serde_json::{Map, Value};

/// The key of a stored secret reference (reserved: a caller's payload may not use it).
pub const SECRET_REF: &str = "$secret";
/// The key a caller marks a secret value with.
pub const SECRET: &str = "secret";
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
pub const MAX_DESCRIPTION: usize = 4096;
pub const MAX_PATH: usize = 1024;

/// A config's name: the same rule as a server's (1–128 characters, no control characters, no
/// surrounding whitespace).
pub fn check_name(s: &str) -> Result<(), String> {
    crate::inventory::check_server_name(s)
}

pub fn check_description(s: &str) -> Result<(), String> {
    if s.chars().count() > MAX_DESCRIPTION { Err(format!("longer than {MAX_DESCRIPTION} characters")) } else { Ok(()) }
}

/// A path on the worker's side: 1–1024 characters without control characters.
pub fn check_path(s: &str) -> Result<(), String> {
    if s.is_empty() || s.chars().count() > MAX_PATH {
        return Err(format!("must be 1 to {MAX_PATH} characters"));
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// One invalid spot of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError {
    /// `payload.db.password`, `payload.hosts[2]`.
    pub field: String,
    pub reason: String,
}

fn child(path: &str, key: &str) -> String {
    format!("{path}.{key}")
}

/// The stored form of a payload written by a caller: each new secret is handed to `seal` (which
/// returns the vault id it is stored under), each kept one is copied from `previous` (the stored
/// form of the version being replaced). Errors name each bad spot.
pub fn store_form(
    input: &Value,
    previous: Option<&Value>,
    seal: &mut dyn FnMut(&str) -> String,
) -> Result<Value, Vec<PayloadError>> {
    let mut errors = Vec::new();
    if !input.is_object() {
        errors.push(PayloadError { field: "payload".into(), reason: "must be a JSON object".into() });
        return Err(errors);
    }
    if serde_json::to_vec(input).map_or(0, |v| v.len()) > MAX_PAYLOAD_BYTES {
        errors.push(PayloadError { field: "payload".into(), reason: format!("larger than {MAX_PAYLOAD_BYTES} bytes") });
        return Err(errors);
    }
    let stored = walk(input, previous, "payload", seal, &mut errors);
    if errors.is_empty() { Ok(stored) } else { Err(errors) }
}

fn walk(
    v: &Value,
    previous: Option<&Value>,
    path: &str,
    seal: &mut dyn FnMut(&str) -> String,
    errors: &mut Vec<PayloadError>,
) -> Value {
    match v {
        Value::Object(map) if map.len() == 1 && map.contains_key(SECRET) => match &map[SECRET] {
            Value::String(plain) => secret_ref(seal(plain)),
            Value::Bool(true) => match previous.and_then(stored_ref) {
                Some(id) => secret_ref(id.to_owned()),
                None => {
                    errors.push(PayloadError {
                        field: path.to_owned(),
                        reason: "`{\"secret\": true}` keeps a stored secret, and none is stored here".into(),
                    });
                    Value::Null
                }
            },
            _ => {
                errors.push(PayloadError {
                    field: path.to_owned(),
                    reason: "`secret` must be a string (a new value) or true (keep the stored one)".into(),
                });
                Value::Null
            }
        },
        Value::Object(map) => {
            if map.contains_key(SECRET_REF) {
                errors.push(PayloadError { field: child(path, SECRET_REF), reason: "this key is reserved".into() });
            }
            let mut out = Map::new();
            for (k, item) in map {
                let prev = previous.and_then(|p| p.get(k));
                out.insert(k.clone(), walk(item, prev, &child(path, k), seal, errors));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| walk(item, previous.and_then(|p| p.get(i)), &format!("{path}[{i}]"), seal, errors))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn secret_ref(id: String) -> Value {
    Value::Object(Map::from_iter([(SECRET_REF.to_owned(), Value::String(id))]))
}

/// The vault id of a stored secret reference.
fn stored_ref(v: &Value) -> Option<&str> {
    match v {
        Value::Object(map) if map.len() == 1 => map.get(SECRET_REF).and_then(Value::as_str),
        _ => None,
    }
}

/// The form the API shows: each secret is `{"secret": true}` (set), its value never.
pub fn view_form(stored: &Value) -> Value {
    match stored {
        v if stored_ref(v).is_some() => Value::Object(Map::from_iter([(SECRET.to_owned(), Value::Bool(true))])),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), view_form(v))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(view_form).collect()),
        other => other.clone(),
    }
}

/// Every secret reference of a stored payload, with its path.
pub fn secret_refs(stored: &Value) -> Vec<(String, String)> {
    fn collect(v: &Value, path: String, out: &mut Vec<(String, String)>) {
        if let Some(id) = stored_ref(v) {
            out.push((path, id.to_owned()));
            return;
        }
        match v {
            Value::Object(map) => map.iter().for_each(|(k, item)| collect(item, child(&path, k), out)),
            Value::Array(items) => {
                items.iter().enumerate().for_each(|(i, item)| collect(item, format!("{path}[{i}]"), out))
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    collect(stored, "payload".into(), &mut out);
    out
}

/// The payload a run receives: each reference replaced by its value, as `open` returns it.
pub fn resolve<E>(stored: &Value, open: &mut dyn FnMut(&str) -> Result<String, E>) -> Result<Value, E> {
    Ok(match stored {
        v if stored_ref(v).is_some() => Value::String(open(stored_ref(v).unwrap_or_default())?),
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, item) in map {
                out.insert(k.clone(), resolve(item, open)?);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| resolve(i, open)).collect::<Result<_, _>>()?),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secrets_are_sealed_kept_shown_as_set_and_resolved_for_runs() {
        let mut sealed = Vec::new();
        let mut seal = |plain: &str| {
            sealed.push(plain.to_owned());
            format!("id-{}", sealed.len())
        };
        let input = json!({"db": {"user": "app", "password": {"secret": "hunter2"}}, "tokens": [{"secret": "t0"}]});
        let stored = store_form(&input, None, &mut seal).expect("stored");
        assert_eq!(
            stored,
            json!({"db": {"user": "app", "password": {"$secret": "id-1"}}, "tokens": [{"$secret": "id-2"}]})
        );
        assert_eq!(
            view_form(&stored),
            json!({"db": {"user": "app", "password": {"secret": true}}, "tokens": [{"secret": true}]})
        );
        assert_eq!(
            secret_refs(&stored),
            vec![("payload.db.password".into(), "id-1".into()), ("payload.tokens[0]".into(), "id-2".into())]
        );

        // A round trip of what GET shows keeps the secrets; a new value replaces one.
        let edit = json!({"db": {"user": "app2", "password": {"secret": true}}, "tokens": [{"secret": "t1"}]});
        let next = store_form(&edit, Some(&stored), &mut |_| "id-3".to_owned()).expect("stored");
        assert_eq!(
            next,
            json!({"db": {"user": "app2", "password": {"$secret": "id-1"}}, "tokens": [{"$secret": "id-3"}]})
        );
        let run = resolve(&next, &mut |id| Ok::<_, ()>(format!("value of {id}"))).expect("resolved");
        assert_eq!(run["db"]["password"], "value of id-1");
    }

    #[test]
    fn bad_payloads_name_each_spot() {
        let mut seal = |_: &str| "x".to_owned();
        let errors = store_form(
            &json!({"a": {"secret": true}, "b": {"secret": 5}, "c": {"$secret": "forged"}}),
            None,
            &mut seal,
        )
        .expect_err("bad");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["payload.a", "payload.b", "payload.c.$secret"]);
        assert!(store_form(&json!([1]), None, &mut seal).is_err());
        let big = json!({"blob": "x".repeat(MAX_PAYLOAD_BYTES)});
        assert!(store_form(&big, None, &mut seal).is_err());
    }
}
