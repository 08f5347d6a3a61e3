//! The text handling behind search, the same on both databases: query words, diacritic folding
//! (PostgreSQL indexes folded text; SQLite's FTS5 tokenizer folds by itself), FTS5 query quoting
//! and snippets.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Longest snippet returned by search, in characters.
pub(crate) const SNIPPET_MAX_CHARS: usize = 240;

/// At most this many words of a query are used (a pasted page of text is not a useful query).
pub(crate) const MAX_QUERY_WORDS: usize = 32;

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

/// English words too common to tell passages apart: dropped from a query's words (unless the
/// query has nothing else), kept inside a quoted phrase. Lower case, sorted.
pub(crate) const STOP_WORDS: &[&str] = &[
    "a", "about", "an", "and", "any", "are", "as", "at", "be", "but", "by", "can", "could", "did", "do",
    "does", "for", "from", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me",
    "my", "no", "not", "of", "on", "or", "our", "should", "so", "some", "that", "the", "their", "them",
    "there", "these", "they", "this", "those", "to", "us", "was", "we", "were", "what", "when", "where",
    "which", "who", "whom", "why", "will", "with", "would", "you", "your",
];

/// Score factor for a chunk that holds every (non-stop) word of the query: `1 + ALL_WORDS_BOOST`.
pub(crate) const ALL_WORDS_BOOST: f64 = 0.5;
/// Score factor for a chunk that holds the query's unquoted words as a phrase:
/// `1 + PHRASE_BOOST` (on top of [`ALL_WORDS_BOOST`]).
pub(crate) const PHRASE_BOOST: f64 = 1.0;

/// Whether a word (any case or accents) is one of [`STOP_WORDS`].
pub(crate) fn is_stop_word(word: &str) -> bool {
    let folded = fold(word);
    STOP_WORDS.binary_search(&folded.as_str()).is_ok()
}

/// A plain-text query as search reads it. Text in double quotes is a phrase that must occur as
/// written (words in that order, stop words included); an unmatched quote is an ordinary
/// character. The other words are alternatives: a chunk matches when it holds any of them (and
/// every phrase), and ranks higher the more (and the rarer) of them it holds. Words are maximal
/// runs of letters and digits; everything else, query syntax included, only separates words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedQuery {
    /// Quoted phrases, each one or more words.
    pub phrases: Vec<Vec<String>>,
    /// The unquoted words without stop words (or all of them when there is nothing else),
    /// distinct.
    pub words: Vec<String>,
    /// The unquoted words in the order typed, stop words included: the phrase that earns
    /// [`PHRASE_BOOST`] when there are at least two.
    pub typed: Vec<String>,
}

impl ParsedQuery {
    /// Parses `text`; `split` turns a piece of text into words (as typed for FTS5, whose tokenizer
    /// folds by itself; folded for PostgreSQL). At most [`MAX_QUERY_WORDS`] words in all.
    pub(crate) fn parse(text: &str, split: fn(&str) -> Vec<String>) -> Self {
        let pieces: Vec<&str> = text.split('"').collect();
        // Pieces at odd positions are quoted, except a last one without a closing quote.
        let closed = if pieces.len().is_multiple_of(2) {
            pieces.len() - 1
        } else {
            pieces.len()
        };
        let mut budget = MAX_QUERY_WORDS;
        let mut phrases: Vec<Vec<String>> = Vec::new();
        let mut typed: Vec<String> = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            let quoted = i % 2 == 1 && i < closed;
            let mut words = split(piece);
            words.truncate(budget);
            budget -= words.len();
            if words.is_empty() {
                continue;
            }
            if quoted {
                if !phrases.contains(&words) {
                    phrases.push(words);
                }
            } else {
                typed.extend(words);
            }
        }
        let mut distinct: Vec<String> = Vec::new();
        for w in &typed {
            if !distinct.contains(w) {
                distinct.push(w.clone());
            }
        }
        let content: Vec<String> = distinct.iter().filter(|w| !is_stop_word(w)).cloned().collect();
        let words = if content.is_empty() && phrases.is_empty() {
            distinct
        } else {
            content
        };
        Self {
            phrases,
            words,
            typed,
        }
    }

    /// Nothing to search for.
    pub(crate) fn is_empty(&self) -> bool {
        self.phrases.is_empty() && self.words.is_empty()
    }

    /// The unquoted words as a phrase, for [`PHRASE_BOOST`], when there are two or more.
    pub(crate) fn boost_phrase(&self) -> Option<&[String]> {
        (self.words.len() >= 2 && self.typed.len() >= 2).then_some(self.typed.as_slice())
    }

    /// The words a chunk must all hold for [`ALL_WORDS_BOOST`], when there are two or more.
    pub(crate) fn boost_all_words(&self) -> Option<&[String]> {
        (self.words.len() >= 2).then_some(self.words.as_slice())
    }
}

