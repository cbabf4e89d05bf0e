//! All configured metric filters compiled together: a line in, the matching filters out.
//!
//! Cheap checks come first: one Aho-Corasick pass finds which literal words a
//! line carries, only filters whose literals are all present are evaluated,
//! and a line is split into fields at most once for all space-delimited
//! filters. [`Classifier::count_buffer`] runs the literal search over a whole
//! buffer of lines, so lines that carry none of the words cost only the
//! newline count. When every filter is decided by its leading fields (the
//! seed's `[Mon, day, timestamp, ip, id, status = Invalid, ...]` shape),
//! each line (in bulk or one at a time) is split once into those fields and
//! plain literals are compared as bytes. The plain evaluator
//! ([`FilterPattern::is_match`]) stays the reference; the tests check that
//! both agree.

use std::borrow::Cow;
use std::ops::Range;

use aho_corasick::AhoCorasick;
use memchr::memmem;

use crate::config::{MetricFilter, MetricValue};
use crate::pattern::{Field, FilterPattern, split_fields};
use crate::text::{as_text as decode, strip_cr};

mod window;

use window::WINDOW;

/// Most distinct literals tracked per line (bits of a `u64` mask).
const MAX_LITERALS: usize = 64;

/// One filter, compiled.
#[derive(Debug, Clone)]
struct Compiled {
    pattern: FilterPattern,
    /// Bits of the literals every match contains (0 = no prefilter).
    literal_mask: u64,
    /// Leading fields needed to decide a delimited match; `usize::MAX` = all,
    /// `None` = not a delimited pattern.
    fields_needed: Option<usize>,
    value: MetricValue,
}

/// A filter decided by leading fields equal to ASCII literals (the seed's
/// shape), laid out for the byte-level path.
#[derive(Debug, Clone)]
struct ExactFilter {
    /// Index in [`Classifier::filters`].
    index: usize,
    /// Fewest fields a matching line has.
    needed: usize,
    value: f64,
    /// `(field index, literal)`: every one must hold.
    fields: Box<[(usize, Literal)]>,
}

/// A literal a whole field must equal.
#[derive(Debug, Clone)]
struct Literal {
    bytes: Box<[u8]>,
    /// For literals of at most 16 bytes: the bytes as a little-endian `u128`
    /// and a mask of that many low bytes, to compare a field in one step.
    word: u128,
    mask: u128,
}

impl Literal {
    fn new(bytes: Box<[u8]>) -> Literal {
        let (word, mask) = match bytes.len() {
            len @ 1..=16 => {
                let mut padded = [0u8; 16];
                padded[..len].copy_from_slice(&bytes);
                (u128::from_le_bytes(padded), u128::MAX >> (8 * (16 - len)))
            }
            _ => (0, 0),
        };
        Literal { bytes, word, mask }
    }

    /// Whether `line[a..b]` is this literal: lengths first (most fields
    /// differ there, without reading a byte), then the bytes, sixteen at a
    /// time when the line has that many from `a` on.
    fn is_field(&self, line: &[u8], a: usize, b: usize) -> bool {
        if b.checked_sub(a) != Some(self.bytes.len()) {
            return false;
        }
        match line.get(a..).and_then(<[u8]>::first_chunk::<16>) {
            Some(w) if self.mask != 0 => u128::from_le_bytes(*w) & self.mask == self.word,
            _ => line.get(a..b) == Some(&self.bytes[..]),
        }
    }
}

/// The literal words the filters require (each once, at most [`MAX_LITERALS`]: a word past that is not
/// used), and per filter the bits of its words. The classifier's prefilter: a line without all of a
/// filter's words cannot match it. The detector's near-miss test: a line with all of them that does not
/// match is a near miss.
#[derive(Debug, Clone)]
pub struct LiteralSet {
    words: Vec<String>,
    /// Per filter (in order), the bits of its words in `words`.
    masks: Vec<u64>,
    /// Searches every word at once (`None` when there is none).
    automaton: Option<AhoCorasick>,
}

