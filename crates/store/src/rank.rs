//! Ranking, the same on both databases. The database finds the candidates (the matching chunks
//! the reader may read, at most [`SEARCH_DEPTH`](crate::SEARCH_DEPTH) of them plus the rare
//! words' matches, see `search.rs`) with their text; this module scores them with BM25 over the
//! candidates and the boosts of `search_text`, then search keeps the best chunk per document and
//! retrieval the best chunks.
//!
//! BM25 (k1 = 1.2, b = 0.75): each query term (an unquoted word, or a quoted phrase) a chunk
//! holds adds `idf × tf × (k1 + 1) / (tf + k1 × (1 − b + b × len / avglen))`, where `tf` is how
//! often the chunk holds the term, `len` its length in words, `avglen` the candidates' mean length
//! and `idf = ln(1 + (N − df + 0.5) / (df + 0.5))` with `N` the candidates and `df` those holding
//! the term. The statistics are the candidates', not the whole index's: a corpus-wide count walks
//! each word's whole posting list on every query (FTS5's `bm25()` does, ~60 ms for a word in most
//! of a million chunks), and the candidates are the chunks being ranked. A chunk holding every
//! word is multiplied by `1 + ALL_WORDS_BOOST`, one holding the typed words as a phrase by
//! `1 + PHRASE_BOOST` on top.
//!
//! Words are counted in the chunk's folded text (as `search_text::folded_words` splits it, the
//! way both indexes fold and split), with a fast path for ASCII text.

use std::collections::HashMap;

use crate::search_text::{ALL_WORDS_BOOST, PHRASE_BOOST, ParsedQuery, folded_words};

const K1: f64 = 1.2;
const B: f64 = 0.75;

/// A matching chunk as the database hands it over for ranking.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Candidate {
    pub chunk_id: i64,
    pub document_id: String,
    pub kb_id: String,
    pub name: String,
    pub path: String,
    pub web_url: Option<String>,
    pub ordinal: i64,
    pub text: String,
    pub start_offset: Option<i64>,
    pub end_offset: Option<i64>,
    /// The document may be returned (processed, its source not revoked). Chunks of other
    /// documents still count towards the depth, as the index holds them.
    pub servable: bool,
}

/// A candidate with its score.
#[derive(Debug)]
pub(crate) struct Scored {
    pub score: f64,
    pub chunk: Candidate,
}

/// What a chunk is scored on: the query's terms as sequences of vocabulary ids.
pub(crate) struct Scorer {
    /// Folded word → vocabulary id.
    vocabulary: HashMap<String, u32>,
    /// The ASCII words of the vocabulary with their ids, for ASCII text: a query has a few
    /// words, so comparing each word of the text with them (length first, no allocation) is
    /// faster than hashing it.
    ascii: Vec<(Vec<u8>, u32)>,
    /// The weighed terms: each unquoted word, then each quoted phrase.
    terms: Vec<Vec<u32>>,
    /// How many of `terms` are unquoted words (they come first).
    words: usize,
    /// Every word must be held for [`ALL_WORDS_BOOST`].
    all_words_boost: bool,
    /// The typed words as a phrase, for [`PHRASE_BOOST`].
    phrase_boost: Option<Vec<u32>>,
}

/// No vocabulary word.
const OTHER: u32 = u32::MAX;

impl Scorer {
    /// The scorer of a query parsed with folded words.
    pub(crate) fn new(q: &ParsedQuery) -> Self {
        let mut vocabulary: HashMap<String, u32> = HashMap::new();
        let mut id = |w: &String| -> u32 {
            let next = u32::try_from(vocabulary.len()).unwrap_or(OTHER - 1);
            *vocabulary.entry(w.clone()).or_insert(next)
        };
        let mut terms: Vec<Vec<u32>> = q.words.iter().map(|w| vec![id(w)]).collect();
        let words = terms.len();
        terms.extend(q.phrases.iter().map(|p| p.iter().map(&mut id).collect()));
        let phrase_boost = q.boost_phrase().map(|p| p.iter().map(&mut id).collect());
        let ascii = vocabulary
            .iter()
            .filter(|(w, _)| w.is_ascii())
            .map(|(w, id)| (w.as_bytes().to_vec(), *id))
            .collect();
        Self {
            vocabulary,
            ascii,
            terms,
            words,
            all_words_boost: q.boost_all_words().is_some(),
            phrase_boost,
        }
    }

