//! The character cursor and the quoted-string lexer shared by the three pattern parsers.

use crate::pattern::PatternError;

/// Blanks between tokens of a pattern (not of a message: see `delimited` for that).
pub(crate) fn is_pattern_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// A position in the pattern text; every index it hands out is a char boundary.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(text: &'a str) -> Cursor<'a> {
        Cursor { text, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Moves back to a position this cursor handed out earlier.
    pub(crate) fn reset(&mut self, pos: usize) {
        if self.text.is_char_boundary(pos) {
            self.pos = pos;
        }
    }

    pub(crate) fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or("")
    }

    /// The text between `from` (an earlier position) and here.
    pub(crate) fn since(&self, from: usize) -> &'a str {
        self.text.get(from..self.pos).unwrap_or("")
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    pub(crate) fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    pub(crate) fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    pub(crate) fn eat(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    pub(crate) fn skip_blanks(&mut self) {
        while self.peek().is_some_and(is_pattern_blank) {
            self.pos += 1;
        }
    }

    /// Consumes characters while `f` holds and returns them.
    pub(crate) fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if !f(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        self.since(start)
    }

    /// Lexes a double-quoted string at the cursor (which is on the opening
    /// `"`). `\"` and `\\` are escapes (R-TERM-3); any other backslash is
    /// kept as written. An unterminated quote is AWS's
    /// `Invalid character(s) in term '"…'` (the rest of the pattern).
    pub(crate) fn quoted(&mut self) -> Result<String, PatternError> {
        let start = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None => {
                    let term = self
                        .text
                        .get(start..)
                        .unwrap_or("")
                        .trim_end_matches(is_pattern_blank);
                    return Err(PatternError::invalid_term(term));
                }
                Some('"') => return Ok(out),
                Some('\\') if matches!(self.peek(), Some('"' | '\\')) => {
                    if let Some(c) = self.bump() {
                        out.push(c);
                    }
                }
                Some(c) => out.push(c),
            }
        }
    }
}

/// Word characters of unquoted terms and field names (R-TERM-2).
pub(crate) fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// A single character as AWS's "term" text for an invalid-character error.
pub(crate) fn char_term(c: char) -> PatternError {
    let mut buf = [0u8; 4];
    PatternError::invalid_term(c.encode_utf8(&mut buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_escapes() {
        let mut c = Cursor::new(r#""a\"b\\c\d" rest"#);
        assert_eq!(c.quoted().unwrap(), r#"a"b\c\d"#);
        assert_eq!(c.rest(), " rest");
        let mut c = Cursor::new("\"open  ");
        assert_eq!(
            c.quoted().unwrap_err().message(),
            "Invalid character(s) in term '\"open'"
        );
        let mut c = Cursor::new("\"a\\");
        assert!(c.quoted().is_err());
    }
}
