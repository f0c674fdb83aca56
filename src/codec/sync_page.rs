//! A `/transactions/sync` page read once: its top-level fields, its three lists as the JSON
//! text of each element, and the fields that steer the loop. Transaction objects are not parsed
//! here; marking reads each one once (src/codec/lean.rs), and Postgres reads the rest.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::value::RawValue;

pub struct SyncPage<'a> {
    /// Every top-level field but the three lists, as sent.
    pub fields: BTreeMap<Cow<'a, str>, &'a RawValue>,
    pub added: Vec<&'a RawValue>,
    pub modified: Vec<&'a RawValue>,
    pub removed: Vec<&'a RawValue>,
    pub next_cursor: String,
    pub has_more: bool,
    pub update_status: Option<String>,
}

/// The lists, each element's text borrowed, and the other fields, in one pass over the page.
struct Read<'a> {
    fields: BTreeMap<Cow<'a, str>, &'a RawValue>,
    lists: [Option<Vec<&'a RawValue>>; 3],
}

const LISTS: [&str; 3] = ["added", "modified", "removed"];

impl<'de> serde::Deserialize<'de> for Read<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Read<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a /transactions/sync response object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Read<'de>, M::Error> {
                let mut read = Read {
                    fields: BTreeMap::new(),
                    lists: [None, None, None],
                };
                while let Some(k) = m.next_key::<Cow<'de, str>>()? {
                    match LISTS.iter().position(|l| *l == k) {
                        Some(i) => read.lists[i] = Some(m.next_value()?),
                        None => {
                            read.fields.insert(k, m.next_value()?);
                        }
                    }
                }
                Ok(read)
            }
        }
        d.deserialize_map(Visit)
    }
}

impl<'a> SyncPage<'a> {
    /// Reads a page; an error names the field that is missing or of the wrong type.
    pub fn parse(body: &'a str) -> Result<Self, String> {
        let Read { fields, lists } = serde_json::from_str(body).map_err(|e| e.to_string())?;
        let [added, modified, removed] = lists;
        let missing = |key: &str| format!("missing field `{key}`");
        let field = |key: &str| fields.get(key).map(|v| v.get()).ok_or_else(|| missing(key));
        let next_cursor = serde_json::from_str(field("next_cursor")?)
            .map_err(|e| format!("`next_cursor`: {e}"))?;
        let has_more =
            serde_json::from_str(field("has_more")?).map_err(|e| format!("`has_more`: {e}"))?;
        let update_status = match fields.get("transactions_update_status") {
            None => None,
            Some(v) => serde_json::from_str(v.get())
                .map_err(|e| format!("`transactions_update_status`: {e}"))?,
        };
        Ok(SyncPage {
            added: added.ok_or_else(|| missing("added"))?,
            modified: modified.ok_or_else(|| missing("modified"))?,
            removed: removed.ok_or_else(|| missing("removed"))?,
            fields,
            next_cursor,
            has_more,
            update_status,
        })
    }
}

/// An object's fields in order, keys and values borrowed from `text`; None when it is not an
/// object or a key is written with escapes.
pub fn object_fields(text: &str) -> Option<Vec<(&str, &RawValue)>> {
    struct Fields<'a>(Vec<(&'a str, &'a RawValue)>);
    impl<'de> serde::Deserialize<'de> for Fields<'de> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Fields<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<M: serde::de::MapAccess<'de>>(
                    self,
                    mut m: M,
                ) -> Result<Fields<'de>, M::Error> {
                    let mut out = Vec::with_capacity(m.size_hint().unwrap_or(32));
                    while let Some(k) = m.next_key::<&'de str>()? {
                        out.push((k, m.next_value::<&'de RawValue>()?));
                    }
                    Ok(Fields(out))
                }
            }
            d.deserialize_map(Visit)
        }
    }
    serde_json::from_str::<Fields>(text).ok().map(|f| f.0)
}
