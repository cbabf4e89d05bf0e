//! The pure PutLogEvents batcher: turns lines into batches that respect every limit of the API, so a
//! request is never refused for its shape.
//!
//! Limits (the PutLogEvents API reference), and what the batcher does about each:
//! - **Batch size** ≤ [`MAX_BATCH_BYTES`], counting the UTF-8 bytes of every message plus
//!   [`EVENT_OVERHEAD`] per event: a batch is closed before an event would cross it.
//! - **Event count** ≤ [`MAX_BATCH_EVENTS`]: likewise.
//! - **Event size**: the current reference says 1 MB, older text 256 KB. The batcher uses the smaller,
//!   [`MAX_EVENT_BYTES`] = 256 KiB − 26 bytes of message. A longer message is split into pieces on UTF-8
//!   character boundaries; every piece but the last ends with [`CONTINUED_MARKER`], so removing the
//!   markers and joining the pieces gives the message back byte for byte. Nothing is dropped or
//!   truncated. The pieces of a message that fits in one batch are kept in one batch. A piece of a line
//!   that goes on in the next message (the source hands out over-long lines in pieces) is marked too.
//! - **Empty messages** (CloudWatch requires at least one character) are sent as [`EMPTY_MESSAGE`], a
//!   single space: the line stays visibly empty, and its position in the stream is kept.
//! - **Chronological order** within a request (else the whole request fails): a timestamp earlier than
//!   the previous event's (the clock stepped back) is clamped to the previous one. Batches are
//!   independent requests, so a new batch starts from its own first timestamp.
//! - **Span** < 24 h within a batch ([`MAX_SPAN_MS`]): a batch is closed before an event would widen it
//!   that far (the clock stepped forward).
//!
//! When to send a batch that is not full is the caller's choice (the daemon's flush interval).

use std::borrow::Cow;

use tracing::warn;

/// PutLogEvents: most bytes per request, messages plus [`EVENT_OVERHEAD`] per event.
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// PutLogEvents: bytes counted per event on top of its message.
pub const EVENT_OVERHEAD: usize = 26;
/// PutLogEvents: most events per request.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// Most message bytes in one event: the older, smaller event limit (256 KiB including the 26 bytes of
/// overhead), which every CloudWatch region and peer accepts.
pub const MAX_EVENT_BYTES: usize = 256 * 1024 - EVENT_OVERHEAD;
/// Appended to every piece of a split message but the last.
pub const CONTINUED_MARKER: &str = " [sshwatch: line continued]";
/// What an empty line is sent as.
pub const EMPTY_MESSAGE: &str = " ";
/// A batch spans strictly less than 24 hours (first to last timestamp).
pub const MAX_SPAN_MS: i64 = 24 * 3600 * 1000;

/// One log event for PutLogEvents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub message: String,
}

impl LogEvent {
    /// Bytes this event counts against [`MAX_BATCH_BYTES`].
    pub fn size(&self) -> usize {
        self.message.len() + EVENT_OVERHEAD
    }
}

/// Events in one buffer: the messages back to back, and per event its timestamp and where its message
/// ends. A batch costs two allocations however many events it holds, and the request body is written
/// straight from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventBatch {
    text: String,
    /// `(timestamp_ms, end of the message in text)` per event.
    ends: Vec<(i64, usize)>,
    /// Indices of the events that are pieces of a line going on in the next event (rare).
    continued: Vec<u32>,
}

impl EventBatch {
    pub fn new() -> EventBatch {
        EventBatch::default()
    }

    /// Appends an event.
    pub fn push(&mut self, timestamp_ms: i64, message: &str) {
        self.text.push_str(message);
        self.ends.push((timestamp_ms, self.text.len()));
    }

    /// Appends an event that is a piece of a line going on in the next event when `continues`.
    pub fn push_piece(&mut self, timestamp_ms: i64, message: &str, continues: bool) {
        if continues {
            self.continued
                .push(u32::try_from(self.ends.len()).unwrap_or(u32::MAX));
        }
        self.push(timestamp_ms, message);
    }

    /// Whether event `i` is a piece of a line that goes on in event `i + 1`.
    pub fn continues(&self, i: usize) -> bool {
        u32::try_from(i).is_ok_and(|i| self.continued.binary_search(&i).is_ok())
    }

