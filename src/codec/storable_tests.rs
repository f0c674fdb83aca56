use super::*;

#[test]
fn plain_text_needs_no_change() {
    assert!(storable(r#"{"name":"Caf\u00e9 \ud83d\ude00 \" \\u0000"}"#).is_none());
}

#[test]
fn nul_and_lone_surrogates_are_replaced() {
    let raw = r#"{"a":"x\u0000y","b":"\ud800z","c":"\udc00","d":"\ud83d\ude00"}"#;
    let (fixed, refused) = storable(raw).unwrap();
    assert_eq!(
        fixed,
        r#"{"a":"x\ufffdy","b":"\ufffdz","c":"\ufffd","d":"\ud83d\ude00"}"#
    );
    assert_eq!(refused.len(), 3);
    for r in &refused {
        assert!(raw[r.clone()].starts_with("\\u"));
    }
    let v: serde_json::Value = serde_json::from_str(&fixed).unwrap();
    assert_eq!(v["a"], "x\u{fffd}y");
}

#[test]
fn escapes_outside_strings_and_escaped_backslashes_are_left() {
    // "\\u0000" is a backslash followed by the text u0000: nothing refused.
    assert!(storable(r#"["\\u0000", 1e2]"#).is_none());
}

#[test]
fn altered_elements_are_found_by_id() {
    let raw = r#"{"added": [ {"transaction_id": "t1", "name": "ok", "n": [1, {"x": 2}]},
                  {"transaction_id":"t2","name":"a\u0000b"} ],
                  "modified": [{"transaction_id":"t3","name":"\ud800"}], "removed": [],
                  "next_cursor": "c\u0000"}"#;
    let (_, refused) = storable(raw).unwrap();
    let added = altered_elements(raw, &refused, "added", "transaction_id");
    assert_eq!(
        added,
        vec![(
            "t2".to_string(),
            r#"{"transaction_id":"t2","name":"a\u0000b"}"#.to_string()
        )]
    );
    let modified = altered_elements(raw, &refused, "modified", "transaction_id");
    assert_eq!(modified[0].0, "t3");
    assert!(altered_elements(raw, &refused, "removed", "transaction_id").is_empty());
    assert_eq!(
        element_spans(raw, "added")
            .iter()
            .map(|s| &raw[s.clone()])
            .next(),
        Some(r#"{"transaction_id": "t1", "name": "ok", "n": [1, {"x": 2}]}"#)
    );
}
