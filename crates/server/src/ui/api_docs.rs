//! The API reference page (`/api/docs`): the OpenAPI document ([`crate::openapi`]) rendered with
//! the UI's layout and stylesheet. Per tag its operations (method, path, summary, authentication,
//! parameters, request body, responses), then every schema; links between them are anchors on the
//! page. No script: it reads the same with JavaScript off.

use askama::Template;
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Map, Value};

use super::{Session, views::Chrome};
use crate::error::ApiError;

#[derive(Template)]
#[template(path = "api_docs.html")]
struct ApiDocsPage {
    chrome: Chrome,
    title: String,
    version: String,
    /// Fields named `description` or `summary` here and below hold HTML made by [`rich`].
    description: String,
    schemes: Vec<SchemeView>,
    groups: Vec<TagGroup>,
    schemas: Vec<SchemaView>,
}

struct SchemeView {
    name: String,
    kind: String,
    description: String,
}

struct TagGroup {
    name: String,
    anchor: String,
    description: String,
    operations: Vec<OperationView>,
}

struct OperationView {
    anchor: String,
    method: String,
    path: String,
    summary: String,
    description: String,
    /// Each alternative way to authenticate; empty: none needed.
    auth: Vec<String>,
    params: Vec<ParamView>,
    body: Option<BodyView>,
    responses: Vec<ResponseView>,
}

struct ParamView {
    name: String,
    location: String,
    required: bool,
    ty: Vec<TypePart>,
    description: String,
}

struct BodyView {
    content_type: String,
    ty: Vec<TypePart>,
    required: bool,
    description: String,
}

struct ResponseView {
    status: String,
    description: String,
    content_type: String,
    ty: Vec<TypePart>,
}

struct SchemaView {
    name: String,
    anchor: String,
    description: String,
    /// For an object: its fields.
    fields: Vec<FieldView>,
    /// For anything else (an enum of strings, say): its type.
    ty: Vec<TypePart>,
}

struct FieldView {
    name: String,
    required: bool,
    ty: Vec<TypePart>,
    description: String,
}

/// A piece of a rendered type: text, linked to a schema's anchor when it names one.
struct TypePart {
    text: String,
    link: Option<String>,
}

const METHODS: [&str; 7] = ["get", "put", "post", "delete", "patch", "head", "options"];

