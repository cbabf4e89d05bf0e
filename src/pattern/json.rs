//! JSON patterns `{ $.a = 1 && $.b IS NULL }`: selectors, comparisons
//! and their observed semantics (R-JSON-1…R-JSON-3).

use regex::Regex;
use serde_json::Value;

use crate::pattern::lex::{Cursor, char_term, is_pattern_blank};
use crate::pattern::value::{Glob, Op, parse_number};
use crate::pattern::{PatternError, cwregex, delimited};

/// Parentheses nested deeper than this are refused (keeps recursion bounded).
const MAX_NESTING: usize = 64;
/// Most wildcard selectors per pattern: CloudWatch refuses a pattern with more ("Filter pattern syntax" in the CloudWatch Logs user guide).
const MAX_WILDCARD_SELECTORS: usize = 3;

/// A parsed JSON pattern.
#[derive(Debug, Clone)]
pub(crate) struct JsonPattern {
    expr: Expr,
}

#[derive(Debug, Clone)]
enum Expr {
    All(Vec<Expr>),
    Any(Vec<Expr>),
    Test(Selector, Test),
}

/// `$.a.b[0]['c.d'][*]`: at most one wildcard step.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Selector {
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
    /// Any member of an object or element of an array.
    Wild,
}

#[derive(Debug, Clone)]
enum Test {
    Cmp(Op, Val),
    IsNull,
    IsTrue,
    IsFalse,
    NotExists,
}

#[derive(Debug, Clone)]
enum Val {
    /// A number literal and its text (a JSON string compares with the text).
    Num(f64, String),
    /// A bare or quoted string with `*` wildcards.
    Str(Glob),
    Regex(Regex),
}

/// Parses a `{…}` pattern (the caller has trimmed surrounding blanks).
pub(crate) fn parse(text: &str) -> Result<JsonPattern, PatternError> {
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(PatternError::json_unclosed)?;
    let mut p = Parser {
        cur: Cursor::new(inner),
        regexes: 0,
        wildcard_selectors: 0,
    };
    let expr = p.or(0)?;
    p.cur.skip_blanks();
    if let Some(c) = p.cur.peek() {
        return Err(unexpected(c));
    }
    if p.wildcard_selectors > MAX_WILDCARD_SELECTORS {
        return Err(PatternError::json_pattern_wildcards());
    }
    Ok(JsonPattern { expr })
}

/// A metric-value / dimension reference `$.path` (R-MET-2).
pub(crate) fn parse_reference(reference: &str) -> Option<Selector> {
    let mut cur = Cursor::new(reference);
    let sel = selector(&mut cur).ok()?;
    cur.at_end().then_some(sel)
}

fn unexpected(c: char) -> PatternError {
    if c.is_ascii_graphic() {
        PatternError::generic()
    } else {
        char_term(c)
    }
}

struct Parser<'a> {
    cur: Cursor<'a>,
    regexes: usize,
    wildcard_selectors: usize,
}

