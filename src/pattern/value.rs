//! Comparison operators, number literals and `*` wildcards shared by the
//! space-delimited and JSON patterns (R-SD-4, R-SD-5, R-SD-14, R-SD-15, R-JSON-2).

use memchr::memmem;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    /// `<`, `<=`, `>`, `>=`: only defined for numbers (R-SD-4).
    pub(crate) fn is_relational(self) -> bool {
        !matches!(self, Op::Eq | Op::Ne)
    }

    pub(crate) fn compare(self, a: f64, b: f64) -> bool {
        match self {
            Op::Eq => a == b,
            Op::Ne => a != b,
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
        }
    }
}

/// Parses `s` if it is a number in the documented grammar: optional sign,
/// digits with an optional fraction (or a bare fraction), optional exponent
/// (`1`, `-1`, `+1000`, `0.5`, `.5`, `1e3`, `10e-3`). Anything else, including
/// blanks, `inf` and `NaN`, is not a number.
pub(crate) fn parse_number(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits_from = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let mut digits = i - digits_from;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let frac_from = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        digits += i - frac_from;
    }
    if digits == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_from = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == exp_from {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    s.parse::<f64>().ok()
}

/// A string literal in which every `*` matches any run of characters
/// (R-SD-14, R-JSON-2); without `*` it is plain equality.
#[derive(Debug, Clone)]
pub(crate) struct Glob {
    text: String,
    /// The pieces between the stars; empty when the text has no star.
    pieces: Vec<memmem::Finder<'static>>,
}

impl Glob {
    pub(crate) fn new(text: String) -> Glob {
        let pieces = if text.contains('*') {
            text.split('*')
                .map(|p| memmem::Finder::new(p.as_bytes()).into_owned())
                .collect()
        } else {
            Vec::new()
        };
        Glob { text, pieces }
    }

    /// The text, when it has no wildcard (so a match contains it verbatim).
    pub(crate) fn literal(&self) -> Option<&str> {
        self.pieces.is_empty().then_some(self.text.as_str())
    }

    pub(crate) fn is_match(&self, v: &str) -> bool {
        let Some((first, rest)) = self.pieces.split_first() else {
            return v == self.text;
        };
        let Some((last, middle)) = rest.split_last() else {
            return v == self.text;
        };
        let (first, last) = (first.needle(), last.needle());
        let v = v.as_bytes();
        if v.len() < first.len() + last.len() || !v.starts_with(first) || !v.ends_with(last) {
            return false;
        }
        let Some(mut hay) = v.get(first.len()..v.len() - last.len()) else {
            return false;
        };
        // Leftmost matching of each middle piece is optimal for `*`-only globs.
        for piece in middle {
            match piece.find(hay) {
                Some(at) => hay = hay.get(at + piece.needle().len()..).unwrap_or_default(),
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        for (s, v) in [
            ("1", 1.0),
            ("-1", -1.0),
            ("+2", 2.0),
            ("1e3", 1000.0),
            ("10e-3", 0.01),
        ] {
            assert_eq!(parse_number(s), Some(v), "{s}");
        }
        for s in [".5", "5.", "1.5E+2", "0404"] {
            assert!(parse_number(s).is_some(), "{s}");
        }
        for s in [
            "", "-", ".", "e3", "1e", "1e+", "inf", "NaN", " 1", "1 ", "0x10", "1.2.3", "--1",
        ] {
            assert_eq!(parse_number(s), None, "{s}");
        }
    }

    #[test]
    fn globs() {
        let g = |p: &str, v: &str| Glob::new(p.to_owned()).is_match(v);
        assert!(g("4*", "404"));
        assert!(!g("4*", "200"));
        assert!(g("*.html*", "GET /index.html HTTP/1.0"));
        assert!(g("4*5", "4105"));
        assert!(g("4*5", "45"));
        assert!(!g("4*5", "4"));
        assert!(!g("a*a", "a"));
        assert!(g("*", ""));
        assert!(g("a**b", "ab"));
        assert!(g("*a*b*", "xxaxxbxx"));
        assert!(!g("*a*b*", "xxbxxaxx"));
        assert!(g("exact", "exact"));
        assert!(!g("exact", "exactly"));
        assert!(g("*é*", "café"));
    }
}
