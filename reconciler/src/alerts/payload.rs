//! What each provider is sent for one message: pure, so every shape is tested on plain values.

use left4me_state::{AlertEvent, AlertProvider, Name};
use serde_json::json;

/// Discord refuses a `content` longer than this many characters.
pub const DISCORD_LIMIT: usize = 2000;
/// Any other text is cut to this many characters: a notice carrying a revision's diagnostics
/// could be long, and a chat message is no place for all of them.
pub const TEXT_LIMIT: usize = 4000;

/// One message of an alert: a notice, or the count of those collapsed after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The alert's name.
    pub alert: Name,
    /// The notice's kind (`server-failed`, …), or `test` for `left4me alerts test`.
    pub event: String,
    pub server: Option<Name>,
    /// What happened, in the notice's words, or what the collapsed ones were.
    pub message: String,
    /// How many notices it stands for: 1, or those collapsed within the window.
    pub count: u32,
    /// When it happened (the last notice it stands for), RFC 3339 UTC.
    pub at: String,
    /// This host's name.
    pub host: String,
}

impl Message {
    /// The message of one notice.
    pub fn of(alert: &Name, kind: AlertEvent, server: Option<&Name>, message: &str, at: &str, host: &str) -> Message {
        Message {
            alert: alert.clone(),
            event: kind.as_str().to_owned(),
            server: server.cloned(),
            message: message.to_owned(),
            count: 1,
            at: at.to_owned(),
            host: host.to_owned(),
        }
    }

    /// The message standing for `count` notices collapsed in a window of `window_seconds`,
    /// `last` the newest of them.
    pub fn collapsed(last: &Message, count: u32, window_seconds: u64) -> Message {
        let about = last.server.as_ref().map_or_else(|| "the host".to_owned(), ToString::to_string);
        let times = if count == 1 { "time" } else { "times" };
        Message {
            message: format!(
                "{about}: {} {count} more {times} in the last {}; the last: {}",
                last.event,
                window(window_seconds),
                last.message
            ),
            count,
            ..last.clone()
        }
    }

    /// The text a person reads: the host, then what happened.
    pub fn text(&self) -> String {
        format!("[{}] {}", self.host, self.message)
    }

    /// A title for providers that have one.
    pub fn title(&self) -> String {
        match &self.server {
            Some(server) => format!("left4me on {}: {} {server}", self.host, self.event),
            None => format!("left4me on {}: {}", self.host, self.event),
        }
    }
}

/// What is POSTed to an alert's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub body: String,
    /// Headers beside the body, `Content-Type` among them.
    pub headers: Vec<(String, String)>,
}

/// The request a provider is sent for `message`.
pub fn request(provider: AlertProvider, message: &Message) -> Request {
    let json_type = ("Content-Type".to_owned(), "application/json".to_owned());
    match provider {
        AlertProvider::Discord => Request {
            body: json!({ "content": cut(&message.text(), DISCORD_LIMIT) }).to_string(),
            headers: vec![json_type],
        },
        AlertProvider::Slack => {
            Request { body: json!({ "text": cut(&message.text(), TEXT_LIMIT) }).to_string(), headers: vec![json_type] }
        }
        AlertProvider::Webhook => Request {
            body: json!({
                "event": message.event,
                "server": message.server.as_ref().map(Name::as_str),
                "message": cut(&message.message, TEXT_LIMIT),
                "count": message.count,
                "at": message.at,
                "host": message.host,
                "alert": message.alert.as_str(),
            })
            .to_string(),
            headers: vec![json_type],
        },
        AlertProvider::Ntfy => {
            let (priority, tags) = ntfy_priority_and_tags(&message.event);
            Request {
                body: cut(&message.message, TEXT_LIMIT),
                headers: vec![
                    ("Content-Type".to_owned(), "text/plain; charset=utf-8".to_owned()),
                    ("Title".to_owned(), header_value(&message.title())),
                    ("Tags".to_owned(), tags.to_owned()),
                    ("Priority".to_owned(), priority.to_string()),
                ],
            }
        }
    }
}

/// ntfy's priority (1 to 5, 3 its default) and tags (emoji names it shows) for an event.
fn ntfy_priority_and_tags(event: &str) -> (u8, &'static str) {
    match AlertEvent::parse(event) {
        Some(AlertEvent::ServerFailed | AlertEvent::CrashLoop) => (4, "rotating_light,left4me"),
        Some(AlertEvent::ServerDegraded | AlertEvent::JobFailed | AlertEvent::BackupFailed) => (3, "warning,left4me"),
        Some(AlertEvent::RevisionInvalid) => (3, "x,left4me"),
        Some(AlertEvent::BuildAvailable) => (2, "package,left4me"),
        Some(AlertEvent::ScheduleSkipped) => (2, "fast_forward,left4me"),
        None => (3, "bell,left4me"),
    }
}