impl Parser<'_> {
    /// `||` binds loosest, then `&&`, then parentheses (R-JSON-1).
    fn or(&mut self, depth: usize) -> Result<Expr, PatternError> {
        let mut alts = vec![self.and(depth)?];
        loop {
            self.cur.skip_blanks();
            if !self.cur.eat("||") {
                break;
            }
            alts.push(self.and(depth)?);
        }
        Ok(if alts.len() == 1 {
            alts.remove(0)
        } else {
            Expr::Any(alts)
        })
    }

    fn and(&mut self, depth: usize) -> Result<Expr, PatternError> {
        let mut all = vec![self.primary(depth)?];
        loop {
            self.cur.skip_blanks();
            if !self.cur.eat("&&") {
                break;
            }
            all.push(self.primary(depth)?);
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Expr::All(all)
        })
    }

    fn primary(&mut self, depth: usize) -> Result<Expr, PatternError> {
        self.cur.skip_blanks();
        if self.cur.eat("(") {
            if depth >= MAX_NESTING {
                return Err(PatternError::generic());
            }
            let e = self.or(depth + 1)?;
            self.cur.skip_blanks();
            return if self.cur.eat(")") {
                Ok(e)
            } else {
                Err(PatternError::generic())
            };
        }
        match self.cur.peek() {
            Some('$') => {}
            Some(c) => return Err(unexpected(c)),
            None => return Err(PatternError::generic()),
        }
        let sel = selector(&mut self.cur)?;
        if sel.steps.contains(&Step::Wild) {
            self.wildcard_selectors += 1;
        }
        self.cur.skip_blanks();
        let test = self.test()?;
        Ok(Expr::Test(sel, test))
    }

    fn test(&mut self) -> Result<Test, PatternError> {
        let word = self.cur.take_while(|c| c.is_ascii_alphabetic());
        match word {
            "IS" => {
                self.cur.skip_blanks();
                let what = self
                    .cur
                    .take_while(|c| c.is_ascii_alphanumeric() || c == '_');
                return match what {
                    "NULL" => Ok(Test::IsNull),
                    "TRUE" => Ok(Test::IsTrue),
                    "FALSE" => Ok(Test::IsFalse),
                    // `IS NOT NULL` → `Invalid character(s) in term 'NOT'` (CloudWatch's recorded answer).
                    "" => Err(self
                        .cur
                        .peek()
                        .map_or_else(PatternError::generic, unexpected)),
                    other => Err(PatternError::invalid_term(other)),
                };
            }
            "NOT" => {
                self.cur.skip_blanks();
                return if self.cur.take_while(|c| c.is_ascii_alphabetic()) == "EXISTS" {
                    Ok(Test::NotExists)
                } else {
                    Err(PatternError::generic())
                };
            }
            "" => {}
            _ => return Err(PatternError::generic()),
        }
        let op = delimited::parse_op(&mut self.cur)?;
        self.cur.skip_blanks();
        let val = match self.cur.peek() {
            Some('"') => {
                let start = self.cur.pos();
                let s = self.cur.quoted()?;
                if op.is_relational() {
                    // `{ $.v > "Alpha" }` → `Invalid character(s) in term '"Alpha"'` (CloudWatch's recorded answer).
                    return Err(PatternError::invalid_term(self.cur.since(start)));
                }
                Val::Str(Glob::new(s))
            }
            Some('%') => {
                let (re, raw) = cwregex::regex_term(&mut self.cur, &mut self.regexes)?;
                if op.is_relational() {
                    return Err(PatternError::invalid_term(raw));
                }
                Val::Regex(re)
            }
            _ => {
                let bare = self.cur.take_while(is_bare_char);
                if bare.is_empty() {
                    return Err(self
                        .cur
                        .peek()
                        .map_or_else(PatternError::generic, unexpected));
                }
                if bare == "null" {
                    // `= null` is refused; `IS NULL` is the way (CloudWatch's recorded answer).
                    return Err(PatternError::generic());
                }
                match parse_number(bare) {
                    Some(n) => Val::Num(n, bare.to_owned()),
                    None if op.is_relational() => return Err(PatternError::invalid_term(bare)),
                    None => Val::Str(Glob::new(bare.to_owned())),
                }
            }
        };
        Ok(Test::Cmp(op, val))
    }
}

/// Characters of an unquoted value (`bar`, `123.123.*`, `-1`, `1e+0`).
fn is_bare_char(c: char) -> bool {
    c.is_ascii_graphic()
        && !matches!(
            c,
            ',' | '[' | ']' | '(' | ')' | '"' | '=' | '!' | '<' | '>' | '&' | '|' | '{' | '}'
        )
}

/// Characters of a dotted member name.
fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '@')
}

/// Parses a selector at the cursor (which is on the `$`). A bad step is
/// reported with the text of the step up to the bad character, `$..` and
/// `[-` as AWS does (CloudWatch's recorded answer).
fn selector(cur: &mut Cursor<'_>) -> Result<Selector, PatternError> {
    let start = cur.pos();
    if !cur.eat("$") {
        return Err(PatternError::generic());
    }
    let mut steps = Vec::new();
    // The first step's text includes the `$`.
    let mut step_start = start;
    loop {
        match cur.peek() {
            Some('.') => {
                cur.bump();
                match cur.peek() {
                    Some('*') => {
                        cur.bump();
                        steps.push(Step::Wild);
                    }
                    Some('[') => {
                        step_start = cur.pos();
                        steps.push(bracket(cur, step_start)?);
                    }
                    Some(c) if is_key_char(c) => {
                        steps.push(Step::Key(cur.take_while(is_key_char).to_owned()))
                    }
                    Some(_) => {
                        cur.bump();
                        return Err(PatternError::invalid_term(cur.since(step_start)));
                    }
                    None => return Err(PatternError::invalid_term(cur.since(step_start))),
                }
            }
            Some('[') => {
                step_start = cur.pos();
                steps.push(bracket(cur, step_start)?);
            }
            _ => break,
        }
        step_start = cur.pos();
    }
    if steps.is_empty() {
        return Err(PatternError::generic());
    }
    if steps.iter().filter(|s| **s == Step::Wild).count() > 1 {
        return Err(PatternError::json_selector_wildcards());
    }
    Ok(Selector { steps })
}

