//! A JSON Patch (RFC 6902) that turns one document into another, for the webhook's answer: the
//! API server applies it to the pod it sent. Small on purpose: mappings are compared key by key;
//! a list that only gained entries at its start or end (the sidecar, its volumes) gets `add`s at
//! those indices; a list of the same length is compared item by item (the app's env value);
//! anything else is replaced whole. Paths are JSON Pointers (RFC 6901: `~` → `~0`, `/` → `~1`).

use serde::Serialize;

use super::node::Node;

/// One operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    /// Insert (in a list: before the index; `-`: at the end) or set a new key.
    Add {
        /// Where.
        path: String,
        /// What.
        value: Node,
    },
    /// Remove.
    Remove {
        /// Where.
        path: String,
    },
    /// Set an existing location.
    Replace {
        /// Where.
        path: String,
        /// What.
        value: Node,
    },
}

/// The operations that turn `from` into `to` (none when equal).
pub fn diff(from: &Node, to: &Node) -> Vec<Op> {
    let mut ops = Vec::new();
    walk(from, to, String::new(), &mut ops);
    ops
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn walk(from: &Node, to: &Node, path: String, ops: &mut Vec<Op>) {
    if from == to {
        return;
    }
    match (from, to) {
        (Node::Map(a), Node::Map(b)) => {
            for (key, old) in a.iter() {
                let here = format!("{path}/{}", escape(key));
                match b.get(key) {
                    Some(new) => walk(old, new, here, ops),
                    None => ops.push(Op::Remove { path: here }),
                }
            }
            for (key, new) in b.iter() {
                if a.get(key).is_none() {
                    ops.push(Op::Add {
                        path: format!("{path}/{}", escape(key)),
                        value: new.clone(),
                    });
                }
            }
        }
        (Node::Seq(a), Node::Seq(b)) if a.len() == b.len() => {
            for (i, (old, new)) in a.iter().zip(b).enumerate() {
                walk(old, new, format!("{path}/{i}"), ops);
            }
        }
        (Node::Seq(a), Node::Seq(b)) if b.len() > a.len() && grown(a, b).is_some() => {
            let (prefix, added) = grown(a, b).unwrap_or((0, 0));
            for (offset, item) in b[prefix..prefix + added].iter().enumerate() {
                ops.push(Op::Add {
                    path: format!("{path}/{}", prefix + offset),
                    value: item.clone(),
                });
            }
        }
        _ => ops.push(Op::Replace {
            path,
            value: to.clone(),
        }),
    }
}

/// When `b` is `a` with one run of items inserted: `(index of the run, its length)`.
fn grown(a: &[Node], b: &[Node]) -> Option<(usize, usize)> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    (prefix + suffix == a.len()).then(|| (prefix, b.len() - a.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::node::from_yaml;

    fn ops(a: &str, b: &str) -> String {
        serde_json::to_string(&diff(&from_yaml(a).unwrap(), &from_yaml(b).unwrap())).unwrap()
    }

    #[test]
    fn lists_that_grew_get_adds_at_the_right_indices() {
        assert_eq!(
            ops("l: [b, c]", "l: [a, b, c]"),
            r#"[{"op":"add","path":"/l/0","value":"a"}]"#
        );
        assert_eq!(
            ops("l: [a]", "l: [a, b, c]"),
            r#"[{"op":"add","path":"/l/1","value":"b"},{"op":"add","path":"/l/2","value":"c"}]"#
        );
        assert_eq!(
            ops("l: [a, b]", "l: [b, a, c]"),
            r#"[{"op":"replace","path":"/l","value":["b","a","c"]}]"#
        );
    }

    #[test]
    fn mappings_diff_by_key_with_escaped_pointers() {
        assert_eq!(
            ops("m: {a/b: 1, c~d: 2, x: 0}", "m: {a/b: 3, c~d: 2, n: {}}"),
            r#"[{"op":"replace","path":"/m/a~1b","value":3},{"op":"remove","path":"/m/x"},{"op":"add","path":"/m/n","value":{}}]"#
        );
        assert_eq!(ops("a: 1", "a: 1"), "[]");
        assert_eq!(
            ops("[1]", "{a: 1}"),
            r#"[{"op":"replace","path":"","value":{"a":1}}]"#
        );
    }
}