    /// The events in `range` (clamped to the batch), as a batch of their own.
    pub fn slice(&self, range: std::ops::Range<usize>) -> EventBatch {
        let end = range.end.min(self.len());
        let start = range.start.min(end);
        let mut out = EventBatch::new();
        for (i, (ts, message)) in self.iter().enumerate().take(end).skip(start) {
            out.push_piece(ts, message, self.continues(i));
        }
        out
    }

    /// Events in the batch.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes the batch counts against [`MAX_BATCH_BYTES`]: its messages plus [`EVENT_OVERHEAD`] per event.
    pub fn bytes(&self) -> usize {
        self.text.len() + EVENT_OVERHEAD * self.ends.len()
    }

    /// Bytes of the messages alone.
    pub fn message_bytes(&self) -> usize {
        self.text.len()
    }

    fn first_timestamp(&self) -> Option<i64> {
        self.ends.first().map(|&(ts, _)| ts)
    }

    fn last_timestamp(&self) -> Option<i64> {
        self.ends.last().map(|&(ts, _)| ts)
    }

    /// The events in order, as `(timestamp_ms, message)`.
    pub fn iter(&self) -> Events<'_> {
        Events {
            text: &self.text,
            ends: self.ends.iter(),
            start: 0,
        }
    }

    /// The events as owned [`LogEvent`]s.
    pub fn to_events(&self) -> Vec<LogEvent> {
        self.iter()
            .map(|(timestamp_ms, message)| LogEvent {
                timestamp_ms,
                message: message.to_owned(),
            })
            .collect()
    }

    /// Room for `events` events of `bytes` message bytes in all.
    fn reserve(&mut self, events: usize, bytes: usize) {
        self.ends.reserve(events);
        self.text.reserve(bytes);
    }
}

impl<'a> IntoIterator for &'a EventBatch {
    type Item = (i64, &'a str);
    type IntoIter = Events<'a>;

    fn into_iter(self) -> Events<'a> {
        self.iter()
    }
}

impl FromIterator<LogEvent> for EventBatch {
    fn from_iter<I: IntoIterator<Item = LogEvent>>(events: I) -> EventBatch {
        let mut batch = EventBatch::new();
        for e in events {
            batch.push(e.timestamp_ms, &e.message);
        }
        batch
    }
}

impl From<Vec<LogEvent>> for EventBatch {
    fn from(events: Vec<LogEvent>) -> EventBatch {
        events.into_iter().collect()
    }
}

/// The events of an [`EventBatch`], as `(timestamp_ms, message)`.
#[derive(Debug, Clone)]
pub struct Events<'a> {
    text: &'a str,
    ends: std::slice::Iter<'a, (i64, usize)>,
    start: usize,
}

