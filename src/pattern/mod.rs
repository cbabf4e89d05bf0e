//! The CloudWatch Logs filter-pattern language: parser and evaluator, pure and total.
//!
//! Rule IDs (`R-…`) name the rules listed in `docs/filter-patterns.md`, each with its source in AWS's
//! documentation or in CloudWatch's recorded TestMetricFilter answers.
//! A pattern is one of three kinds, chosen by its first non-blank character
//! (R-GEN-3): `{` a JSON pattern, `[` a space-delimited pattern, anything else
//! a term pattern (words, quoted phrases and `%regex%` terms).
//!
//! Nothing here does IO or keeps global state, and no input can make it panic:
//! message text is attacker-controlled (sshd user names end up in it).
//!
//! # Layout
//!
//! - `lex`: the character cursor and quoted-string lexer the parsers share.
//! - `value`: operators, number literals, `*` wildcards.
//! - `cwregex`: CloudWatch's regex dialect, translated to the `regex` crate.
//! - `terms`: term patterns (R-TERM-*).
//! - `delimited`: space-delimited patterns and field splitting (R-SD-*).
//! - `json`: JSON patterns (R-JSON-*).

mod cwregex;
mod delimited;
mod json;
mod lex;
mod terms;
mod value;

pub use delimited::{DelimitedPattern, Field, split_fields};

use crate::pattern::json::JsonPattern;
use crate::pattern::terms::TermsPattern;

/// Longest accepted pattern, in characters (PutMetricFilter's limit on `filterPattern`).
pub const MAX_PATTERN_CHARS: usize = 1024;

/// Most `%regex%` terms in one pattern (R-RX-7).
pub const MAX_REGEXES: usize = 2;

/// A parsed filter pattern, ready to evaluate against log event messages.
#[derive(Debug, Clone)]
pub struct FilterPattern {
    text: String,
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    Terms(TermsPattern),
    Delimited(DelimitedPattern),
    Json(JsonPattern),
}

/// Which of the three pattern languages a pattern is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternKind {
    /// Words, quoted phrases and `%regex%` terms.
    Terms,
    /// `[field, …]`.
    Delimited,
    /// `{ $.selector = value }`.
    Json,
}

/// Why a pattern was rejected; the message is AWS's own text wherever it is known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PatternError {
    message: String,
}

impl PatternError {
    /// The message, as AWS would word it.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn new(message: impl Into<String>) -> PatternError {
        PatternError {
            message: message.into(),
        }
    }

    /// The generic parse failure (TestMetricFilter / PutMetricFilter wording).
    pub(crate) fn generic() -> PatternError {
        PatternError::new("Invalid metric filter pattern")
    }

    /// A character outside every token's alphabet; `term` is AWS's "term" text.
    pub(crate) fn invalid_term(term: &str) -> PatternError {
        PatternError::new(format!("Invalid character(s) in term '{term}'"))
    }

    pub(crate) fn regex_compile() -> PatternError {
        PatternError::new("Failed to compile regular expression.")
    }

    pub(crate) fn too_many_regexes() -> PatternError {
        PatternError::new(
            "Your input has exceeded the maximum of 2 regular expressions per filter pattern.",
        )
    }

    pub(crate) fn duplicate_field(name: &str) -> PatternError {
        PatternError::new(format!("Duplicate field '{name}'"))
    }

    pub(crate) fn json_unclosed() -> PatternError {
        PatternError::new("If a filter pattern starts with '{' it must end with '}'")
    }

    pub(crate) fn json_selector_wildcards() -> PatternError {
        PatternError::new(
            "Your filter pattern has a JSON path selector that exceeds the maximum of 1 wildcard allowed per json selector.",
        )
    }

    pub(crate) fn json_pattern_wildcards() -> PatternError {
        PatternError::new(
            "Your input has exceeded the maximum of 3 JSON wildcard selectors allowed per filter pattern.",
        )
    }

    fn too_long() -> PatternError {
        PatternError::new("Member must have length less than or equal to 1024")
    }
}

/// Ordered extracted values as TestMetricFilter reports them: keys like
/// `"$status"` or `"$7"`, in field order (R-SD-19). Empty for term and JSON
/// patterns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    /// `(key, value)` pairs in field order.
    pub values: Vec<(String, String)>,
}

impl FilterPattern {
    /// Parses `text` the way CloudWatch does, rejecting what it rejects.
    pub fn parse(text: &str) -> Result<FilterPattern, PatternError> {
        if text.chars().count() > MAX_PATTERN_CHARS {
            return Err(PatternError::too_long());
        }
        let trimmed = text.trim_matches(lex::is_pattern_blank);
        let inner = match trimmed.chars().next() {
            Some('{') => Inner::Json(json::parse(trimmed)?),
            Some('[') => Inner::Delimited(delimited::parse(trimmed)?),
            _ => Inner::Terms(terms::parse(trimmed)?),
        };
        Ok(FilterPattern {
            text: text.to_owned(),
            inner,
        })
    }

    /// The pattern text as given to [`FilterPattern::parse`].
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Which language the pattern is written in.
    pub fn kind(&self) -> PatternKind {
        match self.inner {
            Inner::Terms(_) => PatternKind::Terms,
            Inner::Delimited(_) => PatternKind::Delimited,
            Inner::Json(_) => PatternKind::Json,
        }
    }

    /// Whether the event `message` matches. Term and delimited patterns do not allocate.
    pub fn is_match(&self, message: &str) -> bool {
        match &self.inner {
            Inner::Terms(t) => t.is_match(message),
            Inner::Delimited(d) => d.is_match(message),
            Inner::Json(j) => j.is_match(message),
        }
    }

