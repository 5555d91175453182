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
//! What it read is kept as [`Times`]: the weekdays and the times of day an expression fires at,
//! from which [`Times::shortest_gap`] bounds how often it fires.
//!
//! Pure and bounded: one pass over at most [`MAX_LEN`] bytes, no allocation beyond the components
//! and the sets of at most 24 hours, 60 minutes and (per component) 61 seconds they expand to.

use std::time::Duration;

/// The longest expression taken; the longest useful one is far shorter.
pub const MAX_LEN: usize = 256;

/// When an expression fires, as far as how often it fires goes: on which weekdays, and at which
/// times of each such day. Its dates (years, months, days of the month) are left out: they only
/// ever make it fire less often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Times {
    /// The weekdays it may fire on, Monday first (all seven when it names none).
    pub weekdays: [bool; 7],
    /// Each of these sets is sorted, distinct and never empty ([`read`] makes them so).
    pub hours: Vec<u64>,
    pub minutes: Vec<u64>,
    /// In microseconds, as systemd keeps them: `05.5` is 5,500,000.
    pub seconds: Vec<u64>,
}

/// Checks a calendar expression; the error says what is wrong and where.
pub fn check(text: &str) -> Result<(), String> {
    read(text).map(drop)
}

/// Reads a calendar expression as [`check`] does, keeping when it fires.
pub fn read(text: &str) -> Result<Times, String> {
    let utc = strip_utc(text);
    let body = utc.unwrap_or(text);
    if body.is_empty() {
        return Err("names a time zone but no time; write one such as \"*-*-* 06:00:00 UTC\"".into());
    }
    if let Some(times) = special(body) {
        return Ok(times);
    }
    parse(body).map_err(|why| match foreign_zone(text).filter(|_| utc.is_none()) {
        Some(zone) => format!(
            "{zone:?} is not a part of a calendar event; if it is a time zone: UTC is the only one taken \
             (without one, the host's local time is used)"
        ),
        None => why,
    })
}

impl Times {
    /// The shortest time between two firings one after the other, never more than the real one
    /// (but for a step under a second, which [`read`] follows only so far: the gap is then under
    /// a second too, if not always the shortest).
    ///
    /// Exact for the times of a day: from one second to the next within a minute, from the last
    /// second of a minute to the first of the next minute, from the last of an hour to the first
    /// of the next hour, and from the last firing of a day to the first of the next day it fires
    /// on. That next day is taken as the nearest its weekdays allow (the next one when every day
    /// matches, a week later for one weekday); its dates only make it fire less often, so they are
    /// not counted, and an expression with dates is held to its times of day.
    pub fn shortest_gap(&self) -> Duration {
        let (first, last) = (|set: &[u64]| set[0], |set: &[u64]| set[set.len() - 1]);
        let (h, m, s) = (&self.hours, &self.minutes, &self.seconds);
        let first_of_day = first(h) * HOUR + first(m) * MINUTE + first(s);
        let last_of_day = last(h) * HOUR + last(m) * MINUTE + last(s);
        let mut gap = days_apart(self.weekdays) * DAY + first_of_day - last_of_day;
        if let Some(step) = closest(s) {
            gap = gap.min(step);
        }
        // The last second of a minute is less than a minute after its first, and so on up.
        if let Some(step) = closest(m) {
            gap = gap.min(step * MINUTE + first(s) - last(s));
        }
        if let Some(step) = closest(h) {
            gap = gap.min(step * HOUR + first(m) * MINUTE + first(s) - last(m) * MINUTE - last(s));
        }
        Duration::from_micros(gap)
    }
}

const MINUTE: u64 = 60 * USEC;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// The fewest days from one weekday it fires on to the next (1 to 7).
fn days_apart(weekdays: [bool; 7]) -> u64 {
    let days: Vec<u64> = weekdays.iter().zip(0..).filter(|(on, _)| **on).map(|(_, day)| day).collect();
    let wrap = days.first().map_or(7, |first| first + 7 - days[days.len() - 1]);
    closest(&days).map_or(wrap, |step| step.min(wrap))
}

/// The smallest step between two values of a sorted, distinct set (None for one value).
fn closest(set: &[u64]) -> Option<u64> {
    set.windows(2).map(|pair| pair[1] - pair[0]).min()
}

/// The words that stand for a whole expression, as systemd spells them (it takes `anually` too),
/// and what each stands for: `minutely` is `*-*-* *:*:00`, `hourly` `*-*-* *:00:00`, `weekly`
/// `Mon *-*-* 00:00:00`, and the others midnight of some days.
const SPECIAL: &[(&str, Special)] = &[
    ("minutely", Special::Minutely),
    ("hourly", Special::Hourly),
    ("daily", Special::Midnight),
    ("monthly", Special::Midnight),
    ("weekly", Special::Weekly),
    ("yearly", Special::Midnight),
    ("annually", Special::Midnight),
    ("anually", Special::Midnight),
    ("quarterly", Special::Midnight),
    ("semiannually", Special::Midnight),
    ("semi-annually", Special::Midnight),
    ("biannually", Special::Midnight),
    ("bi-annually", Special::Midnight),
];

