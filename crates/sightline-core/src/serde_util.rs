//! Serde helpers shared by the components' config structs.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use std::fmt;
use std::marker::PhantomData;

/// A list option that also takes a single value: `catalog: /etc/sightline/catalog` is
/// `catalog: [/etc/sightline/catalog]`. Use with `#[serde(deserialize_with = "one_or_many")]`.
/// The single value must be a scalar (what the element type takes from a string); the list form
/// is unchanged, and its element errors keep their positions.
pub fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: de::Deserialize<'de>,
{
    struct OneOrMany<T>(PhantomData<T>);

    impl<'de, T: de::Deserialize<'de>> Visitor<'de> for OneOrMany<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<T>, E> {
            let one = T::deserialize(de::value::StrDeserializer::<E>::new(v))?;
            Ok(vec![one])
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<Vec<T>, E> {
            self.visit_str(&v)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Vec<T>, E> {
            // `catalog:` with nothing after it, which YAML reads as null: no entries.
            Ok(Vec::new())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
            while let Some(v) = seq.next_element()? {
                out.push(v);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_any(OneOrMany(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Cfg {
        #[serde(default, deserialize_with = "one_or_many")]
        paths: Vec<PathBuf>,
    }

    fn parse(json: &str) -> Result<Cfg, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn takes_a_string_or_a_list() {
        assert_eq!(parse(r#"{"paths": "/etc/c"}"#).unwrap().paths, [PathBuf::from("/etc/c")]);
        assert_eq!(parse(r#"{"paths": ["/a", "b"]}"#).unwrap().paths, [PathBuf::from("/a"), PathBuf::from("b")]);
        assert_eq!(parse(r#"{"paths": []}"#).unwrap().paths, Vec::<PathBuf>::new());
        assert_eq!(parse(r#"{"paths": null}"#).unwrap().paths, Vec::<PathBuf>::new());
        assert_eq!(parse(r#"{}"#).unwrap().paths, Vec::<PathBuf>::new());
        let err = parse(r#"{"paths": 3}"#).unwrap_err();
        assert!(err.contains("a string or a list of strings"), "{err}");
        let err = parse(r#"{"paths": {"a": 1}}"#).unwrap_err();
        assert!(err.contains("a string or a list of strings"), "{err}");
    }
}