impl<'a> Iterator for Events<'a> {
    type Item = (i64, &'a str);

    fn next(&mut self) -> Option<(i64, &'a str)> {
        let &(timestamp_ms, end) = self.ends.next()?;
        // Every end was recorded after pushing a whole `&str`: always a character boundary.
        let message = self.text.get(self.start..end).unwrap_or_default();
        self.start = end;
        Some((timestamp_ms, message))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.ends.size_hint()
    }
}

impl ExactSizeIterator for Events<'_> {}

/// Checks `events` against every PutLogEvents limit; the error names the first one broken.
pub fn check_batch(events: &EventBatch) -> Result<(), String> {
    if events.is_empty() {
        return Err("a batch needs at least one event".into());
    }
    if events.len() > MAX_BATCH_EVENTS {
        return Err(format!(
            "{} events, more than {MAX_BATCH_EVENTS}",
            events.len()
        ));
    }
    let bytes = events.bytes();
    if bytes > MAX_BATCH_BYTES {
        return Err(format!("{bytes} bytes, more than {MAX_BATCH_BYTES}"));
    }
    let mut previous = i64::MIN;
    for (i, (timestamp_ms, message)) in events.iter().enumerate() {
        if message.is_empty() || message.len() > MAX_EVENT_BYTES {
            return Err(format!(
                "event {i} has {} message bytes, outside 1..={MAX_EVENT_BYTES}",
                message.len()
            ));
        }
        if timestamp_ms < previous {
            return Err(format!("event {i} is earlier than event {}", i - 1));
        }
        previous = timestamp_ms;
    }
    let span = events.last_timestamp().unwrap_or(0) - events.first_timestamp().unwrap_or(0);
    if span >= MAX_SPAN_MS {
        return Err(format!("the batch spans {span} ms, 24 h or more"));
    }
    Ok(())
}

/// The events one line (or one piece of an over-long line, with `continues`) becomes: event-sized
/// pieces, each but the last marked, the last marked too when the line goes on; `" "` for an empty line.
/// Each comes with whether it continues. A line that fits one event is borrowed, not copied.
pub fn pieces(message: &str, continues: bool) -> impl Iterator<Item = (Cow<'_, str>, bool)> {
    let mut rest = Some(message);
    std::iter::from_fn(move || {
        let text = rest.take()?;
        if text.is_empty() {
            return Some((Cow::Borrowed(EMPTY_MESSAGE), continues));
        }
        let room = MAX_EVENT_BYTES - CONTINUED_MARKER.len();
        let last_fits = if continues {
            text.len() <= room
        } else {
            text.len() <= MAX_EVENT_BYTES
        };
        if last_fits {
            return Some(if continues {
                (Cow::Owned(format!("{text}{CONTINUED_MARKER}")), true)
            } else {
                (Cow::Borrowed(text), false)
            });
        }
        let mut cut = room;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        rest = Some(&text[cut..]);
        Some((
            Cow::Owned(format!("{}{CONTINUED_MARKER}", &text[..cut])),
            true,
        ))
    })
}

/// What [`LogBatcher::push_event`] did.
#[derive(Debug)]
pub struct Pushed {
    /// The timestamp the event got: the one given, or the previous event's when the clock stepped back
    /// (a batch must be in order).
    pub timestamp_ms: i64,
    /// The batch the event did not fit in, complete.
    pub full: Option<EventBatch>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct LogBatcher {
    batch: EventBatch,
    /// A timestamp of the open batch was clamped (logged once per batch).
    clamped_in_batch: bool,
    /// Events and message bytes of the last batch taken: room reserved when the next one opens (batches
    /// under load fill up alike; an idle batcher holds no buffer).
    last_size: (usize, usize),
}

impl LogBatcher {
    pub fn new() -> LogBatcher {
        LogBatcher::default()
    }

