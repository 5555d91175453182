//! The calendar reader agrees with systemd's: every expression of the corpus is given to
//! `systemd-analyze calendar` and to the state repo's `Calendar`, and both take it or both refuse
//! it. The few that left4me refuses on purpose are checked to be ones systemd takes, so the list
//! of differences stays exactly what docs/ARCHITECTURE.md records.

use std::process::Command;

use left4me_state::Calendar;

/// Good and bad alike: every special word, weekdays, dates, times, ranges, repetitions, lists,
/// `~`, UTC, and the typos, bounds, empty parts, huge numbers, stray spaces and trailing garbage
/// that hand-written expressions have.
const CORPUS: &[&str] = &[
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
    "DAILY",
    "Daily",
    "daily UTC",
    "daily utc",
    "hourly  UTC",
    " daily",
    "daily ",
    "dayly",
    "daily,",
    "*-*-* 06:00:00",
    "*-*-* 06:00",
    "*-*-* 06:00:00 UTC",
    "*-*-* 06:00:00  UTC",
    "06:00",
    "6:0",
    "06:00:00",
    "06:00:00:00",
    "06",
    "*:0/15",
    "*:00/15:00",
    "*:*/15",
    "*/2:00",
    "*-*-* *:*:*",
    "*:*",
    "*:*:*",
    "Mon 06:00",
    "mon 06:00",
    "MONDAY 06:00",
    "Monday..Friday 06:00",
    "Mon..Fri 06:00",
    "Mon-Fri 06:00",
    "Mon..Fri 25:00",
    "Mon..Fri 24:00",
    "Mon..Fri 23:59:59",
    "Fri..Mon 06:00",
    "Sat,Sun 10:00",
    "Sat, Sun 10:00",
    "Sat,,Sun 10:00",
    "Mon,",
    "Mon, 06:00",
    "Mon..",
    "Mon.. 06:00",
    "Mon.Fri",
    "Mon..Wed,Fri 06:00",
    "Mon..Tue..Wed 06:00",
    "Mon-Tue-Wed",
    "Mon..Mon",
    "Tues 06:00",
    "Mo 06:00",
    "Mon06:00",
    "Mon  06:00",
    "Mon\t06:00",
    "Mon",
    "Sun..Sat",
    "2024-01-01",
    "2024-01-01 06:00",
    "2024-1-1 6:0:0",
    "24-01-01",
    "69-01-01",
    "70-01-01",
    "0-01-01",
    "100-01-01",
    "1969-01-01",
    "1970-01-01",
    "2199-12-31",
    "2200-01-01",
    "2024..2026-01-01",
    "2024..99-01-01",
    "0..99-01-01",
    "*-02-31",
    "*-02-30 06:00",
    "*-13-01",
    "*-00-01",
    "*-01-00",
    "*-01-32",
    "*-*-31",
    "*-02~01",
    "*-02~03",
    "*-*~1..7",
    "*-02~28",
    "*-02~29",
    "*~01",
    "*~*",
    "2024-01~05",
    "2024~01-05",
    "*-*-1,15 06:00",
    "*-*-1,,15 06:00",
    "*-*-1, 06:00",
    "*-*-01/7",
    "*-*-01/0",
    "*-*-01/31",
    "*-*-01/30",
    "*-*-05..01",
    "*-*-01..05/2",
    "*-*-* 00:00:05.5",
    "*-*-* 00:00:05.",
    "*-*-* 00:00:05..10",
    "*-*-* 00:00:05..5",
    "*-*-* 00:00:05..6",
    "*-*-* 00:00:05..5/1",
    "*-*-* 00:00:59.9999994",
    "*-*-* 00:00:59.9999995",
    "*-*-* 00:00:60",
    "*-*-* 00:00:0/0.5",
    "*-*-* 00:00:0/0.0000001",
    "*-*-* 00:00:0/0.0000005",
    "*-*-* 00:00:0/60",
    "*-*-* 00:00:0/59.999999",
    "*-*-* 06.5:00",
    "*-*-* 99999999999999999999999:00",
    "*-*-* 2147483647:00",
    "*-*-* 2147483648:00",
    "*-*-* 0000000000000000000000006:00",
    "*-*-* 00:00:2147",
    "*-*-* 00:00:2148",
    "*-*-* 06:00 garbage",
    "*-*-* 06:00 ",
    "*-*-* 06:00:00 UTC trailing",
    "2024-01-01  06:00",
    "2024-01-01 ",
    "-01-01",
    "*--01",
    "*-*-*-*",
    "Mon 2024-01-01 06:00",
    "2024-01-01 Mon",
    "Wed..Sat,Tue 12-10-15 1:2:3",
    "*-*-* 1,2,3:0,30",
    "*-*-* +5:00",
    "*-*-* 0x10:00",
    "**:00",
    "UTC",
    " UTC",
    "*-*-* 06:00 Foo/Bar",
    "*-*-* 06:00 Mon",
];

/// systemd takes these; left4me refuses them (a time zone other than UTC, one instant).
const REFUSED_ON_PURPOSE: &[&str] =
    &["daily Europe/Berlin", "Mon 06:00 GMT", "*-*-* 06:00 Asia/Tokyo", "@1700000000", "Mon @1700000000"];

/// Whether systemd takes `expression`, by the exit status of systemd-analyze.
fn systemd_takes(expression: &str) -> bool {
    let output = Command::new("systemd-analyze")
        .args(["calendar", "--", expression])
        // Its own zone's abbreviations are taken as zones too; the corpus is read in UTC everywhere.
        .env("TZ", "UTC")
        .output()
        .expect("systemd-analyze runs (it comes with systemd)");
    output.status.success()
}

#[test]
fn the_calendar_reader_agrees_with_systemd() {
    assert!(CORPUS.len() >= 80, "the corpus lost expressions: {}", CORPUS.len());
    let mut disagreements = Vec::new();
    let (mut good, mut bad) = (0, 0);
    for expression in CORPUS {
        let systemd = systemd_takes(expression);
        let ours = Calendar::new((*expression).to_owned());
        if systemd {
            good += 1
        } else {
            bad += 1
        }
        if systemd != ours.is_ok() {
            disagreements.push(format!(
                "{expression:?}: systemd {}, left4me {ours:?}",
                if systemd { "takes it" } else { "refuses it" }
            ));
        }
    }
    assert!(disagreements.is_empty(), "{} disagreements:\n{}", disagreements.len(), disagreements.join("\n"));
    assert!(good >= 30 && bad >= 30, "the corpus is lopsided: {good} taken, {bad} refused");
}

#[test]
fn left4me_refuses_on_purpose_only_what_systemd_takes() {
    for expression in REFUSED_ON_PURPOSE {
        assert!(systemd_takes(expression), "systemd refuses {expression:?}; it is no deliberate difference");
        let error = Calendar::new((*expression).to_owned()).unwrap_err();
        assert!(
            error.contains("UTC is the only one taken") || error.contains("one instant"),
            "{expression:?}: {error}"
        );
    }
}