impl LiteralSet {
    pub fn new(filters: &[MetricFilter]) -> LiteralSet {
        let mut words: Vec<String> = Vec::new();
        let mut masks = Vec::with_capacity(filters.len());
        for f in filters {
            let mut mask = 0u64;
            for lit in f.filter_pattern.required_literals() {
                if lit.is_empty() {
                    continue;
                }
                let idx = match words.iter().position(|w| *w == lit) {
                    Some(i) => i,
                    None if words.len() < MAX_LITERALS => {
                        words.push(lit);
                        words.len() - 1
                    }
                    // Out of bits: this literal is simply not used.
                    None => continue,
                };
                mask |= 1 << idx;
            }
            masks.push(mask);
        }
        // A DFA costs a little memory at start-up (a handful of short words) and is the fastest search
        // kind for a per-line scan.
        let automaton = (!words.is_empty())
            .then(|| {
                AhoCorasick::builder()
                    .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                    .build(&words)
                    .ok()
            })
            .flatten();
        LiteralSet {
            words,
            masks,
            automaton,
        }
    }

    /// The bits of filter `i`'s words (0: none, or an unknown filter).
    pub fn mask(&self, i: usize) -> u64 {
        self.masks.get(i).copied().unwrap_or(0)
    }

    /// The words of `mask`, in order.
    pub fn words_of(&self, mask: u64) -> Vec<String> {
        self.words
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, w)| w.clone())
            .collect()
    }

    /// Whether there is any word to look for.
    pub fn is_empty(&self) -> bool {
        self.automaton.is_none()
    }

    /// Which words `line` contains, as bits.
    pub fn hits(&self, line: &[u8]) -> u64 {
        let Some(ac) = &self.automaton else { return 0 };
        let mut hits = 0u64;
        for m in ac.find_overlapping_iter(line) {
            hits |= 1 << m.pattern().as_usize();
        }
        hits
    }
}

/// The compiled classifier for one set of metric filters.
#[derive(Debug, Clone)]
pub struct Classifier {
    filters: Vec<Compiled>,
    /// The literal words of every filter, searched at once.
    literals: LiteralSet,
    /// One substring searcher per literal word (same indices as the bits).
    finders: Vec<memmem::Finder<'static>>,
    /// True when every filter has a prefilter, so a line without any literal matches nothing.
    all_gated: bool,
    /// When every filter is a space-delimited pattern decided by its leading
    /// fields (like the seed's `[Mon, day, …, status = Invalid, ...]`) and
    /// adds a number: the most leading fields any of them needs. Then a line
    /// is split once into that many fields and nothing else is looked at.
    leading: Option<usize>,
    /// With `leading`: every filter is an [`ExactFilter`], so lines are
    /// checked on their bytes without decoding them (empty otherwise).
    exact: Vec<ExactFilter>,
}

/// Reusable per-thread buffers, so classifying a line allocates nothing.
#[derive(Debug, Default)]
pub struct Scratch {
    fields: Vec<Field>,
    /// Byte ranges of the leading fields, for the exact-literal path.
    spans: Spans,
    /// Filters (bit per index, first 64) of the last classified line whose
    /// literal prefilter passed: every literal word present. See [`Scratch::candidates`].
    candidates: u64,
}

impl Scratch {
    /// The filters of the last classified line that carry all their literal
    /// words (a bit per filter index; filters without literals and indices
    /// from 64 on are never set). The silent-miss detector uses it: a
    /// candidate that did not match is a near miss.
    pub fn candidates(&self) -> u64 {
        self.candidates
    }
}

