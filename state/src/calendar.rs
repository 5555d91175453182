//! systemd's calendar events (systemd.time(7), `OnCalendar=`), read exactly as systemd reads them.
//!
//! A schedule's `at` becomes a timer's `OnCalendar=` as written, so what this reader takes is what
//! systemd takes: the same grammar, the same bounds on every field (years 1970 to 2199), the same
//! two-digit years (`24-01-01` is 2024), the same odd corners (`Mon,` is a weekday list, `5..5` is
//! an empty range of seconds). It differs on purpose in two places, each refused with its reason:
//! a time zone other than UTC (a zone's name is only as good as the tzdata of the host that runs
//! the timer, and a timer systemd cannot read never fires), and `@<seconds>`, one instant rather
//! than a repeating time. The corpus test in `tests/it/calendar.rs` holds both readers to this.
//!
//! Pure and bounded: one pass over at most [`MAX_LEN`] bytes, no allocation beyond the components.

/// The longest expression taken; the longest useful one is far shorter.
pub const MAX_LEN: usize = 256;

/// Checks a calendar expression; the error says what is wrong and where.
pub fn check(text: &str) -> Result<(), String> {
    let utc = strip_utc(text);
    let body = utc.unwrap_or(text);
    if body.is_empty() {
        return Err("names a time zone but no time; write one such as \"*-*-* 06:00:00 UTC\"".into());
    }
    if SPECIAL.iter().any(|word| body.eq_ignore_ascii_case(word)) {
        return Ok(());
    }
    parse(body).map_err(|why| match foreign_zone(text).filter(|_| utc.is_none()) {
        Some(zone) => format!(
            "{zone:?} is not a part of a calendar event; if it is a time zone: UTC is the only one taken \
             (without one, the host's local time is used)"
        ),
        None => why,
    })
}

/// The words that stand for a whole expression, as systemd spells them (it takes `anually` too).
const SPECIAL: &[&str] = &[
    "minutely",
    "hourly",
    "daily",
    "monthly",
    "weekly",
    "yearly",
    "annually",
    "anually",
    "quarterly",
    "semiannually",
    "semi-annually",
    "biannually",
    "bi-annually",
];

/// Weekday names as systemd matches them: a full name before its abbreviation.
const WEEKDAYS: &[(&str, u8)] = &[
    ("monday", 0),
    ("mon", 0),
    ("tuesday", 1),
    ("tue", 1),
    ("wednesday", 2),
    ("wed", 2),
    ("thursday", 3),
    ("thu", 3),
    ("friday", 4),
    ("fri", 4),
    ("saturday", 5),
    ("sat", 5),
    ("sunday", 6),
    ("sun", 6),
];

/// systemd refuses a list of more components than this in one field.
const MAX_COMPONENTS: usize = 241;

/// Seconds are kept in microseconds, as systemd keeps them, so that `05.5` is exact.
const USEC: u64 = 1_000_000;

/// Values above this are refused (systemd keeps each in an `int`).
const INT_MAX: u64 = i32::MAX as u64;

/// One item of a field's list: `start`, `start..stop`, `start/repeat` or `start..stop/repeat`.
#[derive(Debug, Clone, Copy)]
struct Component {
    start: u64,
    stop: Option<u64>,
    repeat: u64,
}

/// A field's list; `None` is `*`.
type Chain = Option<Vec<Component>>;

#[derive(Default)]
struct Event {
    year: Chain,
    month: Chain,
    day: Chain,
    end_of_month: bool,
    hour: Chain,
    minute: Chain,
    second: Chain,
}

/// `text` without a trailing ` UTC` (in any case), when it has one.
fn strip_utc(text: &str) -> Option<&str> {
    let cut = text.len().checked_sub(4)?;
    let (body, zone) = (text.get(..cut)?, text.get(cut..)?);
    zone.eq_ignore_ascii_case(" UTC").then_some(body)
}

/// The last word of an expression that systemd would try as a time zone's name, when it looks
/// like one: a letter first, and no weekday.
fn foreign_zone(text: &str) -> Option<&str> {
    let (_, last) = text.rsplit_once(' ')?;
    let lower = last.to_ascii_lowercase();
    let looks = last.starts_with(|c: char| c.is_ascii_alphabetic())
        && !WEEKDAYS.iter().any(|(name, _)| lower.starts_with(name))
        && !SPECIAL.contains(&lower.as_str());
    looks.then_some(last)
}

