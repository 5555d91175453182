//! A storm collapsed: per alert, server and kind, the first notice goes at once; those after it
//! within the quiet window are counted and go as one message when the window closes, which opens
//! the next window. A server failing every few seconds is one message at once and one per window
//! after it, however long it goes on. Pure: the time is the caller's.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use left4me_state::{AlertEvent, Name};

use super::payload::Message;

/// What one alert, server and kind collapse under.
type Key = (Name, Option<Name>, AlertEvent);

/// The open windows.
#[derive(Debug, Clone)]
pub struct Storms {
    quiet: Duration,
    open: BTreeMap<Key, Window>,
}

#[derive(Debug, Clone)]
struct Window {
    closes: SystemTime,
    /// Notices counted since the window opened, not yet sent.
    more: u32,
    /// The newest of them.
    last: Option<Message>,
}

impl Storms {
    pub fn new(quiet: Duration) -> Storms {
        Storms { quiet, open: BTreeMap::new() }
    }

    /// A notice for an alert: the message to send now when it opens a window, None when it is
    /// counted in an open one.
    pub fn admit(&mut self, kind: AlertEvent, message: Message, now: SystemTime) -> Option<Message> {
        let key = (message.alert.clone(), message.server.clone(), kind);
        match self.open.get_mut(&key) {
            Some(window) if now < window.closes => {
                window.more = window.more.saturating_add(1);
                window.last = Some(message);
                None
            }
            _ => {
                self.open.insert(key, Window { closes: now + self.quiet, more: 0, last: None });
                Some(message)
            }
        }
    }

    /// The windows closed by `now`: a message with the count of each that counted any, which
    /// opens the next window; a window that counted none is forgotten.
    pub fn closed(&mut self, now: SystemTime) -> Vec<Message> {
        let seconds = self.quiet.as_secs();
        let mut messages = Vec::new();
        self.open.retain(|_, window| {
            if now < window.closes {
                return true;
            }
            let Some(last) = window.last.take() else { return false };
            messages.push(Message::collapsed(&last, window.more, seconds));
            *window = Window { closes: now + self.quiet, more: 0, last: None };
            true
        });
        messages
    }

    /// When the next window closes.
    pub fn next_close(&self) -> Option<SystemTime> {
        self.open.values().map(|window| window.closes).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        Name::new(text).expect("a valid name")
    }

    fn notice(alert: &str, server: &str, text: &str) -> Message {
        let server = name(server);
        Message::of(&name(alert), AlertEvent::ServerFailed, Some(&server), text, "t", "h")
    }

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + seconds)
    }

    #[test]
    fn the_first_notice_goes_at_once_and_the_rest_as_one_count_when_the_window_closes() {
        let mut storms = Storms::new(Duration::from_secs(600));
        let sent: Vec<Message> = (0..20)
            .filter_map(|i| storms.admit(AlertEvent::ServerFailed, notice("ops", "coop-1", &format!("n{i}")), at(i)))
            .collect();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].message, "n0");
        assert_eq!(storms.next_close(), Some(at(600)));
        assert!(storms.closed(at(599)).is_empty(), "the window is open");
        let closed = storms.closed(at(600));
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].count, 19);
        assert!(closed[0].message.contains("19 more times in the last 10 minutes; the last: n19"), "{:?}", closed[0]);
        // The storm goes on: counted in the window the summary opened, not sent at once.
        assert_eq!(storms.admit(AlertEvent::ServerFailed, notice("ops", "coop-1", "n20"), at(700)), None);
        assert_eq!(storms.closed(at(1200)).iter().map(|m| m.count).collect::<Vec<_>>(), [1]);
        // Quiet for a window: forgotten, and the next notice goes at once.
        assert!(storms.closed(at(1800)).is_empty());
        assert_eq!(storms.next_close(), None);
        assert!(storms.admit(AlertEvent::ServerFailed, notice("ops", "coop-1", "again"), at(1801)).is_some());
    }

    #[test]
    fn alerts_servers_and_kinds_collapse_apart() {
        let mut storms = Storms::new(Duration::from_secs(600));
        let first = [
            (AlertEvent::ServerFailed, notice("ops", "coop-1", "a")),
            (AlertEvent::ServerFailed, notice("ops", "coop-2", "b")),
            (AlertEvent::ServerFailed, notice("chat", "coop-1", "c")),
            (AlertEvent::CrashLoop, notice("ops", "coop-1", "d")),
        ];
        for (kind, message) in first {
            assert!(storms.admit(kind, message, at(0)).is_some(), "{kind}");
        }
        assert!(storms.admit(AlertEvent::CrashLoop, notice("ops", "coop-1", "e"), at(1)).is_none());
        let closed = storms.closed(at(600));
        assert_eq!(closed.len(), 1, "only the one that counted: {closed:?}");
        assert!(closed[0].message.ends_with("the last: e"), "{:?}", closed[0]);
    }
}