/// A text as one header line: a line break would end the header and start another.
fn header_value(text: &str) -> String {
    cut(&text.replace(['\r', '\n'], " "), 250)
}

/// `text` cut to at most `limit` characters, marked with an ellipsis when cut.
fn cut(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(limit.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A window as people read it: `10 minutes`, `30 seconds`, `1 hour`.
fn window(seconds: u64) -> String {
    let (n, unit) = match seconds {
        s if s >= 3600 && s % 3600 == 0 => (s / 3600, "hour"),
        s if s >= 60 && s % 60 == 0 => (s / 60, "minute"),
        s => (s, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        Name::new(text).expect("a valid name")
    }

    fn failed() -> Message {
        let coop = name("coop-1");
        Message::of(
            &name("ops"),
            AlertEvent::ServerFailed,
            Some(&coop),
            "coop-1 failed: the unit failed (exit-code) after 5 restarts",
            "2026-12-01T17:00:00.000Z",
            "l4d2-eu",
        )
    }

    fn json_of(request: &Request) -> serde_json::Value {
        serde_json::from_str(&request.body).expect("the body is JSON")
    }

    #[test]
    fn each_provider_gets_its_own_shape() {
        let message = failed();
        let discord = request(AlertProvider::Discord, &message);
        assert_eq!(
            json_of(&discord),
            json!({"content": "[l4d2-eu] coop-1 failed: the unit failed (exit-code) after 5 restarts"})
        );
        let slack = request(AlertProvider::Slack, &message);
        assert_eq!(
            json_of(&slack),
            json!({"text": "[l4d2-eu] coop-1 failed: the unit failed (exit-code) after 5 restarts"})
        );
        let webhook = request(AlertProvider::Webhook, &message);
        assert_eq!(
            json_of(&webhook),
            json!({
                "event": "server-failed", "server": "coop-1",
                "message": "coop-1 failed: the unit failed (exit-code) after 5 restarts",
                "count": 1, "at": "2026-12-01T17:00:00.000Z", "host": "l4d2-eu", "alert": "ops",
            })
        );
        for json in [&discord, &slack, &webhook] {
            assert_eq!(json.headers, [("Content-Type".to_owned(), "application/json".to_owned())]);
        }
        let ntfy = request(AlertProvider::Ntfy, &message);
        assert_eq!(ntfy.body, "coop-1 failed: the unit failed (exit-code) after 5 restarts");
        let header = |name: &str| ntfy.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(header("Title"), Some("left4me on l4d2-eu: server-failed coop-1"));
        assert_eq!(header("Priority"), Some("4"));
        assert_eq!(header("Tags"), Some("rotating_light,left4me"));
        assert_eq!(header("Content-Type"), Some("text/plain; charset=utf-8"));
    }

    #[test]
    fn a_notice_about_no_server_says_null_and_has_a_title_of_its_kind() {
        let message = Message::of(&name("ops"), AlertEvent::BuildAvailable, None, "build 9 available", "t", "h");
        assert_eq!(json_of(&request(AlertProvider::Webhook, &message))["server"], serde_json::Value::Null);
        let ntfy = request(AlertProvider::Ntfy, &message);
        assert!(ntfy.headers.contains(&("Title".to_owned(), "left4me on h: build-available".to_owned())));
        assert!(ntfy.headers.contains(&("Priority".to_owned(), "2".to_owned())));
    }

    #[test]
    fn a_long_text_is_cut_to_what_discord_takes_and_no_header_breaks_a_line() {
        let mut message = failed();
        message.message = "é".repeat(10_000);
        let content = json_of(&request(AlertProvider::Discord, &message))["content"].as_str().map(str::to_owned);
        let content = content.expect("a content");
        assert_eq!(content.chars().count(), DISCORD_LIMIT);
        assert!(content.ends_with('…'));
        assert_eq!(request(AlertProvider::Ntfy, &message).body.chars().count(), TEXT_LIMIT);

        message.host = "evil\r\nX-Injected: yes".into();
        let ntfy = request(AlertProvider::Ntfy, &message);
        assert!(ntfy.headers.iter().all(|(_, value)| !value.contains(['\r', '\n'])), "{:?}", ntfy.headers);
    }

    #[test]
    fn a_collapsed_message_counts_the_notices_within_the_window() {
        let collapsed = Message::collapsed(&failed(), 12, 600);
        assert_eq!(collapsed.count, 12);
        assert_eq!(
            collapsed.message,
            "coop-1: server-failed 12 more times in the last 10 minutes; the last: coop-1 failed: the unit failed \
             (exit-code) after 5 restarts"
        );
        assert_eq!(json_of(&request(AlertProvider::Webhook, &collapsed))["count"], 12);
        let once = Message::collapsed(&failed(), 1, 45);
        assert!(once.message.contains("1 more time in the last 45 seconds"), "{}", once.message);
        assert_eq!(window(3600), "1 hour");
        assert_eq!(window(90), "90 seconds");
    }
}
