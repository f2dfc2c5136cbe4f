//! Splitting text longer than the embedder's window into overlapping word windows.
//!
//! all-MiniLM-L6-v2 reads at most 256 WordPiece tokens and silently drops the rest, so a long
//! memory embedded whole would be findable only by its beginning. Each chunk is indexed (both
//! keyword and vector) and points back to its memory; a search returns the memory.

/// Word windows of `max_words` with `overlap` words shared between neighbours. Text of at most
/// `max_words` words is one chunk, returned as it was (whitespace included).
pub fn chunks(text: &str, max_words: usize, overlap: usize) -> Vec<String> {
    let max_words = max_words.max(1);
    let overlap = overlap.min(max_words - 1);
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() <= max_words {
        return vec![text.to_owned()];
    }
    let step = max_words - overlap;
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let end = (start + max_words).min(words.len());
        out.push(words[start..end].join(" "));
        if end == words.len() {
            break;
        }
        start += step;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_one_chunk_unchanged() {
        assert_eq!(chunks("  hello  world ", 5, 2), vec!["  hello  world "]);
    }

    #[test]
    fn long_text_overlaps_and_covers_every_word() {
        let text: Vec<String> = (0..25).map(|i| format!("w{i}")).collect();
        let c = chunks(&text.join(" "), 10, 3);
        assert_eq!(c.len(), 4, "starts at 0, 7, 14, 21");
        assert!(c[0].starts_with("w0 ") && c[0].ends_with(" w9"));
        assert!(c[1].starts_with("w7 "));
        assert!(c[3].starts_with("w21 ") && c[3].ends_with(" w24"));
    }

    proptest::proptest! {
        #[test]
        fn every_word_is_in_some_chunk(n in 0usize..300, max in 1usize..50, overlap in 0usize..60) {
            let words: Vec<String> = (0..n).map(|i| format!("w{i}")).collect();
            let text = words.join(" ");
            let c = chunks(&text, max, overlap);
            proptest::prop_assert!(!c.is_empty());
            for chunk in &c {
                let words_in = chunk.split_whitespace().count();
                proptest::prop_assert!(words_in <= max, "{} words > {}", words_in, max);
            }
            for w in &words {
                proptest::prop_assert!(c.iter().any(|ch| ch.split_whitespace().any(|x| x == w)));
            }
        }
    }
}