fn parse(body: &str) -> Result<(), String> {
    let mut p = Cursor { text: body.as_bytes(), at: 0 };
    weekdays(&mut p)?;
    if p.peek() == Some(b'@') {
        return Err(
            "@<seconds> names one instant, and a schedule repeats; write the date and time it should repeat at".into(),
        );
    }
    let mut event = Event::default();
    date(&mut p, &mut event)?;
    time(&mut p, &mut event)?;
    if !p.at_end() {
        return Err(p.unexpected("the end after the time"));
    }
    valid(event)
}

/// The weekdays before the date: `Mon`, `Mon,Wed`, `Mon..Fri` (or `Mon-Fri`), case-insensitive.
fn weekdays(p: &mut Cursor<'_>) -> Result<(), String> {
    let mut range_from: Option<u8> = None;
    let mut first = true;
    loop {
        let rest = p.rest_lower(9);
        let Some((name, day)) = WEEKDAYS.iter().find(|(name, _)| rest.starts_with(name)) else {
            return if first && p.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
                Err(format!(
                    "{:?} is neither a weekday (Mon, Tue, …) nor one of minutely, hourly, daily, weekly, monthly, yearly",
                    p.word()
                ))
            } else if first {
                Ok(())
            } else {
                Err(p.unexpected("a weekday (Mon, Tue, … or Monday, Tuesday, …)"))
            };
        };
        let after = p.byte_at(name.len());
        if !matches!(after, None | Some(b'-' | b'.' | b',' | b' ')) {
            let word: String = p.word();
            return Err(format!("{word:?} is not a weekday; write Mon, Tue, … or Monday, Tuesday, …"));
        }
        if let Some(from) = range_from
            && from > *day
        {
            return Err(format!("the weekday range ending in {} runs backwards; write it from Mon to Sun", p.word()));
        }
        p.advance(name.len());
        match p.peek() {
            None => return Ok(()),
            Some(b' ') => {
                p.skip_spaces();
                return Ok(());
            }
            Some(b'.') => {
                if range_from.is_some() || p.byte_at(1) != Some(b'.') {
                    return Err(p.unexpected("a weekday range written Mon..Fri"));
                }
                range_from = Some(*day);
                p.advance(2);
            }
            Some(b'-') => {
                if range_from.is_some() {
                    return Err(p.unexpected("a weekday range written Mon..Fri"));
                }
                range_from = Some(*day);
                p.advance(1);
            }
            _ => {
                range_from = None;
                p.advance(1);
            }
        }
        // A trailing comma is taken, an open range is not.
        if matches!(p.peek(), None | Some(b' ')) {
            p.skip_spaces();
            return match range_from {
                None => Ok(()),
                Some(_) => Err("a weekday range is open; name its last day, as in Mon..Fri".into()),
            };
        }
        first = false;
    }
}

/// The date: `year-month-day` or `month-day`, each part a list, `~` before the day counting from
/// the month's end. A first part followed by `:` (or nothing) was the time: nothing is read.
fn date(p: &mut Cursor<'_>, event: &mut Event) -> Result<(), String> {
    if p.at_end() {
        return Ok(());
    }
    let mut t = p.clone();
    let first = chain(&mut t, false)?;
    if matches!(t.peek(), None | Some(b':')) {
        return Ok(());
    }
    event.end_of_month = date_separator(&mut t)?;
    let second = chain(&mut t, false)?;
    if matches!(t.peek(), None | Some(b' ')) {
        t.skip_spaces();
        *p = t;
        (event.month, event.day) = (first, second);
        return Ok(());
    }
    if event.end_of_month {
        return Err(t.unexpected("a space after the day counted from the month's end (month~day)"));
    }
    event.end_of_month = date_separator(&mut t)?;
    let third = chain(&mut t, false)?;
    if !matches!(t.peek(), None | Some(b' ')) {
        return Err(t.unexpected("a space between the date and the time"));
    }
    t.skip_spaces();
    *p = t;
    (event.year, event.month, event.day) = (first, second, third);
    Ok(())
}

