//! A bounded YAML reader for frontmatter.
//!
//! Frontmatter comes from files anyone can write, so the tree is built from the parser's event
//! stream by hand: nesting depth, node count and alias expansion are all capped, which keeps
//! "billion laughs" and ten-thousand-deep flow sequences from eating memory or the stack. The
//! caller also caps the input size before it gets here.

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::TScalarStyle;

/// Deepest nesting accepted (the spec's frontmatter is two levels deep at most).
pub const MAX_DEPTH: usize = 32;
/// Most nodes in the tree, aliases counted as what they expand to.
pub const MAX_NODES: usize = 10_000;

/// A YAML value. Scalars keep their source text: like the reference validator (strictyaml),
/// `version: 1.0` is the text "1.0", not a float.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// `~`, `null` or nothing, unquoted.
    Null,
    Scalar(String),
    Seq(Vec<Node>),
    /// Entries in document order (duplicates kept so the validator can name them).
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Scalar(_) => "scalar",
            Node::Seq(_) => "list",
            Node::Map(_) => "mapping",
        }
    }

    fn size(&self) -> usize {
        match self {
            Node::Null | Node::Scalar(_) => 1,
            Node::Seq(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            Node::Map(entries) => {
                1 + entries
                    .iter()
                    .map(|(k, v)| k.size() + v.size())
                    .sum::<usize>()
            }
        }
    }

    /// The text of a scalar key, else a short rendering for messages.
    pub fn key_text(&self) -> String {
        match self {
            Node::Scalar(s) => s.clone(),
            Node::Null => "null".into(),
            other => format!("<{}>", other.kind()),
        }
    }
}

/// Parse one YAML document. `Ok(None)` for an empty document.
pub fn parse(text: &str) -> Result<Option<Node>, String> {
    enum Open {
        Seq(Vec<Node>, usize),
        Map(Vec<(Node, Node)>, Option<Node>, usize),
    }
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Open> = Vec::new();
    let mut anchors: std::collections::HashMap<usize, Node> = std::collections::HashMap::new();
    let mut nodes = 0usize;
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| e.to_string())?;
        let complete: Node = match event {
            Event::StreamEnd => break,
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => continue,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err("more than one YAML document".into());
                }
                continue;
            }
            Event::Alias(id) => {
                let node = anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| format!("unknown alias at line {}", mark.line()))?;
                nodes += node.size();
                node
            }
            Event::Scalar(value, style, anchor, _tag) => {
                nodes += 1;
                let node = if style == TScalarStyle::Plain
                    && matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL")
                {
                    Node::Null
                } else {
                    Node::Scalar(value)
                };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                node
            }
            Event::SequenceStart(anchor, _) => {
                nodes += 1;
                stack.push(Open::Seq(Vec::new(), anchor));
                if stack.len() > MAX_DEPTH {
                    return Err(format!("nested deeper than {MAX_DEPTH} levels"));
                }
                continue;
            }
            Event::MappingStart(anchor, _) => {
                nodes += 1;
                stack.push(Open::Map(Vec::new(), None, anchor));
                if stack.len() > MAX_DEPTH {
                    return Err(format!("nested deeper than {MAX_DEPTH} levels"));
                }
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Open::Seq(items, anchor)) => {
                    let node = Node::Seq(items);
                    if anchor > 0 {
                        anchors.insert(anchor, node.clone());
                    }
                    node
                }
                _ => return Err("unbalanced sequence".into()),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Open::Map(entries, None, anchor)) => {
                    let node = Node::Map(entries);
                    if anchor > 0 {
                        anchors.insert(anchor, node.clone());
                    }
                    node
                }
                _ => return Err("unbalanced mapping".into()),
            },
        };
        if nodes > MAX_NODES {
            return Err(format!(
                "more than {MAX_NODES} YAML nodes (aliases count as what they expand to)"
            ));
        }
        match stack.last_mut() {
            None => root = Some(complete),
            Some(Open::Seq(items, _)) => items.push(complete),
            Some(Open::Map(entries, pending, _)) => match pending.take() {
                None => *pending = Some(complete),
                Some(key) => entries.push((key, complete)),
            },
        }
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_keep_their_text() {
        let n = parse("a: 1.0\nb: 'x'\nc:\nd: [1, {e: f}]\n")
            .unwrap()
            .unwrap();
        let Node::Map(entries) = n else { panic!() };
        assert_eq!(entries[0].1, Node::Scalar("1.0".into()));
        assert_eq!(entries[1].1, Node::Scalar("x".into()));
        assert_eq!(entries[2].1, Node::Null);
        assert_eq!(entries[3].1.kind(), "list");
    }

    #[test]
    fn depth_and_alias_bombs_are_refused() {
        let deep = format!("a: {}{}", "[".repeat(5000), "]".repeat(5000));
        let e = parse(&deep).unwrap_err();
        assert!(e.contains("deeper") || e.contains("recursion limit"), "{e}");
        let deep_block: String = (0..100)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        assert!(parse(&deep_block).unwrap_err().contains("deeper"));
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..10 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("l{}", i - 1)
            };
            bomb.push_str(&format!(
                "l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        assert!(parse(&bomb).unwrap_err().contains("nodes"));
    }

    #[test]
    fn empty_and_multi_document() {
        assert_eq!(parse("").unwrap(), None);
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
    }
}
