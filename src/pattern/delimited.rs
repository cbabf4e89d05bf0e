//! Space-delimited patterns `[a, b = x, ...]`: the pattern grammar,
//! splitting a message into fields (R-SD-6…R-SD-10), aligning entries with
//! fields (R-SD-11…R-SD-13), conditions (R-SD-14…R-SD-18) and extracted
//! values (R-SD-19).

use memchr::memchr2;
use regex::Regex;

use crate::pattern::lex::{Cursor, char_term, is_pattern_blank, is_word_char};
use crate::pattern::value::{Glob, Op, parse_number};
use crate::pattern::{PatternError, cwregex};

/// Parentheses nested deeper than this are refused (keeps recursion bounded).
const MAX_NESTING: usize = 64;

/// One field of a message: byte ranges into the message.
///
/// `start..end` is the value (a `"…"` or `[…]` group without its delimiters);
/// `raw_start..raw_end` includes the delimiters. All four are char boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Start of the value.
    pub start: usize,
    /// End of the value (exclusive).
    pub end: usize,
    /// Start of the field as written (at the opening `"`/`[` of a group).
    pub raw_start: usize,
    /// End of the field as written (after the closing `"`/`]` of a group).
    pub raw_end: usize,
}

impl Field {
    /// The field's value in `message` (the message it was split from).
    pub fn value<'m>(&self, message: &'m str) -> &'m str {
        message.get(self.start..self.end).unwrap_or("")
    }
}

fn is_separator(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Splits `message` into fields per R-SD-6…R-SD-10 and stores them in `out`
/// (cleared first), stopping after `max_fields` (`usize::MAX` = all).
///
/// Fields are separated by runs of blanks and tabs; a field that starts
/// with `"` (or `[`) runs to the next `"` (or `]`) when that one is followed
/// by a separator or the end, a backslash skipping the next character inside
/// (R-SD-7; documented as a choice in `docs/filter-patterns.md`); otherwise the quote or bracket is an ordinary
/// character (R-SD-8, R-SD-9). Splitting goes left to right, so the first
/// `k` fields never depend on `max_fields ≥ k`. Runs in linear time and does
/// not allocate once `out` has capacity.
pub fn split_fields(message: &str, out: &mut Vec<Field>, max_fields: usize) {
    out.clear();
    out.extend(FieldIter::new(message).take(max_fields));
}

/// The fields of a message, lazily (see [`split_fields`]).
#[derive(Debug, Clone)]
pub(crate) struct FieldIter<'m> {
    bytes: &'m [u8],
    pos: usize,
    /// The next unescaped `"` after an earlier field start (`bytes.len()` = none);
    /// still right for any later start before it. 0 = not searched yet.
    quote_close: usize,
    /// Same for `]`.
    bracket_close: usize,
}

impl<'m> FieldIter<'m> {
    pub(crate) fn new(message: &'m str) -> FieldIter<'m> {
        FieldIter {
            bytes: message.as_bytes(),
            pos: 0,
            quote_close: 0,
            bracket_close: 0,
        }
    }

    /// The first unescaped `close` at or after `from`, or the length.
    fn scan(bytes: &[u8], mut from: usize, close: u8) -> usize {
        while let Some(rest) = bytes.get(from..) {
            match memchr2(close, b'\\', rest) {
                None => break,
                Some(k) if rest.get(k) == Some(&close) => return from + k,
                // A backslash: skip it and the byte after it.
                Some(k) => from += k + 2,
            }
        }
        bytes.len()
    }
}

impl Iterator for FieldIter<'_> {
    type Item = Field;

