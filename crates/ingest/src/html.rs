//! HTML through html2text (script, style and other non-content elements are dropped).
//!
//! Pathologically nested markup (thousands of open elements) goes to a small linear tag stripper
//! instead, so that no tree walk can exhaust the stack.

use crate::ExtractError;
use crate::input::Input;
use crate::sink::{Budget, Sink, too_much_text};

/// Nesting above this uses the linear fallback. Real pages stay well below 100.
const MAX_HTML_DEPTH: usize = 512;

const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track",
    "wbr",
];

const BLOCK: &[&str] = &[
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "table",
    "section",
    "article",
    "header",
    "footer",
    "blockquote",
    "pre",
    "title",
    "dt",
    "dd",
    "hr",
    "main",
    "nav",
    "aside",
    "form",
];

/// Tag name after `<` or `</` at `i`, lower-cased, and the index after it.
fn tag_name(bytes: &[u8], mut i: usize) -> (String, usize) {
    let start = i;
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'-' || bytes[i] == b':') {
        i += 1;
    }
    (String::from_utf8_lossy(&bytes[start..i]).to_ascii_lowercase(), i)
}

/// Approximate maximum element depth (HTML lets many end tags be omitted; good enough to spot abuse).
fn max_depth(html: &str) -> usize {
    let b = html.as_bytes();
    let (mut depth, mut max) = (0usize, 0usize);
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'<' {
            if b.get(i + 1) == Some(&b'/') {
                depth = depth.saturating_sub(1);
                i += 2;
                continue;
            }
            if b.get(i + 1).is_some_and(u8::is_ascii_alphabetic) {
                let (name, j) = tag_name(b, i + 1);
                let close = b[j..].iter().position(|&c| c == b'>').map_or(b.len(), |p| j + p);
                let self_closing = close > 0 && b.get(close - 1) == Some(&b'/');
                if !self_closing && !VOID.contains(&name.as_str()) {
                    depth += 1;
                    max = max.max(depth);
                }
                i = close;
                continue;
            }
        }
        i += 1;
    }
    max
}

/// html2text parses from memory: the page is read whole, once its size passed the check below.
pub(crate) fn html(mut input: Input<'_>, max: usize, budget: &Budget) -> Result<String, ExtractError> {
    let max_page = u64::try_from(max)
        .unwrap_or(u64::MAX)
        .saturating_mul(4)
        .max(1 << 20);
    if input.len()? > max_page {
        // HTML markup is rarely more than 4× its text; a page this big would exceed the text cap anyway.
        return Err(too_much_text(max));
    }
    let bytes = input.into_bytes()?;
    let source = crate::text::decode(&bytes);
    if max_depth(&source) > MAX_HTML_DEPTH {
        return strip_tags(&source, max, budget);
    }
    let text = html2text::config::plain_no_decorate()
        .no_table_borders()
        .string_from_read(source.as_bytes(), 10_000)
        .map_err(|e| ExtractError::Corrupt(format!("the HTML could not be read: {e}")))?;
    if text.len() > max {
        return Err(too_much_text(max));
    }
    Ok(text)
}

fn decode_entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        return char::from_u32(code);
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        _ => return None,
    })
}

/// Linear tag stripper: drops comments and the content of script/style, turns block tags into line breaks,
/// decodes the common entities.
fn strip_tags(html: &str, max: usize, budget: &Budget) -> Result<String, ExtractError> {
    let mut sink = Sink::new(max, budget);
    let b = html.as_bytes();
    let mut i = 0;
    let mut text_start = 0;
    let flush = |sink: &mut Sink<'_>, from: usize, to: usize| -> Result<(), ExtractError> {
        let mut rest = &html[from..to];
        while let Some(amp) = rest.find('&') {
            sink.push_str(&rest[..amp])?;
            let after = &rest[amp + 1..];
            match after
                .find(';')
                .filter(|&p| p <= 10)
                .and_then(|p| decode_entity(&after[..p]).map(|c| (c, p)))
            {
                Some((c, p)) => {
                    sink.push(c)?;
                    rest = &after[p + 1..];
                }
                None => {
                    sink.push('&')?;
                    rest = after;
                }
            }
        }
        sink.push_str(rest)
    };
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        flush(&mut sink, text_start, i)?;
        if html[i..].starts_with("<!--") {
            i = html[i + 4..].find("-->").map_or(b.len(), |p| i + 4 + p + 3);
        } else {
            let closing = b.get(i + 1) == Some(&b'/');
            let (name, j) = tag_name(b, i + if closing { 2 } else { 1 });
            let end = b[j..]
                .iter()
                .position(|&c| c == b'>')
                .map_or(b.len(), |p| j + p + 1);
            i = end;
            if !closing && (name == "script" || name == "style") {
                let close = format!("</{name}");
                let lower_rest = html[i..].to_ascii_lowercase();
                i = lower_rest.find(&close).map_or(b.len(), |p| {
                    let k = i + p;
                    b[k..]
                        .iter()
                        .position(|&c| c == b'>')
                        .map_or(b.len(), |q| k + q + 1)
                });
            } else if BLOCK.contains(&name.as_str()) {
                sink.separate('\n')?;
            } else {
                sink.separate(' ')?;
            }
        }
        text_start = i.min(b.len());
    }
    flush(&mut sink, text_start.min(b.len()), b.len())?;
    Ok(sink.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_is_approximated() {
        assert_eq!(
            max_depth("<html><body><p>a<br>b</p><img src=x/></body></html>"),
            3
        );
        assert_eq!(max_depth(&"<div>".repeat(1000)), 1000);
    }

    #[test]
    fn stripper_drops_script_and_decodes_entities() {
        let budget = Budget::new(std::time::Duration::from_secs(5));
        let out = strip_tags(
            "<p>caf&eacute; &amp; t&#xE9;</p><SCRIPT>var x = '<p>no</p>';</script><!-- c --><div>tail</div>",
            1000,
            &budget,
        )
        .unwrap();
        assert_eq!(out, "caf&eacute; & té\ntail\n");
    }
}
