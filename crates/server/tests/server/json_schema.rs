//! A validator for the JSON Schema subset the OpenAPI document uses (what utoipa emits), for
//! checking real responses against it. It refuses keywords it does not know, so a schema it
//! cannot judge fails the test instead of passing silently; and objects are closed: a property
//! the schema does not declare is an error (utoipa's schemas mirror the Rust types, so an
//! undeclared property means the document and the code differ).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Map, Value};

/// Keywords that only annotate: they never make a value invalid.
const ANNOTATIONS: &[&str] = &[
    "description",
    "title",
    "example",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "contentMediaType",
    "contentEncoding",
    "discriminator",
];

/// Validates `value` against `schema`, resolving `$ref`s in `doc`; the errors, each with the
/// JSON path where it was found.
pub fn validate(doc: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(doc, schema, value, "$", true, &mut errors);
    errors
}

fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference
        .strip_prefix('#')
        .unwrap_or_else(|| panic!("only local references are supported: {reference}"));
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("unresolvable reference {reference}"))
}

/// `closed`: properties not declared here are errors (false inside `allOf`, whose branches
/// each declare only some of the properties; the `allOf` checks the union instead).
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, closed: bool, errors: &mut Vec<String>) {
    let schema = match schema {
        Value::Bool(true) => return,
        Value::Bool(false) => {
            errors.push(format!("{at}: no value is allowed here"));
            return;
        }
        Value::Object(schema) => schema,
        other => panic!("not a schema: {other}"),
    };
    for keyword in schema.keys() {
        let known = ANNOTATIONS.contains(&keyword.as_str())
            || [
                "$ref",
                "type",
                "format",
                "properties",
                "required",
                "additionalProperties",
                "items",
                "enum",
                "const",
                "oneOf",
                "anyOf",
                "allOf",
                "minimum",
                "maximum",
                "minLength",
                "maxLength",
                "minItems",
                "maxItems",
            ]
            .contains(&keyword.as_str());
        assert!(known, "{at}: the validator does not know the keyword `{keyword}`");
    }
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        check(doc, resolve(doc, reference), value, at, closed, errors);
    }
    if let Some(types) = schema.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
            other => panic!("{at}: bad type {other}"),
        };
        if !allowed.iter().any(|t| has_type(value, t)) {
            errors.push(format!("{at}: {value} is not of type {allowed:?}"));
            return;
        }
    }
    if let Some(format) = schema.get("format").and_then(Value::as_str)
        && let Some(text) = value.as_str()
    {
        let ok = match format {
            "uuid" => uuid::Uuid::parse_str(text).is_ok(),
            "date-time" => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
            _ => true,
        };
        if !ok {
            errors.push(format!("{at}: {text:?} is not a {format}"));
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {values:?}"));
    }
    if let Some(expected) = schema.get("const")
        && expected != value
    {
        errors.push(format!("{at}: {value} is not {expected}"));
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            errors.push(format!("{at}: {n} is below {min}"));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            errors.push(format!("{at}: {n} is above {max}"));
        }
    }
    if let Some(alternatives) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = alternatives
            .iter()
            .filter(|alternative| validate_at(doc, alternative, value, at, closed).is_empty())
            .count();
        if matching != 1 {
            errors.push(format!(
                "{at}: {value} matches {matching} of oneOf's {} schemas",
                alternatives.len()
            ));
        }
    }
    if let Some(alternatives) = schema.get("anyOf").and_then(Value::as_array)
        && !alternatives
            .iter()
            .any(|alternative| validate_at(doc, alternative, value, at, closed).is_empty())
    {
        errors.push(format!("{at}: {value} matches none of anyOf's schemas"));
    }
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        for part in parts {
            check(doc, part, value, at, false, errors);
        }
        if closed && let Some(object) = value.as_object() {
            let mut declared = Vec::new();
            for part in parts {
                declared_properties(doc, part, &mut declared);
            }
            for key in object.keys() {
                if !declared.contains(key) {
                    errors.push(format!("{at}.{key}: not declared by the schema"));
                }
            }
        }
    }
    if let Some(object) = value.as_object() {
        check_object(doc, schema, object, at, closed, errors);
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            check(doc, items, item, &format!("{at}[{i}]"), true, errors);
        }
    }
    if let Some(array) = value.as_array() {
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && (array.len() as u64) < min
        {
            errors.push(format!("{at}: fewer than {min} items"));
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && (array.len() as u64) > max
        {
            errors.push(format!("{at}: more than {max} items"));
        }
    }
}