    fn next(&mut self) -> Option<Field> {
        let bytes = self.bytes;
        let len = bytes.len();
        let mut i = self.pos;
        while bytes.get(i).copied().is_some_and(is_separator) {
            i += 1;
        }
        let first = *bytes.get(i)?;
        if first == b'"' || first == b'[' {
            let (close, cache) = if first == b'"' {
                (b'"', &mut self.quote_close)
            } else {
                (b']', &mut self.bracket_close)
            };
            // A search from an earlier start that ended beyond `i` saw no
            // closer between here and there, and the backslash pairing from
            // `i + 1` on is the same, so its answer still holds.
            let q = if *cache != 0 && i < *cache {
                *cache
            } else {
                let q = Self::scan(bytes, i + 1, close);
                *cache = q;
                q
            };
            if q < len && bytes.get(q + 1).is_none_or(|&b| is_separator(b)) {
                self.pos = q + 1;
                return Some(Field {
                    start: i + 1,
                    end: q,
                    raw_start: i,
                    raw_end: q + 1,
                });
            }
        }
        let end = bytes
            .get(i..)
            .and_then(|rest| memchr2(b' ', b'\t', rest))
            .map_or(len, |k| i + k);
        self.pos = end;
        Some(Field {
            start: i,
            end,
            raw_start: i,
            raw_end: end,
        })
    }
}

/// A parsed `[…]` pattern.
#[derive(Debug, Clone)]
pub struct DelimitedPattern {
    /// Entries before the ellipsis (all of them when there is none).
    before: Vec<Entry>,
    /// Entries after the ellipsis.
    after: Vec<Entry>,
    ellipsis: bool,
}

#[derive(Debug, Clone)]
struct Entry {
    /// `$name`, or `None` for an unnamed (empty) entry.
    key: Option<String>,
    cond: Option<Cond>,
}

impl Entry {
    fn accepts(&self, value: &str) -> bool {
        self.cond.as_ref().is_none_or(|c| c.eval(value))
    }
}

/// A condition on one field's value (R-SD-3).
#[derive(Debug, Clone)]
enum Cond {
    Cmp(Op, Val),
    All(Vec<Cond>),
    Any(Vec<Cond>),
}

#[derive(Debug, Clone)]
enum Val {
    /// A string (bare or quoted) with `*` wildcards.
    Str(Glob),
    /// An unquoted number literal.
    Num(f64),
    Regex(Regex),
}

impl Cond {
    fn eval(&self, v: &str) -> bool {
        match self {
            Cond::All(cs) => cs.iter().all(|c| c.eval(v)),
            Cond::Any(cs) => cs.iter().any(|c| c.eval(v)),
            Cond::Cmp(op, val) => match val {
                // R-SD-14; relational string comparisons are refused by the parser.
                Val::Str(g) => match op {
                    Op::Eq => g.is_match(v),
                    Op::Ne => !g.is_match(v),
                    _ => false,
                },
                // R-SD-15: a field that is not a number satisfies only `!=`.
                Val::Num(n) => match parse_number(v) {
                    Some(x) => op.compare(x, *n),
                    None => *op == Op::Ne,
                },
                // R-SD-17, R-RX-5.
                Val::Regex(re) => match op {
                    Op::Eq => re.is_match(v),
                    Op::Ne => !re.is_match(v),
                    _ => false,
                },
            },
        }
    }

    /// Pushes `(field, literal)` for a condition that is exactly `= literal`
    /// (or an AND of those); `None` for anything else.
    fn exact_literals(&self, field: usize, out: &mut Vec<(usize, String)>) -> Option<()> {
        match self {
            Cond::All(cs) => cs.iter().try_for_each(|c| c.exact_literals(field, out)),
            Cond::Cmp(Op::Eq, Val::Str(g)) => {
                let lit = g.literal()?;
                lit.is_ascii().then(|| out.push((field, lit.to_string())))
            }
            _ => None,
        }
    }

    /// Literals every accepted value equals (top-level AND of `=` strings).
    fn literals(&self, out: &mut Vec<String>) {
        match self {
            Cond::All(cs) => cs.iter().for_each(|c| c.literals(out)),
            Cond::Cmp(Op::Eq, Val::Str(g)) => {
                if let Some(l) = g.literal().filter(|l| !l.is_empty()) {
                    out.push(l.to_owned());
                }
            }
            _ => {}
        }
    }
}

