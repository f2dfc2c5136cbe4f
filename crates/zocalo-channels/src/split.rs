//! Long answers cut at a channel's limit (Telegram: 4096 per message), at the best boundary
//! that fits: a blank line, else a line end, else a space, else anywhere between characters.

/// `text` in pieces of at most `limit` units each, where `units` measures one character
/// (Telegram counts UTF-16 code units: `|c| c.len_utf16()`). The whitespace at a cut is
/// dropped; nothing else is. An empty or blank text gives no pieces. `limit` below 2 is
/// taken as 2 (any character fits).
pub fn split(text: &str, limit: usize, units: impl Fn(char) -> usize) -> Vec<String> {
    let limit = limit.max(2);
    let mut pieces = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        // The longest prefix that fits, as a byte offset.
        let mut used = 0;
        let mut fit = rest.len();
        for (i, c) in rest.char_indices() {
            used += units(c);
            if used > limit {
                fit = i;
                break;
            }
        }
        if fit == rest.len() {
            pieces.push(rest.to_owned());
            break;
        }
        let head = &rest[..fit];
        // Prefer the last blank line, then line end, then space, in the fitting prefix; a
        // boundary at the very start would make no progress.
        let cut = ["\n\n", "\n", " "]
            .iter()
            .find_map(|sep| {
                head.rfind(sep)
                    .filter(|&at| !head[..at].trim_end().is_empty())
            })
            .unwrap_or(fit.max(first_char_len(rest)));
        let piece = rest[..cut].trim_end();
        pieces.push(piece.to_owned());
        rest = rest[cut..].trim_start();
    }
    pieces
}

fn first_char_len(s: &str) -> usize {
    s.chars().next().map_or(0, char::len_utf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chars(c: char) -> usize {
        let _ = c;
        1
    }

    #[test]
    fn short_text_is_one_piece_and_blank_is_none() {
        assert_eq!(split("hello", 10, chars), vec!["hello"]);
        assert!(split("  \n ", 10, chars).is_empty());
        assert!(split("", 10, chars).is_empty());
    }

    #[test]
    fn paragraphs_win_over_lines_and_lines_over_words() {
        let text = "first paragraph line one\nline two\n\nsecond paragraph";
        assert_eq!(
            split(text, 40, chars),
            vec!["first paragraph line one\nline two", "second paragraph"]
        );
        assert_eq!(
            split("aaaa bbbb\ncccc dddd", 12, chars),
            vec!["aaaa bbbb", "cccc dddd"]
        );
        assert_eq!(
            split("aaaa bbbb cccc", 10, chars),
            vec!["aaaa bbbb", "cccc"]
        );
    }

    #[test]
    fn a_word_longer_than_the_limit_is_cut_between_characters() {
        assert_eq!(split("abcdefghij", 4, chars), vec!["abcd", "efgh", "ij"]);
        // UTF-16 units: an emoji is two, so three fit in a limit of 6 and never one half.
        let crabs = "🦀".repeat(7);
        let pieces = split(&crabs, 6, |c| c.len_utf16());
        assert_eq!(pieces, vec!["🦀🦀🦀", "🦀🦀🦀", "🦀"]);
    }

    #[test]
    fn telegram_sized_answer() {
        let para = "word ".repeat(300); // 1500 characters
        let text = [para.as_str(); 5].join("\n\n");
        let pieces = split(&text, 4096, |c| c.len_utf16());
        assert_eq!(pieces.len(), 3);
        assert!(pieces.iter().all(|p| p.encode_utf16().count() <= 4096));
        // Cut at paragraph ends: two paragraphs (3001 chars) then two then one.
        assert!(pieces[0].ends_with("word") && !pieces[0].contains("\n\n\n"));
    }

    fn squeeze(s: &str) -> String {
        s.chars().filter(|c| !c.is_whitespace()).collect()
    }

    proptest! {
        #[test]
        fn pieces_fit_and_keep_every_non_space_character(
            text in "[a-z 🦀é\n]{0,300}",
            limit in 1usize..40,
        ) {
            let pieces = split(&text, limit, |c| c.len_utf16());
            for p in &pieces {
                prop_assert!(p.encode_utf16().count() <= limit.max(2), "{p:?} over {limit}");
                prop_assert!(!p.trim().is_empty());
            }
            prop_assert_eq!(squeeze(&pieces.concat()), squeeze(&text));
        }
    }
}
