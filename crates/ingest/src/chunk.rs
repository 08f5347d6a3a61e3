//! Splitting extracted text into overlapping chunks for indexing.
//!
//! The text is first normalised: runs of spaces and tabs become one space, a single line break stays a
//! line break, two or more (or a form feed) become one blank line (a paragraph break), control characters
//! become spaces, and leading/trailing whitespace goes. Chunks are then cut at most `size` characters
//! (Unicode scalar values, never bytes) long, preferring, within the second half of the window, a
//! paragraph break, then a sentence end, then a line break, then any whitespace, and only then anywhere.
//! The next chunk starts about `overlap` characters before the cut, moved forward to the start of a word.

use std::ops::Range;

/// Whitespace-normalised characters of `text` (see the module docs).
pub(crate) fn normalize(text: &str) -> Vec<char> {
    let mut out = Vec::with_capacity(text.len());
    let mut newlines = 0usize;
    let mut space = false;
    let mut prev_cr = false;
    for c in text.chars() {
        let was_cr = std::mem::replace(&mut prev_cr, c == '\r');
        match c {
            '\n' if was_cr => {}
            '\n' | '\r' | '\u{2028}' | '\u{85}' => newlines += 1,
            '\u{c}' | '\u{2029}' => newlines += 2,
            c if c.is_whitespace() || c.is_control() => space = true,
            c => {
                if !out.is_empty() {
                    if newlines >= 2 {
                        out.extend(['\n', '\n']);
                    } else if newlines == 1 {
                        out.push('\n');
                    } else if space {
                        out.push(' ');
                    }
                }
                newlines = 0;
                space = false;
                out.push(c);
            }
        }
    }
    out
}

fn is_sentence_end(chars: &[char], c: usize) -> bool {
    // chars[c] is whitespace; the sentence ends at c-1, possibly behind a closing quote or bracket.
    let Some(&prev) = c.checked_sub(1).and_then(|i| chars.get(i)) else {
        return false;
    };
    if matches!(prev, '.' | '!' | '?' | '…' | '。' | '！' | '？') {
        return true;
    }
    matches!(prev, '"' | '\'' | ')' | '”' | '’' | '»')
        && c.checked_sub(2)
            .and_then(|i| chars.get(i))
            .is_some_and(|p| matches!(p, '.' | '!' | '?'))
}

/// The cut position `c` (chunk = `chars[start..c]`) for a window ending at `hard_end < chars.len()`.
fn find_cut(chars: &[char], start: usize, hard_end: usize, size: usize) -> usize {
    let lo = (start + size / 2).max(start + 1);
    let (mut sentence, mut line, mut space) = (None, None, None);
    let mut c = hard_end;
    while c >= lo {
        let ch = chars[c];
        if ch == '\n' {
            if chars.get(c + 1) == Some(&'\n') || (c > 0 && chars[c - 1] == '\n') {
                // At a paragraph break: cut before it.
                return if c > lo && chars[c - 1] == '\n' { c - 1 } else { c };
            }
            line = line.or(Some(c));
        }
        if ch.is_whitespace() {
            if sentence.is_none() && is_sentence_end(chars, c) {
                sentence = Some(c);
            }
            space = space.or(Some(c));
        }
        c -= 1;
    }
    sentence.or(line).or(space).unwrap_or(hard_end)
}

/// The normalised text and the character ranges of the chunks (each range may have whitespace at its
/// edges, which [`chunk`] trims).
#[doc(hidden)]
pub fn chunk_spans(text: &str, size: usize, overlap: usize) -> (Vec<char>, Vec<Range<usize>>) {
    let size = size.max(1);
    let chars = normalize(text);
    let n = chars.len();
    let mut spans = Vec::new();
    let mut start = 0usize;
    loop {
        while start < n && chars[start].is_whitespace() {
            start += 1;
        }
        if start >= n {
            break;
        }
        let hard_end = (start + size).min(n);
        let end = if hard_end == n {
            n
        } else {
            find_cut(&chars, start, hard_end, size)
        };
        spans.push(start..end);
        if end >= n {
            break;
        }
        // Overlap, but never more than half the chunk, so that every step makes real progress.
        let ov = overlap.min((end - start) / 2);
        let mut next = end - ov;
        if ov > 0
            && let Some(word_start) = (next..end).find(|&i| i > 0 && chars[i - 1].is_whitespace())
        {
            next = word_start;
        }
        start = next.max(start + 1);
    }
    (chars, spans)
}

