//! The text handling behind search, the same on both databases: query words, diacritic folding
//! (PostgreSQL indexes folded text; SQLite's FTS5 tokenizer folds by itself), FTS5 query quoting
//! and snippets.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Longest snippet returned by search, in characters.
pub(crate) const SNIPPET_MAX_CHARS: usize = 240;

/// At most this many words of a query are used (a pasted page of text is not a useful query).
pub(crate) const MAX_QUERY_WORDS: usize = 32;

/// The words of a plain-text query as typed (for FTS5, whose tokenizer folds them itself):
/// maximal runs of letters and digits; everything else separates words. At most
/// [`MAX_QUERY_WORDS`], duplicates removed.
pub(crate) fn raw_query_words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if !out.iter().any(|o| o == w) {
            out.push(w.to_owned());
        }
        if out.len() >= MAX_QUERY_WORDS {
            break;
        }
    }
    out
}

/// Folds text for matching: compatibility decomposition, combining marks removed, lower case.
pub(crate) fn fold(text: &str) -> String {
    text.nfkd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The folded words of a text, in order (duplicates kept).
pub(crate) fn folded_words(text: &str) -> Vec<String> {
    fold(text)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The folded words of a query: distinct, at most [`MAX_QUERY_WORDS`].
pub(crate) fn folded_query_words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in folded_words(text) {
        if !out.contains(&w) {
            out.push(w);
        }
        if out.len() >= MAX_QUERY_WORDS {
            break;
        }
    }
    out
}

/// An FTS5 MATCH expression that requires every word, each quoted as a string so that nothing
/// the user typed is read as FTS5 syntax. `None` when the query has no words.
pub(crate) fn fts5_match_expression(text: &str) -> Option<String> {
    let words = raw_query_words(text);
    if words.is_empty() {
        return None;
    }
    let quoted: Vec<String> = words
        .iter()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    Some(quoted.join(" "))
}

/// Whitespace runs become one space; the result is trimmed.
pub(crate) fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Cuts text to at most `max` characters, at a word boundary where possible, ending with "…"
/// when something was cut.
pub(crate) fn clamp_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let keep: String = text.chars().take(max.saturating_sub(1)).collect();
    let cut = match keep.rfind(' ') {
        Some(i) if i > keep.len() / 2 => &keep[..i],
        _ => keep.as_str(),
    };
    format!("{}…", cut.trim_end())
}

/// A plain-text snippet of at most `max` characters around the first word of `text` whose
/// folded form is one of `terms` (the start of the text when none is).
pub(crate) fn snippet_around(text: &str, terms: &[String], max: usize) -> String {
    let clean: Vec<char> = collapse_whitespace(text).chars().collect();
    if clean.len() <= max {
        return clean.into_iter().collect();
    }
    // Find the first matching word (char index of its start).
    let mut hit = None;
    let mut i = 0;
    while i < clean.len() {
        if clean[i].is_alphanumeric() {
            let start = i;
            while i < clean.len() && clean[i].is_alphanumeric() {
                i += 1;
            }
            let word: String = clean[start..i].iter().collect();
            if folded_words(&word).iter().any(|w| terms.contains(w)) {
                hit = Some(start);
                break;
            }
        } else {
            i += 1;
        }
    }
    let hit = hit.unwrap_or(0);
    let budget = max.saturating_sub(2); // room for a leading and a trailing "…"
    let mut start = hit.saturating_sub(budget / 3);
    if start > 0 {
        // begin at a word boundary after `start`, but not past the hit
        if let Some(off) = clean[start..hit].iter().position(|c| *c == ' ') {
            start += off + 1;
        }
    }
    let mut end = (start + budget).min(clean.len());
    if end < clean.len()
        && let Some(off) = clean[start..end].iter().rposition(|c| *c == ' ')
        && start + off > hit
    {
        end = start + off;
    }
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    out.extend(clean[start..end].iter());
    let trimmed_len = out.trim_end().len();
    out.truncate(trimmed_len);
    if end < clean.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_removes_diacritics_and_case() {
        assert_eq!(fold("Übergabe ÉLAN façade"), "ubergabe elan facade");
        assert_eq!(folded_words("Über-gabe, x2!"), vec!["uber", "gabe", "x2"]);
    }

    #[test]
    fn fts5_expression_quotes_every_word_and_drops_syntax() {
        assert_eq!(
            fts5_match_expression("foo OR \"bar\" NEAR(x* -y)").as_deref(),
            Some("\"foo\" \"OR\" \"bar\" \"NEAR\" \"x\" \"y\"")
        );
        assert_eq!(fts5_match_expression(" \"*- () "), None);
    }

    #[test]
    fn snippet_is_bounded_and_contains_the_match() {
        let text = format!("{} needle {}", "hay ".repeat(200), "stack ".repeat(200));
        let s = snippet_around(&text, &["needle".to_owned()], SNIPPET_MAX_CHARS);
        assert!(s.chars().count() <= SNIPPET_MAX_CHARS, "{}", s.len());
        assert!(s.contains("needle"), "{s}");
        assert!(s.starts_with('…') && s.ends_with('…'), "{s}");
        assert_eq!(snippet_around("short  text\n", &[], 240), "short text");
    }

    #[test]
    fn snippet_finds_folded_matches() {
        let text = format!("{} Übergabe {}", "a ".repeat(300), "b ".repeat(300));
        let s = snippet_around(&text, &["ubergabe".to_owned()], 240);
        assert!(s.contains("Übergabe"), "{s}");
    }

    #[test]
    fn clamp_cuts_at_word_boundary() {
        let s = clamp_chars(&"word ".repeat(100), 240);
        assert!(s.chars().count() <= 240);
        assert!(s.ends_with("word…"), "{s}");
    }
}