/// An FTS5 string (a word or a phrase of words), quoted so that nothing in it is FTS5 syntax.
fn fts5_string(words: &[String]) -> String {
    format!("\"{}\"", words.join(" ").replace('"', "\"\""))
}

/// The FTS5 MATCH expressions of a query (words as typed; FTS5 folds them itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fts5Query {
    /// What a chunk must match: every phrase, and any word.
    pub matching: String,
    /// Chunks that hold every word (see [`ALL_WORDS_BOOST`]).
    pub all_words: Option<String>,
    /// Chunks that hold the typed words as a phrase (see [`PHRASE_BOOST`]).
    pub phrase: Option<String>,
    /// One expression per alternative (each word, with every phrase; or the phrases alone):
    /// a chunk matches `matching` exactly when it matches one of these. The match-phase limit
    /// is applied per alternative (see `SEARCH_DEPTH`).
    pub alternatives: Vec<String>,
}

/// The FTS5 form of a plain-text query; `None` when the query has no words.
pub(crate) fn fts5_query(text: &str) -> Option<Fts5Query> {
    let q = ParsedQuery::parse(text, raw_words);
    if q.is_empty() {
        return None;
    }
    let any_word = q
        .words
        .iter()
        .map(|w| fts5_string(std::slice::from_ref(w)))
        .collect::<Vec<_>>()
        .join(" OR ");
    let phrases: Vec<String> = q.phrases.iter().map(|p| fts5_string(p)).collect();
    let matching = match (phrases.is_empty(), any_word.is_empty()) {
        (true, _) => any_word,
        (false, true) => phrases.join(" AND "),
        // The first phrase is one of the alternatives too, so that the words only rank.
        (false, false) => format!("{} AND ({} OR {any_word})", phrases.join(" AND "), phrases[0]),
    };
    let all_words = q.boost_all_words().map(|ws| {
        ws.iter()
            .map(|w| fts5_string(std::slice::from_ref(w)))
            .collect::<Vec<_>>()
            .join(" AND ")
    });
    let phrase = q.boost_phrase().map(fts5_string);
    let required = phrases.join(" AND ");
    let alternatives: Vec<String> = if q.words.is_empty() {
        vec![required]
    } else {
        q.words
            .iter()
            .map(|w| {
                let w = fts5_string(std::slice::from_ref(w));
                if required.is_empty() {
                    w
                } else {
                    format!("{required} AND {w}")
                }
            })
            .chain((!required.is_empty()).then(|| required.clone()))
            .collect()
    };
    Some(Fts5Query {
        matching,
        all_words,
        phrase,
        alternatives,
    })
}

/// The words of a piece of query text as typed (no folding).
fn raw_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whitespace runs become one space; the result is trimmed.
pub(crate) fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
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
    fn stop_words_are_sorted_for_binary_search() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(is_stop_word("The") && is_stop_word("WHAT") && !is_stop_word("budget"));
    }

    #[test]
    fn query_words_are_alternatives_without_stop_words() {
        let q = ParsedQuery::parse("What is the budget for Marketing?", raw_words);
        assert_eq!(q.words, vec!["budget", "Marketing"]);
        assert!(q.phrases.is_empty());
        assert_eq!(q.typed.len(), 6);
        // Only stop words: they are the query.
        let q = ParsedQuery::parse("to be or not to be", raw_words);
        assert_eq!(q.words, vec!["to", "be", "or", "not"]);
    }

    #[test]
    fn quoted_text_is_a_phrase_and_an_unmatched_quote_is_plain() {
        let q = ParsedQuery::parse("\"state of the art\" budget \"x", folded_words);
        assert_eq!(q.phrases, vec![vec!["state", "of", "the", "art"]]);
        assert_eq!(q.words, vec!["budget", "x"]);
        let q = ParsedQuery::parse("\"the\"", folded_words);
        assert_eq!(q.phrases, vec![vec!["the"]]);
        assert!(q.words.is_empty() && !q.is_empty());
        assert!(ParsedQuery::parse(" \"\" - ( ) ", folded_words).is_empty());
    }

    #[test]
    fn fts5_query_quotes_every_word_and_drops_syntax() {
        let q = fts5_query("foo OR \"bar baz\" NEAR(x* -y)").unwrap();
        assert_eq!(
            q.matching,
            "\"bar baz\" AND (\"bar baz\" OR \"foo\" OR \"NEAR\" OR \"x\" OR \"y\")"
        );
        assert_eq!(
            q.all_words.as_deref(),
            Some("\"foo\" AND \"NEAR\" AND \"x\" AND \"y\"")
        );
        let q = fts5_query("red pears").unwrap();
        assert_eq!(q.matching, "\"red\" OR \"pears\"");
        assert_eq!(q.phrase.as_deref(), Some("\"red pears\""));
        assert_eq!(fts5_query(" \"*- () "), None);
        assert_eq!(fts5_query("budget").unwrap().phrase, None);
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
}