/// `-` between the parts of a date, or `~` before a day counted from the month's end (true).
fn date_separator(t: &mut Cursor<'_>) -> Result<bool, String> {
    let end_of_month = match t.peek() {
        Some(b'~') => true,
        Some(b'-') => false,
        _ => return Err(t.unexpected("- between the parts of a date, or : in a time")),
    };
    t.advance(1);
    Ok(end_of_month)
}

/// The time: `hour:minute[:second]`, each part a list; none at all is midnight.
fn time(p: &mut Cursor<'_>, event: &mut Event) -> Result<(), String> {
    if p.at_end() {
        return Ok(());
    }
    event.hour = chain(p, false)?;
    if p.peek() != Some(b':') {
        return Err(p.unexpected(": between the hour and the minute"));
    }
    p.advance(1);
    event.minute = chain(p, false)?;
    if p.at_end() {
        return Ok(());
    }
    if p.peek() == Some(b' ') {
        return Err(format!("{:?} follows the time; only \" UTC\" may", p.rest()));
    }
    if p.peek() != Some(b':') {
        return Err(p.unexpected(": between the minute and the second"));
    }
    p.advance(1);
    event.second = chain(p, true)?;
    if p.peek() == Some(b' ') {
        return Err(format!("{:?} follows the time; only \" UTC\" may", p.rest()));
    }
    Ok(())
}

/// One field: `*`, or components separated by commas.
fn chain(t: &mut Cursor<'_>, usec: bool) -> Result<Chain, String> {
    if t.peek() == Some(b'*') {
        t.advance(1);
        return Ok(None);
    }
    let mut components = vec![component(t, usec)?];
    while t.peek() == Some(b',') {
        t.advance(1);
        if components.len() == MAX_COMPONENTS {
            return Err(format!("a list of more than {MAX_COMPONENTS} values is not taken"));
        }
        components.push(component(t, usec)?);
    }
    Ok(Some(components))
}

fn component(t: &mut Cursor<'_>, usec: bool) -> Result<Component, String> {
    let start = decimal(t, usec)?;
    let mut stop = None;
    let mut repeat = 0;
    if t.peek() == Some(b'.') && t.byte_at(1) == Some(b'.') {
        t.advance(2);
        stop = Some(decimal(t, usec)?);
        repeat = if usec { USEC } else { 1 };
    }
    if t.peek() == Some(b'/') {
        t.advance(1);
        repeat = decimal(t, usec)?;
        if repeat == 0 {
            return Err("a repetition of 0 never moves on; repeat every 1 or more".into());
        }
    } else if let Some(stop) = stop
        && usec
        && start + repeat > stop
    {
        // systemd steps through a range of seconds a whole second at a time, so a range shorter
        // than a second holds nothing.
        return Err(format!(
            "the range of seconds {}..{} is shorter than a second",
            show(start, true),
            show(stop, true)
        ));
    }
    if !matches!(t.peek(), None | Some(b' ' | b',' | b'-' | b'~' | b':')) {
        return Err(t.unexpected("a number, a range a..b, a repetition a/b or a list a,b"));
    }
    Ok(Component { start, stop, repeat })
}

/// A number; in seconds, with an optional fraction of up to six digits (rounded at the seventh).
fn decimal(t: &mut Cursor<'_>, usec: bool) -> Result<u64, String> {
    if !t.peek().is_some_and(|b| b.is_ascii_digit()) {
        return Err(t.unexpected("a number"));
    }
    let mut value: u64 = 0;
    let mut overflow = false;
    while let Some(digit) = t.peek().filter(u8::is_ascii_digit) {
        match value.checked_mul(10).and_then(|v| v.checked_add(u64::from(digit - b'0'))) {
            Some(next) => value = next,
            None => overflow = true,
        }
        t.advance(1);
    }
    let too_large = || "a number is too large for any field of a calendar event".to_owned();
    if overflow {
        return Err(too_large());
    }
    if usec {
        value = value.checked_mul(USEC).ok_or_else(too_large)?;
        if t.peek() == Some(b'.') && t.byte_at(1) != Some(b'.') {
            t.advance(1);
            value = value.checked_add(fraction(t)?).ok_or_else(too_large)?;
        }
    }
    if value > INT_MAX {
        return Err(too_large());
    }
    Ok(value)
}