impl Classifier {
    /// Compiles `filters` (in order: match callbacks use their index).
    pub fn new(filters: &[MetricFilter]) -> Classifier {
        let literal_set = LiteralSet::new(filters);
        let mut compiled = Vec::with_capacity(filters.len());
        let mut exact = Vec::with_capacity(filters.len());
        for (index, f) in filters.iter().enumerate() {
            let fields_needed = f
                .filter_pattern
                .delimited()
                .map(|d| d.leading_fields_needed().unwrap_or(usize::MAX));
            let literals = f
                .filter_pattern
                .delimited()
                .and_then(|d| d.exact_leading_literals());
            if let (Some(needed), Some(pairs), MetricValue::Number(value)) =
                (fields_needed, literals, &f.metric_value)
            {
                exact.push(ExactFilter {
                    index,
                    needed,
                    value: *value,
                    fields: pairs
                        .into_iter()
                        .map(|(i, lit)| (i, Literal::new(lit.into_bytes().into_boxed_slice())))
                        .collect(),
                });
            }
            compiled.push(Compiled {
                pattern: f.filter_pattern.clone(),
                literal_mask: literal_set.mask(index),
                fields_needed,
                value: f.metric_value.clone(),
            });
        }
        let literals = literal_set.automaton.is_some();
        let all_gated = literals && compiled.iter().all(|c| c.literal_mask != 0);
        let leading = compiled
            .iter()
            .try_fold(0usize, |most, c| match (c.fields_needed, &c.value) {
                (Some(k), MetricValue::Number(_)) if k != usize::MAX => Some(most.max(k)),
                _ => None,
            })
            .filter(|_| !compiled.is_empty());
        let exact_all =
            leading.is_some_and(|k| k <= MAX_EXACT_FIELDS) && exact.len() == compiled.len();
        if !exact_all {
            exact.clear();
        }
        Classifier {
            filters: compiled,
            finders: literal_set
                .words
                .iter()
                .map(|w| memmem::Finder::new(w.as_bytes()).into_owned())
                .collect(),
            literals: literal_set,
            all_gated,
            leading,
            exact,
        }
    }

    /// Number of filters.
    pub fn len(&self) -> usize {
        self.filters.len()
    }

    /// Whether there are no filters.
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// The literal words of the filters, shared with the silent-miss detector.
    pub fn literals(&self) -> &LiteralSet {
        &self.literals
    }

    /// Which literals `line` contains, as a bit mask.
    fn literal_hits(&self, line: &[u8]) -> u64 {
        self.literals.hits(line)
    }

    /// Classifies one line (without its terminator; invalid UTF-8 is decoded
    /// lossily). Calls `on_match(filter_index, value)` for every matching
    /// filter; `value` is `None` when the metric value references a field
    /// whose text is not a number (the match publishes no datapoint).
    pub fn classify(
        &self,
        line: &[u8],
        scratch: &mut Scratch,
        mut on_match: impl FnMut(usize, Option<f64>),
    ) {
        if let Some(k) = self.leading
            && !self.exact.is_empty()
            && leading_spans(line, 0..line.len(), k, &mut scratch.spans)
        {
            // The seed's shape: decided on the line's bytes, no literal scan
            // needed except for the candidates of the filters that missed.
            let matched = self.match_exact(line, &scratch.spans, &mut on_match);
            scratch.candidates = self.candidates_after(line, matched);
            return;
        }
        let hits = self.literal_hits(line);
        if self.all_gated && hits == 0 {
            scratch.candidates = 0;
            return;
        }
        self.classify_with_hits(line, hits, scratch, &mut on_match);
    }

    fn classify_with_hits(
        &self,
        line: &[u8],
        hits: u64,
        scratch: &mut Scratch,
        on_match: &mut dyn FnMut(usize, Option<f64>),
    ) {
        let mut text: Option<Cow<'_, str>> = None;
        let mut split_upto = 0usize;
        scratch.candidates = 0;
        for (i, f) in self.filters.iter().enumerate() {
            if f.literal_mask & hits != f.literal_mask {
                continue;
            }
            if f.literal_mask != 0 && i < 64 {
                scratch.candidates |= 1 << i;
            }
            let message: &str = text.get_or_insert_with(|| decode(line));
            let matched = match (f.fields_needed, f.pattern.delimited()) {
                (Some(needed), Some(d)) => {
                    if needed > split_upto {
                        split_fields(message, &mut scratch.fields, needed);
                        split_upto = needed;
                    }
                    d.matches_fields(message, &scratch.fields)
                }
                _ => f.pattern.is_match(message),
            };
            if matched {
                let value = match &f.value {
                    MetricValue::Number(n) => Some(*n),
                    MetricValue::Field(r) => f
                        .pattern
                        .reference_value(message, r)
                        .and_then(|v| v.trim().parse::<f64>().ok())
                        .filter(|v| v.is_finite()),
                };
                on_match(i, value);
            }
        }
    }