/// One chunk of a document's text: the trimmed text and where it lies in the normalised text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextChunk {
    pub text: String,
    /// Offset of the chunk's first character in the normalised text (characters, not bytes).
    pub start: usize,
    /// Offset just past the chunk's last character, so that `normalised[start..end] == text`.
    pub end: usize,
}

/// The normalised text of `text` (see the module docs): the text that [`TextChunk`] offsets
/// count in.
pub fn normalized_text(text: &str) -> String {
    normalize(text).into_iter().collect()
}

/// [`chunk`] with each chunk's character offsets in the normalised text.
pub fn chunk_with_offsets(text: &str, size: usize, overlap: usize) -> Vec<TextChunk> {
    let (chars, spans) = chunk_spans(text, size, overlap);
    spans
        .into_iter()
        .filter_map(|r| {
            let mut start = r.start;
            let mut end = r.end;
            while start < end && chars[start].is_whitespace() {
                start += 1;
            }
            while end > start && chars[end - 1].is_whitespace() {
                end -= 1;
            }
            (start < end).then(|| TextChunk {
                text: chars[start..end].iter().collect(),
                start,
                end,
            })
        })
        .collect()
}

/// Splits `text` into chunks of at most `size` characters that overlap by about `overlap` characters.
/// Deterministic; never returns empty chunks; an empty or all-whitespace text gives no chunks.
pub fn chunk(text: &str, size: usize, overlap: usize) -> Vec<String> {
    chunk_with_offsets(text, size, overlap)
        .into_iter()
        .map(|c| c.text)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_whitespace() {
        let n: String = normalize("  a \t b\r\nc\n\n\n d\u{c}e  ").into_iter().collect();
        assert_eq!(n, "a b\nc\n\nd\n\ne");
    }

    #[test]
    fn prefers_paragraph_then_sentence() {
        let text = "First sentence here. Second one is here\n\nNext paragraph text goes on and on";
        let chunks = chunk(text, 50, 0);
        assert_eq!(chunks[0], "First sentence here. Second one is here");
        let chunks = chunk("Alpha beta gamma. Delta epsilon zeta eta theta iota kappa", 30, 0);
        assert_eq!(chunks[0], "Alpha beta gamma.");
    }

    #[test]
    fn overlaps_at_word_starts() {
        let text = kbsync_fixtures::text_corpus(3, 2000);
        let chunks = chunk(&text, 300, 60);
        for pair in chunks.windows(2) {
            let first_word = pair[1].split_whitespace().next().unwrap();
            assert!(pair[0].contains(first_word), "{:?} / {:?}", pair[0], pair[1]);
        }
    }

    #[test]
    fn offsets_point_at_the_chunk_in_the_normalised_text() {
        let text = kbsync_fixtures::text_corpus(5, 3000);
        let normalised: Vec<char> = normalize(&text);
        let chunks = chunk_with_offsets(&text, 300, 60);
        assert!(chunks.len() > 3);
        for c in &chunks {
            let at: String = normalised[c.start..c.end].iter().collect();
            assert_eq!(at, c.text);
        }
        assert_eq!(
            chunks.iter().map(|c| c.text.clone()).collect::<Vec<_>>(),
            chunk(&text, 300, 60)
        );
    }

    #[test]
    fn multibyte_text_is_cut_by_chars() {
        let text = "ü".repeat(2500);
        let chunks = chunk(&text, 1000, 100);
        assert!(chunks.iter().all(|c| c.chars().count() <= 1000));
        assert_eq!(chunks[0].chars().count(), 1000);
    }
}