/// The microseconds of a fraction of a second, after its `.`.
fn fraction(t: &mut Cursor<'_>) -> Result<u64, String> {
    if !t.peek().is_some_and(|b| b.is_ascii_digit()) {
        return Err(t.unexpected("a digit after the decimal point"));
    }
    let mut micros = 0;
    for _ in 0..6 {
        let digit = t.peek().filter(u8::is_ascii_digit).map_or(0, |digit| {
            t.advance(1);
            u64::from(digit - b'0')
        });
        micros = micros * 10 + digit;
    }
    if t.peek().is_some_and(|b| (b'5'..=b'9').contains(&b)) {
        micros += 1;
    }
    while t.peek().is_some_and(|b| b.is_ascii_digit()) {
        t.advance(1);
    }
    Ok(micros)
}

/// Each field within its bounds, as systemd checks them after reading two-digit years as
/// 1970 to 2069.
fn valid(mut event: Event) -> Result<(), String> {
    for component in event.year.iter_mut().flatten() {
        component.start = full_year(component.start);
        component.stop = component.stop.map(full_year);
    }
    // `~` with every day is every day.
    let end_of_month = event.end_of_month && event.day.is_some();
    let day_to = if end_of_month { 28 } else { 31 };
    in_bounds("year", &event.year, 1970, 2199, false)?;
    in_bounds("month", &event.month, 1, 12, false)?;
    in_bounds(if end_of_month { "day from the month's end" } else { "day" }, &event.day, 1, day_to, false)?;
    in_bounds("hour", &event.hour, 0, 23, false)?;
    in_bounds("minute", &event.minute, 0, 59, false)?;
    in_bounds("second", &event.second, 0, 60 * USEC - 1, true)
}

fn full_year(year: u64) -> u64 {
    match year {
        0..70 => year + 2000,
        70..100 => year + 1900,
        _ => year,
    }
}

fn in_bounds(field: &str, chain: &Chain, from: u64, to: u64, usec: bool) -> Result<(), String> {
    let bounds = format!("{} to {}", show(from, usec), show(to, usec));
    for c in chain.iter().flatten() {
        for value in [Some(c.start), c.stop].into_iter().flatten() {
            if !(from..=to).contains(&value) {
                return Err(format!("the {field} {} is outside {bounds}", show(value, usec)));
            }
        }
        if c.repeat > to - from {
            return Err(format!(
                "the {field} repeats every {}, more than its whole span of {bounds}",
                show(c.repeat, usec)
            ));
        }
        if let Some(stop) = c.stop
            && c.start > stop
        {
            return Err(format!(
                "the {field} range {}..{} runs backwards; write it from the smaller",
                show(c.start, usec),
                show(stop, usec)
            ));
        }
    }
    Ok(())
}

/// A value as written: seconds with their fraction.
fn show(value: u64, usec: bool) -> String {
    match (usec, value % USEC) {
        (false, _) => value.to_string(),
        (true, 0) => (value / USEC).to_string(),
        (true, micros) => format!("{}.{micros:06}", value / USEC).trim_end_matches('0').to_owned(),
    }
}

#[derive(Clone)]
struct Cursor<'a> {
    text: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.byte_at(0)
    }

    fn byte_at(&self, ahead: usize) -> Option<u8> {
        self.text.get(self.at + ahead).copied()
    }

    fn at_end(&self) -> bool {
        self.at >= self.text.len()
    }

    fn advance(&mut self, by: usize) {
        self.at = (self.at + by).min(self.text.len());
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.at += 1;
        }
    }

    fn rest(&self) -> String {
        String::from_utf8_lossy(&self.text[self.at..]).into_owned()
    }

    /// Up to `n` bytes from here, in lower case, to match names against.
    fn rest_lower(&self, n: usize) -> String {
        let end = (self.at + n).min(self.text.len());
        String::from_utf8_lossy(&self.text[self.at..end]).to_ascii_lowercase()
    }

    /// The word from here to the next space or separator.
    fn word(&self) -> String {
        let rest = &self.text[self.at..];
        let end = rest.iter().position(|b| matches!(b, b' ' | b',' | b'.' | b'-')).unwrap_or(rest.len());
        String::from_utf8_lossy(&rest[..end]).into_owned()
    }

    fn unexpected(&self, expected: &str) -> String {
        match self.at_end() {
            true => format!("expected {expected} at the end"),
            false => format!("expected {expected} at character {}, found {:?}", self.at + 1, self.rest()),
        }
    }
}