    /// Evaluates every [`ExactFilter`] on the leading fields `spans` of
    /// `line`; returns the matched filters as bits (first 64).
    fn match_exact(
        &self,
        line: &[u8],
        spans: &Spans,
        on_match: &mut impl FnMut(usize, Option<f64>),
    ) -> u64 {
        let spans = spans.as_slice();
        let mut matched_bits = 0u64;
        for f in &self.exact {
            let matched = spans.len() >= f.needed
                && f.fields.iter().all(|(field, lit)| {
                    spans
                        .get(*field)
                        .is_some_and(|&(a, b)| lit.is_field(line, a, b))
                });
            if matched {
                if f.index < 64 {
                    matched_bits |= 1 << f.index;
                }
                on_match(f.index, Some(f.value));
            }
        }
        matched_bits
    }

    /// [`Scratch::candidates`] for a line matched by the byte-level path:
    /// a matched filter carries its words by definition; for the others each
    /// word is looked for once (SIMD substring search), stopping at the
    /// first one missing.
    fn candidates_after(&self, line: &[u8], matched_bits: u64) -> u64 {
        let mut known = 0u64;
        let mut present = 0u64;
        let mut candidates = 0u64;
        for (i, f) in self.filters.iter().enumerate().take(64) {
            if f.literal_mask == 0 {
                continue;
            }
            if matched_bits & (1 << i) != 0 {
                candidates |= 1 << i;
                continue;
            }
            let mut words = f.literal_mask;
            let mut all = true;
            while words != 0 {
                let w = words.trailing_zeros() as usize;
                words &= words - 1;
                if known & (1 << w) == 0 {
                    known |= 1 << w;
                    if self.finders.get(w).is_some_and(|f| f.find(line).is_some()) {
                        present |= 1 << w;
                    }
                }
                if present & (1 << w) == 0 {
                    all = false;
                    break;
                }
            }
            if all {
                candidates |= 1 << i;
            }
        }
        candidates
    }

    /// The leading-fields path of [`Classifier::count_buffer`]: split the line
    /// `buf[range]` into its first `k` fields once and evaluate every filter on them.
    fn classify_leading(
        &self,
        buf: &[u8],
        range: Range<usize>,
        k: usize,
        scratch: &mut Scratch,
        on_match: &mut impl FnMut(usize, Option<f64>),
    ) {
        let line = &buf[range.clone()];
        if !self.exact.is_empty() && leading_spans(buf, range, k, &mut scratch.spans) {
            self.match_exact(line, &scratch.spans, on_match);
            return;
        }
        let message = decode(line);
        split_fields(&message, &mut scratch.fields, k);
        for (i, f) in self.filters.iter().enumerate() {
            let matched = match f.pattern.delimited() {
                Some(d) => d.matches_fields(&message, &scratch.fields),
                None => f.pattern.is_match(&message),
            };
            if matched && let MetricValue::Number(n) = f.value {
                on_match(i, Some(n));
            }
        }
    }

    /// Classifies every complete line of `buf` (lines end with `\n`; a final
    /// line without one counts too) and returns the number of lines.
    ///
    /// When every filter is decided by its leading fields (the seed's shape),
    /// each line is split once into those fields, compared as bytes when the
    /// conditions are plain literals. Otherwise, when every filter has a
    /// literal prefilter, the literal search runs over the whole buffer and
    /// only lines with a hit are looked at.
    pub fn count_buffer(
        &self,
        buf: &[u8],
        scratch: &mut Scratch,
        mut on_match: impl FnMut(usize, Option<f64>),
    ) -> u64 {
        if buf.is_empty() {
            return 0;
        }
        if let Some(k) = self.leading {
            // One pass: the newline search both delimits and counts the lines;
            // a last line without a newline ends at the end of the buffer.
            let last = (buf.last() != Some(&b'\n')).then_some(buf.len());
            let mut lines = 0u64;
            let mut start = 0usize;
            for end in memchr::memchr_iter(b'\n', buf).chain(last) {
                lines += 1;
                let len = strip_cr(&buf[start..end]).len();
                if len > 0 {
                    self.classify_leading(buf, start..start + len, k, scratch, &mut on_match);
                }
                start = end + 1;
            }
            return lines;
        }
        let newlines = memchr::memchr_iter(b'\n', buf).count() as u64;
        let lines = newlines + u64::from(buf.last() != Some(&b'\n'));
        match (&self.literals.automaton, self.all_gated) {
            (Some(ac), true) => {
                // Lines are visited in order; `next_line` is where the next unvisited line starts.
                let mut next_line = 0usize;
                let mut pos = 0usize;
                while pos < buf.len() {
                    let Some(m) = ac.find(aho_corasick::Input::new(buf).span(pos..buf.len()))
                    else {
                        break;
                    };
                    let start = memchr::memrchr(b'\n', &buf[next_line..m.start()])
                        .map_or(next_line, |i| next_line + i + 1);
                    let end = memchr::memchr(b'\n', &buf[m.start()..])
                        .map_or(buf.len(), |i| m.start() + i);
                    let line = strip_cr(&buf[start..end]);
                    let hits = self.literal_hits(line);
                    self.classify_with_hits(line, hits, scratch, &mut on_match);
                    next_line = (end + 1).min(buf.len());
                    pos = next_line;
                    if end >= buf.len() {
                        break;
                    }
                }
            }
            _ => {
                let body = buf.strip_suffix(b"\n").unwrap_or(buf);
                for line in body.split(|&b| b == b'\n') {
                    let line = strip_cr(line);
                    // An empty line never becomes a CloudWatch event (messages
                    // are at least one character), so no filter sees it.
                    if !line.is_empty() {
                        self.classify(line, scratch, &mut on_match);
                    }
                }
            }
        }
        lines
    }