/// The character of a pattern that cannot start any token here: a syntax
/// character gives the generic message, anything else AWS's invalid-term one.
fn unexpected(c: char) -> PatternError {
    if c.is_ascii_alphanumeric() || "[]{}(),\"%=!<>&|.*_-".contains(c) {
        PatternError::generic()
    } else {
        char_term(c)
    }
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

/// Field names: a letter or `_`, then letters, digits, `_` or `-` (R-SD-2).
fn is_name_char(c: char) -> bool {
    is_word_char(c) || c == '-'
}

/// Characters of an unquoted value (`*.html*`, `4*`, `-1`, `sshd-session*`).
fn is_bare_char(c: char) -> bool {
    c.is_ascii_graphic()
        && !matches!(
            c,
            ',' | '[' | ']' | '(' | ')' | '"' | '=' | '!' | '<' | '>' | '&' | '|' | '{' | '}'
        )
}

/// Parses a `[…]` pattern (the caller has trimmed surrounding blanks).
pub(crate) fn parse(text: &str) -> Result<DelimitedPattern, PatternError> {
    let mut p = DelimitedPattern {
        before: Vec::new(),
        after: Vec::new(),
        ellipsis: false,
    };
    let mut names: Vec<String> = Vec::new();
    let mut regexes = 0usize;
    let mut cur = Cursor::new(text);
    cur.skip_blanks();
    if !cur.eat("[") {
        return Err(PatternError::generic());
    }
    cur.skip_blanks();
    if !cur.eat("]") {
        loop {
            cur.skip_blanks();
            match parse_entry(&mut cur, &mut regexes)? {
                None => {
                    if p.ellipsis {
                        return Err(PatternError::duplicate_field("..."));
                    }
                    p.ellipsis = true;
                }
                Some((name, entry)) => {
                    if let Some(name) = name {
                        if names.contains(&name) {
                            return Err(PatternError::duplicate_field(&name));
                        }
                        names.push(name);
                    }
                    if p.ellipsis {
                        &mut p.after
                    } else {
                        &mut p.before
                    }
                    .push(entry);
                }
            }
            cur.skip_blanks();
            match cur.bump() {
                Some(',') => {}
                Some(']') => break,
                Some(c) => return Err(unexpected(c)),
                None => return Err(PatternError::generic()),
            }
        }
    }
    cur.skip_blanks();
    match cur.peek() {
        None => Ok(p),
        Some(c) => Err(unexpected(c)),
    }
}

/// One entry; `None` for the ellipsis, else the entry and its name.
fn parse_entry(
    cur: &mut Cursor<'_>,
    regexes: &mut usize,
) -> Result<Option<(Option<String>, Entry)>, PatternError> {
    match cur.peek() {
        None => Err(PatternError::generic()),
        // An empty entry: an unnamed field (R-SD-2).
        Some(',' | ']') => Ok(Some((
            None,
            Entry {
                key: None,
                cond: None,
            },
        ))),
        Some('.') => {
            // Exactly `...`; `...fields` is not an ellipsis.
            if cur.eat("...")
                && cur
                    .peek()
                    .is_none_or(|c| is_pattern_blank(c) || c == ',' || c == ']')
            {
                Ok(None)
            } else {
                Err(PatternError::generic())
            }
        }
        Some(c) if c == '(' || is_name_start(c) => {
            let start = cur.pos();
            let mut name = None;
            if c != '(' {
                let n = cur.take_while(is_name_char).to_owned();
                cur.skip_blanks();
                if matches!(cur.peek(), Some(',' | ']')) {
                    let key = format!("${n}");
                    return Ok(Some((
                        Some(n),
                        Entry {
                            key: Some(key),
                            cond: None,
                        },
                    )));
                }
                cur.reset(start);
            }
            let cond = parse_or(cur, &mut name, regexes, 0)?;
            let name = name.ok_or_else(PatternError::generic)?;
            let key = format!("${name}");
            Ok(Some((
                Some(name),
                Entry {
                    key: Some(key),
                    cond: Some(cond),
                },
            )))
        }
        Some(c) => Err(unexpected(c)),
    }
}

fn parse_or(
    cur: &mut Cursor<'_>,
    name: &mut Option<String>,
    regexes: &mut usize,
    depth: usize,
) -> Result<Cond, PatternError> {
    let mut alts = vec![parse_and(cur, name, regexes, depth)?];
    loop {
        cur.skip_blanks();
        if !cur.eat("||") {
            break;
        }
        alts.push(parse_and(cur, name, regexes, depth)?);
    }
    Ok(if alts.len() == 1 {
        alts.remove(0)
    } else {
        Cond::Any(alts)
    })
}

fn parse_and(
    cur: &mut Cursor<'_>,
    name: &mut Option<String>,
    regexes: &mut usize,
    depth: usize,
) -> Result<Cond, PatternError> {
    let mut all = vec![parse_primary(cur, name, regexes, depth)?];
    loop {
        cur.skip_blanks();
        if !cur.eat("&&") {
            break;
        }
        all.push(parse_primary(cur, name, regexes, depth)?);
    }
    Ok(if all.len() == 1 {
        all.remove(0)
    } else {
        Cond::All(all)
    })
}

fn parse_primary(
    cur: &mut Cursor<'_>,
    name: &mut Option<String>,
    regexes: &mut usize,
    depth: usize,
) -> Result<Cond, PatternError> {
    cur.skip_blanks();
    if cur.eat("(") {
        if depth >= MAX_NESTING {
            return Err(PatternError::generic());
        }
        let c = parse_or(cur, name, regexes, depth + 1)?;
        cur.skip_blanks();
        return if cur.eat(")") {
            Ok(c)
        } else {
            Err(PatternError::generic())
        };
    }
    let field = match cur.peek() {
        Some(c) if is_name_start(c) => cur.take_while(is_name_char),
        Some(c) => return Err(unexpected(c)),
        None => return Err(PatternError::generic()),
    };
    // Every comparison in an entry names the entry's own field (R-SD-3).
    match name {
        None => *name = Some(field.to_owned()),
        Some(n) if n != field => return Err(PatternError::generic()),
        Some(_) => {}
    }
    cur.skip_blanks();
    let op = parse_op(cur)?;
    cur.skip_blanks();
    let val = match cur.peek() {
        Some('"') => {
            let start = cur.pos();
            let s = cur.quoted()?;
            if op.is_relational() {
                return Err(PatternError::invalid_term(cur.since(start)));
            }
            // A quoted number is a string comparison (R-SD-16).
            Val::Str(Glob::new(s))
        }
        Some('%') => {
            let (re, raw) = cwregex::regex_term(cur, regexes)?;
            if op.is_relational() {
                return Err(PatternError::invalid_term(raw));
            }
            Val::Regex(re)
        }
        _ => {
            let bare = cur.take_while(is_bare_char);
            if bare.is_empty() {
                return Err(cur.peek().map_or_else(PatternError::generic, unexpected));
            }
            match parse_number(bare) {
                Some(n) => Val::Num(n),
                None if op.is_relational() => return Err(PatternError::invalid_term(bare)),
                None => Val::Str(Glob::new(bare.to_owned())),
            }
        }
    };
    Ok(Cond::Cmp(op, val))
}

/// `=`, `!=`, `<`, `<=`, `>`, `>=` (R-SD-4); `==` is refused.
pub(crate) fn parse_op(cur: &mut Cursor<'_>) -> Result<Op, PatternError> {
    let op = if cur.eat("!=") {
        Op::Ne
    } else if cur.eat("<=") {
        Op::Le
    } else if cur.eat(">=") {
        Op::Ge
    } else if cur.eat("<") {
        Op::Lt
    } else if cur.eat(">") {
        Op::Gt
    } else if cur.eat("=") {
        if cur.peek() == Some('=') {
            return Err(PatternError::generic());
        }
        Op::Eq
    } else {
        return Err(cur.peek().map_or_else(PatternError::generic, unexpected));
    };
    Ok(op)
}

/// The raw rest of the line from `from`, right-trimmed (R-SD-11; a choice, see `docs/filter-patterns.md`).
fn rest_of_line(message: &str, from: usize) -> &str {
    message
        .get(from..)
        .unwrap_or("")
        .trim_end_matches([' ', '\t'])
}

/// Where a field goes once entries are aligned with `f` fields.
enum Slot<'p> {
    Entry(&'p Entry),
    /// Absorbed by the ellipsis, or every field of `[]`.
    Gap,
}

impl DelimitedPattern {
    /// Number of entries, the ellipsis included.
    pub fn entry_count(&self) -> usize {
        self.before.len() + self.after.len() + usize::from(self.ellipsis)
    }

    /// Whether the pattern has a `...` entry.
    pub fn has_ellipsis(&self) -> bool {
        self.ellipsis
    }

    /// The position of the first entry with a condition, when no ellipsis comes before it: how many
    /// fields the pattern assumes before its first test (`[Mon, day, timestamp, ip, id, status =
    /// Invalid, ...]`: 5).
    pub fn first_condition(&self) -> Option<usize> {
        self.before.iter().position(|e| e.cond.is_some())
    }

    /// How many leading fields decide a match, when that is a fixed number:
    /// a trailing ellipsis after leading entries only (the seed patterns need
    /// their entry count before the `...`), or `[]` (0). `None` when every
    /// field is needed (entries after the ellipsis, or no ellipsis).
    pub fn leading_fields_needed(&self) -> Option<usize> {
        if self.ellipsis && self.after.is_empty() {
            Some(self.before.len())
        } else if !self.ellipsis && self.before.is_empty() {
            Some(0)
        } else {
            None
        }
    }

    /// For a pattern decided by its leading fields whose every condition is
    /// `= literal` (no wildcard, ASCII) or a conjunction of such: the
    /// `(field index, literal)` pairs a message must have. Such a pattern can
    /// be checked on raw bytes: field boundaries and ASCII equality do not
    /// change when invalid UTF-8 is decoded lossily. `None` otherwise.
    pub fn exact_leading_literals(&self) -> Option<Vec<(usize, String)>> {
        self.leading_fields_needed()?;
        let mut out = Vec::new();
        for (i, e) in self.before.iter().enumerate() {
            if let Some(c) = &e.cond {
                c.exact_literals(i, &mut out)?;
            }
        }
        Some(out)
    }

    /// Fewest fields a matching message has (R-SD-11, R-SD-12).
    fn min_fields(&self) -> usize {
        self.before.len() + self.after.len()
    }

    /// Evaluates against a message already split by [`split_fields`] (at
    /// least [`leading_fields_needed`](Self::leading_fields_needed) fields, or
    /// all of them when that is `None`). Gives the same answer as
    /// [`FilterPattern::is_match`](crate::pattern::FilterPattern::is_match);
    /// a list cut short for a pattern that needs every field is detected and
    /// the message is split again.
    pub fn matches_fields(&self, message: &str, fields: &[Field]) -> bool {
        if let Some(k) = self.leading_fields_needed() {
            return fields.len() >= k
                && self
                    .before
                    .iter()
                    .zip(fields)
                    .all(|(e, f)| e.accepts(f.value(message)));
        }
        if !is_complete(message, fields) {
            return self.is_match(message);
        }
        self.check_all(message, fields)
    }

    /// The match, given every field of the message.
    fn check_all(&self, message: &str, fields: &[Field]) -> bool {
        let f = fields.len();
        if f < self.min_fields() {
            return false;
        }
        if self.ellipsis {
            let tail_from = f - self.after.len();
            self.before
                .iter()
                .zip(fields)
                .all(|(e, fl)| e.accepts(fl.value(message)))
                && self
                    .after
                    .iter()
                    .zip(fields.get(tail_from..).unwrap_or_default())
                    .all(|(e, fl)| e.accepts(fl.value(message)))
        } else {
            let Some((last, init)) = self.before.split_last() else {
                return true;
            };
            init.iter()
                .zip(fields)
                .all(|(e, fl)| e.accepts(fl.value(message)))
                && last.accepts(self.last_value(message, fields))
        }
    }

    /// Without an ellipsis the last entry takes the rest of the line (R-SD-11).
    fn last_value<'m>(&self, message: &'m str, fields: &[Field]) -> &'m str {
        let n = self.before.len();
        match fields.get(n.saturating_sub(1)) {
            Some(fl) if fields.len() == n => fl.value(message),
            Some(fl) => rest_of_line(message, fl.raw_start),
            None => "",
        }
    }

    /// Streaming evaluation: splits only as far as needed and never allocates.
    pub(crate) fn is_match(&self, message: &str) -> bool {
        let mut it = FieldIter::new(message);
        if self.ellipsis {
            if self.after.is_empty() {
                for e in &self.before {
                    match it.next() {
                        Some(fl) if e.accepts(fl.value(message)) => {}
                        _ => return false,
                    }
                }
                return true;
            }
            let f = FieldIter::new(message).count();
            if f < self.min_fields() {
                return false;
            }
            let tail_from = f - self.after.len();
            for (j, fl) in it.enumerate() {
                let entry = if j < self.before.len() {
                    self.before.get(j)
                } else if j >= tail_from {
                    self.after.get(j - tail_from)
                } else {
                    None
                };
                if entry.is_some_and(|e| !e.accepts(fl.value(message))) {
                    return false;
                }
            }
            return true;
        }
        let Some((last, init)) = self.before.split_last() else {
            return true;
        };
        for e in init {
            match it.next() {
                Some(fl) if e.accepts(fl.value(message)) => {}
                _ => return false,
            }
        }
        let Some(fl) = it.next() else { return false };
        let value = if it.next().is_some() {
            rest_of_line(message, fl.raw_start)
        } else {
            fl.value(message)
        };
        last.accepts(value)
    }

    fn slot(&self, j: usize, f: usize) -> Slot<'_> {
        if j < self.before.len() {
            return self.before.get(j).map_or(Slot::Gap, Slot::Entry);
        }
        let tail_from = f.saturating_sub(self.after.len());
        if self.ellipsis && j >= tail_from {
            return self.after.get(j - tail_from).map_or(Slot::Gap, Slot::Entry);
        }
        Slot::Gap
    }

    /// The extracted values for a match, in field order (R-SD-19).
    pub(crate) fn extract(&self, message: &str) -> Option<Vec<(String, String)>> {
        let fields: Vec<Field> = FieldIter::new(message).collect();
        if !self.check_all(message, &fields) {
            return None;
        }
        let f = fields.len();
        let mut out = Vec::with_capacity(f);
        for (j, fl) in fields.iter().enumerate() {
            let last_entry =
                !self.ellipsis && !self.before.is_empty() && j + 1 == self.before.len();
            let value = if last_entry {
                self.last_value(message, &fields)
            } else {
                fl.value(message)
            };
            let key = match self.slot(j, f) {
                Slot::Entry(Entry { key: Some(k), .. }) => k.clone(),
                _ => format!("${}", j + 1),
            };
            out.push((key, value.to_owned()));
            if last_entry {
                // The rest of the line is reported once, under the last entry.
                break;
            }
        }
        Some(out)
    }

    /// `$name` for a named entry, `$n` for any position ≥ 1 (R-MET-2).
    pub(crate) fn accepts_reference(&self, reference: &str) -> bool {
        let Some(r) = reference.strip_prefix('$') else {
            return false;
        };
        if let Some(n) = position(r) {
            return n >= 1;
        }
        self.named(r).is_some()
    }

    fn named(&self, name: &str) -> Option<&Entry> {
        self.before
            .iter()
            .chain(&self.after)
            .find(|e| e.key.as_deref().and_then(|k| k.strip_prefix('$')) == Some(name))
    }

    pub(crate) fn reference_value(&self, message: &str, reference: &str) -> Option<String> {
        let r = reference.strip_prefix('$')?;
        let fields: Vec<Field> = FieldIter::new(message).collect();
        if !self.check_all(message, &fields) {
            return None;
        }
        let f = fields.len();
        let target = match position(r) {
            // A position counts fields in the event, named or not (a choice, see `docs/filter-patterns.md`).
            Some(n) => n.checked_sub(1)?,
            None => {
                let entry = self.named(r)?;
                (0..f).find(
                    |&j| matches!(self.slot(j, f), Slot::Entry(e) if std::ptr::eq(e, entry)),
                )?
            }
        };
        let fl = fields.get(target)?;
        let last_entry =
            !self.ellipsis && !self.before.is_empty() && target + 1 == self.before.len();
        let value = if last_entry {
            self.last_value(message, &fields)
        } else {
            fl.value(message)
        };
        Some(value.to_owned())
    }

    pub(crate) fn required_literals(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in self.before.iter().chain(&self.after) {
            if let Some(c) = &e.cond {
                c.literals(&mut out);
            }
        }
        out
    }
}

