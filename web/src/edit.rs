//! Editing the desired state: forms and the raw editor turn into file changes; every change is
//! authorised, checked with the same validation as `left4me validate`, shown as a diff, and
//! committed as the signed-in user on confirmation. A change made from a stale revision to a file
//! that changed meanwhile is a conflict, never a lost update.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use left4me_state::{Diagnostic, Limits, Name, Revision};
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};

use crate::App;
use crate::accounts::{Session, User};
use crate::auth::Auth;
use crate::pages::{base, may_see, rollout_name, v, visible_blueprints};
use crate::repo::{Author, Change, Outcome, RepoError};

/// The most files one save may change. A form, the editor, Start/Stop and Delete change one; a
/// revert changes what its commit changed. Each file costs reading, checking and a diff, so a
/// request listing thousands is refused before any of that work.
pub const MAX_SAVE_FILES: usize = 64;

/// The longest commit message kept, in bytes: a subject and a body of a few paragraphs. The diff
/// says the rest.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// A file change with the text shown for it.
#[derive(Debug, Clone, Serialize)]
pub struct FileChange {
    pub path: String,
    /// None removes the file.
    pub content: Option<String>,
}

/// Why a change may not be made.
pub enum Refusal {
    /// Another user's object: answered as if it did not exist.
    NotFound,
    Forbidden(String),
    /// The request itself cannot be saved (a document that cannot be read, too many files):
    /// the problems, shown as validation's are.
    Invalid(Vec<Shown>),
}

/// A diagnostic as the pages show it.
#[derive(Debug, Clone, Serialize)]
pub struct Shown {
    pub path: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
    pub text: String,
}

impl Shown {
    /// A problem that is not about a place in a file.
    fn plain(message: String) -> Shown {
        Shown { path: String::new(), line: None, column: None, text: message.clone(), message }
    }
}

impl From<&Diagnostic> for Shown {
    fn from(d: &Diagnostic) -> Shown {
        Shown {
            path: d.path.clone(),
            line: d.position.map(|p| p.line),
            column: d.position.map(|p| p.column),
            message: d.message.clone(),
            text: d.to_string(),
        }
    }
}