    /// [`Classifier::classify`], but with `expand` (`[source] expand_repeated`) an rsyslog
    /// `message repeated N times: [ MSG]` line is classified once as its hidden line (its own
    /// envelope with MSG) and every value is multiplied by N ([`crate::repeat`]). Returns the
    /// multiplicity (1 for an ordinary line).
    pub fn classify_expanded(
        &self,
        line: &[u8],
        scratch: &mut Scratch,
        expand: bool,
        mut on_match: impl FnMut(usize, Option<f64>),
    ) -> u64 {
        if expand && let Some(r) = crate::repeat::parse(line) {
            let n = r.count as f64;
            self.classify(&r.line, scratch, |i, v| on_match(i, v.map(|v| v * n)));
            return r.count;
        }
        self.classify(line, scratch, on_match);
        1
    }
}

/// The byte ranges of the first `k` fields of the line `buf[line]`, split on
/// runs of blanks and tabs exactly as [`split_fields`] does (ranges relative
/// to the line start). Returns `false` (the caller takes the general path)
/// when one of them starts with `"` or `[`, where grouping rules apply.
///
/// The line is read 64 bytes at a time: bit masks say which bytes are blanks
/// and which are `"` or `[` ([`window::masks`]), and field starts and ends are
/// the blank mask's edges, so the cost per field is a few bit operations
/// instead of a loop over its bytes. A window may reach past the line end into
/// the rest of `buf` (those bytes are masked out), so only a window at the
/// very end of `buf` is copied.
#[inline]
fn leading_spans(buf: &[u8], line: Range<usize>, k: usize, out: &mut Spans) -> bool {
    let k = k.min(MAX_EXACT_FIELDS);
    let len = line.len();
    // Most lines: the first window holds all k fields, or the whole line.
    // Then the fields are read off the masks without a branch per field.
    if let Some(window) = buf.get(line.start..).and_then(<[u8]>::first_chunk) {
        let masks = window::masks(window);
        let past_end = if len >= WINDOW { 0 } else { !0u64 << len };
        let blanks = masks.blanks | past_end;
        let before = (blanks << 1) | 1;
        let all_starts = !blanks & before;
        let mut starts = all_starts;
        let mut ends = blanks & !before;
        let mut count = 0usize;
        for slot in &mut out.bounds[..k] {
            // Past the last field both masks are empty: the slot is not counted.
            *slot = (
                starts.trailing_zeros() as usize,
                ends.trailing_zeros() as usize,
            );
            count += usize::from(ends != 0);
            starts &= starts.wrapping_sub(1);
            ends &= ends.wrapping_sub(1);
        }
        if count == k || len < WINDOW {
            // Only the starts of the fields read count (`starts` holds the rest).
            if masks.groups & all_starts & !starts != 0 {
                return false;
            }
            out.len = count;
            return true;
        }
        // Fewer than k fields end in this window: every start in it is one of
        // the first k fields, and the window's last one may still be open
        // (its start is in the slot after the complete fields).
        if masks.groups & all_starts != 0 {
            return false;
        }
        let open = out.bounds[count].0;
        let carry = Carry {
            count,
            base: WINDOW,
            prev_blank: blanks >> 63,
            open: (open < WINDOW).then_some(open),
        };
        return leading_spans_windows(buf, line, k, out, carry);
    }
    leading_spans_windows(buf, line, k, out, Carry::START)
}