/// The page for `doc`, with the navigation of `session`'s user when signed in.
pub fn render(doc: &Value, session: Option<&Session>) -> Result<Response, ApiError> {
    let page = ApiDocsPage {
        chrome: session.map_or_else(Chrome::anonymous, |s| Chrome::of(s, "")),
        title: text(&doc["info"]["title"]),
        version: text(&doc["info"]["version"]),
        description: rich(&doc["info"]["description"]),
        schemes: schemes(doc),
        groups: groups(doc),
        schemas: schemas(doc),
    };
    let html = page
        .render()
        .map_err(|e| ApiError::internal("rendering the API reference", e))?;
    Ok(Html(html).into_response())
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// A description as HTML: escaped, with `code` in backticks shown as code.
fn rich(v: &Value) -> String {
    let escaped = crate::api::datasources::html_escape(v.as_str().unwrap_or_default());
    let mut html = String::with_capacity(escaped.len());
    let mut in_code = false;
    for (i, piece) in escaped.split('`').enumerate() {
        if i > 0 {
            html.push_str(if in_code { "</code>" } else { "<code>" });
            in_code = !in_code;
        }
        html.push_str(piece);
    }
    if in_code {
        html.push_str("</code>");
    }
    html
}

fn object(v: &Value) -> impl Iterator<Item = (&String, &Value)> {
    v.as_object().into_iter().flat_map(Map::iter)
}

fn anchor(prefix: &str, name: &str) -> String {
    let slug: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("{prefix}-{slug}")
}

fn schemes(doc: &Value) -> Vec<SchemeView> {
    object(&doc["components"]["securitySchemes"])
        .map(|(name, s)| SchemeView {
            name: name.clone(),
            kind: match (s["type"].as_str(), s["in"].as_str()) {
                (Some("http"), _) => format!(
                    "Authorization: {} {}",
                    capitalise(&text(&s["scheme"])),
                    s["bearerFormat"].as_str().unwrap_or("…")
                ),
                (Some("apiKey"), Some(place)) => format!("{place} {}", text(&s["name"])),
                _ => text(&s["type"]),
            },
            description: rich(&s["description"]),
        })
        .collect()
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Operations grouped by their first tag, in the order the document declares its tags.
fn groups(doc: &Value) -> Vec<TagGroup> {
    let mut groups: Vec<TagGroup> = doc["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| TagGroup {
            name: text(&t["name"]),
            anchor: anchor("tag", &text(&t["name"])),
            description: rich(&t["description"]),
            operations: Vec::new(),
        })
        .collect();
    for (path, item) in object(&doc["paths"]) {
        for method in METHODS {
            let op = &item[method];
            if op.is_null() {
                continue;
            }
            let tag = op["tags"][0].as_str().unwrap_or("other");
            let index = match groups.iter().position(|g| g.name == tag) {
                Some(i) => i,
                None => {
                    groups.push(TagGroup {
                        name: tag.to_owned(),
                        anchor: anchor("tag", tag),
                        description: String::new(),
                        operations: Vec::new(),
                    });
                    groups.len() - 1
                }
            };
            groups[index].operations.push(operation(method, path, op));
        }
    }
    groups.retain(|g| !g.operations.is_empty());
    groups
}

fn operation(method: &str, path: &str, op: &Value) -> OperationView {
    let auth = op["security"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|requirement| {
            let names: Vec<String> = object(requirement)
                .map(|(name, roles)| {
                    let roles: Vec<String> = roles.as_array().into_iter().flatten().map(text).collect();
                    if roles.is_empty() {
                        name.clone()
                    } else {
                        format!("{name} ({})", roles.join(", "))
                    }
                })
                .collect();
            (!names.is_empty()).then(|| names.join(" + "))
        })
        .collect();
    let params = op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| ParamView {
            name: text(&p["name"]),
            location: text(&p["in"]),
            required: p["required"].as_bool().unwrap_or(false),
            ty: type_parts(&p["schema"]),
            description: rich(&p["description"]),
        })
        .collect();
    let body = op["requestBody"].as_object().map(|b| {
        let (content_type, schema) = first_content(&b["content"]);
        BodyView {
            content_type,
            ty: schema.map(type_parts).unwrap_or_default(),
            required: b.get("required").and_then(Value::as_bool).unwrap_or(false),
            description: b.get("description").map(rich).unwrap_or_default(),
        }
    });
    let responses = object(&op["responses"])
        .map(|(status, r)| {
            let (content_type, schema) = first_content(&r["content"]);
            ResponseView {
                status: status.clone(),
                description: rich(&r["description"]),
                content_type,
                ty: schema.map(type_parts).unwrap_or_default(),
            }
        })
        .collect();
    OperationView {
        anchor: anchor("op", &format!("{method}-{path}")),
        method: method.to_ascii_uppercase(),
        path: path.to_owned(),
        summary: rich(&op["summary"]),
        description: rich(&op["description"]),
        auth,
        params,
        body,
        responses,
    }
}

/// The first media type of a `content` map, and its schema if it has one.
fn first_content(content: &Value) -> (String, Option<&Value>) {
    match object(content).next() {
        Some((media, m)) => (media.clone(), m.get("schema")),
        None => (String::new(), None),
    }
}

fn schemas(doc: &Value) -> Vec<SchemaView> {
    object(&doc["components"]["schemas"])
        .map(|(name, schema)| {
            let required: Vec<&str> = schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let fields: Vec<FieldView> = object(&schema["properties"])
                .map(|(field, s)| FieldView {
                    name: field.clone(),
                    required: required.contains(&field.as_str()),
                    ty: type_parts(s),
                    description: rich(&s["description"]),
                })
                .collect();
            SchemaView {
                name: name.clone(),
                anchor: anchor("schema", name),
                description: rich(&schema["description"]),
                ty: if fields.is_empty() {
                    type_parts(schema)
                } else {
                    Vec::new()
                },
                fields,
            }
        })
        .collect()
}

