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

/// Elements that stop the search for the element an end tag closes (html5ever's scope markers,
/// plus lists and buttons): the parser ignores an end tag whose element lies beyond one of them.
const SCOPE: &[&str] = &[
    "html", "table", "td", "th", "caption", "marquee", "object", "applet", "template", "ol", "ul", "button",
    "select", "svg", "math",
];

/// The HTML "special" elements: an end tag of an ordinary element (`</span>`) that would have to
/// close one of these is ignored by the parser.
const SPECIAL: &[&str] = &[
    "address",
    "applet",
    "area",
    "article",
    "aside",
    "base",
    "basefont",
    "bgsound",
    "blockquote",
    "body",
    "br",
    "button",
    "caption",
    "center",
    "col",
    "colgroup",
    "dd",
    "details",
    "dir",
    "div",
    "dl",
    "dt",
    "embed",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "frame",
    "frameset",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "head",
    "header",
    "hgroup",
    "hr",
    "html",
    "iframe",
    "img",
    "input",
    "li",
    "link",
    "listing",
    "main",
    "marquee",
    "menu",
    "meta",
    "nav",
    "noembed",
    "noframes",
    "noscript",
    "object",
    "ol",
    "p",
    "param",
    "plaintext",
    "pre",
    "script",
    "search",
    "section",
    "select",
    "source",
    "style",
    "summary",
    "table",
    "tbody",
    "td",
    "template",
    "textarea",
    "tfoot",
    "th",
    "thead",
    "title",
    "tr",
    "track",
    "ul",
    "wbr",
    "xmp",
    "svg",
    "math",
];

/// Index in `open` of the element that `name` closes: the nearest one of that name, searched from
/// the innermost outwards and stopped by any element of `stop`.
fn closes(open: &[String], name: &str, stop: &[&str]) -> Option<usize> {
    for (k, el) in open.iter().enumerate().rev() {
        if el == name {
            return Some(k);
        }
        if stop.contains(&el.as_str()) {
            return None;
        }
    }
    None
}

/// Formatting elements: closed by a block's end tag, the parser still keeps them active and opens
/// them again inside the next block, so they count until their own end tag.
const FORMATTING: &[&str] = &[
    "a", "b", "big", "code", "em", "font", "i", "nobr", "s", "small", "strike", "strong", "tt", "u",
];

/// Element depth of the tree the parser will build, estimated in one pass without building it,
/// and erring high: an end tag closes an element only where the parser's rules would let it
/// (`</span>` inside an open `<div>` closes nothing; `</html>`, `</body>` and `</form>` close
/// nothing), a `/>` closes only inside SVG or MathML, `<p>`, `<li>`, `<dt>`, `<dd>` close an open
/// one of their kind, and a formatting element (`<b>`) counts until its own end tag. Stops once
/// the depth passes `limit` (so each tag costs at most `limit` steps) and returns it; checks the
/// deadline every few thousand tags.
fn max_depth(html: &str, limit: usize, budget: &Budget) -> Result<usize, ExtractError> {
    let b = html.as_bytes();
    let mut open: Vec<String> = Vec::new();
    // Formatting elements closed by something else than their own end tag.
    let mut dangling: Vec<String> = Vec::new();
    let mut max = 0usize;
    let mut tags = 0u32;
    let mut i = 0;
    let pop_to = |open: &mut Vec<String>, dangling: &mut Vec<String>, k: usize| {
        dangling.extend(open.drain(k + 1..).filter(|el| FORMATTING.contains(&el.as_str())));
        open.truncate(k);
    };
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        tags = tags.wrapping_add(1);
        if tags.is_multiple_of(4096) {
            budget.check()?;
        }
        if b.get(i + 1) == Some(&b'/') {
            let (name, j) = tag_name(b, i + 2);
            i = j.max(i + 2);
            if matches!(name.as_str(), "html" | "body" | "form") {
                continue;
            }
            let stop = if SPECIAL.contains(&name.as_str()) {
                SCOPE
            } else {
                SPECIAL
            };
            if let Some(k) = closes(&open, &name, stop) {
                pop_to(&mut open, &mut dangling, k);
            } else if let Some(k) = dangling.iter().rposition(|el| *el == name) {
                dangling.remove(k);
            }
            continue;
        }
        if !b.get(i + 1).is_some_and(u8::is_ascii_alphabetic) {
            i += 1;
            continue;
        }
        let (name, j) = tag_name(b, i + 1);
        let close = b[j..].iter().position(|&c| c == b'>').map_or(b.len(), |p| j + p);
        let slash = close > 0 && b.get(close - 1) == Some(&b'/');
        let foreign = open.iter().any(|el| el == "svg" || el == "math");
        i = close;
        if VOID.contains(&name.as_str()) || (slash && foreign) {
            continue;
        }
        let implied = match name.as_str() {
            "p" => closes(&open, "p", SCOPE),
            "li" => closes(&open, "li", SPECIAL),
            "dt" | "dd" => closes(&open, "dt", SPECIAL).max(closes(&open, "dd", SPECIAL)),
            _ => None,
        };
        if let Some(k) = implied {
            pop_to(&mut open, &mut dangling, k);
        }
        open.push(name);
        max = max.max(open.len() + dangling.len());
        if max > limit {
            break;
        }
    }
    Ok(max)
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
    if max_depth(&source, MAX_HTML_DEPTH, budget)? > MAX_HTML_DEPTH {
        return strip_tags(&source, max, budget);
    }
    let unreadable = |e: html2text::Error| ExtractError::Corrupt(format!("the HTML could not be read: {e}"));
    let config = html2text::config::plain_no_decorate().no_table_borders();
    let dom = config.parse_html(source.as_bytes()).map_err(unreadable)?;
    // The estimate above misses trees the parser builds deeper than the markup reads (an end tag
    // that matches no open element closes nothing): html2text walks the tree recursively, so the
    // parsed depth is what must stay bounded.
    if dom_deeper_than(&dom, MAX_HTML_DEPTH) {
        drop(dom);
        return strip_tags(&source, max, budget);
    }
    let tree = config.dom_to_render_tree(&dom).map_err(unreadable)?;
    drop(dom);
    let text = config.render_to_string(tree, 10_000).map_err(unreadable)?;
    if text.len() > max {
        return Err(too_much_text(max));
    }
    Ok(text)
}

/// Whether an element of the parsed page lies more than `limit` levels deep (walked without recursion).
fn dom_deeper_than(dom: &html2text::RcDom, limit: usize) -> bool {
    let mut stack = vec![(dom.document.clone(), 0usize)];
    while let Some((node, depth)) = stack.pop() {
        if depth > limit {
            return true;
        }
        stack.extend(
            node.children
                .borrow()
                .iter()
                .map(|child| (child.clone(), depth + 1)),
        );
    }
    false
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
        let budget = Budget::new(std::time::Duration::from_secs(5));
        assert_eq!(
            max_depth(
                "<html><body><p>a<br>b</p><img src=x/></body></html>",
                512,
                &budget
            ),
            Ok(3)
        );
        assert_eq!(max_depth(&"<div>".repeat(1000), 512, &budget), Ok(513));
        // An end tag that matches nothing open closes nothing; `<div/>` is an open div.
        assert_eq!(max_depth(&"<div></span>".repeat(600), 512, &budget), Ok(513));
        assert_eq!(max_depth(&"<div/>".repeat(600), 512, &budget), Ok(513));
        // Omitted end tags the parser implies do not add up.
        assert_eq!(max_depth(&"<p>a<li>b<dt>c".repeat(600), 512, &budget), Ok(3));
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
