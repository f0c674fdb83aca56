//! The top-level fields of a webhook body that dispatch reads, borrowed from the text. The
//! other values are checked for syntax and skipped: building a `serde_json::Value` of the
//! whole body showed in the entry point's profile.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, Error as _, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::Field;

#[derive(Default)]
pub struct Head<'a> {
    webhook_type: Option<Field<'a>>,
    webhook_code: Option<Field<'a>>,
    item_id: Option<Field<'a>>,
    pub access_token: bool,
}

impl<'a> Head<'a> {
    pub fn field(&self, name: &str) -> Field<'a> {
        let f = match name {
            "webhook_type" => &self.webhook_type,
            "webhook_code" => &self.webhook_code,
            "item_id" => &self.item_id,
            _ => &None,
        };
        f.clone().unwrap_or(Field::Missing)
    }
}

/// A value as a field: a string's text is read here, so a bad escape is a JSON error.
fn field(raw: &RawValue) -> Result<Field<'_>, serde_json::Error> {
    Ok(match raw.get() {
        "null" => Field::Null,
        r if r.starts_with('"') && !r.contains('\\') => {
            Field::Str(Cow::Borrowed(&r[1..r.len() - 1]))
        }
        r if r.starts_with('"') => Field::Str(Cow::Owned(serde_json::from_str::<String>(r)?)),
        _ => Field::Other,
    })
}

/// An object key, borrowed unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Head<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Head<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Head<'de>, A::Error> {
                let mut head = Head::default();
                // A repeated key: the last one counts, as in jsonb.
                while let Some(Key(key)) = map.next_key()? {
                    let slot = match &*key {
                        "webhook_type" => &mut head.webhook_type,
                        "webhook_code" => &mut head.webhook_code,
                        "item_id" => &mut head.item_id,
                        other => {
                            head.access_token |= other == "access_token";
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    let raw: &'de RawValue = map.next_value()?;
                    *slot = Some(field(raw).map_err(A::Error::custom)?);
                }
                Ok(head)
            }
        }
        d.deserialize_map(V)
    }
}