/// `7` in `$7` (digits only).
fn position(r: &str) -> Option<usize> {
    if r.is_empty() || !r.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(r.parse::<usize>().unwrap_or(usize::MAX))
}

/// Whether `fields` runs to the end of `message` (nothing but separators after it).
fn is_complete(message: &str, fields: &[Field]) -> bool {
    let from = fields.last().map_or(0, |f| f.raw_end);
    let rest = message.as_bytes().get(from..).unwrap_or_default();
    rest.iter().all(|&b| is_separator(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(m: &str) -> Vec<&str> {
        let mut v = Vec::new();
        split_fields(m, &mut v, usize::MAX);
        v.iter().map(|f| f.value(m)).collect()
    }

    #[test]
    fn splitting() {
        assert_eq!(
            split("Dec  9 05:20:36 host sshd[1]: x"),
            ["Dec", "9", "05:20:36", "host", "sshd[1]:", "x"]
        );
        assert_eq!(split("a\t\"b c\"\t[d e] f"), ["a", "b c", "d e", "f"]);
        assert_eq!(
            split("ERROR \"unterminated words"),
            ["ERROR", "\"unterminated", "words"]
        );
        assert_eq!(split("\"ab\"c d\""), ["\"ab\"c", "d\""]);
        assert_eq!(split("  x y   "), ["x", "y"]);
        assert_eq!(split("\"\" x"), ["", "x"]);
        assert_eq!(split("[a\\] b] c"), ["a\\] b", "c"]);
        assert_eq!(split("[ Failed password ssh2]"), [" Failed password ssh2"]);
        assert!(split("").is_empty());
        assert!(split(" \t ").is_empty());
        assert_eq!(split("[a [b [c] d"), ["a [b [c", "d"]);
        assert_eq!(split("é \"ü\""), ["é", "ü"]);
    }

    /// The rules without the close-delimiter cache, for comparison.
    fn naive(m: &str) -> Vec<Field> {
        let b = m.as_bytes();
        let sep = |i: usize| b.get(i).is_some_and(|&c| is_separator(c));
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            while sep(i) {
                i += 1;
            }
            if i >= b.len() {
                return out;
            }
            let close = match b[i] {
                b'"' => Some(b'"'),
                b'[' => Some(b']'),
                _ => None,
            };
            if let Some(close) = close {
                let mut j = i + 1;
                while j < b.len() && b[j] != close {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                if j < b.len() && (j + 1 == b.len() || sep(j + 1)) {
                    out.push(Field {
                        start: i + 1,
                        end: j,
                        raw_start: i,
                        raw_end: j + 1,
                    });
                    i = j + 1;
                    continue;
                }
            }
            let mut j = i;
            while j < b.len() && !sep(j) {
                j += 1;
            }
            out.push(Field {
                start: i,
                end: j,
                raw_start: i,
                raw_end: j,
            });
            i = j;
        }
    }

    #[test]
    fn split_matches_the_plain_rules_exhaustively() {
        const ALPHABET: [char; 6] = [' ', '"', '[', ']', '\\', 'a'];
        let mut fields = Vec::new();
        for len in 0..=7u32 {
            for mut n in 0..6usize.pow(len) {
                let mut m = String::new();
                for _ in 0..len {
                    m.push(ALPHABET[n % 6]);
                    n /= 6;
                }
                split_fields(&m, &mut fields, usize::MAX);
                assert_eq!(fields, naive(&m), "{m:?}");
            }
        }
    }

    #[test]
    fn split_is_linear_on_open_brackets() {
        let m = "[a ".repeat(100_000);
        let mut v = Vec::new();
        split_fields(&m, &mut v, usize::MAX);
        assert_eq!(v.len(), 100_000);
    }

    #[test]
    fn truncated_fields_are_detected() {
        let p = parse("[a, ..., b = z]").unwrap();
        let m = "x y z";
        let mut v = Vec::new();
        split_fields(m, &mut v, 1);
        assert!(p.matches_fields(m, &v));
        assert!(p.is_match(m));
    }
}