/// A unified diff of two texts, labelled with `path`.
pub fn unified_diff(old: &str, new: &str, path: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// Authorisation

/// Files a user may own: `servers/<name>.yaml` and `blueprints/<name>.yaml`.
fn owned_kind(path: &str) -> bool {
    let Some((folder, file)) = path.split_once('/') else { return false };
    matches!(folder, "servers" | "blueprints") && !file.contains('/') && file.ends_with(".yaml")
}

/// Whether `user` may change `path` from `head` (what the branch has) to `new`. An admin may
/// change anything; a user only their own servers and blueprints, and may not give them away.
pub fn authorize(user: &User, path: &str, head: Option<&[u8]>, new: Option<&[u8]>) -> Result<(), Refusal> {
    if user.admin {
        return Ok(());
    }
    if !owned_kind(path) {
        return Err(Refusal::Forbidden(format!(
            "{path}: only admins change overlays and the host's settings; your own servers and blueprints are yours to change"
        )));
    }
    // The owner is read as validation reads it (the state crate's bounded reader, the same
    // scalar reading), so what is checked here is what the revision will say.
    if let Some(head) = head
        && !matches!(left4me_state::declared_owner(path, head), Ok(Some(owner)) if owner == user.name)
    {
        return Err(Refusal::NotFound);
    }
    if let Some(new) = new {
        match left4me_state::declared_owner(path, new) {
            Ok(Some(owner)) if owner == user.name => {}
            Ok(Some(other)) => {
                return Err(Refusal::Forbidden(format!(
                    "{path}: metadata.owner is {other:?}; what you save must be owned by you ({})",
                    user.name
                )));
            }
            Ok(None) => {
                return Err(Refusal::Forbidden(format!(
                    "{path}: metadata.owner is missing; what you save must name you ({}) as its owner",
                    user.name
                )));
            }
            Err(diagnostic) => return Err(Refusal::Invalid(vec![Shown::from(&diagnostic)])),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Checking and previewing

/// What checking a change found.
enum Checked {
    Valid,
    Invalid(Vec<Shown>),
}

/// Checks the branch's revision with `files` changed, exactly as `left4me validate` would check
/// it once committed.
fn check(app: &App, head: Option<&Revision>, files: &[FileChange]) -> Result<Checked, RepoError> {
    let mut tree = match head {
        Some(head) => left4me_state::read_revision(app.repo.path(), head, Limits::DEFAULT)?,
        None => left4me_state::Tree::default(),
    };
    for file in files {
        match &file.content {
            Some(content) => tree.insert_file(file.path.clone(), content.clone().into_bytes()),
            None => {
                tree.remove(&file.path);
            }
        }
    }
    Ok(match left4me_state::validate(&tree) {
        Ok(_) => Checked::Valid,
        Err(diagnostics) => Checked::Invalid(diagnostics.iter().map(Shown::from).collect()),
    })
}

/// Where a change goes back to, and how the form that made it is shown again with problems.
pub enum Origin {
    ServerForm {
        form: ServerForm,
        editing: bool,
    },
    BlueprintForm {
        form: BlueprintForm,
        editing: bool,
    },
    /// The raw editor, with the revision it started from (kept, so a fix is checked against it).
    Raw {
        base: Option<String>,
    },
}

/// Authorises and checks a change, then shows its diff for confirmation — or the form again,
/// with the problems next to it. Nothing is written.
async fn preview(
    app: &Arc<App>,
    session: &Session,
    base_rev: Option<String>,
    files: Vec<FileChange>,
    message: String,
    back: String,
    origin: Origin,
) -> Response {
    let worker = app.clone();
    let user = session.user.clone();
    let prepared =
        tokio::task::spawn_blocking(move || prepare(&worker, &user, base_rev.as_deref(), &files).map(|r| (r, files)))
            .await;
    let (prepared, files) = match prepared {
        Ok(Ok(prepared)) => prepared,
        Ok(Err(e)) => return failure(app, session, &e),
        Err(e) => return interrupted(app, &e),
    };
    match prepared {
        Prepared::Refused(Refusal::NotFound) => app.not_found(),
        Prepared::Refused(Refusal::Forbidden(why)) => {
            reshow(app, session, origin, &files, vec![Shown::plain(why)], StatusCode::FORBIDDEN)
        }
        Prepared::Invalid(diagnostics) | Prepared::Refused(Refusal::Invalid(diagnostics)) => {
            reshow(app, session, origin, &files, diagnostics, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Prepared::Ready { base: base_id, diffs } => {
            if diffs.iter().all(|d| d.diff.is_empty()) {
                return reshow(
                    app,
                    session,
                    origin,
                    &files,
                    vec![Shown::plain("This changes nothing.".into())],
                    StatusCode::UNPROCESSABLE_ENTITY,
                );
            }
            app.render(
                "preview.html",
                context! {
                    ..base(session, "servers"),
                    ..context! { base => base_id, files => v(&files), diffs => v(&diffs), message, back }
                },
            )
        }
    }
}

#[derive(Debug, Serialize)]
struct FileDiff {
    path: String,
    diff: String,
    removed: bool,
    added: bool,
}

enum Prepared {
    Refused(Refusal),
    Invalid(Vec<Shown>),
    Ready { base: Option<String>, diffs: Vec<FileDiff> },
}

fn prepare(app: &App, user: &User, base_rev: Option<&str>, files: &[FileChange]) -> Result<Prepared, RepoError> {
    // What the request itself gets wrong is refused before any git work.
    if let Err(why) = check_files(files) {
        return Ok(Prepared::Refused(Refusal::Invalid(vec![Shown::plain(why)])));
    }
    for file in files {
        if let Err(why) = check_path(&file.path) {
            return Ok(Prepared::Refused(Refusal::Forbidden(why)));
        }
    }
    let head = app.repo.head()?;
    // The base is what the editor saw; with none given (a new file), the branch as it is now.
    let base = match base_rev.filter(|b| !b.is_empty()) {
        Some(rev) => match app.repo.commit_id(rev) {
            Some(revision) => Some(revision),
            None => {
                let why = "the form names a revision the state repo does not have; reload the page and make the \
                           change again";
                return Ok(Prepared::Refused(Refusal::Invalid(vec![Shown::plain(why.into())])));
            }
        },
        None => head.clone(),
    };
    // Every file at the head and at the base, in one read.
    let mut wanted = Vec::with_capacity(files.len() * 2);
    for file in files {
        wanted.push((head.as_ref(), file.path.as_str()));
        wanted.push((base.as_ref(), file.path.as_str()));
    }
    let mut texts = app.repo.read_many(&wanted)?.into_iter();
    let mut diffs = Vec::new();
    for file in files {
        let (at_head, at_base) = (texts.next().flatten(), texts.next().flatten());
        if let Err(refusal) =
            authorize(user, &file.path, at_head.as_deref(), file.content.as_deref().map(str::as_bytes))
        {
            return Ok(Prepared::Refused(refusal));
        }
        let old = String::from_utf8_lossy(at_base.as_deref().unwrap_or_default()).into_owned();
        let new = file.content.clone().unwrap_or_default();
        diffs.push(FileDiff {
            path: file.path.clone(),
            diff: if at_base.is_none() && file.content.is_none() {
                String::new()
            } else {
                unified_diff(&old, &new, &file.path)
            },
            removed: file.content.is_none() && at_base.is_some(),
            added: at_base.is_none() && file.content.is_some(),
        });
    }
    if let Checked::Invalid(diagnostics) = check(app, head.as_ref(), files)? {
        return Ok(Prepared::Invalid(diagnostics));
    }
    Ok(Prepared::Ready { base: base.map(|b| b.id().to_owned()), diffs })
}

/// What one save may list: at most [`MAX_SAVE_FILES`] files, each once.
fn check_files(files: &[FileChange]) -> Result<(), String> {
    if files.len() > MAX_SAVE_FILES {
        return Err(format!(
            "this save lists {} files; a save changes at most {MAX_SAVE_FILES} — split it, or make it with git",
            files.len()
        ));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = files.iter().find(|f| !seen.insert(f.path.as_str())) {
        return Err(format!(
            "{:?} is listed twice in one save; each file is changed once (with its content, or removed)",
            twice.path
        ));
    }
    Ok(())
}

/// A commit message as it is kept: line ends as LF, trimmed, at most [`MAX_MESSAGE_BYTES`],
/// no control characters but line breaks and tabs (a NUL cannot be committed, and the history
/// reads commits apart at control characters).
fn check_message(message: &str) -> Result<String, String> {
    let message = message.replace("\r\n", "\n");
    let message = message.trim();
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(format!(
            "the commit message is {} bytes; at most {MAX_MESSAGE_BYTES} are kept — say what changed and why, the \
             diff shows the rest",
            message.len()
        ));
    }
    if let Some(c) = message.chars().find(|c| c.is_control() && !matches!(c, '\n' | '\t')) {
        return Err(format!(
            "the commit message holds the control character U+{:04X}; write it as plain text",
            u32::from(c)
        ));
    }
    Ok(if message.is_empty() { "Change the desired state".to_owned() } else { message.to_owned() })
}

/// What a page says when git failed under a save: what happened and that nothing was committed,
/// never git's own words or a path of the host (the log has them).
fn failure(app: &App, session: &Session, error: &RepoError) -> Response {
    tracing::error!("a save did not complete: {error}");
    let (status, title, message) = match error {
        RepoError::Stopped { signal, .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The save was interrupted",
            format!(
                "the save was interrupted: git was stopped by a signal ({signal}); nothing was committed — try again"
            ),
        ),
        RepoError::TooLarge(why) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "A file is too large",
            format!("{why}; nothing was committed — change that file with git"),
        ),
        other => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "The state repo could not be written",
            format!("{}; nothing was committed. The app's log says more.", other.public()),
        ),
    };
    app.render_status(status, "error.html", context! { ..base(session, "servers"), ..context! { title, message } })
}

/// The worker of a save ended without an answer (it panicked, or the app is stopping).
fn interrupted(app: &App, error: &tokio::task::JoinError) -> Response {
    tracing::error!("a save's worker ended: {error}");
    app.server_error("the save was interrupted; nothing was committed — try again")
}

/// A path the editor may write: inside the state repo's resources, plain components only.
fn check_path(path: &str) -> Result<(), String> {
    let ok = !path.is_empty()
        && path.len() <= 1024
        && !path.starts_with('/')
        && path.split('/').all(|part| !part.is_empty() && part != "." && part != ".." && !part.starts_with('.'))
        && !path.chars().any(|c| c.is_control() || c == '\\')
        && (path == "left4me.yaml" || ["servers/", "blueprints/", "overlays/"].iter().any(|p| path.starts_with(p)));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{path:?} is not a file of the state repo's resources (left4me.yaml, servers/, blueprints/, overlays/)"
        ))
    }
}

fn reshow(
    app: &App,
    session: &Session,
    origin: Origin,
    files: &[FileChange],
    diagnostics: Vec<Shown>,
    status: StatusCode,
) -> Response {
    let snapshot = app.current();
    match origin {
        Origin::ServerForm { form, editing } => app.render_status(
            status,
            "server_form.html",
            server_form_context(session, &snapshot, &form, editing, &diagnostics),
        ),
        Origin::BlueprintForm { form, editing } => app.render_status(
            status,
            "blueprint_form.html",
            blueprint_form_context(session, &snapshot, &form, editing, &diagnostics),
        ),
        Origin::Raw { base: started_from } => {
            let file = files.first().cloned().unwrap_or(FileChange { path: String::new(), content: None });
            let head = app.repo.head().ok().flatten();
            let exists = app.repo.read(head.as_ref(), &file.path).ok().flatten().is_some();
            app.render_status(
                status,
                "editor.html",
                context! {
                    ..base(session, "servers"),
                    ..context! {
                        path => file.path, content => file.content.clone().unwrap_or_default(),
                        remove => file.content.is_none(), base => started_from, diagnostics => v(&diagnostics), exists,
                        lines => file.content.unwrap_or_default().lines().count().max(12),
                    }
                },
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Writing YAML the way people write it

/// A YAML scalar: plain when it reads back as the same string, JSON-quoted (valid YAML) otherwise.
fn scalar(text: &str) -> String {
    let plain = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_alphanumeric() || "_.-+/".contains(c))
        && text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && !matches!(
            text.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n" | "nan" | "inf"
        );
    if plain { text.to_owned() } else { serde_json::to_string(text).expect("a string always serializes") }
}

/// A number field: as typed when it is digits, else quoted so validation names the field.
fn number(text: &str) -> String {
    let text = text.trim();
    if !text.is_empty() && text.len() <= 10 && text.bytes().all(|b| b.is_ascii_digit()) {
        let trimmed = text.trim_start_matches('0');
        if trimmed.is_empty() { "0".into() } else { trimmed.into() }
    } else {
        scalar(text)
    }
}

fn list(out: &mut String, key: &str, items: &[String]) {
    if items.is_empty() {
        out.push_str(&format!("  {key}: []\n"));
        return;
    }
    out.push_str(&format!("  {key}:\n"));
    for item in items {
        out.push_str(&format!("    - {}\n", scalar(item)));
    }
}

fn lines_of(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

/// Who owns what a form saves: the user, unless an admin edits an object that has an owner.
fn form_owner(user: &User, editing: bool, given: &str) -> String {
    if user.admin && editing && !given.trim().is_empty() { given.trim().to_owned() } else { user.name.to_string() }
}

/// What a form saves: the YAML of one object of `kind` (server, blueprint) named `name`.
struct FormSave {
    kind: &'static str,
    name: String,
    editing: bool,
    /// The revision the form was opened at.
    base: String,
    yaml: String,
    /// Where the preview's Back goes.
    back: String,
}

/// Saves a form: its object's file previewed as a change — or the form again, with why the name
/// cannot be used.
async fn save_form(app: &Arc<App>, session: &Session, save: FormSave, origin: Origin) -> Response {
    let FormSave { kind, name, editing, base, yaml, back } = save;
    let path = match form_target(app, kind, &name, editing) {
        Ok(path) => path,
        Err(Refusal::NotFound) => return app.not_found(),
        Err(Refusal::Forbidden(why)) => {
            return reshow(app, session, origin, &[], vec![Shown::plain(why)], StatusCode::FORBIDDEN);
        }
        Err(Refusal::Invalid(problems)) => {
            return reshow(app, session, origin, &[], problems, StatusCode::UNPROCESSABLE_ENTITY);
        }
    };
    let files = vec![FileChange { path, content: Some(yaml) }];
    let message = format!("{} {kind} {name}", if editing { "Change" } else { "Add" });
    preview(app, session, Some(base), files, message, back, origin).await
}

/// The file a form saves its object to (`servers/<name>.yaml`, `blueprints/<name>.yaml`), or why
/// the name cannot be used. An edit is of an object that exists: one that does not is not found,
/// exactly as another user's object is (which `prepare` refuses so).
fn form_target(app: &App, kind: &str, name: &str, editing: bool) -> Result<String, Refusal> {
    if let Err(e) = Name::new(name) {
        if editing {
            return Err(Refusal::NotFound);
        }
        return Err(Refusal::Invalid(vec![Shown::plain(format!("name: {name:?}: {e}"))]));
    }
    let path = format!("{kind}s/{name}.yaml");
    let head = app.repo.head().ok().flatten();
    let exists = app.repo.read(head.as_ref(), &path).ok().flatten().is_some();
    match (editing, exists) {
        (true, false) => Err(Refusal::NotFound),
        (false, true) => Err(Refusal::Invalid(vec![Shown::plain(format!(
            "name: a {kind} named {name} exists already; choose another name"
        ))])),
        _ => Ok(path),
    }
}

// ---------------------------------------------------------------------------------------------
// Servers

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ServerForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub blueprint: String,
    #[serde(default)]
    pub port: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub base: String,
    #[serde(default)]
    pub message: String,
    /// Set when editing: the server's name, which an edit keeps.
    #[serde(default)]
    pub original: String,
}

fn server_yaml(form: &ServerForm) -> String {
    let mut out = String::from("apiVersion: left4me/v1\nkind: Server\nmetadata:\n");
    out.push_str(&format!("  name: {}\n  owner: {}\n", scalar(form.name.trim()), scalar(form.owner.trim())));
    out.push_str(&format!("spec:\n  blueprint: {}\n  port: {}\n", scalar(form.blueprint.trim()), number(&form.port)));
    let state = form.state.trim();
    if !state.is_empty() {
        out.push_str(&format!("  state: {}\n", scalar(state)));
    }
    let hostname = form.hostname.trim();
    if !hostname.is_empty() {
        out.push_str(&format!("  hostname: {}\n", scalar(hostname)));
    }
    out
}

/// The lowest port of the host's range no server declares.
fn free_port(snapshot: &crate::snapshot::Snapshot) -> Option<u16> {
    let desired = snapshot.desired.as_ref()?;
    let used: Vec<u16> = desired.servers.values().map(|s| s.port.number()).collect();
    let range = &desired.settings.ports;
    (range.first.number()..=range.last.number()).find(|p| !used.contains(p))
}

fn server_form_context(
    session: &Session,
    snapshot: &crate::snapshot::Snapshot,
    form: &ServerForm,
    editing: bool,
    diagnostics: &[Shown],
) -> Value {
    let blueprints = visible_blueprints(snapshot, &session.user);
    let field_errors = field_errors(diagnostics, &["name", "blueprint", "port", "state", "hostname", "owner"]);
    let range = snapshot.desired.as_ref().map(|d| (d.settings.ports.first.number(), d.settings.ports.last.number()));
    context! {
        ..base(session, "servers"),
        ..context! { form => v(form), editing, blueprints, diagnostics => v(diagnostics), field_errors, range }
    }
}

/// Diagnostics by the form field they are about (`spec.port: …` → `port`).
fn field_errors(diagnostics: &[Shown], fields: &[&str]) -> std::collections::BTreeMap<String, String> {
    let mut errors = std::collections::BTreeMap::new();
    for d in diagnostics {
        for field in fields {
            let about = [format!("spec.{field}"), format!("metadata.{field}"), format!("{field}:")];
            if about.iter().any(|a| d.message.contains(a.as_str())) {
                errors.entry((*field).to_owned()).or_insert_with(|| d.message.clone());
            }
        }
    }
    errors
}

#[derive(Deserialize)]
pub struct NewServerQuery {
    blueprint: Option<String>,
}

pub async fn new_server(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    Query(query): Query<NewServerQuery>,
) -> Response {
    let snapshot = app.current();
    let form = ServerForm {
        blueprint: query.blueprint.unwrap_or_default(),
        port: free_port(&snapshot).map(|p| p.to_string()).unwrap_or_default(),
        state: "running".into(),
        owner: session.user.name.to_string(),
        base: snapshot.head.clone().unwrap_or_default(),
        ..ServerForm::default()
    };
    app.render("server_form.html", server_form_context(&session, &snapshot, &form, false, &[]))
}

pub async fn edit_server(State(app): State<Arc<App>>, Auth(session): Auth, Path(name): Path<String>) -> Response {
    let snapshot = app.current();
    let Some(server) = snapshot.desired.as_ref().and_then(|d| d.servers.get(name.as_str())) else {
        return app.not_found();
    };
    if !may_see(&session.user, Some(&server.owner)) {
        return app.not_found();
    }
    let form = ServerForm {
        name: server.name.to_string(),
        blueprint: server.blueprint.to_string(),
        port: server.port.number().to_string(),
        state: match server.state {
            left4me_state::PowerState::Running => "running".into(),
            left4me_state::PowerState::Stopped => "stopped".into(),
        },
        hostname: server.hostname.get().to_owned(),
        owner: server.owner.to_string(),
        base: snapshot.revision.clone().unwrap_or_default(),
        original: server.name.to_string(),
        ..ServerForm::default()
    };
    app.render("server_form.html", server_form_context(&session, &snapshot, &form, true, &[]))
}

pub async fn save_server_form(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    path: Option<Path<String>>,
    Form(mut form): Form<ServerForm>,
) -> Response {
    let editing = path.is_some();
    if let Some(Path(name)) = path {
        // An edit keeps the name: renaming is a new server and a deletion.
        form.name = name.clone();
        form.original = name;
    }
    form.owner = form_owner(&session.user, editing, &form.owner);
    let name = form.name.trim().to_owned();
    let save = FormSave {
        kind: "server",
        back: format!("/servers/{name}"),
        name,
        editing,
        base: form.base.clone(),
        yaml: server_yaml(&form),
    };
    save_form(&app, &session, save, Origin::ServerForm { form, editing }).await
}

#[derive(Deserialize)]
pub struct PowerForm {
    state: String,
    #[serde(default)]
    base: String,
}

/// Start and stop are commits of `spec.state`, made at once (the button is the confirmation).
pub async fn power(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    Path(name): Path<String>,
    Form(form): Form<PowerForm>,
) -> Response {
    let state = match form.state.as_str() {
        "running" | "stopped" => form.state.clone(),
        other => {
            return (StatusCode::UNPROCESSABLE_ENTITY, format!("state {other:?}: use running or stopped"))
                .into_response();
        }
    };
    let Ok(server) = Name::new(name.as_str()) else { return app.not_found() };
    let path = format!("servers/{server}.yaml");
    let head = match app.repo.head() {
        Ok(Some(head)) => head,
        Ok(None) => return app.not_found(),
        Err(e) => return failure(&app, &session, &e),
    };
    let based_on = app.repo.commit_id(&form.base).unwrap_or_else(|| head.clone());
    let text = match app.repo.read(Some(&based_on), &path) {
        Ok(Some(text)) => text,
        Ok(None) => return app.not_found(),
        Err(e) => return failure(&app, &session, &e),
    };
    if authorize(&session.user, &path, Some(&text), None).is_err() {
        return app.not_found();
    }
    let document: left4me_state::model::ServerDocument = match left4me_state::parse_yaml(&path, &text) {
        Ok(document) => document,
        Err(problem) => {
            return app.render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "error.html",
                context! { ..base(&session, "servers"), ..context! { title => format!("{path} cannot be read"), message => format!("{problem}; fix it in the editor first.") } },
            );
        }
    };
    let form_values = ServerForm {
        name: document.metadata.name.to_string(),
        owner: document.metadata.owner.to_string(),
        blueprint: document.spec.blueprint.to_string(),
        port: document.spec.port.number().to_string(),
        state: state.clone(),
        hostname: document.spec.hostname.map(|h| h.get().to_owned()).unwrap_or_default(),
        ..ServerForm::default()
    };
    let verb = if state == "running" { "Start" } else { "Stop" };
    let change = FileChange { path, content: Some(server_yaml(&form_values)) };
    let message = format!("{verb} {server}");
    commit_change(&app, &session, Some(based_on.id().to_owned()), vec![change], message, format!("/servers/{server}"))
        .await
}

/// Shows the removal of a server as a diff to confirm.
pub async fn delete_preview(State(app): State<Arc<App>>, Auth(session): Auth, Path(name): Path<String>) -> Response {
    let Ok(name) = Name::new(name.as_str()) else { return app.not_found() };
    delete_file(app, session, format!("servers/{name}.yaml"), format!("Delete server {name}"), "/".into()).await
}

pub async fn delete_preview_blueprint(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    Path(name): Path<String>,
) -> Response {
    let Ok(name) = Name::new(name.as_str()) else { return app.not_found() };
    delete_file(
        app,
        session,
        format!("blueprints/{name}.yaml"),
        format!("Delete blueprint {name}"),
        "/blueprints".into(),
    )
    .await
}

async fn delete_file(app: Arc<App>, session: Session, path: String, message: String, back: String) -> Response {
    let head = app.repo.head().ok().flatten();
    let exists = head.as_ref().and_then(|h| app.repo.read(Some(h), &path).ok().flatten());
    let Some(text) = exists else { return app.not_found() };
    if authorize(&session.user, &path, Some(&text), None).is_err() {
        return app.not_found();
    }
    let files = vec![FileChange { path, content: None }];
    let base = head.map(|h| h.id().to_owned());
    preview(&app, &session, base.clone(), files, message, back, Origin::Raw { base }).await
}

// ---------------------------------------------------------------------------------------------
// Blueprints

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct BlueprintForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub overlays: String,
    #[serde(default)]
    pub arguments: String,
    #[serde(default)]
    pub config: String,
    #[serde(default)]
    pub rollout: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub base: String,
}

fn blueprint_yaml(form: &BlueprintForm) -> String {
    let mut out = String::from("apiVersion: left4me/v1\nkind: Blueprint\nmetadata:\n");
    out.push_str(&format!("  name: {}\n  owner: {}\nspec:\n", scalar(form.name.trim()), scalar(form.owner.trim())));
    list(&mut out, "overlays", &lines_of(&form.overlays));
    list(&mut out, "arguments", &lines_of(&form.arguments));
    list(&mut out, "config", &lines_of(&form.config));
    let rollout = form.rollout.trim();
    if !rollout.is_empty() {
        out.push_str(&format!("  rollout: {}\n", scalar(rollout)));
    }
    out
}

fn blueprint_form_context(
    session: &Session,
    snapshot: &crate::snapshot::Snapshot,
    form: &BlueprintForm,
    editing: bool,
    diagnostics: &[Shown],
) -> Value {
    let overlays: Vec<Value> = snapshot
        .desired
        .as_ref()
        .map(|d| {
            d.overlays
                .values()
                .map(|o| context! { name => o.name.to_string(), description => o.description.clone(), kind => format!("{:?}", o.content.overlay_type()).to_lowercase() })
                .collect()
        })
        .unwrap_or_default();
    let field_errors = field_errors(diagnostics, &["name", "overlays", "arguments", "config", "rollout", "owner"]);
    context! {
        ..base(session, "blueprints"),
        ..context! { form => v(form), editing, overlays, diagnostics => v(diagnostics), field_errors, rollouts => ["immediate", "when-empty", "next-start"] }
    }
}

pub async fn new_blueprint(State(app): State<Arc<App>>, Auth(session): Auth) -> Response {
    let snapshot = app.current();
    let form = BlueprintForm {
        arguments: "+map\nc1m1_hotel".into(),
        rollout: "when-empty".into(),
        owner: session.user.name.to_string(),
        base: snapshot.head.clone().unwrap_or_default(),
        ..BlueprintForm::default()
    };
    app.render("blueprint_form.html", blueprint_form_context(&session, &snapshot, &form, false, &[]))
}

pub async fn edit_blueprint(State(app): State<Arc<App>>, Auth(session): Auth, Path(name): Path<String>) -> Response {
    let snapshot = app.current();
    let Some(blueprint) = snapshot.desired.as_ref().and_then(|d| d.blueprints.get(name.as_str())) else {
        return app.not_found();
    };
    if !may_see(&session.user, Some(&blueprint.owner)) {
        return app.not_found();
    }
    let join = |items: Vec<&str>| items.join("\n");
    let form = BlueprintForm {
        name: blueprint.name.to_string(),
        overlays: join(blueprint.overlays.iter().map(Name::as_str).collect()),
        arguments: join(blueprint.arguments.iter().map(|a| a.get().as_str()).collect()),
        config: join(blueprint.config.iter().map(|c| c.get().as_str()).collect()),
        rollout: rollout_name(blueprint.rollout).into(),
        owner: blueprint.owner.to_string(),
        base: snapshot.revision.clone().unwrap_or_default(),
    };
    app.render("blueprint_form.html", blueprint_form_context(&session, &snapshot, &form, true, &[]))
}

pub async fn save_blueprint_form(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    path: Option<Path<String>>,
    Form(mut form): Form<BlueprintForm>,
) -> Response {
    let editing = path.is_some();
    if let Some(Path(name)) = path {
        form.name = name;
    }
    form.owner = form_owner(&session.user, editing, &form.owner);
    let save = FormSave {
        kind: "blueprint",
        name: form.name.trim().to_owned(),
        editing,
        base: form.base.clone(),
        yaml: blueprint_yaml(&form),
        back: "/blueprints".into(),
    };
    save_form(&app, &session, save, Origin::BlueprintForm { form, editing }).await
}

// ---------------------------------------------------------------------------------------------
// The raw editor

#[derive(Deserialize)]
pub struct EditorQuery {
    path: Option<String>,
}

pub async fn raw_editor(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    Query(query): Query<EditorQuery>,
) -> Response {
    let path = query.path.unwrap_or_default();
    if let Err(why) = check_path(&path) {
        return app.render_status(
            StatusCode::BAD_REQUEST,
            "error.html",
            context! { ..base(&session, "servers"), ..context! { title => "No such file to edit", message => why } },
        );
    }
    let head = match app.repo.head() {
        Ok(head) => head,
        Err(e) => return failure(&app, &session, &e),
    };
    let text = match app.repo.read(head.as_ref(), &path) {
        Ok(text) => text,
        Err(e) => return failure(&app, &session, &e),
    };
    if let Err(refusal) = authorize(&session.user, &path, text.as_deref(), None) {
        return match refusal {
            Refusal::NotFound | Refusal::Invalid(_) => app.not_found(),
            Refusal::Forbidden(why) => app.render_status(
                StatusCode::FORBIDDEN,
                "error.html",
                context! { ..base(&session, "servers"), ..context! { title => "Not yours to change", message => why } },
            ),
        };
    }
    // A user's server or blueprint that does not exist answers as another user's does: not
    // found. (New ones are made with their forms.)
    if text.is_none() && !session.user.admin {
        return app.not_found();
    }
    let content = String::from_utf8_lossy(text.as_deref().unwrap_or_default()).into_owned();
    app.render(
        "editor.html",
        context! {
            ..base(&session, "servers"),
            ..context! {
                path, lines => content.lines().count().max(12), content, remove => false,
                base => head.map(|h| h.id().to_owned()), diagnostics => v(Vec::<Shown>::new()), exists => text.is_some(),
            }
        },
    )
}

#[derive(Deserialize)]
pub struct EditorForm {
    path: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    base: String,
    #[serde(default)]
    remove: Option<String>,
}

pub async fn raw_preview(State(app): State<Arc<App>>, Auth(session): Auth, Form(form): Form<EditorForm>) -> Response {
    // Browsers send CR LF from a text area; files keep LF.
    let content = form.content.replace("\r\n", "\n");
    let remove = form.remove.is_some();
    let files = vec![FileChange { path: form.path.clone(), content: (!remove).then_some(content) }];
    let verb = if remove { "Delete" } else { "Edit" };
    let message = format!("{verb} {}", form.path);
    let back = back_for(&form.path);
    let base = Some(form.base);
    preview(&app, &session, base.clone(), files, message, back, Origin::Raw { base }).await
}

/// The page a file's change returns to.
fn back_for(path: &str) -> String {
    if let Some(name) = path.strip_prefix("servers/").and_then(|f| f.strip_suffix(".yaml")) {
        return format!("/servers/{name}");
    }
    if path.starts_with("blueprints/") {
        return "/blueprints".into();
    }
    if path.starts_with("overlays/") {
        return "/overlays".into();
    }
    "/".into()
}

// ---------------------------------------------------------------------------------------------
// Committing

/// The confirmed change from the preview page: `base`, `message`, `back`, then for each file a
/// `path` followed by its `content` or by `remove`.
pub async fn commit(State(app): State<Arc<App>>, Auth(session): Auth, body: axum::body::Bytes) -> Response {
    let refuse = |status: StatusCode, why: String| {
        app.render_status(
            status,
            "error.html",
            context! { ..base(&session, "servers"), ..context! { title => "Nothing was saved", message => why } },
        )
    };
    let pairs: Vec<(String, String)> = match serde_urlencoded::from_bytes(&body) {
        Ok(pairs) => pairs,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("the form cannot be read: {e}")),
    };
    // Bounded before anything is read from the repo.
    let listed = pairs.iter().filter(|(key, _)| key == "path").count();
    if listed > MAX_SAVE_FILES {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "this save lists {listed} files; a save changes at most {MAX_SAVE_FILES} — split it, or make it with git"
            ),
        );
    }
    let mut base_rev = None;
    let mut message = String::new();
    let mut back = "/".to_owned();
    let mut files: Vec<FileChange> = Vec::new();
    for (key, value) in pairs {
        match key.as_str() {
            "base" => base_rev = Some(value),
            "message" => message = value,
            "back" if crate::auth::is_local_path(&value) => back = value,
            "path" => files.push(FileChange { path: value, content: None }),
            "content" => {
                if let Some(file) = files.last_mut() {
                    file.content = Some(value.replace("\r\n", "\n"));
                }
            }
            _ => {}
        }
    }
    if files.is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "the form names no file to change".into());
    }
    if let Err(why) = check_files(&files) {
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, why);
    }
    let message = match check_message(&message) {
        Ok(message) => message,
        Err(why) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, why),
    };
    commit_change(&app, &session, base_rev, files, message, back).await
}