    /// Adds a message (split into pieces when it is too long for one event); returns the batches it
    /// completed, in order (usually none, else one). A returned batch never holds part of the message
    /// unless its pieces need more than one batch by themselves (about 1 MiB or more): then the batch
    /// holding what came before is returned first, followed by full batches of its pieces, and its last
    /// pieces stay open.
    pub fn push_message(&mut self, timestamp_ms: i64, message: &str) -> Vec<EventBatch> {
        let mut out = Vec::new();
        // The common case: one piece.
        if !message.is_empty() && message.len() <= MAX_EVENT_BYTES {
            out.extend(self.push_event(timestamp_ms, message, false).full);
            return out;
        }
        self.note_split(message);
        let pieces: Vec<(Cow<'_, str>, bool)> = pieces(message, false).collect();
        let total: usize = pieces.iter().map(|(p, _)| p.len() + EVENT_OVERHEAD).sum();
        // Keep the pieces of a message that fits one batch together.
        if !self.batch.is_empty() && !self.room_for(total, pieces.len(), timestamp_ms) {
            out.extend(self.take());
        }
        for (piece, continues) in pieces {
            out.extend(self.push_event(timestamp_ms, &piece, continues).full);
        }
        out
    }

    /// Adds one event (a piece from [`pieces`]: 1 to [`MAX_EVENT_BYTES`] bytes); says which timestamp it
    /// got and returns the batch it did not fit in.
    pub fn push_event(&mut self, timestamp_ms: i64, message: &str, continues: bool) -> Pushed {
        let size = message.len() + EVENT_OVERHEAD;
        let full = if !self.batch.is_empty() && !self.room_for(size, 1, timestamp_ms) {
            self.take()
        } else {
            None
        };
        let timestamp_ms = self.add(timestamp_ms, message, continues);
        Pushed { timestamp_ms, full }
    }

    /// Warns about a line too long for one event: it is sent in pieces.
    pub fn note_split(&mut self, message: &str) {
        if message.len() > MAX_EVENT_BYTES {
            warn!(
                bytes = message.len(),
                max = MAX_EVENT_BYTES,
                "a line of {} bytes is longer than a CloudWatch event ({MAX_EVENT_BYTES} bytes): it is sent in pieces, each but the last marked `{}`",
                message.len(),
                CONTINUED_MARKER.trim()
            );
        }
    }

    /// Whether `count` more events of `size` bytes in total, stamped `timestamp_ms`, fit the open batch.
    fn room_for(&self, size: usize, count: usize, timestamp_ms: i64) -> bool {
        let first = self.batch.first_timestamp().unwrap_or(timestamp_ms);
        self.batch.bytes() + size <= MAX_BATCH_BYTES
            && self.batch.len() + count <= MAX_BATCH_EVENTS
            && timestamp_ms.saturating_sub(first) < MAX_SPAN_MS
    }

    /// Appends one event-sized piece to the open batch, clamping its timestamp to keep the batch in order;
    /// returns the timestamp it got.
    fn add(&mut self, timestamp_ms: i64, message: &str, continues: bool) -> i64 {
        let timestamp_ms = match self.batch.last_timestamp() {
            None => {
                self.clamped_in_batch = false;
                let (events, bytes) = self.last_size;
                self.batch.reserve(events, bytes);
                timestamp_ms
            }
            Some(last) if timestamp_ms < last => {
                if !self.clamped_in_batch {
                    self.clamped_in_batch = true;
                    warn!(
                        timestamp_ms,
                        previous_ms = last,
                        "the clock went back by {} ms: the lines are stamped with the previous line's time until it catches up, so the batch stays in order",
                        last - timestamp_ms
                    );
                }
                last
            }
            Some(_) => timestamp_ms,
        };
        self.batch.push_piece(timestamp_ms, message, continues);
        timestamp_ms
    }

    /// Takes the open batch, if it has events.
    pub fn take(&mut self) -> Option<EventBatch> {
        if self.batch.is_empty() {
            return None;
        }
        self.last_size = (self.batch.len(), self.batch.message_bytes());
        Some(std::mem::take(&mut self.batch))
    }

    /// Whether the open batch has no event.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Batches `events` in one go: every batch valid, in order.
    pub fn batch_all<'a>(events: impl IntoIterator<Item = (i64, &'a str)>) -> Vec<EventBatch> {
        let mut batcher = LogBatcher::new();
        let mut out = Vec::new();
        for (timestamp_ms, message) in events {
            out.extend(batcher.push_message(timestamp_ms, message));
        }
        out.extend(batcher.take());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_700_000_000_000;

    /// The pieces of a message that does not go on.
    fn split_message(message: &str) -> Vec<String> {
        pieces(message, false)
            .map(|(p, _)| p.into_owned())
            .collect()
    }

    fn push(b: &mut LogBatcher, event: LogEvent) -> Vec<EventBatch> {
        b.push_message(event.timestamp_ms, &event.message)
    }

    fn ev(ts: i64, msg: &str) -> LogEvent {
        LogEvent {
            timestamp_ms: ts,
            message: msg.to_owned(),
        }
    }

    /// Pushes everything, takes the rest; checks every batch.
    fn run(events: Vec<LogEvent>) -> Vec<Vec<LogEvent>> {
        let batches =
            LogBatcher::batch_all(events.iter().map(|e| (e.timestamp_ms, e.message.as_str())));
        for (i, b) in batches.iter().enumerate() {
            if let Err(e) = check_batch(b) {
                panic!("batch {i} invalid: {e}");
            }
        }
        batches.iter().map(EventBatch::to_events).collect()
    }

    fn unmark(pieces: &[String]) -> String {
        let mut s = String::new();
        for (i, p) in pieces.iter().enumerate() {
            if i + 1 < pieces.len() {
                s.push_str(p.strip_suffix(CONTINUED_MARKER).expect("marked piece"));
            } else {
                s.push_str(p);
            }
        }
        s
    }

    #[test]
    fn small_events_stay_in_one_batch_in_order() {
        let events: Vec<LogEvent> = (0..100).map(|i| ev(T + i, &format!("line {i}"))).collect();
        let batches = run(events.clone());
        assert_eq!(batches, vec![events]);
    }

    #[test]
    fn ten_thousand_events_is_the_most_per_batch() {
        let events: Vec<LogEvent> = (0..25_001).map(|i| ev(T, &format!("{i}"))).collect();
        let batches = run(events.clone());
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![10_000, 10_000, 5_001]);
        assert_eq!(batches.concat(), events);
    }

