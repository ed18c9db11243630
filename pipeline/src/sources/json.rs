//! A JSON object read without a tree of values: its keys borrowed from the
//! input where they have no escapes, each value as the reader's own type.
//! A Kafka message and an NDJSON line are both read through it, and their
//! keys found among the lead's columns by [`KeyIndex`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

/// An object's keys and values in input order (a repeated key twice).
pub(crate) struct Object<'a, V>(pub(crate) Vec<(Cow<'a, str>, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Object<'de, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for ObjectVisitor<V> {
            type Value = Object<'de, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object<'de, V>, A::Error> {
                let mut fields = Vec::with_capacity(16);
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    fields.push((key, map.next_value::<V>()?));
                }
                Ok(Object(fields))
            }
        }
        deserializer.deserialize_map(ObjectVisitor(PhantomData))
    }
}

/// A key, borrowed when it has no escapes (serde's own `Cow` would copy it).
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The columns of an object's keys. Objects from one file or producer
/// mostly list their keys in one order: a key is first checked against the
/// column the same position held in the object before, then hashed.
pub(crate) struct KeyIndex {
    columns: Vec<String>,
    index: HashMap<String, usize>,
    by_position: Vec<Option<usize>>,
}

impl KeyIndex {
    pub(crate) fn new(columns: &[impl AsRef<str>]) -> Self {
        let columns: Vec<String> = columns.iter().map(|c| c.as_ref().to_string()).collect();
        Self {
            index: columns
                .iter()
                .enumerate()
                .map(|(i, c)| (c.clone(), i))
                .collect(),
            columns,
            by_position: Vec::new(),
        }
    }

    /// The column of `key`, the object's `position`-th key.
    pub(crate) fn column(&mut self, position: usize, key: &str) -> Option<usize> {
        if let Some(Some(i)) = self.by_position.get(position)
            && self.columns[*i] == key
        {
            return Some(*i);
        }
        let found = self.index.get(key).copied();
        // Only the first positions are remembered (64, or one per column
        // where there are more): an object with a million keys does not
        // grow this for good.
        if position < REMEMBERED_POSITIONS.max(self.columns.len()) {
            if self.by_position.len() <= position {
                self.by_position.resize(position + 1, None);
            }
            self.by_position[position] = found;
        }
        found
    }
}

/// Key positions a [`KeyIndex`] remembers at least.
const REMEMBERED_POSITIONS: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_found_wherever_the_line_puts_it() {
        let columns: Vec<String> = ["a", "b", "c"].map(String::from).into();
        let mut keys = KeyIndex::new(&columns);
        assert_eq!(keys.column(0, "a"), Some(0));
        assert_eq!(keys.column(1, "b"), Some(1));
        assert_eq!(keys.column(0, "c"), Some(2));
        assert_eq!(keys.column(0, "a"), Some(0));
        assert_eq!(keys.column(5, "zz"), None);
        assert_eq!(keys.column(5, "b"), Some(1));
        assert_eq!(keys.column(1_000_000, "c"), Some(2));
        assert!(keys.by_position.len() <= REMEMBERED_POSITIONS);
    }

    #[test]
    fn every_column_of_a_wide_file_keeps_its_position() {
        let columns: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
        let mut keys = KeyIndex::new(&columns);
        for round in 0..2 {
            for (i, c) in columns.iter().enumerate() {
                assert_eq!(keys.column(i, c), Some(i), "round {round}");
            }
        }
        assert_eq!(keys.by_position.len(), 100);
        assert_eq!(keys.column(100, "c3"), Some(3));
        assert_eq!(keys.by_position.len(), 100, "past the columns' count");
    }
}