/// `[0]`, `[*]` or `['key']` at the cursor (which is on the `[`).
fn bracket(cur: &mut Cursor<'_>, step_start: usize) -> Result<Step, PatternError> {
    cur.bump();
    let bad = |cur: &mut Cursor<'_>| {
        cur.bump();
        PatternError::invalid_term(cur.since(step_start))
    };
    let step = match cur.peek() {
        Some('*') => {
            cur.bump();
            Step::Wild
        }
        Some('\'') => {
            cur.bump();
            let key = cur.take_while(|c| c != '\'').to_owned();
            if !cur.eat("'") {
                return Err(PatternError::invalid_term(cur.since(step_start)));
            }
            Step::Key(key)
        }
        Some(c) if c.is_ascii_digit() => {
            let digits = cur.take_while(|c| c.is_ascii_digit());
            Step::Index(digits.parse::<usize>().unwrap_or(usize::MAX))
        }
        Some(_) => return Err(bad(cur)),
        None => return Err(PatternError::invalid_term(cur.since(step_start))),
    };
    match cur.peek() {
        Some(']') => {
            cur.bump();
            Ok(step)
        }
        Some(_) => Err(bad(cur)),
        None => Err(PatternError::invalid_term(cur.since(step_start))),
    }
}

impl Selector {
    /// Calls `f` on each value the selector reaches until it returns true;
    /// returns whether it did. Without a wildcard there is at most one value;
    /// a wildcard fans out over one level of members or elements (R-JSON-3).
    fn any<'v>(&self, root: &'v Value, f: &mut dyn FnMut(&'v Value) -> bool) -> bool {
        let wild = self.steps.iter().position(|s| *s == Step::Wild);
        let (head, tail) = match wild {
            Some(w) => (
                self.steps.get(..w).unwrap_or_default(),
                self.steps.get(w + 1..),
            ),
            None => (self.steps.as_slice(), None),
        };
        let Some(v) = walk(root, head) else {
            return false;
        };
        match tail {
            None => f(v),
            Some(tail) => {
                let mut hit = |child: &'v Value| walk(child, tail).is_some_and(&mut *f);
                match v {
                    Value::Object(m) => m.values().any(&mut hit),
                    Value::Array(a) => a.iter().any(&mut hit),
                    _ => false,
                }
            }
        }
    }
}

fn walk<'v>(mut v: &'v Value, steps: &[Step]) -> Option<&'v Value> {
    for s in steps {
        v = match s {
            Step::Key(k) => v.as_object()?.get(k)?,
            Step::Index(i) => v.as_array()?.get(*i)?,
            Step::Wild => return None,
        };
    }
    Some(v)
}

/// The text a JSON number or string compares with as a string.
fn scalar_text(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::String(s) => Some(s.as_str().into()),
        Value::Number(n) => Some(n.to_string().into()),
        _ => None,
    }
}

impl Test {
    /// One reached value against the test (R-JSON-3).
    fn accepts(&self, v: &Value) -> bool {
        match self {
            Test::IsNull => match v {
                Value::Null => true,
                // Observed: an array holding a null satisfies IS NULL (CloudWatch's recorded answer).
                Value::Array(a) => a.iter().any(Value::is_null),
                _ => false,
            },
            Test::IsTrue => *v == Value::Bool(true),
            Test::IsFalse => *v == Value::Bool(false),
            Test::NotExists => false,
            Test::Cmp(op, val) => match (val, v) {
                (Val::Num(n, _), Value::Number(x)) => x.as_f64().is_some_and(|x| op.compare(x, *n)),
                // A string compares by its text: "1" equals 1, "1.0" does not,
                // and strings never satisfy `<`/`>`.
                (Val::Num(_, text), Value::String(s)) => match op {
                    Op::Eq => s == text,
                    Op::Ne => s != text,
                    _ => false,
                },
                (Val::Str(g), _) => scalar_text(v).is_some_and(|t| match op {
                    Op::Eq => g.is_match(&t),
                    Op::Ne => !g.is_match(&t),
                    _ => false,
                }),
                (Val::Regex(re), _) => scalar_text(v).is_some_and(|t| match op {
                    Op::Eq => re.is_match(&t),
                    Op::Ne => !re.is_match(&t),
                    _ => false,
                }),
                _ => false,
            },
        }
    }
}

impl Expr {
    fn eval(&self, root: &Value) -> bool {
        match self {
            Expr::All(es) => es.iter().all(|e| e.eval(root)),
            Expr::Any(es) => es.iter().any(|e| e.eval(root)),
            Expr::Test(sel, Test::NotExists) => !sel.any(root, &mut |_| true),
            Expr::Test(sel, test) => sel.any(root, &mut |v| test.accepts(v)),
        }
    }
}

