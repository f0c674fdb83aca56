//! Plaid's JSON text made storable in Postgres. JSON may carry characters that `jsonb` and
//! `text` refuse: NUL (`\u0000`) and UTF-16 surrogate escapes that do not form a pair. Each
//! one is replaced by U+FFFD (`\ufffd`) so the text becomes `jsonb`; the objects that held
//! one are also kept exactly as Plaid sent them (see `altered_elements`), so nothing is lost.

use std::ops::Range;

/// The escape written in place of a refused character.
pub const REPLACEMENT: &str = "\\ufffd";

/// `raw` with every refused character replaced, and the byte ranges (in `raw`) of the escapes
/// that were replaced; `None` when `raw` needs no change.
pub fn storable(raw: &str) -> Option<(String, Vec<Range<usize>>)> {
    if !raw.contains("\\u") {
        return None; // no escape of a code unit at all: the common case, found by a fast search
    }
    let b = raw.as_bytes();
    let mut out: Option<String> = None;
    let mut refused = Vec::new();
    let mut copied = 0; // bytes of `raw` already in `out`
    let mut in_string = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if !in_string {
            in_string = c == b'"';
            i += 1;
            continue;
        }
        match c {
            b'"' => {
                in_string = false;
                i += 1;
            }
            b'\\' if b.get(i + 1) == Some(&b'u') => {
                let Some(unit) = hex4(b, i + 2) else {
                    i += 2; // malformed: left for the JSON parser to report
                    continue;
                };
                let mut len = 6;
                let refuse = match unit {
                    0 => true,
                    0xD800..=0xDBFF => {
                        // A high surrogate is fine only when a low one follows at once.
                        match (b.get(i + 6..i + 8), hex4(b, i + 8)) {
                            (Some(b"\\u"), Some(0xDC00..=0xDFFF)) => {
                                len = 12;
                                false
                            }
                            _ => true,
                        }
                    }
                    0xDC00..=0xDFFF => true,
                    _ => false,
                };
                if refuse {
                    let o = out.get_or_insert_with(|| String::with_capacity(raw.len()));
                    o.push_str(&raw[copied..i]);
                    o.push_str(REPLACEMENT);
                    copied = i + 6;
                    refused.push(i..i + 6);
                }
                i += len;
            }
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    let mut o = out?;
    o.push_str(&raw[copied..]);
    Some((o, refused))
}

fn hex4(b: &[u8], at: usize) -> Option<u32> {
    let s = std::str::from_utf8(b.get(at..at + 4)?).ok()?;
    u32::from_str_radix(s, 16).ok()
}

/// The elements of the array at top-level key `key` of the JSON object `raw` that contain a
/// refused range: each as (its `id_field` value, its exact text in `raw`).
pub fn altered_elements(
    raw: &str,
    refused: &[Range<usize>],
    key: &str,
    id_field: &str,
) -> Vec<(String, String)> {
    element_spans(raw, key)
        .into_iter()
        .filter(|span| {
            refused
                .iter()
                .any(|r| span.start <= r.start && r.end <= span.end)
        })
        .filter_map(|span| {
            let text = &raw[span];
            // The id is read from the storable form: the raw one may not parse.
            let fixed = storable(text).map(|(t, _)| t);
            let v: serde_json::Value =
                serde_json::from_str(fixed.as_deref().unwrap_or(text)).ok()?;
            Some((v.get(id_field)?.as_str()?.to_string(), text.to_string()))
        })
        .collect()
}

/// Byte spans of the elements of the array at top-level key `key` of the object `raw`.
fn element_spans(raw: &str, key: &str) -> Vec<Range<usize>> {
    let b = raw.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    let mut last_string: Option<Range<usize>> = None; // the last string seen at depth 1
    let mut in_target = false;
    let mut start: Option<usize> = None;
    let mut spans = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c == b'"' {
            let s = i;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            if depth == 1 {
                last_string = Some(s + 1..i - 1);
            }
            if in_target && depth == 2 && start.is_none() {
                start = Some(s);
            }
            continue;
        }
        match c {
            b'{' | b'[' => {
                if in_target && depth == 2 && start.is_none() {
                    start = Some(i);
                }
                if depth == 1 && c == b'[' {
                    in_target = last_string.as_ref().is_some_and(|r| &raw[r.clone()] == key);
                }
                depth += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if in_target && depth == 1 {
                    if let Some(s) = start.take() {
                        spans.push(s..trim_end(b, i));
                    }
                    in_target = false;
                }
            }
            b',' if in_target && depth == 2 => {
                if let Some(s) = start.take() {
                    spans.push(s..trim_end(b, i));
                }
            }
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => {
                if in_target && depth == 2 && start.is_none() {
                    start = Some(i);
                }
            }
        }
        i += 1;
    }
    spans
}

fn trim_end(b: &[u8], mut end: usize) -> usize {
    while end > 0 && b[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    end
}

#[cfg(test)]
#[path = "storable_tests.rs"]
mod unit;
