//! Alerts: notices raised where things happen (a pass, a job, a look at the servers' health) and
//! delivered by a thread of the service, with its own database connection, so that a slow or
//! dead receiver never holds a pass. The delivery thread reads the notices after its cursor
//! (`meta.alerts_cursor`), matches them against the alerts of the last valid revision, collapses
//! storms (`storm.rs`), and sends each message (`payload.rs` shapes it, `send.rs` sends it with
//! curl) with retries; a delivery that still fails is an event, never a notice, so a broken
//! receiver cannot feed itself.

mod payload;
mod send;
mod storm;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use l4d2ctl::api::Detail;
use left4me_state::{Alert, AlertEvent, AlertProvider, DesiredState, Name};

pub use payload::{Message, Request, request};
pub use send::{Answer, SECRETS_FILE};
pub use storm::Storms;

use crate::crashloop::{self, CrashLoop};
use crate::db::{Db, DbError, Event, now};
use crate::report::Health;

/// The quiet window's default: one message per alert, server and kind per ten minutes.
pub const DEFAULT_QUIET: Duration = Duration::from_secs(600);
/// The waits before each try of a delivery: at once, then after 2 s, then after 10 s more.
pub const TRIES: [Duration; 3] = [Duration::ZERO, Duration::from_secs(2), Duration::from_secs(10)];
/// How often the delivery thread looks for notices when no pass wakes it.
const POLL: Duration = Duration::from_secs(3);
/// How often the servers' health is looked at when no pass wakes the thread, while an alert
/// wants it: the grace a running game has to answer.
const HEALTH_EVERY: Duration = Duration::from_secs(crate::report::QUERY_GRACE_SECONDS);
/// The least time between two looks at the servers' health, however often passes run (a failing
/// pass is retried every 2 s at first): a full look asks every game over A2S.
const HEALTH_AT_MOST: Duration = Duration::from_secs(10);
/// Notices read at once.
const BATCH: usize = 100;

/// How alerts are delivered on this host.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The storm window (`LEFT4ME_ALERT_QUIET_SECONDS`, default 600).
    pub quiet: Duration,
    /// Where the URLs are (`/etc/left4me/secrets.env`).
    pub secrets: PathBuf,
    /// This host's name, as messages carry it.
    pub host: String,
}

impl Settings {
    /// From the environment (host.env is the service's environment file).
    pub fn from_env() -> Settings {
        let quiet = match std::env::var("LEFT4ME_ALERT_QUIET_SECONDS") {
            Ok(text) => match text.trim().parse::<u64>() {
                Ok(seconds) => Duration::from_secs(seconds.max(1)),
                Err(_) => {
                    tracing::warn!(
                        "LEFT4ME_ALERT_QUIET_SECONDS={text:?} is not a number of seconds; alerts use {} s",
                        DEFAULT_QUIET.as_secs()
                    );
                    DEFAULT_QUIET
                }
            },
            Err(_) => DEFAULT_QUIET,
        };
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|name| name.into_string().ok())
            .unwrap_or_else(|| "left4me".to_owned());
        Settings { quiet, secrets: PathBuf::from(SECRETS_FILE), host }
    }
}

/// What the delivery thread needs of the service.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub db: PathBuf,
    pub state: PathBuf,
    pub l4d2ctl: PathBuf,
    pub settings: Settings,
}

/// Wakes the delivery thread: a pass has ended.
pub struct Waker(mpsc::Sender<()>);

impl Waker {
    pub fn wake(&self) {
        let _ = self.0.send(());
    }
}

/// Starts the delivery thread; it runs for as long as the returned waker is kept.
pub fn spawn(delivery: Delivery) -> Waker {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || deliver_until_dropped(&delivery, &rx));
    Waker(tx)
}

fn deliver_until_dropped(delivery: &Delivery, wakes: &mpsc::Receiver<()>) {
    let db = loop {
        match Db::open(&delivery.db) {
            Ok(db) => break db,
            Err(e) => tracing::warn!("alerts wait for the database: {e}"),
        }
        if matches!(wakes.recv_timeout(POLL), Err(RecvTimeoutError::Disconnected)) {
            return;
        }
    };
    let mut deliverer =
        Deliverer { delivery, db, storms: Storms::new(delivery.settings.quiet), known: None, read: None, looked: None };
    let mut woken = true;
    loop {
        if let Err(e) = deliverer.round(woken) {
            tracing::warn!("alerts: {e}");
        }
        let wait = deliverer
            .storms
            .next_close()
            .and_then(|at| at.duration_since(SystemTime::now()).ok())
            .map_or(POLL, |until| until.min(POLL));
        woken = match wakes.recv_timeout(wait) {
            Ok(()) => {
                // A burst of passes is one wake.
                while wakes.try_recv().is_ok() {}
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => return,
        };
    }
}

/// The delivery thread between its rounds.
struct Deliverer<'a> {
    delivery: &'a Delivery,
    db: Db,
    storms: Storms,
    /// What the last valid revision seen declares.
    known: Option<DesiredState>,
    /// The revision last attempted when the alerts were last read, whatever came of it.
    read: Option<String>,
    /// When the servers' health was last looked at.
    looked: Option<Instant>,
}

