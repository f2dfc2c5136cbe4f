//! Text for the keyword index: lowercase words, English stop words dropped, Porter2 stems.
//!
//! "databases" and "database" meet; "the", "and", "was" do not flood every query. Numbers and
//! non-Latin words are kept as they are (lowercased), so dates and names stay searchable.

use std::sync::OnceLock;

use rust_stemmers::{Algorithm, Stemmer};

/// The stop words of the classic English list used by Lucene/Elasticsearch plus the
/// pronouns and auxiliaries that dominate chat turns.
const STOP_WORDS: &[&str] = &[
    "a", "about", "am", "an", "and", "are", "as", "at", "be", "been", "being", "but", "by", "can",
    "could", "d", "did", "do", "does", "doing", "for", "from", "had", "has", "have", "having",
    "he", "her", "hers", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself",
    "just", "ll", "m", "me", "my", "myself", "no", "not", "of", "on", "or", "our", "ours", "re",
    "s", "she", "should", "so", "such", "t", "than", "that", "the", "their", "theirs", "them",
    "then", "there", "these", "they", "this", "those", "to", "too", "us", "ve", "very", "was",
    "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with",
    "would", "you", "your", "yours", "yourself",
];

fn stemmer() -> &'static Stemmer {
    static S: OnceLock<Stemmer> = OnceLock::new();
    S.get_or_init(|| Stemmer::create(Algorithm::English))
}

pub fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.binary_search(&word).is_ok()
}

/// The index terms of `text`, in order (repeats kept: they are term frequencies).
pub fn terms(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for raw in text.split(|c: char| !c.is_alphanumeric()) {
        if raw.is_empty() {
            continue;
        }
        let word = raw.to_lowercase();
        if is_stop_word(&word) {
            continue;
        }
        // Stemming long digit runs or very long tokens gains nothing.
        if word.len() > 40 || word.bytes().all(|b| b.is_ascii_digit()) {
            out.push(word);
        } else {
            out.push(stemmer().stem(&word).into_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_words_are_sorted_for_binary_search() {
        let mut sorted = STOP_WORDS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, STOP_WORDS);
    }

    #[test]
    fn stems_and_drops_stop_words() {
        assert_eq!(terms("The Databases were running!"), vec!["databas", "run"]);
        assert_eq!(terms("database"), vec!["databas"]);
        assert_eq!(terms("on 8 May, 2023"), vec!["8", "may", "2023"]);
        assert_eq!(terms("Ünïcode café"), vec!["ünïcode", "café"]);
        assert!(terms("  ,.;  ").is_empty());
    }

    proptest::proptest! {
        /// Terms are non-empty and lowercase, and a stop word of the text never becomes one.
        /// (A stem may still equal a stop word: "ifs" -> "if". Query and memory go through
        /// the same function, so they still meet.)
        #[test]
        fn terms_never_panic_and_are_lowercase(s in ".{0,200}") {
            for t in terms(&s) {
                proptest::prop_assert!(!t.is_empty());
                proptest::prop_assert_eq!(t.to_lowercase(), t.clone());
            }
            for word in s.split(|c: char| !c.is_alphanumeric()) {
                if is_stop_word(&word.to_lowercase()) {
                    proptest::prop_assert!(terms(word).is_empty(), "{word:?}");
                }
            }
        }
    }
}
