//! The PutLogEvents request body, written straight from an [`EventBatch`]: the same bytes the SDK's
//! serializer writes for the same call (awsJson 1.1, fields in the model's order, no whitespace), without
//! one `String` per event and the byte-at-a-time escaping scan. Pure.
//!
//! [`crate::sink::logs`] hands the SDK this body in place of its own only after checking, on a sample
//! holding every character class the two writers treat differently, that the SDK writes the same bytes.

use crate::sink::batch::EventBatch;

/// `{"logGroupName":…,"logStreamName":…,"logEvents":[{"timestamp":…,"message":…},…]}`.
pub fn put_log_events(group: &str, stream: &str, batch: &EventBatch) -> Vec<u8> {
    // Each event adds `{"timestamp":`, 13 digits, `,"message":`, two quotes, `},`: 41 bytes.
    let mut out = Vec::with_capacity(
        64 + group.len() + stream.len() + batch.message_bytes() + 48 * batch.len(),
    );
    out.extend_from_slice(b"{\"logGroupName\":");
    string(&mut out, group);
    out.extend_from_slice(b",\"logStreamName\":");
    string(&mut out, stream);
    out.extend_from_slice(b",\"logEvents\":[");
    // `{"timestamp":…,"message":`, written again only when the timestamp changes (lines read together
    // share theirs).
    let mut head = Vec::with_capacity(48);
    let mut head_of = None;
    for (i, (timestamp_ms, message)) in batch.iter().enumerate() {
        if head_of != Some(timestamp_ms) {
            head_of = Some(timestamp_ms);
            head.clear();
            head.extend_from_slice(b"{\"timestamp\":");
            integer(&mut head, timestamp_ms);
            head.extend_from_slice(b",\"message\":");
        }
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&head);
        string(&mut out, message);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    out
}

/// `s` as a JSON string: `"` and `\` escaped, control characters as `\b \f \n \r \t` or `\u00xx`, all
/// else (non-ASCII included) as is.
fn string(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Clean blocks are copied in runs; a block holding a byte to escape is written byte by byte.
    let (blocks, tail) = bytes.as_chunks::<BLOCK>();
    let mut copied = 0;
    for (i, block) in blocks.iter().enumerate() {
        if any_special(block) {
            out.extend_from_slice(&bytes[copied..i * BLOCK]);
            block.iter().for_each(|&b| byte(out, b));
            copied = (i + 1) * BLOCK;
        }
    }
    if tail.iter().any(|&b| special(b)) {
        out.extend_from_slice(&bytes[copied..blocks.len() * BLOCK]);
        tail.iter().for_each(|&b| byte(out, b));
    } else {
        out.extend_from_slice(&bytes[copied..]);
    }
    out.push(b'"');
}

/// Bytes tested at a time: one SSE2 register once the compiler vectorizes [`any_special`].
const BLOCK: usize = 16;

/// Whether `block` holds a byte to escape; no early exit, so the compiler tests all bytes at once.
fn any_special(block: &[u8; BLOCK]) -> bool {
    block.iter().fold(0u8, |any, &b| any | u8::from(special(b))) != 0
}

/// Whether JSON needs `b` escaped: a control character, `"` or `\`.
fn special(b: u8) -> bool {
    (b < 0x20) | (b == b'"') | (b == b'\\')
}

fn byte(out: &mut Vec<u8>, b: u8) {
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0C => out.extend_from_slice(b"\\f"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        0..=0x1F => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xF)]);
        }
        _ => out.push(b),
    }
}

/// `n` in decimal.
fn integer(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_string(s: &str) -> String {
        let mut out = Vec::new();
        string(&mut out, s);
        String::from_utf8(out).expect("UTF-8 in, UTF-8 out")
    }

    #[test]
    fn escapes_what_json_requires_and_nothing_else() {
        assert_eq!(json_string(""), r#""""#);
        assert_eq!(json_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(
            json_string("\u{8}\u{c}\n\r\t\u{0}\u{1f}\u{7f}"),
            "\"\\b\\f\\n\\r\\t\\u0000\\u001f\u{7f}\""
        );
        assert_eq!(json_string("café 🔑 \u{2028}"), "\"café 🔑 \u{2028}\"");
    }

    #[test]
    fn the_block_test_agrees_with_a_byte_test() {
        let slow = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
        // Every byte value at every position of a clean block, then random blocks.
        for at in 0..BLOCK {
            for b in 0..=255u8 {
                let mut block = *b"abcdefghijklmnop";
                block[at] = b;
                assert_eq!(any_special(&block), slow(b), "{block:?}");
            }
        }
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..100_000 {
            let block: [u8; BLOCK] = std::array::from_fn(|_| rng.u8(..));
            assert_eq!(
                any_special(&block),
                block.iter().any(|&b| slow(b)),
                "{block:?}"
            );
        }
    }

    #[test]
    fn any_string_round_trips_through_a_json_parser() {
        let mut rng = fastrand::Rng::with_seed(11);
        let alphabet = [
            'a', ' ', '"', '\\', '\n', '\u{1}', '\u{1f}', '\u{7f}', 'é', '🔑', '\u{fffd}',
        ];
        for _ in 0..2000 {
            let s: String = (0..rng.usize(0..80))
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect();
            let back: String = serde_json::from_str(&json_string(&s)).expect("valid JSON");
            assert_eq!(back, s);
        }
    }

    proptest::proptest! {
        /// Any batch, any text: the body parses as JSON and holds the group, stream and events as given.
        #[test]
        fn any_batch_parses_back(
            group in ".{0,20}",
            stream in ".{0,20}",
            events in proptest::collection::vec((proptest::num::i64::ANY, ".{0,80}"), 0..20),
        ) {
            let mut batch = EventBatch::new();
            for (timestamp_ms, message) in &events {
                batch.push(*timestamp_ms, message);
            }
            let body: serde_json::Value =
                serde_json::from_slice(&put_log_events(&group, &stream, &batch)).expect("valid JSON");
            proptest::prop_assert_eq!(&body["logGroupName"], group.as_str());
            proptest::prop_assert_eq!(&body["logStreamName"], stream.as_str());
            let back: Vec<(i64, String)> = body["logEvents"]
                .as_array()
                .expect("an array")
                .iter()
                .map(|e| {
                    let ts = e["timestamp"].as_i64().expect("an integer");
                    (ts, e["message"].as_str().expect("a string").to_owned())
                })
                .collect();
            proptest::prop_assert_eq!(back, events);
        }
    }

    #[test]
    fn integers_in_decimal() {
        for n in [0, 7, -7, 1_700_000_000_123, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            integer(&mut out, n);
            assert_eq!(String::from_utf8(out).expect("ASCII"), n.to_string());
        }
    }

    #[test]
    fn a_body_holds_the_batch_in_order() {
        let mut batch = EventBatch::new();
        batch.push(1_700_000_000_000, "Failed password for root");
        batch.push(1_700_000_000_000, "b");
        batch.push(1_700_000_000_001, "say \"hi\"\tthere");
        let body = put_log_events("secure", "i-0abc", &batch);
        assert_eq!(
            String::from_utf8(body).expect("UTF-8"),
            r#"{"logGroupName":"secure","logStreamName":"i-0abc","logEvents":[{"timestamp":1700000000000,"message":"Failed password for root"},{"timestamp":1700000000000,"message":"b"},{"timestamp":1700000000001,"message":"say \"hi\"\tthere"}]}"#
        );
    }
}