impl Deliverer<'_> {
    /// One round: the alerts brought up to date, the health looked at when due, the notices after
    /// the cursor matched and collapsed, the windows that closed counted, and all of it sent.
    fn round(&mut self, woken: bool) -> Result<(), DbError> {
        self.refresh_alerts()?;
        let Some(known) = &self.known else { return self.skip_notices() };
        let alerts: Vec<Alert> = known.alerts.values().cloned().collect();
        let due = if woken { HEALTH_AT_MOST } else { HEALTH_EVERY };
        if self.looked.is_none_or(|at| at.elapsed() >= due) {
            self.look_at_health(&alerts)?;
        }
        let mut outgoing = Vec::new();
        let start = self.cursor()?;
        let mut cursor = start;
        loop {
            let notices = self.db.notices_after(cursor, BATCH)?;
            let Some(last) = notices.last() else { break };
            cursor = last.id;
            for notice in &notices {
                for alert in alerts.iter().filter(|alert| alert.wants(notice.kind, notice.server.as_ref())) {
                    let host = &self.delivery.settings.host;
                    let message = Message::of(
                        &alert.name,
                        notice.kind,
                        notice.server.as_ref(),
                        &notice.message,
                        &notice.at,
                        host,
                    );
                    outgoing.extend(self.storms.admit(notice.kind, message, SystemTime::now()));
                }
            }
        }
        self.move_cursor(start, cursor)?;
        outgoing.extend(self.storms.closed(SystemTime::now()));
        for message in outgoing {
            // An alert the revision no longer declares is not told what was counted for it.
            let Some(alert) = alerts.iter().find(|alert| alert.name == message.alert) else { continue };
            if let Err(why) = deliver(alert, &message, &self.delivery.settings) {
                self.db.add_event(&Event {
                    at: now(),
                    kind: "alert".into(),
                    revision: None,
                    duration_ms: None,
                    steps: None,
                    message: format!("alert {}: delivery failed: {why}", alert.name),
                })?;
            }
        }
        Ok(())
    }

    /// The cursor: the last notice already looked at.
    fn cursor(&self) -> Result<i64, DbError> {
        Ok(self.db.meta("alerts_cursor")?.and_then(|text| text.parse().ok()).unwrap_or(0))
    }

    /// Keeps the cursor when it moved: a round with nothing new writes nothing.
    fn move_cursor(&self, from: i64, to: i64) -> Result<(), DbError> {
        if from == to {
            return Ok(());
        }
        self.db.set_meta("alerts_cursor", Some(&to.to_string()))
    }

    /// With no valid revision known, no alert wants anything: the notices so far are passed.
    fn skip_notices(&mut self) -> Result<(), DbError> {
        let start = self.cursor()?;
        let mut cursor = start;
        while let Some(last) = self.db.notices_after(cursor, BATCH)?.last() {
            cursor = last.id;
        }
        self.move_cursor(start, cursor)
    }

    /// Reads the revision the passes last attempted when it changed: a valid one gives the
    /// alerts; an invalid one keeps those of the last valid one (the last applied, after a
    /// restart).
    fn refresh_alerts(&mut self) -> Result<(), DbError> {
        let Some(attempted) = self.db.meta("last_attempted")? else { return Ok(()) };
        if self.read.as_deref() == Some(attempted.as_str()) {
            return Ok(());
        }
        let mut candidates = vec![attempted.clone()];
        if self.known.is_none() {
            candidates.extend(self.db.meta("last_applied")?);
        }
        self.read = Some(attempted);
        for revision in candidates {
            match left4me_state::load_revision(&self.delivery.state, &revision) {
                Ok((_, Ok(desired))) => {
                    self.known = Some(desired);
                    return Ok(());
                }
                Ok((_, Err(_))) => {}
                Err(e) => tracing::warn!("alerts cannot read revision {revision}: {e}"),
            }
        }
        Ok(())
    }

    /// Looks at the servers (one full `l4d2ctl observe`) when an alert wants their health, and
    /// raises a notice for each that has turned Failed or Degraded since the last look.
    fn look_at_health(&mut self, alerts: &[Alert]) -> Result<(), DbError> {
        let wanted = alerts.iter().any(|alert| {
            alert.events.iter().any(|e| matches!(e, AlertEvent::ServerFailed | AlertEvent::ServerDegraded))
        });
        if !wanted {
            return Ok(());
        }
        self.looked = Some(Instant::now());
        let Some(known) = &self.known else { return Ok(()) };
        let host = match crate::host::observe(&self.delivery.l4d2ctl, Detail::Full) {
            Ok(host) => host,
            Err(e) => {
                tracing::warn!("alerts cannot look at the servers' health: {e}");
                return Ok(());
            }
        };
        let now: BTreeMap<Name, (Health, String)> = known
            .servers
            .iter()
            .filter_map(|(name, server)| {
                let observed = host.instances.get(name)?;
                Some((name.clone(), crate::report::health(Some(server), Some(observed))))
            })
            .collect();
        note_health(&self.db, &now)
    }
}