    #[test]
    fn bytes_count_the_26_byte_overhead_and_fill_exactly() {
        // 1,048,576 / (998 + 26) = 1024 events fill a batch to the byte.
        let msg = "x".repeat(998);
        let events: Vec<LogEvent> = (0..2049).map(|_| ev(T, &msg)).collect();
        let batches = run(events);
        assert_eq!(batches[0].len(), 1024);
        assert_eq!(
            batches[0].iter().map(LogEvent::size).sum::<usize>(),
            MAX_BATCH_BYTES
        );
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            [1024, 1024, 1]
        );
        // One byte more per message: 1023 per batch.
        let msg = "x".repeat(999);
        let batches = run((0..1024).map(|_| ev(T, &msg)).collect());
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [1023, 1]);
    }

    #[test]
    fn multibyte_messages_count_utf8_bytes() {
        // "é" is 2 bytes: 100,000 of them are 200,000 bytes, 5 such events cross 1 MiB.
        let msg = "é".repeat(100_000);
        let batches = run((0..6).map(|_| ev(T, &msg)).collect());
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [5, 1]);
    }

    #[test]
    fn push_reports_the_batch_before_the_event_that_did_not_fit() {
        let mut b = LogBatcher::new();
        let msg = "y".repeat(200_000);
        for _ in 0..5 {
            assert!(push(&mut b, ev(T, &msg)).is_empty());
        }
        // 5 × (200,000 + 26) bytes: a small event still fits, a sixth big one does not.
        assert!(push(&mut b, ev(T, "small")).is_empty());
        let full = push(&mut b, ev(T + 1, &msg));
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].len(), 6);
        assert_eq!(b.take().map(|b| b.to_events()), Some(vec![ev(T + 1, &msg)]));
        assert_eq!(b.take(), None);
        assert!(b.is_empty());
    }

    #[test]
    fn an_over_long_message_is_split_with_markers_and_nothing_lost() {
        let msg: String = (0..700_000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let pieces = split_message(&msg);
        assert_eq!(pieces.len(), 3);
        assert!(pieces.iter().all(|p| p.len() <= MAX_EVENT_BYTES));
        assert_eq!(pieces[0].len(), MAX_EVENT_BYTES);
        assert!(pieces[0].ends_with(CONTINUED_MARKER) && pieces[1].ends_with(CONTINUED_MARKER));
        assert!(!pieces[2].ends_with(CONTINUED_MARKER));
        assert_eq!(unmark(&pieces), msg);

        // Through the batcher: the pieces stay together, in order, with the message's timestamp.
        let batches = run(vec![ev(T, "before"), ev(T + 1, &msg), ev(T + 2, "after")]);
        assert_eq!(batches.len(), 1);
        let texts: Vec<String> = batches[0].iter().map(|e| e.message.clone()).collect();
        assert_eq!(texts[0], "before");
        assert_eq!(unmark(&texts[1..4]), msg);
        assert_eq!(texts[4], "after");
        assert!(batches[0][1..4].iter().all(|e| e.timestamp_ms == T + 1));
    }

    #[test]
    fn a_message_exactly_at_the_limit_is_not_split() {
        let msg = "z".repeat(MAX_EVENT_BYTES);
        assert_eq!(split_message(&msg), vec![msg.clone()]);
        let msg = "z".repeat(MAX_EVENT_BYTES + 1);
        let pieces = split_message(&msg);
        assert_eq!(pieces.len(), 2);
        assert_eq!(unmark(&pieces), msg);
    }

    #[test]
    fn splits_fall_on_character_boundaries() {
        // 4-byte characters, with a 1-byte prefix so the natural cut falls inside one.
        for prefix in ["", "a", "ab", "abc"] {
            let msg = format!("{prefix}{}", "🦀".repeat(200_000));
            let pieces = split_message(&msg);
            assert!(pieces.iter().all(|p| p.len() <= MAX_EVENT_BYTES));
            assert_eq!(unmark(&pieces), msg);
        }
    }

    #[test]
    fn pieces_of_a_message_that_fits_one_batch_are_not_spread_over_two() {
        // 900 KB of earlier lines; a 600 KB message (3 pieces) goes to the next batch whole.
        let filler = "f".repeat(100_000);
        let mut b = LogBatcher::new();
        for _ in 0..9 {
            assert!(push(&mut b, ev(T, &filler)).is_empty());
        }
        let big = "b".repeat(600_000);
        let out = push(&mut b, ev(T, &big));
        assert_eq!(out.len(), 1);
        assert!(out[0].iter().all(|(_, m)| m == filler));
        assert_eq!(b.take().map(|b| b.len()), Some(3));
    }

    #[test]
    fn a_message_larger_than_a_batch_spans_batches_and_arrives_whole() {
        // A 3 MiB line (what 1 MiB of invalid UTF-8 becomes once replaced with U+FFFD).
        let huge = "\u{FFFD}".repeat(1_048_576);
        let mut b = LogBatcher::new();
        assert!(push(&mut b, ev(T, "first")).is_empty());
        let out = push(&mut b, ev(T, &huge));
        assert!(out.len() >= 3, "{}", out.len());
        assert_eq!(out[0].to_events(), vec![ev(T, "first")]);
        let mut all: Vec<LogEvent> = out.iter().skip(1).flat_map(EventBatch::to_events).collect();
        all.extend(b.take().map(|b| b.to_events()).unwrap_or_default());
        let texts: Vec<String> = all.into_iter().map(|e| e.message).collect();
        assert_eq!(unmark(&texts), huge);
        for batch in LogBatcher::batch_all([(T, huge.as_str())]) {
            assert_eq!(check_batch(&batch), Ok(()));
        }
    }

    #[test]
    fn empty_messages_become_one_space() {
        let batches = run(vec![ev(T, "a"), ev(T, ""), ev(T, "b")]);
        let texts: Vec<&str> = batches[0].iter().map(|e| e.message.as_str()).collect();
        assert_eq!(texts, ["a", EMPTY_MESSAGE, "b"]);
        let mut b = LogBatcher::new();
        let _ = push(&mut b, ev(T, ""));
        assert_eq!(
            b.take().map(|b| b.to_events()),
            Some(vec![ev(T, EMPTY_MESSAGE)])
        );
    }

    #[test]
    fn a_clock_stepping_back_is_clamped_within_a_batch() {
        let mut b = LogBatcher::new();
        for (ts, m) in [(T, "a"), (T + 500, "b"), (T - 60_000, "c"), (T + 600, "d")] {
            assert!(push(&mut b, ev(ts, m)).is_empty());
        }
        let batch = b.take().unwrap_or_default();
        let stamps: Vec<i64> = batch.iter().map(|(ts, _)| ts).collect();
        assert_eq!(stamps, [T, T + 500, T + 500, T + 600]);
        assert_eq!(check_batch(&batch), Ok(()));
        // A new batch starts from its own first timestamp.
        let _ = push(&mut b, ev(T - 60_000, "e"));
        assert_eq!(
            b.take().and_then(|v| v.iter().next().map(|(ts, _)| ts)),
            Some(T - 60_000)
        );
    }

    #[test]
    fn a_batch_never_spans_24_hours() {
        let day = MAX_SPAN_MS;
        let batches = run(vec![
            ev(T, "a"),
            ev(T + day - 1, "b"),
            ev(T + day, "c"),
            ev(T + 3 * day, "d"),
        ]);
        let texts: Vec<Vec<&str>> = batches
            .iter()
            .map(|b| b.iter().map(|e| e.message.as_str()).collect())
            .collect();
        assert_eq!(texts, vec![vec!["a", "b"], vec!["c"], vec!["d"]]);
    }

    #[test]
    fn pieces_of_a_line_that_goes_on_are_all_marked() {
        let short: Vec<(String, bool)> = pieces("abc", true)
            .map(|(p, c)| (p.into_owned(), c))
            .collect();
        assert_eq!(short, vec![(format!("abc{CONTINUED_MARKER}"), true)]);
        let long = "x".repeat(MAX_EVENT_BYTES);
        let all: Vec<(String, bool)> = pieces(&long, true)
            .map(|(p, c)| (p.into_owned(), c))
            .collect();
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|(p, c)| *c && p.ends_with(CONTINUED_MARKER)));
        assert!(all.iter().all(|(p, _)| p.len() <= MAX_EVENT_BYTES));
        let texts: Vec<String> = all.into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            texts.concat().replace(CONTINUED_MARKER, ""),
            long,
            "nothing lost"
        );
        assert!(matches!(
            pieces("fits", false).next(),
            Some((Cow::Borrowed("fits"), false))
        ));
    }

    #[test]
    fn the_batch_knows_which_events_go_on_and_slices_keep_it() {
        let mut b = EventBatch::new();
        b.push_piece(T, "a", false);
        b.push_piece(T, "b", true);
        b.push_piece(T, "c", false);
        assert!(!b.continues(0) && b.continues(1) && !b.continues(2));
        let s = b.slice(1..3);
        assert_eq!(s.to_events(), vec![ev(T, "b"), ev(T, "c")]);
        assert!(s.continues(0) && !s.continues(1));
        assert!(b.slice(5..9).is_empty());
    }

    #[test]
    fn push_event_says_which_timestamp_the_event_got() {
        let mut b = LogBatcher::new();
        assert_eq!(b.push_event(T, "a", false).timestamp_ms, T);
        assert_eq!(b.push_event(T - 5, "b", false).timestamp_ms, T);
        let _ = b.take();
        assert_eq!(b.push_event(T - 5, "c", false).timestamp_ms, T - 5);
    }

    #[test]
    fn check_batch_names_what_is_broken() {
        assert!(check_batch(&EventBatch::new()).is_err());
        assert!(
            check_batch(&vec![ev(T, "")].into())
                .unwrap_err()
                .contains("message bytes")
        );
        assert!(
            check_batch(&vec![ev(T, "a"), ev(T - 1, "b")].into())
                .unwrap_err()
                .contains("earlier")
        );
        assert!(
            check_batch(&vec![ev(T, "a"), ev(T + MAX_SPAN_MS, "b")].into())
                .unwrap_err()
                .contains("spans")
        );
        let many: Vec<LogEvent> = (0..10_001).map(|_| ev(T, "a")).collect();
        assert!(check_batch(&many.into()).unwrap_err().contains("events"));
        let big = "x".repeat(MAX_EVENT_BYTES);
        let heavy: Vec<LogEvent> = (0..5).map(|_| ev(T, &big)).collect();
        assert!(check_batch(&heavy.into()).unwrap_err().contains("bytes"));
    }

    /// A deterministic pseudo-random mix of sizes, clocks and empties: every batch valid, nothing lost.
    #[test]
    fn random_streams_batch_validly_and_losslessly() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..10 {
            let mut events = Vec::new();
            let mut ts = T;
            for _ in 0..rng.usize(1..2000) {
                ts += match rng.u8(0..20) {
                    0 => -rng.i64(0..100_000),
                    1 => rng.i64(0..MAX_SPAN_MS),
                    _ => rng.i64(0..50),
                };
                let msg: String = match rng.u8(0..50) {
                    // Long: a few 1-byte characters shift where the 2-byte ones fall against the cuts.
                    0 => {
                        let head = "a".repeat(rng.usize(0..4));
                        let body =
                            "é".repeat(rng.usize(MAX_EVENT_BYTES / 2 - 5..MAX_EVENT_BYTES * 2));
                        head + &body
                    }
                    1 => String::new(),
                    _ => (0..rng.usize(1..300))
                        .map(|_| if rng.bool() { 'a' } else { 'é' })
                        .collect(),
                };
                events.push(LogEvent {
                    timestamp_ms: ts,
                    message: msg,
                });
            }
            let batches = run(events.clone());
            // Joining each line's pieces gives back the input messages, in order.
            let mut got = Vec::new();
            let mut current = String::new();
            for e in batches.into_iter().flatten() {
                // The messages hold only `a` and `é`: a marker can only come from a split.
                match e.message.strip_suffix(CONTINUED_MARKER) {
                    Some(head) => current.push_str(head),
                    None => {
                        current.push_str(&e.message);
                        got.push(std::mem::take(&mut current));
                    }
                }
            }
            let want: Vec<String> = events
                .into_iter()
                .map(|e| {
                    if e.message.is_empty() {
                        EMPTY_MESSAGE.to_owned()
                    } else {
                        e.message
                    }
                })
                .collect();
            assert_eq!(got, want);
        }
    }
}
