//! Term patterns: words, quoted phrases and `%regex%` terms with `?`/`-`
//! prefixes, matched as case-sensitive substrings anywhere in the message.

use memchr::memmem;
use regex::Regex;

use crate::pattern::PatternError;
use crate::pattern::cwregex;
use crate::pattern::lex::{Cursor, char_term, is_pattern_blank, is_word_char};

/// A parsed term pattern, split by prefix (R-TERM-8).
#[derive(Debug, Clone)]
pub(crate) struct TermsPattern {
    required: Vec<Term>,
    excluded: Vec<Term>,
    optional: Vec<Term>,
}

#[derive(Debug, Clone)]
enum Term {
    /// A word or phrase: present when it occurs anywhere (R-TERM-5).
    Literal {
        text: String,
        /// Boxed: a finder is large and most patterns have few terms.
        finder: Box<memmem::Finder<'static>>,
    },
    /// `%regex%`: an unanchored search (R-RX-4).
    Regex(Regex),
}

impl Term {
    fn literal(text: String) -> Term {
        let finder = Box::new(memmem::Finder::new(text.as_bytes()).into_owned());
        Term::Literal { text, finder }
    }

    fn is_present(&self, message: &str) -> bool {
        match self {
            Term::Literal { finder, .. } => finder.find(message.as_bytes()).is_some(),
            Term::Regex(re) => re.is_match(message),
        }
    }
}

/// Parses a term pattern (the caller has trimmed surrounding blanks).
///
/// Terms are separated by blanks; a `?` or `-` prefix is only recognised at
/// the start of a term, so `hello-world` is rejected rather than read as
/// `hello -world` (a choice, see `docs/filter-patterns.md`). A quoted or regex term may be followed directly
/// by another term.
pub(crate) fn parse(text: &str) -> Result<TermsPattern, PatternError> {
    let mut pattern = TermsPattern {
        required: Vec::new(),
        excluded: Vec::new(),
        optional: Vec::new(),
    };
    let mut regexes = 0usize;
    let mut cur = Cursor::new(text);
    let mut after_blank = true;
    while let Some(c) = cur.peek() {
        if is_pattern_blank(c) {
            cur.bump();
            after_blank = true;
            continue;
        }
        let list = match c {
            '?' | '-' => {
                if !after_blank {
                    return Err(char_term(c));
                }
                cur.bump();
                match cur.peek() {
                    Some(n) if n == '"' || n == '%' || is_word_char(n) => {}
                    Some(n) if !is_pattern_blank(n) => return Err(char_term(n)),
                    _ => return Err(char_term(c)),
                }
                if c == '?' {
                    &mut pattern.optional
                } else {
                    &mut pattern.excluded
                }
            }
            _ => &mut pattern.required,
        };
        let term = match cur.peek() {
            Some('"') => Term::literal(cur.quoted()?),
            Some('%') => Term::Regex(cwregex::regex_term(&mut cur, &mut regexes)?.0),
            Some(w) if is_word_char(w) => Term::literal(cur.take_while(is_word_char).to_owned()),
            Some(other) => return Err(char_term(other)),
            None => return Err(PatternError::generic()),
        };
        list.push(term);
        after_blank = false;
    }
    Ok(pattern)
}

impl TermsPattern {
    /// R-TERM-8: with any plain or `-` term, the `?` terms are ignored and the
    /// event needs every plain term and none of the `-` terms; otherwise one
    /// `?` term must be present. No terms at all match everything (R-GEN-4).
    pub(crate) fn is_match(&self, message: &str) -> bool {
        if self.required.is_empty() && self.excluded.is_empty() {
            return self.optional.is_empty() || self.optional.iter().any(|t| t.is_present(message));
        }
        self.required.iter().all(|t| t.is_present(message))
            && !self.excluded.iter().any(|t| t.is_present(message))
    }

    pub(crate) fn required_literals(&self) -> Vec<String> {
        self.required
            .iter()
            .filter_map(|t| match t {
                Term::Literal { text, .. } if !text.is_empty() => Some(text.clone()),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        parse(p).unwrap_or_else(|e| panic!("{p}: {e}")).is_match(s)
    }

    fn err(p: &str) -> String {
        parse(p).map(|_| ()).unwrap_err().message().to_owned()
    }

    #[test]
    fn prefixes() {
        assert!(m("?ERROR ?ARGUMENTS REQUEST", "[ERROR] REQUEST"));
        assert!(!m("?ERROR ?ARGUMENTS REQUEST", "ERROR ARGUMENTS"));
        assert!(m("?ERROR ?ARGUMENTS -REQUEST", "plain"));
        assert!(m("-ERROR", "plain"));
        assert!(!m("-ERROR", "TERROR"));
        assert!(m("", "anything"));
        assert!(m("\" \"", " "));
        assert!(!m("\" \"", "plain"));
        assert!(m("\"say \\\"hi\\\"\"", "say \"hi\""));
        assert!(m("\"a\"b", "ab"));
        assert!(m("%ERROR|WARN% x", "xWARN"));
    }

    #[test]
    fn rejections() {
        assert_eq!(err("ERR*"), "Invalid character(s) in term '*'");
        assert_eq!(err("?Status: timeout"), "Invalid character(s) in term ':'");
        assert_eq!(err("Error, retrying"), "Invalid character(s) in term ','");
        assert_eq!(err("hello-world"), "Invalid character(s) in term '-'");
        assert_eq!(err("a -"), "Invalid character(s) in term '-'");
        assert_eq!(err("-*x"), "Invalid character(s) in term '*'");
        assert_eq!(err("héllo"), "Invalid character(s) in term 'é'");
        assert_eq!(
            err("?\"open ended"),
            "Invalid character(s) in term '\"open ended'"
        );
        assert_eq!(err("%abc"), "Invalid character(s) in term '%abc'");
    }

    #[test]
    fn literals() {
        let p = parse("ERROR -x ?y \"two words\" %re% \"\"").unwrap();
        assert_eq!(
            p.required_literals(),
            vec!["ERROR".to_owned(), "two words".to_owned()]
        );
    }
}