/// The meta key keeping each server's health at the last look, so that a notice is raised on a
/// change into Failed or Degraded, not at every look while it stays so (a restart included).
const HEALTH_KEY: &str = "alerts_health";

/// Raises `server-failed` or `server-degraded` for each server whose health turned so since the
/// last look, and keeps this look's.
pub fn note_health(db: &Db, now: &BTreeMap<Name, (Health, String)>) -> Result<(), DbError> {
    let before: BTreeMap<String, Health> =
        db.meta(HEALTH_KEY)?.and_then(|text| serde_json::from_str(&text).ok()).unwrap_or_default();
    for (name, (health, message)) in now {
        if before.get(name.as_str()) == Some(health) {
            continue;
        }
        match health {
            Health::Failed => {
                db.add_notice(AlertEvent::ServerFailed, Some(name), &format!("{name} failed: {message}"))?
            }
            Health::Degraded => {
                db.add_notice(AlertEvent::ServerDegraded, Some(name), &format!("{name} is degraded: {message}"))?;
            }
            _ => {}
        }
    }
    let after: BTreeMap<&str, Health> = now.iter().map(|(name, (health, _))| (name.as_str(), *health)).collect();
    let text = serde_json::to_string(&after).expect("a map of healths serializes");
    if before.len() != after.len() || before.iter().any(|(name, health)| after.get(name.as_str()) != Some(health)) {
        db.set_meta(HEALTH_KEY, Some(&text))?;
    }
    Ok(())
}

/// Raises `revision-invalid` for a revision found invalid, once: a pass over the same invalid
/// revision again (every resync) says nothing new. Called before the pass records it.
pub fn revision_invalid(db: &Db, revision: &str, diagnostics: &str) -> Result<(), DbError> {
    let again = db.meta("last_attempted")?.as_deref() == Some(revision) && db.meta("revision_error")?.is_some();
    if again {
        return Ok(());
    }
    let count = diagnostics.lines().count();
    let first = diagnostics.lines().next().unwrap_or_default();
    let more = if count > 1 { format!(" (and {} more)", count - 1) } else { String::new() };
    let message = format!(
        "revision {} is invalid; nothing applied, the last good revision keeps running: {first}{more}",
        &revision[..revision.len().min(12)]
    );
    db.add_notice(AlertEvent::RevisionInvalid, None, &message)
}

/// Job kinds whose target is a server: a step of the plan, a backup or a restore. Any other job
/// (units, a check, the game's builds, an overlay, the schedules' timers) is about no server, so
/// its notice goes to every alert of its kind rather than to none.
pub const ABOUT_A_SERVER: [&str; 10] =
    ["release", "create", "re-render", "repair", "start", "stop", "restart", "delete", "backup", "restore"];

/// Raises `job-failed` for job `id`, about its target when that is a server; with the job's last
/// line, which usually says why.
pub fn job_failed(db: &Db, id: i64, kind: &str, target: &Name, code: i32) -> Result<(), DbError> {
    let server = ABOUT_A_SERVER.contains(&kind).then_some(target);
    let why = db.last_output(id)?.map(|line| format!(": {line}")).unwrap_or_default();
    let message = format!("job {id} failed: {kind} {target} (exit {code}){why}; its log: `left4me jobs {id}`");
    db.add_notice(AlertEvent::JobFailed, server, &message)
}

