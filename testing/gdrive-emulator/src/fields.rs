//! Partial responses: the `fields` parameter (`nextPageToken,files(id,name,parents)`, `files/id`, `*`).

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A parsed field mask: each selected key with its sub-mask (`None` = the whole value).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Mask(BTreeMap<String, Option<Mask>>);

impl Mask {
    /// Parses a mask; `Err` carries the offending text for the 400 answer.
    pub fn parse(text: &str) -> Result<Mask, String> {
        let chars: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
        let mut pos = 0;
        let m = parse_list(&chars, &mut pos, 0)?;
        if pos != chars.len() {
            return Err(text.to_string());
        }
        Ok(m)
    }

    /// Keeps only the selected keys of `v` (applied to each element of arrays).
    pub fn apply(&self, v: &Value) -> Value {
        match v {
            Value::Array(items) => Value::Array(items.iter().map(|i| self.apply(i)).collect()),
            Value::Object(obj) => {
                if self.0.contains_key("*") {
                    return v.clone();
                }
                let mut out = Map::new();
                for (k, sub) in &self.0 {
                    if let Some(val) = obj.get(k) {
                        out.insert(
                            k.clone(),
                            match sub {
                                Some(m) => m.apply(val),
                                None => val.clone(),
                            },
                        );
                    }
                }
                Value::Object(out)
            }
            other => other.clone(),
        }
    }
}

fn insert_path(m: &mut Mask, path: &[String], sub: Option<Mask>) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        match m.0.get_mut(first) {
            None => {
                m.0.insert(first.clone(), sub);
            }
            Some(existing) => match sub {
                None => *existing = None,
                Some(new) => {
                    if let Some(e) = existing {
                        e.0.extend(new.0);
                    }
                }
            },
        }
        return;
    }
    let entry = m.0.entry(first.clone()).or_insert_with(|| Some(Mask::default()));
    if let Some(inner) = entry {
        insert_path(inner, rest, sub);
    }
}

fn parse_list(chars: &[char], pos: &mut usize, depth: usize) -> Result<Mask, String> {
    let err = || chars.iter().collect::<String>();
    if depth > 8 {
        return Err(err());
    }
    let mut m = Mask::default();
    loop {
        let start = *pos;
        while *pos < chars.len() && (chars[*pos].is_ascii_alphanumeric() || "_/*.".contains(chars[*pos])) {
            *pos += 1;
        }
        let name: String = chars[start..*pos].iter().collect();
        if name.is_empty() || name.starts_with('/') || name.ends_with('/') || name.contains("//") {
            return Err(err());
        }
        let path: Vec<String> = name.split('/').map(str::to_string).collect();
        let sub = if chars.get(*pos) == Some(&'(') {
            *pos += 1;
            let inner = parse_list(chars, pos, depth + 1)?;
            if chars.get(*pos) != Some(&')') {
                return Err(err());
            }
            *pos += 1;
            Some(inner)
        } else {
            None
        };
        insert_path(&mut m, &path, sub);
        match chars.get(*pos) {
            Some(',') => *pos += 1,
            _ => return Ok(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_nested_mask_keeps_only_the_selected_keys_in_each_list_element() {
        let m = Mask::parse("nextPageToken, files(id,name,owners/emailAddress)").unwrap();
        let v = json!({"kind":"drive#fileList","nextPageToken":"t","files":[
            {"id":"a","name":"x","mimeType":"m","owners":[{"emailAddress":"e","displayName":"d"}]}]});
        assert_eq!(
            m.apply(&v),
            json!({"nextPageToken":"t","files":[{"id":"a","name":"x","owners":[{"emailAddress":"e"}]}]})
        );
    }

    #[test]
    fn a_star_keeps_everything_and_unbalanced_parentheses_are_rejected() {
        let v = json!({"a":1,"b":{"c":2}});
        assert_eq!(Mask::parse("*").unwrap().apply(&v), v);
        assert!(Mask::parse("files(id").is_err());
        assert!(Mask::parse("files(id))").is_err());
        assert!(Mask::parse("").is_err());
    }
}