/// Authorises, checks and commits a change as the signed-in user; a conflict shows both sides.
async fn commit_change(
    app: &Arc<App>,
    session: &Session,
    base_rev: Option<String>,
    files: Vec<FileChange>,
    message: String,
    back: String,
) -> Response {
    let worker = app.clone();
    let user = session.user.clone();
    let shown_files = files.clone();
    let based_on = base_rev.clone();
    let done = tokio::task::spawn_blocking(move || -> Result<Result<Outcome, Prepared>, RepoError> {
        match prepare(&worker, &user, base_rev.as_deref(), &files)? {
            Prepared::Ready { base, .. } => {
                let change = Change {
                    base: base.as_deref().and_then(|b| worker.repo.commit_id(b)),
                    files: files.iter().map(|f| (f.path.clone(), f.content.clone().map(String::into_bytes))).collect(),
                    author: Author { name: user.name.to_string(), email: user.email.clone() },
                    message,
                };
                Ok(Ok(worker.repo.commit(&change)?))
            }
            other => Ok(Err(other)),
        }
    })
    .await;
    let outcome = match done {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => return failure(app, session, &e),
        Err(e) => return interrupted(app, &e),
    };
    match outcome {
        Ok(Outcome::Committed(revision)) => {
            tracing::info!(user = %session.user.name, revision = %revision.short(), "committed");
            // The next page shows the new revision: wait (briefly) for the watcher to read it.
            app.poke();
            let mut looks = app.snapshot.clone();
            let seen = looks.wait_for(|s| s.head.as_deref() == Some(revision.id()));
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), seen).await;
            let separator = if back.contains('?') { '&' } else { '?' };
            Redirect::to(&format!("{back}{separator}saved={}", revision.short())).into_response()
        }
        Ok(Outcome::Unchanged) => Redirect::to(&back).into_response(),
        Ok(Outcome::Conflict(conflict)) => {
            let text =
                |bytes: &Option<Vec<u8>>| String::from_utf8_lossy(bytes.as_deref().unwrap_or_default()).into_owned();
            let (base_text, head_text, mine) =
                (text(&conflict.base_text), text(&conflict.head_text), text(&conflict.mine));
            app.render_status(
                StatusCode::CONFLICT,
                "conflict.html",
                context! {
                    ..base(session, "servers"),
                    ..context! {
                        theirs => unified_diff(&base_text, &head_text, &conflict.path),
                        ours => unified_diff(&base_text, &mine, &conflict.path),
                        path => conflict.path,
                        mine, removed => conflict.mine.is_none(),
                        head => conflict.head.map(|h| h.id().to_owned()),
                        files => v(&shown_files),
                    }
                },
            )
        }
        Err(Prepared::Refused(Refusal::NotFound)) => app.not_found(),
        Err(Prepared::Refused(Refusal::Forbidden(why))) => app.render_status(
            StatusCode::FORBIDDEN,
            "error.html",
            context! { ..base(session, "servers"), ..context! { title => "Not yours to change", message => why } },
        ),
        Err(Prepared::Invalid(diagnostics) | Prepared::Refused(Refusal::Invalid(diagnostics))) => app.render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "editor.html",
            context! {
                ..base(session, "servers"),
                ..context! {
                    path => shown_files.first().map(|f| f.path.clone()),
                    content => shown_files.first().and_then(|f| f.content.clone()).unwrap_or_default(),
                    remove => shown_files.first().is_some_and(|f| f.content.is_none()),
                    base => based_on,
                    diagnostics => v(&diagnostics), lines => 20,
                }
            },
        ),
        Err(Prepared::Ready { .. }) => app.server_error("a ready change was not committed"),
    }
}