#[derive(Clone, Copy)]
enum Special {
    Minutely,
    Hourly,
    Midnight,
    Weekly,
}

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
        && !SPECIAL.iter().any(|(word, _)| *word == lower);
    looks.then_some(last)
}

/// The expression a special word stands for, when `body` is one.
fn special(body: &str) -> Option<Times> {
    let (_, word) = SPECIAL.iter().find(|(word, _)| body.eq_ignore_ascii_case(word))?;
    let every = |to: u64| (0..=to).collect::<Vec<_>>();
    let midnight = || (vec![0], vec![0], vec![0]);
    let (hours, minutes, seconds) = match word {
        Special::Minutely => (every(23), every(59), vec![0]),
        Special::Hourly => (every(23), vec![0], vec![0]),
        Special::Midnight | Special::Weekly => midnight(),
    };
    let weekdays = match word {
        Special::Weekly => [true, false, false, false, false, false, false],
        _ => [true; 7],
    };
    Some(Times { weekdays, hours, minutes, seconds })
}

fn parse(body: &str) -> Result<Times, String> {
    let mut p = Cursor { text: body.as_bytes(), at: 0 };
    let weekdays = weekdays(&mut p)?;
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
    valid(&mut event)?;
    Ok(Times {
        weekdays: weekdays.unwrap_or([true; 7]),
        hours: expand(&event.hour, 23, 1),
        minutes: expand(&event.minute, 59, 1),
        seconds: expand(&event.second, 60 * USEC - 1, USEC),
    })
}