    /// The chunk's words as vocabulary ids ([`OTHER`] for the rest).
    fn tokens(&self, text: &str) -> Vec<u32> {
        if !text.is_ascii() {
            return folded_words(text)
                .iter()
                .map(|w| self.vocabulary.get(w).copied().unwrap_or(OTHER))
                .collect();
        }
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len() / 5);
        let mut i = 0;
        while i < bytes.len() {
            if !bytes[i].is_ascii_alphanumeric() {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
                i += 1;
            }
            let word = &bytes[start..i];
            let id = self
                .ascii
                .iter()
                .find(|(w, _)| w.len() == word.len() && w.eq_ignore_ascii_case(word))
                .map_or(OTHER, |(_, id)| *id);
            out.push(id);
        }
        out
    }

    /// Scores the candidates; best first (ties: the newer chunk first).
    pub(crate) fn rank(&self, candidates: Vec<Candidate>) -> Vec<Scored> {
        // Per candidate: each term's frequency, the length in words, and whether it holds the
        // typed phrase.
        let counted: Vec<(Vec<u32>, usize, bool)> = candidates
            .iter()
            .map(|c| {
                let tokens = self.tokens(&c.text);
                let tf = self.terms.iter().map(|t| occurrences(&tokens, t)).collect();
                let phrase = self
                    .phrase_boost
                    .as_ref()
                    .is_some_and(|p| occurrences(&tokens, p) > 0);
                (tf, tokens.len(), phrase)
            })
            .collect();
        let n = counted.len() as f64;
        let avglen = if counted.is_empty() {
            1.0
        } else {
            (counted.iter().map(|(_, len, _)| *len as f64).sum::<f64>() / n).max(1.0)
        };
        let idf: Vec<f64> = (0..self.terms.len())
            .map(|t| {
                let df = counted.iter().filter(|(tf, _, _)| tf[t] > 0).count() as f64;
                (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
            })
            .collect();
        let mut scored: Vec<Scored> = candidates
            .into_iter()
            .zip(counted)
            .map(|(chunk, (tf, len, phrase))| {
                let norm = K1 * (1.0 - B + B * len as f64 / avglen);
                let mut score: f64 = tf
                    .iter()
                    .zip(&idf)
                    .map(|(&f, idf)| {
                        let f = f64::from(f);
                        idf * f * (K1 + 1.0) / (f + norm)
                    })
                    .sum();
                if self.all_words_boost && tf[..self.words].iter().all(|&f| f > 0) {
                    score *= 1.0 + ALL_WORDS_BOOST;
                }
                if phrase {
                    score *= 1.0 + PHRASE_BOOST;
                }
                Scored { score, chunk }
            })
            .collect();
        scored.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(b.chunk.chunk_id.cmp(&a.chunk.chunk_id))
        });
        scored
    }
}

/// How often `term` (a sequence of ids) occurs in `tokens`.
fn occurrences(tokens: &[u32], term: &[u32]) -> u32 {
    if term.is_empty() || term.len() > tokens.len() {
        return 0;
    }
    let n = tokens.windows(term.len()).filter(|w| *w == term).count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The best chunk of each document, best first, at most `limit`: search's hits.
pub(crate) fn best_per_document(scored: Vec<Scored>, limit: usize) -> Vec<Scored> {
    let mut seen = std::collections::HashSet::new();
    scored
        .into_iter()
        .filter(|s| s.chunk.servable && seen.insert(s.chunk.document_id.clone()))
        .take(limit)
        .collect()
}

/// The best servable chunks, at most `limit`: retrieval's passages.
pub(crate) fn best_chunks(scored: Vec<Scored>, limit: usize) -> Vec<Scored> {
    scored
        .into_iter()
        .filter(|s| s.chunk.servable)
        .take(limit)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: i64, doc: &str, text: &str) -> Candidate {
        Candidate {
            chunk_id: id,
            document_id: doc.into(),
            kb_id: "kb".into(),
            name: doc.into(),
            path: format!("/{doc}"),
            web_url: None,
            ordinal: 0,
            text: text.into(),
            start_offset: None,
            end_offset: None,
            servable: true,
        }
    }

    fn ranked(query: &str, chunks: Vec<Candidate>) -> Vec<(i64, f64)> {
        let q = ParsedQuery::parse(query, folded_words);
        Scorer::new(&q)
            .rank(chunks)
            .into_iter()
            .map(|s| (s.chunk.chunk_id, s.score))
            .collect()
    }

    #[test]
    fn more_occurrences_and_rarer_words_rank_higher() {
        let r = ranked(
            "budget zebra",
            vec![
                chunk(1, "a", "budget budget budget plan"),
                chunk(2, "b", "budget plan for the year"),
                chunk(3, "c", "zebra in the budget plan"),
                chunk(4, "d", "budget notes"),
            ],
        );
        // The only chunk with the rare word (and both words) first; three budgets before one.
        assert_eq!(r[0].0, 3);
        let pos = |id| r.iter().position(|(c, _)| *c == id);
        assert!(pos(1) < pos(2), "{r:?}");
        assert!(r.iter().all(|(_, s)| *s > 0.0), "{r:?}");
    }

    #[test]
    fn the_typed_phrase_and_every_word_boost() {
        let r = ranked(
            "red pears",
            vec![
                chunk(1, "a", "pears that are red"),
                chunk(2, "b", "red pears"),
                chunk(3, "c", "red apples"),
            ],
        );
        assert_eq!(r.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2, 1, 3]);
    }

    #[test]
    fn folding_matches_accents_and_case_in_both_paths() {
        let r = ranked(
            "Übergabe",
            vec![chunk(1, "a", "die UEBERGABE"), chunk(2, "b", "die ÜBERGABE")],
        );
        assert_eq!(r[0].0, 2);
        assert!(r[0].1 > 0.0 && r[1].1 == 0.0, "{r:?}");
        let r = ranked("ubergabe", vec![chunk(1, "a", "Die Übergabe.")]);
        assert!(r[0].1 > 0.0);
    }

    #[test]
    fn quoted_phrases_are_weighed_terms() {
        let r = ranked(
            "\"state of the art\" design",
            vec![
                chunk(1, "a", "state of the art design"),
                chunk(2, "b", "state of the art state of the art"),
            ],
        );
        assert_eq!(r[0].0, 1, "{r:?}");
    }

    #[test]
    fn one_hit_per_servable_document() {
        let q = ParsedQuery::parse("budget", folded_words);
        let mut hidden = chunk(5, "z", "budget budget budget budget");
        hidden.servable = false;
        let scored = Scorer::new(&q).rank(vec![
            chunk(1, "a", "budget budget"),
            chunk(2, "a", "budget"),
            chunk(3, "b", "budget"),
            hidden,
        ]);
        let docs: Vec<String> = best_per_document(scored, 10)
            .into_iter()
            .map(|s| s.chunk.document_id)
            .collect();
        assert_eq!(docs, vec!["a", "b"]);
    }
}