/// Raises `crash-loop` for each server that crashed again since `before`: its starts are held.
pub fn crash_loops(
    db: &Db,
    before: &BTreeMap<Name, CrashLoop>,
    after: &BTreeMap<Name, CrashLoop>,
    now: SystemTime,
) -> Result<(), DbError> {
    for (name, crash) in after {
        let was = before.get(name).map_or(0, |crash| crash.failures);
        if crash.failures <= was {
            continue;
        }
        let wait = crashloop::short(crash.next_try.duration_since(now).unwrap_or_default());
        let times = if crash.failures == 1 { "time" } else { "times" };
        let message = format!(
            "{name} crashed {} {times} in a row; its starts are held, next try in {wait} (`left4me retry {name}` tries now)",
            crash.failures
        );
        db.add_notice(AlertEvent::CrashLoop, Some(name), &message)?;
    }
    Ok(())
}

/// Sends `message` through `alert`, trying again after each of [`TRIES`]' waits while the
/// failure may pass (no answer, an answer of 5xx or 429); returns why the last try failed.
pub fn deliver(alert: &Alert, message: &Message, settings: &Settings) -> Result<Answer, String> {
    let mut last = String::new();
    for wait in TRIES {
        std::thread::sleep(wait);
        match send(alert, message, settings) {
            Ok(answer) => return Ok(answer),
            Err(Failure { why, again }) => {
                tracing::warn!(alert = %alert.name, "delivery failed: {why}");
                last = why;
                if !again {
                    break;
                }
            }
        }
    }
    Err(last)
}

/// Why one try failed, and whether trying again may help.
pub struct Failure {
    pub why: String,
    pub again: bool,
}

/// One try: the URL read now, the request shaped for the provider, sent once.
pub fn send(alert: &Alert, message: &Message, settings: &Settings) -> Result<Answer, Failure> {
    let url =
        send::secret_url(&settings.secrets, alert.secret_ref.as_str()).map_err(|why| Failure { why, again: false })?;
    let answer = send::post(&url, &request(alert.provider, message)).map_err(|why| Failure { why, again: true })?;
    if answer.succeeded() {
        return Ok(answer);
    }
    let again = answer.status >= 500 || answer.status == 429;
    let body = if answer.body.is_empty() { String::new() } else { format!(": {}", answer.body) };
    Err(Failure { why: format!("the receiver answered {}{body}", answer.status), again })
}

/// The message `left4me alerts test` sends.
pub fn test_message(alert: &Alert, settings: &Settings) -> Message {
    Message {
        alert: alert.name.clone(),
        event: "test".to_owned(),
        server: None,
        message: format!(
            "a test of alert {} from left4me on {}: when this arrives, its notices will too",
            alert.name, settings.host
        ),
        count: 1,
        at: now(),
        host: settings.host.clone(),
    }
}