/// The weekdays before the date: `Mon`, `Mon,Wed`, `Mon..Fri` (or `Mon-Fri`), case-insensitive;
/// the days named, Monday first, or None when there are none.
fn weekdays(p: &mut Cursor<'_>) -> Result<Option<[bool; 7]>, String> {
    let mut range_from: Option<u8> = None;
    let mut first = true;
    let mut named = [false; 7];
    loop {
        let rest = p.rest_lower(9);
        let Some((name, day)) = WEEKDAYS.iter().find(|(name, _)| rest.starts_with(name)) else {
            return if first && p.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
                Err(format!(
                    "{:?} is neither a weekday (Mon, Tue, …) nor one of minutely, hourly, daily, weekly, monthly, yearly",
                    p.word()
                ))
            } else if first {
                Ok(None)
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
        for day in range_from.unwrap_or(*day)..=*day {
            named[usize::from(day)] = true;
        }
        p.advance(name.len());
        match p.peek() {
            None => return Ok(Some(named)),
            Some(b' ') => {
                p.skip_spaces();
                return Ok(Some(named));
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
                None => Ok(Some(named)),
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

/// The time: `hour:minute[:second]`, each part a list; none at all is midnight, and no second
/// is second 0.
fn time(p: &mut Cursor<'_>, event: &mut Event) -> Result<(), String> {
    let zero = || Some(vec![Component { start: 0, stop: None, repeat: 0 }]);
    event.second = zero();
    if p.at_end() {
        (event.hour, event.minute) = (zero(), zero());
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

/// The values of a field, sorted and distinct, up to `to`; `*` steps by `unit`. A step under a
/// second is followed for 60 steps only: that is enough to show it fires more than once a second,
/// and keeps the sets small whatever is written.
fn expand(chain: &Chain, to: u64, unit: u64) -> Vec<u64> {
    let every = [Component { start: 0, stop: None, repeat: unit }];
    let components = chain.as_deref().unwrap_or(&every);
    let mut values: Vec<u64> = Vec::new();
    for c in components {
        let stop = c.stop.unwrap_or(to).min(to);
        let steps = match c.repeat {
            0 => 0,
            repeat => ((stop.saturating_sub(c.start)) / repeat).min(60),
        };
        values.extend((0..=steps).map(|k| c.start + k * c.repeat).filter(|&value| value <= stop));
    }
    values.sort_unstable();
    values.dedup();
    values
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
fn valid(event: &mut Event) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn gap(text: &str) -> Duration {
        read(text).unwrap_or_else(|why| panic!("{text:?}: {why}")).shortest_gap()
    }

    #[test]
    fn the_shortest_gap_is_the_closest_two_firings() {
        let cases: &[(&str, u64)] = &[
            ("*:*:*", 1),
            ("*-*-* *:*:*", 1),
            ("*:*:0/30", 30),
            ("minutely", 60),
            ("*:*", 60),
            ("*:0/1", 60),
            ("*:00,01", 60),
            ("*:0/4", 240),
            // Within the hour every 7 minutes, but from :56 to the next hour's :00 only 4.
            ("*:0/7", 240),
            ("*:0/5", 300),
            ("*:0/15", 900),
            ("hourly", 3600),
            ("06,07:00", 3600),
            ("0/2:00", 7200),
            ("*-*-* 1/6:00", 6 * 3600),
            ("*-*-* 06:00:00", 86_400),
            ("06:00 UTC", 86_400),
            ("daily", 86_400),
            ("monthly", 86_400),
            ("Mon..Fri 04:30", 86_400),
            ("Sun,Mon 10:00", 86_400),
            ("Mon,Thu 10:00", 3 * 86_400),
            ("Mon 06:00", 7 * 86_400),
            ("weekly", 7 * 86_400),
            // 23:58 to the next day's 00:01.
            ("0,23:01,58", 180),
            ("Mon,Tue 0,23:01,58", 180),
            // Monday's 23:58 is days from Wednesday's 00:01: 00:01 to 00:58 is the closest.
            ("Mon,Wed 0,23:01,58", 57 * 60),
            // Dates only make it fire less often: held to its times of day.
            ("2024-01-01 06:00", 86_400),
            ("*-*-01..05 *:0/10", 600),
        ];
        for (text, seconds) in cases {
            assert_eq!(gap(text), Duration::from_secs(*seconds), "{text:?}");
        }
    }

    #[test]
    fn a_gap_under_a_second_is_kept_to_the_microsecond() {
        assert_eq!(gap("*-*-* 00:00:0/0.5"), Duration::from_millis(500));
        assert_eq!(gap("*-*-* 00:00:05,05.25"), Duration::from_millis(250));
        assert_eq!(gap("*-*-* 00:00:0/0.0000005"), Duration::from_micros(1));
        // A whole second's step from a fraction on.
        assert_eq!(gap("*:*:0.5/1"), Duration::from_secs(1));
    }

    #[test]
    fn the_weekdays_are_kept_as_written() {
        let days = |text: &str| read(text).map(|times| times.weekdays);
        assert_eq!(days("Mon..Wed,Fri 06:00"), Ok([true, true, true, false, true, false, false]));
        assert_eq!(days("Sat-Sun"), Ok([false, false, false, false, false, true, true]));
        assert_eq!(days("mon,"), Ok([true, false, false, false, false, false, false]));
        assert_eq!(days("*-*-* 06:00"), Ok([true; 7]));
    }

    #[test]
    fn no_time_is_midnight_and_no_second_is_zero() {
        let time = |text: &str| read(text).map(|t| (t.hours, t.minutes, t.seconds));
        assert_eq!(time("2024-01-01"), Ok((vec![0], vec![0], vec![0])));
        assert_eq!(time("Mon"), Ok((vec![0], vec![0], vec![0])));
        assert_eq!(time("6,18:30"), Ok((vec![6, 18], vec![30], vec![0])));
        assert_eq!(time("*:59:5..7"), Ok(((0..24).collect(), vec![59], vec![5 * USEC, 6 * USEC, 7 * USEC])));
    }

    /// Every firing of 15 days (from a Monday: two of each weekday), one after the other: the
    /// closest two, by brute force.
    fn brute_force(times: &Times) -> Duration {
        let mut previous: Option<u64> = None;
        let mut closest = u64::MAX;
        for day in 0..15u64 {
            let weekday = usize::try_from(day % 7).expect("a weekday is under 7");
            if !times.weekdays[weekday] {
                continue;
            }
            for hour in &times.hours {
                for minute in &times.minutes {
                    for second in &times.seconds {
                        let at = day * DAY + hour * HOUR + minute * MINUTE + second;
                        if let Some(previous) = previous {
                            closest = closest.min(at - previous);
                        }
                        previous = Some(at);
                    }
                }
            }
        }
        Duration::from_micros(closest)
    }

    #[test]
    fn the_shortest_gap_is_what_every_firing_of_two_weeks_shows() {
        let weekdays = ["", "Mon ", "Sun,Mon ", "Mon,Thu ", "Tue..Sat "];
        let hours = ["*", "6", "0,23", "1/6", "5..7"];
        let minutes = ["*", "0", "0/7", "1,58", "10..12"];
        let seconds = ["", ":*", ":0/25", ":59", ":5,55.5"];
        let mut checked = 0;
        for w in weekdays {
            for h in hours {
                for m in minutes {
                    for s in seconds {
                        let text = format!("{w}{h}:{m}{s}");
                        let times = read(&text).unwrap_or_else(|why| panic!("{text:?}: {why}"));
                        assert_eq!(times.shortest_gap(), brute_force(&times), "{text:?}");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 625);
    }
}
