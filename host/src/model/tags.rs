//! The tags of an image or a snapshot: a handful of keys each, held as one list sorted by
//! key. A map would do, but a map's first node is 544 bytes whatever it holds, and an
//! inventory holds a tag list per image: at 100,000 images the nodes were a fifth of the
//! inventory's memory. Read, written and compared as the map it stands for.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Tags by key, each key once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Tags(Vec<(String, String)>);

impl Tags {
    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Key and value, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }

    /// Sets `key` to `value`; returns the value it had.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    /// Keeps the tags `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&String, &String) -> bool) {
        self.0.retain(|(k, v)| keep(k, v));
    }
}

impl<'a> IntoIterator for &'a Tags {
    type Item = (&'a String, &'a String);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (String, String)>, fn(&'a (String, String)) -> Self::Item>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl Extend<(String, String)> for Tags {
    fn extend<I: IntoIterator<Item = (String, String)>>(&mut self, tags: I) {
        for (key, value) in tags {
            self.insert(key, value);
        }
    }
}

/// As a map's: a later value of a key wins.
impl FromIterator<(String, String)> for Tags {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(tags: I) -> Tags {
        Tags::from(tags.into_iter().collect::<BTreeMap<_, _>>())
    }
}

impl From<BTreeMap<String, String>> for Tags {
    fn from(tags: BTreeMap<String, String>) -> Tags {
        Tags(tags.into_iter().collect())
    }
}

impl<const N: usize> From<[(String, String); N]> for Tags {
    fn from(tags: [(String, String); N]) -> Tags {
        tags.into_iter().collect()
    }
}

impl Serialize for Tags {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Tags, D::Error> {
        BTreeMap::deserialize(d).map(Tags::from)
    }
}

#[cfg(test)]
mod tests {
    use super::Tags;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn tags_read_and_write_as_the_map_they_stand_for() {
        let mut t = tags(&[("team", "web"), ("env", "prod"), ("team", "api")]);
        assert_eq!(t.iter().collect::<Vec<_>>(), [(&"env".into(), &"prod".into()), (&"team".into(), &"api".into())]);
        assert_eq!(t.get("team").map(String::as_str), Some("api"), "a later value of a key wins");
        assert_eq!(t.insert("app".into(), "x".into()), None);
        assert_eq!(t.insert("env".into(), "dev".into()).as_deref(), Some("prod"));
        assert_eq!(t.keys().map(String::as_str).collect::<Vec<_>>(), ["app", "env", "team"], "kept in key order");
        t.retain(|k, _| k != "app");
        assert!(!t.contains_key("app") && t.contains_key("env") && t.len() == 2);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"env":"dev","team":"api"}"#);
        assert_eq!(serde_json::from_str::<Tags>(&json).unwrap(), t);
        assert_eq!(
            serde_json::from_str::<Tags>(r#"{"b":"1","a":"2","b":"3"}"#).unwrap(),
            tags(&[("a", "2"), ("b", "3")])
        );
        assert!(serde_json::from_str::<Tags>(r#"["a"]"#).is_err());
    }
}