/// A provider as the state repo writes it.
pub fn provider_name(provider: AlertProvider) -> &'static str {
    match provider {
        AlertProvider::Discord => "discord",
        AlertProvider::Slack => "slack",
        AlertProvider::Webhook => "webhook",
        AlertProvider::Ntfy => "ntfy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Wish;

    fn name(text: &str) -> Name {
        Name::new(text).expect("a valid name")
    }

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let db = Db::open(&dir.path().join("left4me.db")).expect("a database");
        (dir, db)
    }

    fn notices(db: &Db) -> Vec<(AlertEvent, Option<String>, String)> {
        let all = db.notices_after(0, 100).expect("notices");
        all.into_iter().map(|n| (n.kind, n.server.map(|s| s.to_string()), n.message)).collect()
    }

    #[test]
    fn a_server_turning_failed_or_degraded_is_one_notice_not_one_per_look() {
        let (_dir, db) = db();
        let look = |health: &[(&str, Health)]| -> BTreeMap<Name, (Health, String)> {
            health.iter().map(|(server, health)| (name(server), (*health, "why".to_owned()))).collect()
        };
        note_health(&db, &look(&[("coop-1", Health::Running), ("coop-2", Health::Failed)])).expect("noted");
        note_health(&db, &look(&[("coop-1", Health::Running), ("coop-2", Health::Failed)])).expect("noted");
        note_health(&db, &look(&[("coop-1", Health::Degraded), ("coop-2", Health::Failed)])).expect("noted");
        note_health(&db, &look(&[("coop-1", Health::Degraded), ("coop-2", Health::Starting)])).expect("noted");
        // Failed again after it recovered: a new notice.
        note_health(&db, &look(&[("coop-1", Health::Running), ("coop-2", Health::Failed)])).expect("noted");
        assert_eq!(
            notices(&db),
            [
                (AlertEvent::ServerFailed, Some("coop-2".into()), "coop-2 failed: why".into()),
                (AlertEvent::ServerDegraded, Some("coop-1".into()), "coop-1 is degraded: why".into()),
                (AlertEvent::ServerFailed, Some("coop-2".into()), "coop-2 failed: why".into()),
            ]
        );
    }

    #[test]
    fn an_invalid_revision_is_one_notice_however_many_passes_find_it() {
        let (_dir, db) = db();
        let (bad, worse) = ("a".repeat(40), "b".repeat(40));
        for revision in [&bad, &bad, &worse] {
            revision_invalid(&db, revision, "servers/coop-1.yaml:8:14: blueprint cop does not exist\nx: y\n")
                .expect("raised");
            // As the pass records it after.
            db.set_meta("last_attempted", Some(revision)).expect("set");
            db.set_meta("revision_error", Some("…")).expect("set");
        }
        let raised = notices(&db);
        assert_eq!(raised.len(), 2, "{raised:?}");
        assert_eq!(
            raised[0].2,
            "revision aaaaaaaaaaaa is invalid; nothing applied, the last good revision keeps running: \
             servers/coop-1.yaml:8:14: blueprint cop does not exist (and 1 more)"
        );
    }

    #[test]
    fn a_failed_job_is_about_its_server_only_when_it_is_a_server_job() {
        let (_dir, db) = db();
        let start = db.create_job("start", "coop-1", None, "commit").expect("a job");
        db.append_line(start, "stdout", "coop-1: starting").expect("a line");
        db.append_line(start, "stderr", "coop-1: failed to start: port 27015 taken").expect("a line");
        job_failed(&db, start, "start", &name("coop-1"), 1).expect("raised");
        let overlay = db.create_job("overlay", "coop-1", None, "commit").expect("a job");
        job_failed(&db, overlay, "overlay", &name("coop-1"), 2).expect("raised");
        let raised = notices(&db);
        assert_eq!(
            raised[0],
            (
                AlertEvent::JobFailed,
                Some("coop-1".into()),
                format!(
                    "job {start} failed: start coop-1 (exit 1): coop-1: failed to start: port 27015 taken; \
                     its log: `left4me jobs {start}`"
                )
            )
        );
        assert_eq!(raised[1].1, None, "an overlay of the same name is no server");
        let timers = db.create_job("schedules", "host", None, "commit").expect("a job");
        job_failed(&db, timers, "schedules", &name("host"), 1).expect("raised");
        assert_eq!(notices(&db)[2].1, None, "the host is no server");
    }

    #[test]
    fn notices_are_forgotten_with_the_jobs_and_events_of_their_age() {
        let (_dir, mut db) = db();
        db.add_notice(AlertEvent::BuildAvailable, None, "build 9 available").expect("raised");
        db.forget_before("2000-01-01T00:00:00.000Z").expect("forgotten");
        assert_eq!(notices(&db).len(), 1, "a new notice is kept");
        db.forget_before("9999-01-01T00:00:00.000Z").expect("forgotten");
        assert_eq!(notices(&db), []);
    }

    #[test]
    fn each_crash_that_holds_a_server_is_a_notice() {
        let (_dir, db) = db();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let wish =
            Wish { digest: left4me_state::Hasher::new("spec").finish(), state: left4me_state::PowerState::Running };
        let crash = |failures| CrashLoop {
            failures,
            next_try: now + Duration::from_secs(20),
            started: None,
            wish: wish.clone(),
        };
        let before = BTreeMap::from([(name("coop-1"), crash(1)), (name("coop-2"), crash(0))]);
        let after =
            BTreeMap::from([(name("coop-1"), crash(2)), (name("coop-2"), crash(0)), (name("coop-3"), crash(1))]);
        crash_loops(&db, &before, &after, now).expect("raised");
        crash_loops(&db, &after, &after, now).expect("nothing new");
        let raised = notices(&db);
        assert_eq!(raised.len(), 2, "{raised:?}");
        assert_eq!(
            raised[0].2,
            "coop-1 crashed 2 times in a row; its starts are held, next try in 20s (`left4me retry coop-1` tries now)"
        );
        assert_eq!(raised[1].1.as_deref(), Some("coop-3"));
    }
}
