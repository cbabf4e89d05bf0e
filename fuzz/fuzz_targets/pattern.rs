//! Fuzz target: the filter-pattern parser and every evaluator on arbitrary bytes.
//!
//! The input is split at the first NUL: the part before is the pattern, the
//! part after the message (both decoded lossily). Any panic is a bug: message
//! text is attacker-controlled. The classifier's fast path must also agree
//! with the plain evaluator.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sshwatch::pattern::{FilterPattern, split_fields};

fuzz_target!(|data: &[u8]| {
    let (pattern, message) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let pattern = String::from_utf8_lossy(pattern);
    let message = String::from_utf8_lossy(message);
    let Ok(p) = FilterPattern::parse(&pattern) else {
        return;
    };
    let matched = p.is_match(&message);
    assert_eq!(p.extract(&message).is_some(), matched);
    if matched {
        for lit in p.required_literals() {
            assert!(message.contains(&lit), "literal {lit:?} missing");
        }
    }
    for r in ["$1", "$2", "$a", "$.a", "$.a[0]"] {
        if p.accepts_reference(r) {
            let _ = p.reference_value(&message, r);
        }
    }
    if let Some(d) = p.delimited() {
        let mut fields = Vec::new();
        split_fields(&message, &mut fields, usize::MAX);
        assert_eq!(d.matches_fields(&message, &fields), matched);
        if let Some(k) = d.leading_fields_needed() {
            split_fields(&message, &mut fields, k);
            assert_eq!(d.matches_fields(&message, &fields), matched);
        }
    }
});