/// A schema as a short type expression: `string (uuid)`, `array of FileDto`, `integer | null`,
/// `"read" | "write"`; names of schemas link to them.
fn type_parts(schema: &Value) -> Vec<TypePart> {
    let mut parts = Vec::new();
    push_type(schema, &mut parts);
    parts
}

fn plain(parts: &mut Vec<TypePart>, text: impl Into<String>) {
    parts.push(TypePart {
        text: text.into(),
        link: None,
    });
}

fn push_type(schema: &Value, parts: &mut Vec<TypePart>) {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        parts.push(TypePart {
            text: name.to_owned(),
            link: Some(format!("#{}", anchor("schema", name))),
        });
        return;
    }
    for (keyword, joiner) in [("oneOf", " | "), ("anyOf", " | "), ("allOf", " & ")] {
        if let Some(alternatives) = schema[keyword].as_array() {
            for (i, alternative) in alternatives.iter().enumerate() {
                if i > 0 {
                    plain(parts, joiner);
                }
                push_type(alternative, parts);
            }
            return;
        }
    }
    if let Some(values) = schema["enum"].as_array() {
        let listed: Vec<String> = values.iter().map(Value::to_string).collect();
        plain(parts, listed.join(" | "));
        return;
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if types.is_empty() {
        plain(parts, "any");
        return;
    }
    for (i, t) in types.iter().enumerate() {
        if i > 0 {
            plain(parts, " | ");
        }
        match *t {
            "array" => {
                plain(parts, "array of ");
                push_type(&schema["items"], parts);
            }
            "null" => plain(parts, "null"),
            other => match schema["format"].as_str() {
                Some(format) => plain(parts, format!("{other} ({format})")),
                None => plain(parts, other),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::json;

    fn rendered(parts: &[TypePart]) -> String {
        parts.iter().map(|p| p.text.as_str()).collect()
    }

    #[test]
    fn descriptions_are_escaped_and_backticks_become_code() {
        assert_eq!(
            rich(&json!("send `Authorization: Bearer <token>` & <b>wait</b>")),
            "send <code>Authorization: Bearer &lt;token&gt;</code> &amp; &lt;b&gt;wait&lt;/b&gt;"
        );
        assert_eq!(rich(&json!("an `unclosed one")), "an <code>unclosed one</code>");
    }

    #[test]
    fn types_read_as_short_expressions_with_links_to_named_schemas() {
        let list = json!({"type": "array", "items": {"$ref": "#/components/schemas/FileDto"}});
        let parts = type_parts(&list);
        assert_eq!(rendered(&parts), "array of FileDto");
        assert_eq!(parts[1].link.as_deref(), Some("#schema-filedto"));
        assert_eq!(
            rendered(&type_parts(
                &json!({"type": ["string", "null"], "format": "date-time"})
            )),
            "string (date-time) | null"
        );
        assert_eq!(
            rendered(&type_parts(
                &json!({"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/X"}]})
            )),
            "null | X"
        );
        assert_eq!(
            rendered(&type_parts(&json!({"type": "string", "enum": ["read", "write"]}))),
            "\"read\" | \"write\""
        );
    }

    #[tokio::test]
    async fn the_page_lists_every_operation_and_schema_and_loads_nothing_from_elsewhere() {
        let doc = crate::openapi::document();
        let value = serde_json::to_value(doc).unwrap();
        let response = render(&value, None).unwrap();
        let html = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let html = String::from_utf8(html.to_vec()).unwrap();
        for (path, item) in value["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                let id = anchor("op", &format!("{method}-{path}"));
                assert!(html.contains(&format!("id=\"{id}\"")), "{method} {path} missing");
            }
        }
        for name in value["components"]["schemas"].as_object().unwrap().keys() {
            assert!(
                html.contains(&format!("id=\"{}\"", anchor("schema", name))),
                "{name} missing"
            );
        }
        assert!(!html.contains("<script src=\"http"), "a script from elsewhere");
        assert!(!html.contains("href=\"http"), "a link to an asset elsewhere");
    }
}