/// Undoes a commit with a new commit, once its files are checked and authorised like any save.
pub async fn revert(State(app): State<Arc<App>>, Auth(session): Auth, Path(rev): Path<String>) -> Response {
    let Some(revision) = app.repo.commit_id(&rev) else { return app.not_found() };
    let (worker, user) = (app.clone(), session.user.clone());
    let undo = tokio::task::spawn_blocking(move || {
        // Only what the user may see in the history is theirs to undo (a commit kept elsewhere
        // in the repo, or one of others' objects only, is not there for them), and nothing of
        // a hidden commit shows, not even its size.
        if !crate::history::visible(worker.repo.path(), &worker.config.branch, &user, &revision)? {
            return Ok(None);
        }
        worker.repo.revert_change(&revision, MAX_SAVE_FILES).map(Some)
    })
    .await;
    let (base_rev, files, message) = match undo {
        Ok(Ok(Some(Ok(undo)))) => undo,
        Ok(Ok(None)) => return app.not_found(),
        Ok(Ok(Some(Err(count)))) => {
            return app.render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "error.html",
                context! { ..base(&session, "servers"), ..context! { title => "Too large to revert here", message => format!(
                    "that commit changed {count} files; a save changes at most {MAX_SAVE_FILES} — revert it with git revert and push"
                ) } },
            );
        }
        Ok(Err(e)) => return failure(&app, &session, &e),
        Err(e) => return interrupted(&app, &e),
    };
    // The subject came from the repo (a push may carry anything): a message that would not be
    // kept as it is names the commit alone.
    let message = check_message(&message).unwrap_or_else(|_| format!("Revert commit {rev}"));
    let files: Vec<FileChange> = files
        .into_iter()
        .map(|(path, content)| FileChange { path, content: content.map(|c| String::from_utf8_lossy(&c).into_owned()) })
        .collect();
    commit_change(&app, &session, Some(base_rev), files, message, "/history".into()).await
}