    /// The extracted values for a matching message (`None` = no match).
    /// Term and JSON matches give an empty map, as TestMetricFilter does.
    pub fn extract(&self, message: &str) -> Option<Extracted> {
        match &self.inner {
            Inner::Terms(t) => t.is_match(message).then(Extracted::default),
            Inner::Delimited(d) => d.extract(message).map(|values| Extracted { values }),
            Inner::Json(j) => j.is_match(message).then(Extracted::default),
        }
    }

    /// Whether a metric-value or dimension reference can be resolved by this
    /// pattern: `$name` (a named field of a delimited pattern), `$n` (any
    /// position ≥ 1, delimited) or `$.path` (JSON only) (R-MET-2, R-MET-4).
    pub fn accepts_reference(&self, reference: &str) -> bool {
        match &self.inner {
            Inner::Terms(_) => false,
            Inner::Delimited(d) => d.accepts_reference(reference),
            Inner::Json(_) => json::parse_reference(reference).is_some(),
        }
    }

    /// The value `reference` takes for a matching `message`: the named or
    /// positional field (delimited), or the selected scalar as text (JSON).
    /// `None` when the message does not match or the reference resolves to nothing.
    pub fn reference_value(&self, message: &str, reference: &str) -> Option<String> {
        match &self.inner {
            Inner::Terms(_) => None,
            Inner::Delimited(d) => d.reference_value(message, reference),
            Inner::Json(j) => j.reference_value(message, reference),
        }
    }

    /// Literal strings every matching message contains (a prefilter; may be
    /// empty, never wrong). Terms: the required words and phrases. Delimited:
    /// the text of each `=` string comparison without `*` that is AND-ed at
    /// the top of an entry. JSON: none.
    pub fn required_literals(&self) -> Vec<String> {
        let mut literals = match &self.inner {
            Inner::Terms(t) => t.required_literals(),
            Inner::Delimited(d) => d.required_literals(),
            Inner::Json(_) => Vec::new(),
        };
        // A caller may search the raw bytes of a line it decodes lossily: a
        // U+FFFD in the decoded text need not be in the bytes.
        literals.retain(|l| !l.is_empty() && !l.contains(char::REPLACEMENT_CHARACTER));
        literals
    }

    /// The space-delimited pattern, for the classifier's shared field split.
    pub fn delimited(&self) -> Option<&DelimitedPattern> {
        match &self.inner {
            Inner::Delimited(d) => Some(d),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(p: &str) -> String {
        match FilterPattern::parse(p) {
            Ok(_) => panic!("pattern {p:?} should be rejected"),
            Err(e) => e.message().to_owned(),
        }
    }

    #[test]
    fn kinds() {
        assert_eq!(FilterPattern::parse("").unwrap().kind(), PatternKind::Terms);
        assert_eq!(
            FilterPattern::parse("  [a]").unwrap().kind(),
            PatternKind::Delimited
        );
        assert_eq!(
            FilterPattern::parse(" { $.a = 1 } ").unwrap().kind(),
            PatternKind::Json
        );
    }

    #[test]
    fn recorded_error_texts() {
        assert_eq!(err("ERR*"), "Invalid character(s) in term '*'");
        assert_eq!(err("\"ERROR"), "Invalid character(s) in term '\"ERROR'");
        assert_eq!(err("%hello!%"), "Invalid character(s) in term '%hello!'");
        assert_eq!(err("%^(ERROR|WARN)%"), "Invalid character(s) in term '%^('");
        assert_eq!(err("%café%"), "Invalid character(s) in term '%café'");
        assert_eq!(err("%[abc%"), "Failed to compile regular expression.");
        assert_eq!(
            err("%a% %b% %c%"),
            "Your input has exceeded the maximum of 2 regular expressions per filter pattern."
        );
        assert_eq!(err("[word, word]"), "Duplicate field 'word'");
        assert_eq!(err("[..., status, ...]"), "Duplicate field '...'");
        assert_eq!(
            err("{ $.v > \"Alpha\" }"),
            "Invalid character(s) in term '\"Alpha\"'"
        );
        assert_eq!(
            err("{ $.a = 1"),
            "If a filter pattern starts with '{' it must end with '}'"
        );
        assert_eq!(
            err(&"a".repeat(1025)),
            "Member must have length less than or equal to 1024"
        );
        assert!(FilterPattern::parse(&"a".repeat(1024)).is_ok());
    }

    #[test]
    fn references() {
        let d = FilterPattern::parse("[a, b, ...]").unwrap();
        assert!(d.accepts_reference("$a"));
        assert!(d.accepts_reference("$7"));
        assert!(!d.accepts_reference("$c"));
        assert!(!d.accepts_reference("$0"));
        assert!(!d.accepts_reference("$.a"));
        assert_eq!(d.reference_value("x y z", "$b").as_deref(), Some("y"));
        assert_eq!(d.reference_value("x y z", "$3").as_deref(), Some("z"));
        assert_eq!(d.reference_value("x", "$a"), None);
        let j = FilterPattern::parse("{ $.a = * }").unwrap();
        assert!(j.accepts_reference("$.a.b[0]"));
        assert!(!j.accepts_reference("$a"));
        assert_eq!(
            j.reference_value(r#"{"a":"7","b":2.5}"#, "$.b").as_deref(),
            Some("2.5")
        );
        assert_eq!(j.reference_value(r#"{"b":2.5}"#, "$.b"), None);
        let t = FilterPattern::parse("ERROR").unwrap();
        assert!(!t.accepts_reference("$a"));
    }
}
