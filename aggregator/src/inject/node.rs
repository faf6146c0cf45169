//! A Kubernetes document as an ordered tree: mappings keep their keys in the order they were
//! written, so a re-serialized document reads like its input (serde_json's own `Value` sorts
//! keys unless a workspace-wide feature is turned on, which would change every other JSON the
//! aggregator writes). Read from YAML (YAML 1.1 scalars as Kubernetes reads them: `0644` is
//! octal, `yes` a boolean) or JSON; written as either. Duplicate keys are refused, as
//! kube-apiserver's strict decoding does.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// One value of a document.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `null` (or an absent YAML value).
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A JSON number (integers stay integers).
    Number(serde_json::Number),
    /// A string.
    String(String),
    /// A list.
    Seq(Vec<Node>),
    /// A mapping, in document order.
    Map(Map),
}

/// A mapping whose keys keep their order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Map(Vec<(String, Node)>);

impl Map {
    /// An empty mapping.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The value of `key`, mutably.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key`, in place when it exists (its position is kept), else at the end.
    pub fn insert(&mut self, key: &str, value: Node) {
        match self.get_mut(key) {
            Some(slot) => *slot = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }

    /// The value of `key`, inserted with `make` at the end when absent.
    pub fn entry(&mut self, key: &str, make: impl FnOnce() -> Node) -> &mut Node {
        let index = match self.0.iter().position(|(k, _)| k == key) {
            Some(i) => i,
            None => {
                self.0.push((key.to_owned(), make()));
                self.0.len() - 1
            }
        };
        &mut self.0[index].1
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no keys.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<String>> FromIterator<(K, Node)> for Map {
    fn from_iter<I: IntoIterator<Item = (K, Node)>>(iter: I) -> Self {
        Self(iter.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl Node {
    /// A string node.
    pub fn str(s: impl Into<String>) -> Self {
        Node::String(s.into())
    }

    /// An integer node.
    pub fn int(n: i64) -> Self {
        Node::Number(n.into())
    }

    /// A mapping node from `(key, value)` pairs, in that order.
    pub fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Node)>) -> Self {
        Node::Map(entries.into_iter().collect())
    }

    /// The mapping, if this is one.
    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Node::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The mapping, mutably, if this is one.
    pub fn as_map_mut(&mut self) -> Option<&mut Map> {
        match self {
            Node::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The list, if this is one.
    pub fn as_seq(&self) -> Option<&Vec<Node>> {
        match self {
            Node::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The list, mutably, if this is one.
    pub fn as_seq_mut(&mut self) -> Option<&mut Vec<Node>> {
        match self {
            Node::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value at `key` of a mapping (None for anything else).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map().and_then(|m| m.get(key))
    }

    /// The value at `key` of a mapping, mutably.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.as_map_mut().and_then(|m| m.get_mut(key))
    }

    /// The value at a path of mapping keys.
    pub fn at(&self, path: &[&str]) -> Option<&Node> {
        path.iter().try_fold(self, |node, key| node.get(key))
    }

    /// The value at a path of mapping keys, mutably.
    pub fn at_mut(&mut self, path: &[&str]) -> Option<&mut Node> {
        path.iter().try_fold(self, |node, key| node.get_mut(key))
    }

    /// The string at `key` of a mapping.
    pub fn str_at(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Node::as_str)
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => serializer.serialize_unit(),
            Node::Bool(b) => serializer.serialize_bool(*b),
            Node::Number(n) => n.serialize(serializer),
            Node::String(s) => serializer.serialize_str(s),
            Node::Seq(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Node::Map(map) => {
                let mut out = serializer.serialize_map(Some(map.len()))?;
                for (k, v) in map.iter() {
                    out.serialize_entry(k, v)?;
                }
                out.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-compatible value")
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Node, E> {
        Ok(Node::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Node, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Node, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Node, E> {
        serde_json::Number::from_f64(n)
            .map(Node::Number)
            .ok_or_else(|| E::custom("a non-finite number has no JSON form"))
    }

    fn visit_str<E>(self, s: &str) -> Result<Node, E> {
        Ok(Node::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Node, E> {
        Ok(Node::String(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Node, A::Error> {
        let mut map = Map::new();
        while let Some(Key(key)) = access.next_key()? {
            if map.get(&key).is_some() {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let value = access.next_value()?;
            map.0.push((key, value));
        }
        Ok(Node::Map(map))
    }
}

/// A mapping key, always read as the text written: Kubernetes keys are strings, and a plain `n:`
/// or `80:` must not turn into `false` or `80.0` (YAML 1.1 would read `n` as a boolean).
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean mapping key")
            }
            fn visit_str<E>(self, s: &str) -> Result<Key, E> {
                Ok(Key(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Key, E> {
                Ok(Key(s))
            }
            fn visit_bool<E>(self, b: bool) -> Result<Key, E> {
                Ok(Key(b.to_string()))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Key, E> {
                Ok(Key(n.to_string()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Key, E> {
                Ok(Key(n.to_string()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Key, E> {
                Ok(Key(n.to_string()))
            }
        }
        deserializer.deserialize_string(KeyVisitor)
    }
}

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

/// Reads every document of a YAML stream (`---` separated; empty documents are `Null`).
pub fn from_yaml_stream(text: &str) -> Result<Vec<Node>, ParseError> {
    serde_saphyr::from_multiple_with_options(text, yaml_options())
        .map_err(|e| ParseError(e.to_string()))
}

/// Reads one YAML document.
pub fn from_yaml(text: &str) -> Result<Node, ParseError> {
    serde_saphyr::from_str_with_options(text, yaml_options()).map_err(|e| ParseError(e.to_string()))
}

/// Reads one JSON value.
pub fn from_json(bytes: &[u8]) -> Result<Node, ParseError> {
    serde_json::from_slice(bytes).map_err(|e| ParseError(e.to_string()))
}

/// Writes one YAML document (no `---`, ends with a newline).
pub fn to_yaml(node: &Node) -> Result<String, ParseError> {
    let mut text = serde_saphyr::to_string(node).map_err(|e| ParseError(e.to_string()))?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// YAML as Kubernetes reads it (go-yaml v2 through sigs.k8s.io/yaml): YAML 1.1 octal
/// (`defaultMode: 0644` is 420) and booleans, duplicate keys refused, alias budgets on.
fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.legacy_octal_numbers = true;
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_order_through_yaml_and_json() {
        let doc = from_yaml("kind: Pod\napiVersion: v1\nz: 1\na: [x, {b: 2, a: 1}]\n").unwrap();
        let keys: Vec<&str> = doc.as_map().unwrap().iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["kind", "apiVersion", "z", "a"]);
        let json = serde_json::to_string(&doc).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"Pod","apiVersion":"v1","z":1,"a":["x",{"b":2,"a":1}]}"#
        );
        assert_eq!(from_json(json.as_bytes()).unwrap(), doc);
        assert_eq!(from_yaml(&to_yaml(&doc).unwrap()).unwrap(), doc);
    }

    #[test]
    fn scalars_read_as_kubernetes_reads_them() {
        let doc = from_yaml("mode: 0644\nport: \"5672\"\non: yes\nn: ~\nf: 1.5\n").unwrap();
        assert_eq!(doc.get("mode"), Some(&Node::int(420)));
        assert_eq!(doc.get("port"), Some(&Node::str("5672")));
        assert_eq!(
            doc.get("on"),
            Some(&Node::Bool(true)),
            "keys stay text, values are YAML 1.1"
        );
        assert_eq!(doc.get("n"), Some(&Node::Null));
        // Strings that look like other scalars stay strings when written back.
        let back = from_yaml(&to_yaml(&doc).unwrap()).unwrap();
        assert_eq!(back, doc);
    }

    #[test]
    fn duplicate_keys_and_non_finite_numbers_are_refused() {
        assert!(from_yaml("a: 1\na: 2\n").is_err());
        assert!(from_json(br#"{"a":1,"a":2}"#).is_err());
        assert!(from_yaml("a: .inf\n").is_err());
    }

    #[test]
    fn streams_split_into_documents() {
        let docs = from_yaml_stream("a: 1\n---\nb: 2\n---\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].get("b"), Some(&Node::int(2)));
    }

    #[test]
    fn maps_insert_in_place_or_at_the_end() {
        let mut m: Map = [("a", Node::int(1)), ("b", Node::int(2))]
            .into_iter()
            .collect();
        m.insert("a", Node::int(3));
        m.insert("c", Node::int(4));
        let keys: Vec<&str> = m.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a", "b", "c"]);
        assert_eq!(m.get("a"), Some(&Node::int(3)));
        *m.entry("d", || Node::Seq(vec![])) = Node::Null;
        assert_eq!(m.len(), 4);
    }
}
