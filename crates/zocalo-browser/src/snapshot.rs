//! Page snapshots: the interactive and landmark elements of the accessibility tree, each with
//! a ref (`e1`, `e2`, ...) that later steps can click or type into.
//!
//! Input is the node list of CDP `Accessibility.getFullAXTree` (as JSON, so this module is
//! pure and tested without a browser). Refs are handed out in a pre-order walk from the root,
//! following each node's `childIds`: document order, so the same page gives the same refs in
//! every run. Each ref remembers the element's `backendDOMNodeId`, which is how a click finds
//! the DOM node again.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Roles a user acts on.
const INTERACTIVE: &[&str] = &[
    "button",
    "checkbox",
    "combobox",
    "link",
    "listbox",
    "menuitem",
    "menuitemcheckbox",
    "menuitemradio",
    "option",
    "radio",
    "searchbox",
    "slider",
    "spinbutton",
    "switch",
    "tab",
    "textbox",
    "treeitem",
    // Chromium's role for <summary>.
    "DisclosureTriangle",
];

/// Roles that say where on the page something is.
const LANDMARKS: &[&str] = &[
    "banner",
    "complementary",
    "contentinfo",
    "form",
    "main",
    "navigation",
    "region",
    "search",
    "dialog",
    "alertdialog",
];

/// Names longer than this are cut (with `…`): a link wrapping a whole card is still one line.
const MAX_NAME_CHARS: usize = 150;

/// One element of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotElement {
    #[serde(rename = "ref")]
    pub reference: String,
    pub role: String,
    pub name: String,
    /// Current value of a text field, select or slider, when not empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `true`, `false` or `mixed` for checkboxes, radios and switches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

impl SnapshotElement {
    /// `e3 textbox "Email" = "ada@example.com" [disabled]`
    pub fn render(&self) -> String {
        let mut line = format!("{} {}", self.reference, self.role);
        if !self.name.is_empty() {
            line.push_str(&format!(" {:?}", self.name));
        }
        if let Some(v) = &self.value {
            line.push_str(&format!(" = {v:?}"));
        }
        if let Some(c) = &self.checked {
            line.push_str(&format!(" [checked={c}]"));
        }
        if self.disabled {
            line.push_str(" [disabled]");
        }
        line
    }
}

/// A snapshot of one page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub url: String,
    pub title: String,
    pub elements: Vec<SnapshotElement>,
}

impl Snapshot {
    /// Plain text: a header line, then one line per element.
    pub fn render(&self) -> String {
        let mut out = format!("url: {}\ntitle: {}\n", self.url, self.title);
        if self.elements.is_empty() {
            out.push_str("(no interactive or landmark elements)\n");
        }
        for e in &self.elements {
            out.push_str(&e.render());
            out.push('\n');
        }
        out
    }
}

#[derive(Deserialize)]
struct AxValue {
    #[serde(default)]
    value: Option<Value>,
}

#[derive(Deserialize)]
struct AxProperty {
    name: String,
    value: AxValue,
}

#[derive(Deserialize)]
struct AxNode {
    #[serde(rename = "nodeId")]
    node_id: String,
    #[serde(default)]
    ignored: bool,
    #[serde(default)]
    role: Option<AxValue>,
    #[serde(default)]
    name: Option<AxValue>,
    #[serde(default)]
    value: Option<AxValue>,
    #[serde(default)]
    properties: Option<Vec<AxProperty>>,
    #[serde(rename = "parentId", default)]
    parent_id: Option<String>,
    #[serde(rename = "childIds", default)]
    child_ids: Option<Vec<String>>,
    #[serde(rename = "backendDOMNodeId", default)]
    backend_dom_node_id: Option<i64>,
}

fn text_of(v: &Option<AxValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Collapse whitespace runs and cut overly long names.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_NAME_CHARS + 3));
    for (i, word) in s.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
    if out.chars().count() > MAX_NAME_CHARS {
        out = out.chars().take(MAX_NAME_CHARS).collect();
        out.push('…');
    }
    out
}