/// The message as a JSON object; anything else never matches (R-JSON-3).
/// `serde_json` limits nesting depth, so deep input cannot overflow the stack.
fn parse_message(message: &str) -> Option<Value> {
    if !message
        .trim_start_matches(is_pattern_blank)
        .starts_with('{')
    {
        return None;
    }
    serde_json::from_str::<Value>(message)
        .ok()
        .filter(Value::is_object)
}

impl JsonPattern {
    pub(crate) fn is_match(&self, message: &str) -> bool {
        parse_message(message).is_some_and(|root| self.expr.eval(&root))
    }

    /// The scalar at `reference` for a matching message, as text.
    pub(crate) fn reference_value(&self, message: &str, reference: &str) -> Option<String> {
        let sel = parse_reference(reference)?;
        let root = parse_message(message)?;
        if !self.expr.eval(&root) {
            return None;
        }
        let mut out = None;
        sel.any(&root, &mut |v| {
            out = match v {
                Value::Bool(b) => Some(b.to_string()),
                _ => scalar_text(v).map(|t| t.into_owned()),
            };
            out.is_some()
        });
        out
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
    fn semantics() {
        assert!(m("{ $.v = 1 }", r#"{"v":"1"}"#));
        assert!(!m("{ $.v = 1 }", r#"{"v":"1.0"}"#));
        assert!(m("{ $.v = 1 }", r#"{"v":1e0}"#));
        assert!(!m(r#"{ $.v = "1" }"#, r#"{"v":1.0}"#));
        assert!(m(r#"{ $.v = "1" }"#, r#"{"v":1}"#));
        assert!(m("{ $.v = * }", r#"{"v":""}"#));
        assert!(m("{ $.v = * }", r#"{"v":3}"#));
        assert!(!m("{ $.v = * }", r#"{"v":null}"#));
        assert!(!m("{ $.v != 1 }", r#"{"v":true}"#));
        assert!(m("{ $.v IS NULL }", r#"{"v":[1,null]}"#));
        assert!(!m("{ $.v NOT EXISTS }", "[]"));
        assert!(m("{ $.a[*] = 2 }", r#"{"a":{"x":1,"y":2}}"#));
        assert!(m("{ $.* = 2 }", r#"{"a":{"x":1},"b":2}"#));
        assert!(!m("{ $.a.b = 1 }", r#"{"a":[{"b":1}]}"#));
        assert!(m("{ $['k.x'] = 1 }", r#"{"k.x":1}"#));
        let deep = format!("{}{}", "{\"a\":".repeat(10_000), "1");
        assert!(!m("{ $.a NOT EXISTS }", &deep));
    }

    #[test]
    fn rejections() {
        assert_eq!(
            err("{ $..value = \"hit\" }"),
            "Invalid character(s) in term '$..'"
        );
        assert_eq!(
            err("{ $.arr[-1] = \"hit\" }"),
            "Invalid character(s) in term '[-'"
        );
        assert_eq!(
            err("{ $.v IS NOT NULL }"),
            "Invalid character(s) in term 'NOT'"
        );
        assert_eq!(
            err("{ $.v = %(Alpha|Beta)% }"),
            "Invalid character(s) in term '%('"
        );
        assert_eq!(err("{ $.v = null }"), "Invalid metric filter pattern");
        assert_eq!(err("{ $.v EXISTS }"), "Invalid metric filter pattern");
        assert_eq!(
            err("{ $.v > 0 AND $.v < 2 }"),
            "Invalid metric filter pattern"
        );
        assert_eq!(err("{ $.v == 1 }"), "Invalid metric filter pattern");
        assert_eq!(err("{ !($.v = 1) }"), "Invalid metric filter pattern");
        assert_eq!(err("{ status = \"401\" }"), "Invalid metric filter pattern");
        assert!(err("{ $.items[*].* = 1 }").contains("maximum of 1 wildcard"));
        assert!(
            err("{ $.a[*] = 1 || $.b[*] = 1 || $.c[*] = 1 || $.d[*] = 1 }")
                .contains("maximum of 3 JSON wildcard")
        );
        assert!(parse("{ $.a[*] = 1 || $.b[*] = 1 || $.c[*] = 1 }").is_ok());
        let nested = format!("{{ {}$.a = 1{} }}", "(".repeat(100), ")".repeat(100));
        assert_eq!(err(&nested), "Invalid metric filter pattern");
    }
}