fn check_object(
    doc: &Value,
    schema: &Map<String, Value>,
    object: &Map<String, Value>,
    at: &str,
    closed: bool,
    errors: &mut Vec<String>,
) {
    for name in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = name.as_str().unwrap();
        if !object.contains_key(name) {
            errors.push(format!("{at}: the required property `{name}` is missing"));
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    for (key, item) in object {
        let path = format!("{at}.{key}");
        match (properties.and_then(|p| p.get(key)), additional) {
            (Some(property), _) => check(doc, property, item, &path, true, errors),
            (None, Some(additional)) => check(doc, additional, item, &path, true, errors),
            // Closed only where the schema describes an object's properties at all.
            (None, None) if closed && properties.is_some() => {
                errors.push(format!("{path}: not declared by the schema"));
            }
            (None, None) => {}
        }
    }
}

fn declared_properties(doc: &Value, schema: &Value, into: &mut Vec<String>) {
    if let Some(reference) = schema["$ref"].as_str() {
        declared_properties(doc, resolve(doc, reference), into);
    }
    if let Some(properties) = schema["properties"].as_object() {
        into.extend(properties.keys().cloned());
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        declared_properties(doc, part, into);
    }
}

fn validate_at(doc: &Value, schema: &Value, value: &Value, at: &str, closed: bool) -> Vec<String> {
    let mut errors = Vec::new();
    check(doc, schema, value, at, closed, &mut errors);
    errors
}

fn has_type(value: &Value, t: &str) -> bool {
    match t {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        other => panic!("unknown type {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({"components": {"schemas": {
            "Item": {
                "type": "object",
                "required": ["id", "status"],
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "status": {"type": "string", "enum": ["pending", "processed"]},
                    "size": {"type": "integer", "format": "int64", "minimum": 0},
                    "owner": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Owner"}]},
                    "at": {"type": ["string", "null"], "format": "date-time"},
                }
            },
            "Owner": {"type": "object", "required": ["email"], "properties": {"email": {"type": "string"}}},
            "WithKey": {"allOf": [{"$ref": "#/components/schemas/Owner"},
                {"type": "object", "required": ["key"], "properties": {"key": {"type": "string"}}}]},
        }}})
    }

    fn item() -> Value {
        json!({"$ref": "#/components/schemas/Item"})
    }

    #[test]
    fn a_matching_value_passes() {
        let value = json!({"id": "67e55044-10b1-426f-9247-bb680e5fe0c8", "status": "pending", "size": 3,
            "owner": {"email": "a@example.com"}, "at": "2026-01-02T03:04:05Z"});
        assert_eq!(validate(&doc(), &item(), &value), Vec::<String>::new());
        let value = json!({"id": "67e55044-10b1-426f-9247-bb680e5fe0c8", "status": "pending", "owner": null, "at": null});
        assert_eq!(validate(&doc(), &item(), &value), Vec::<String>::new());
        let flattened = json!({"email": "a@example.com", "key": "kbs_x"});
        let with_key = json!({"$ref": "#/components/schemas/WithKey"});
        assert_eq!(validate(&doc(), &with_key, &flattened), Vec::<String>::new());
    }

    #[test]
    fn wrong_types_formats_enums_missing_and_undeclared_properties_are_each_reported() {
        let cases = [
            (json!({"id": "x", "status": "pending"}), "is not a uuid"),
            (
                json!({"id": "67e55044-10b1-426f-9247-bb680e5fe0c8", "status": "gone"}),
                "is not one of",
            ),
            (
                json!({"id": "67e55044-10b1-426f-9247-bb680e5fe0c8"}),
                "`status` is missing",
            ),
            (
                json!({"id": "67e55044-10b1-426f-9247-bb680e5fe0c8", "status": "pending", "size": -1}),
                "below",
            ),
            (
                json!({"id": "67e55044-10b1-426f-9247-bb680e5fe0c8", "status": "pending", "size": "3"}),
                "not of type",
            ),
            (
                json!({"id": "67e55044-10b1-426f-9247-bb680e5fe0c8", "status": "pending", "extra": 1}),
                "not declared",
            ),
            (
                json!({"id": "67e55044-10b1-426f-9247-bb680e5fe0c8", "status": "pending", "owner": {}}),
                "oneOf",
            ),
            (
                json!({"id": "67e55044-10b1-426f-9247-bb680e5fe0c8", "status": "pending", "at": "yesterday"}),
                "date-time",
            ),
        ];
        for (value, expected) in cases {
            let errors = validate(&doc(), &item(), &value);
            assert!(errors.iter().any(|e| e.contains(expected)), "{value}: {errors:?}");
        }
        let with_key = json!({"$ref": "#/components/schemas/WithKey"});
        let errors = validate(
            &doc(),
            &with_key,
            &json!({"email": "a@example.com", "key": "k", "secret": 1}),
        );
        assert!(errors.iter().any(|e| e.contains("secret")), "{errors:?}");
    }

    #[test]
    #[should_panic(expected = "does not know the keyword")]
    fn an_unknown_keyword_fails_rather_than_passing_silently() {
        validate(&json!({}), &json!({"patternProperties": {}}), &json!({}));
    }
}