/// The snapshot elements of an accessibility tree, in document order, each with the backend
/// DOM node id its ref stands for. Nodes that do not parse are skipped; a malformed tree
/// (cycles, dangling child ids, several roots) still yields each node at most once.
pub fn elements_from_ax_tree(nodes: &[Value]) -> Vec<(SnapshotElement, i64)> {
    let parsed: Vec<AxNode> = nodes
        .iter()
        .filter_map(|n| serde_json::from_value(n.clone()).ok())
        .collect();
    let by_id: HashMap<&str, usize> = parsed
        .iter()
        .enumerate()
        .map(|(i, n)| (n.node_id.as_str(), i))
        .collect();
    // Roots: nodes without a (known) parent, in the order Chromium listed them.
    let roots: Vec<usize> = parsed
        .iter()
        .enumerate()
        .filter(|(_, n)| {
            n.parent_id
                .as_deref()
                .is_none_or(|p| !by_id.contains_key(p))
        })
        .map(|(i, _)| i)
        .collect();

    let mut out = Vec::new();
    let mut seen: HashSet<usize> = HashSet::new();
    let mut seen_backend: HashSet<i64> = HashSet::new();
    // (node, inside a combobox): a closed <select>'s options cannot be clicked, and its
    // value already says which one is chosen.
    let mut stack: Vec<(usize, bool)> = roots.into_iter().rev().map(|i| (i, false)).collect();
    while let Some((i, in_combobox)) = stack.pop() {
        if !seen.insert(i) {
            continue;
        }
        let node = &parsed[i];
        let role = text_of(&node.role);
        let children_in_combobox = in_combobox || (!node.ignored && role == "combobox");
        if let Some(children) = &node.child_ids {
            for c in children.iter().rev() {
                if let Some(&ci) = by_id.get(c.as_str()) {
                    if !seen.contains(&ci) {
                        stack.push((ci, children_in_combobox));
                    }
                }
            }
        }
        if node.ignored || (in_combobox && role == "option") {
            continue;
        }
        let interactive = INTERACTIVE.contains(&role.as_str());
        if !interactive && !LANDMARKS.contains(&role.as_str()) {
            continue;
        }
        let Some(backend) = node.backend_dom_node_id else {
            continue;
        };
        // One DOM node, one ref (Chromium can list a node twice in odd trees).
        if !seen_backend.insert(backend) {
            continue;
        }
        let prop = |name: &str| {
            node.properties
                .as_ref()
                .and_then(|ps| ps.iter().find(|p| p.name == name))
                .and_then(|p| p.value.value.as_ref())
        };
        let checked = prop("checked").map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let disabled = prop("disabled").is_some_and(|v| v == &Value::Bool(true));
        let value = Some(clean(&text_of(&node.value))).filter(|v| interactive && !v.is_empty());
        out.push((
            SnapshotElement {
                reference: format!("e{}", out.len() + 1),
                role,
                name: clean(&text_of(&node.name)),
                value,
                checked,
                disabled,
            },
            backend,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn node(id: &str, parent: Option<&str>, children: &[&str], role: &str, name: &str) -> Value {
        let backend: i64 = id.trim_start_matches('n').parse().unwrap_or(0) + 100;
        json!({
            "nodeId": id,
            "ignored": false,
            "role": {"type": "role", "value": role},
            "name": {"type": "computedString", "value": name},
            "parentId": parent,
            "childIds": children,
            "backendDOMNodeId": backend,
        })
    }

    #[test]
    fn walks_children_in_order_not_list_order() {
        // Listed out of order; childIds say the link comes before the button.
        let nodes = vec![
            node("n1", None, &["n2", "n3"], "RootWebArea", "Page"),
            node("n3", Some("n1"), &[], "button", "Send"),
            node("n2", Some("n1"), &["n4"], "navigation", ""),
            node("n4", Some("n2"), &[], "link", "  Home \n page "),
        ];
        let els = elements_from_ax_tree(&nodes);
        let got: Vec<(String, String, String, i64)> = els
            .iter()
            .map(|(e, b)| (e.reference.clone(), e.role.clone(), e.name.clone(), *b))
            .collect();
        assert_eq!(
            got,
            vec![
                ("e1".into(), "navigation".into(), "".into(), 102),
                ("e2".into(), "link".into(), "Home page".into(), 104),
                ("e3".into(), "button".into(), "Send".into(), 103),
            ]
        );
    }

    #[test]
    fn ignored_nodes_are_skipped_but_their_children_kept() {
        let mut wrapper = node("n2", Some("n1"), &["n3"], "generic", "");
        wrapper["ignored"] = json!(true);
        let mut hidden_button = node("n4", Some("n1"), &[], "button", "Hidden");
        hidden_button["ignored"] = json!(true);
        let nodes = vec![
            node("n1", None, &["n2", "n4"], "RootWebArea", ""),
            wrapper,
            node("n3", Some("n2"), &[], "checkbox", "Agree"),
            hidden_button,
        ];
        let els = elements_from_ax_tree(&nodes);
        assert_eq!(els.len(), 1);
        assert_eq!(els[0].0.name, "Agree");
    }

    #[test]
    fn values_checked_and_disabled_are_reported() {
        let mut tb = node("n2", Some("n1"), &[], "textbox", "Email");
        tb["value"] = json!({"type": "string", "value": "ada@example.com"});
        tb["properties"] =
            json!([{"name": "disabled", "value": {"type": "boolean", "value": true}}]);
        let mut cb = node("n3", Some("n1"), &[], "checkbox", "Agree");
        cb["properties"] =
            json!([{"name": "checked", "value": {"type": "tristate", "value": "mixed"}}]);
        let nodes = vec![node("n1", None, &["n2", "n3"], "RootWebArea", ""), tb, cb];
        let els = elements_from_ax_tree(&nodes);
        assert_eq!(els[0].0.value.as_deref(), Some("ada@example.com"));
        assert!(els[0].0.disabled);
        assert_eq!(els[1].0.checked.as_deref(), Some("mixed"));
        assert_eq!(
            els[0].0.render(),
            r#"e1 textbox "Email" = "ada@example.com" [disabled]"#
        );
    }

    #[test]
    fn malformed_trees_terminate_and_list_each_node_once() {
        // A cycle, a dangling child, a node without an id, a node without a backend id.
        let nodes = vec![
            node("n1", Some("n2"), &["n2", "n9"], "button", "A"),
            node("n2", Some("n1"), &["n1"], "button", "B"),
            json!({"role": {"value": "button"}}),
            json!({"nodeId": "n5", "role": {"value": "link"}, "name": {"value": "no backend"}}),
            json!("not an object"),
        ];
        let els = elements_from_ax_tree(&nodes);
        // Both cycle members have a known parent, so neither is a root: nothing is reachable
        // except the parentless link, which has no DOM node to act on.
        assert!(els.is_empty(), "{els:?}");
    }

    #[test]
    fn options_of_a_closed_select_are_left_out_but_listbox_options_kept() {
        let nodes = vec![
            node("n1", None, &["n2", "n5"], "RootWebArea", ""),
            node("n2", Some("n1"), &["n3"], "combobox", "Size"),
            node("n3", Some("n2"), &["n4"], "MenuListPopup", ""),
            node("n4", Some("n3"), &[], "option", "M"),
            node("n5", Some("n1"), &["n6"], "listbox", "Colour"),
            node("n6", Some("n5"), &[], "option", "Red"),
        ];
        let names: Vec<String> = elements_from_ax_tree(&nodes)
            .into_iter()
            .map(|(e, _)| format!("{} {}", e.role, e.name))
            .collect();
        assert_eq!(names, ["combobox Size", "listbox Colour", "option Red"]);
    }

    #[test]
    fn long_names_are_cut() {
        let long = "x".repeat(400);
        let nodes = vec![node("n1", None, &[], "link", &long)];
        let els = elements_from_ax_tree(&nodes);
        assert_eq!(els[0].0.name.chars().count(), MAX_NAME_CHARS + 1);
    }

    proptest! {
        // Whatever Chromium (or a broken connection) hands us, we never panic, refs are
        // e1..eN in order, and no DOM node gets two refs.
        #[test]
        fn arbitrary_trees_give_sequential_unique_refs(
            edges in proptest::collection::vec((0usize..12, proptest::option::of(0usize..12), 0usize..4, any::<bool>()), 0..24)
        ) {
            let roles = ["button", "link", "generic", "main"];
            let nodes: Vec<Value> = edges.iter().enumerate().map(|(i, (child, parent, role, ignored))| {
                json!({
                    "nodeId": format!("n{i}"),
                    "ignored": ignored,
                    "role": {"value": roles[*role]},
                    "name": {"value": format!("el {i}")},
                    "parentId": parent.map(|p| format!("n{p}")),
                    "childIds": [format!("n{child}")],
                    "backendDOMNodeId": i as i64 % 7,
                })
            }).collect();
            let els = elements_from_ax_tree(&nodes);
            let mut backends = HashSet::new();
            for (i, (e, b)) in els.iter().enumerate() {
                prop_assert_eq!(&e.reference, &format!("e{}", i + 1));
                prop_assert!(backends.insert(*b));
            }
        }
    }
}