/// Where [`leading_spans_windows`] starts: after the windows already read.
#[derive(Debug, Clone, Copy)]
struct Carry {
    /// Fields complete so far (their spans are in the output).
    count: usize,
    /// Offset in the line of the next window.
    base: usize,
    /// Whether the byte before the next window is a separator (the line start counts as one).
    prev_blank: u64,
    /// Start of a field that runs on into the next window.
    open: Option<usize>,
}

impl Carry {
    const START: Carry = Carry {
        count: 0,
        base: 0,
        prev_blank: 1,
        open: None,
    };
}

/// [`leading_spans`] for any line: window after window from `carry` on,
/// carrying a field that runs on past a window's end. Kept out of line, so
/// the fast path stays small where it is inlined.
#[inline(never)]
fn leading_spans_windows(
    buf: &[u8],
    line: Range<usize>,
    k: usize,
    out: &mut Spans,
    carry: Carry,
) -> bool {
    let len = line.len();
    let Carry {
        mut count,
        mut base,
        mut prev_blank,
        mut open,
    } = carry;
    let mut padded = [0u8; WINDOW];
    while count < k && base < len {
        let at = line.start + base;
        let n = (len - base).min(WINDOW);
        let window: &[u8; WINDOW] = match buf.get(at..).and_then(<[u8]>::first_chunk) {
            Some(w) => w,
            None => {
                // Bytes past `n` are masked out below, whatever they hold.
                padded[..n].copy_from_slice(&buf[at..at + n]);
                &padded
            }
        };
        let masks = window::masks(window);
        // Bytes past the end of the line count as blanks: they end the last field.
        let past_end = if n == WINDOW { 0 } else { !0u64 << n };
        let blanks = masks.blanks | past_end;
        let before = (blanks << 1) | prev_blank;
        // Starts and ends alternate: (end,) start, end, start, end, …
        let mut starts = !blanks & before;
        let mut ends = blanks & !before;
        let grouped = starts & masks.groups;
        if let Some(start) = open.take() {
            if ends == 0 {
                // The whole window is inside that field.
                open = Some(start);
            } else {
                out.bounds[count] = (start, base + ends.trailing_zeros() as usize);
                ends &= ends - 1;
                count += 1;
            }
        }
        while count < k && ends != 0 {
            let first = starts & starts.wrapping_neg();
            if grouped & first != 0 {
                return false;
            }
            out.bounds[count] = (
                base + first.trailing_zeros() as usize,
                base + ends.trailing_zeros() as usize,
            );
            starts ^= first;
            ends &= ends - 1;
            count += 1;
        }
        if count < k && starts != 0 {
            // A field starts here and ends in a later window.
            if grouped & starts != 0 {
                return false;
            }
            open = Some(base + starts.trailing_zeros() as usize);
        }
        prev_blank = blanks >> 63;
        base += WINDOW;
    }
    if let (Some(start), true) = (open, count < k) {
        out.bounds[count] = (start, len);
        count += 1;
    }
    out.len = count;
    true
}

/// Most leading fields the byte-level path splits (the seed's filters need 7).
const MAX_EXACT_FIELDS: usize = 16;

/// Byte ranges of a line's leading fields, kept inline (no allocation, no growth checks).
#[derive(Debug, Clone, Copy)]
struct Spans {
    bounds: [(usize, usize); MAX_EXACT_FIELDS],
    len: usize,
}

impl Default for Spans {
    fn default() -> Spans {
        Spans {
            bounds: [(0, 0); MAX_EXACT_FIELDS],
            len: 0,
        }
    }
}

impl Spans {
    fn as_slice(&self) -> &[(usize, usize)] {
        &self.bounds[..self.len]
    }
}
