//! The server form: a server's YAML written from its fields, the form's page with the problems
//! by field, and Start/Stop (a commit of `spec.state`, made at once).

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use left4me_state::{DesiredState, Name, Revision};
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};

use crate::access;
use crate::accounts::{Session, User};
use crate::app::App;
use crate::forms::object::{FormPage, FormSave, ObjectForm, field_errors, save_form};
use crate::forms::yaml::{number, scalar};
use crate::repo::RepoError;
use crate::save::change::{FileChange, Proposal, Shown};
use crate::save::pipeline::{commit_change, failure, interrupted};
use crate::session::Auth;
use crate::snapshot::Snapshot;
use crate::views::dashboard::power_state;
use crate::views::page::{base, v};

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
    /// The host it runs on (`spec.host`): one of the revision's hosts, when it declares any.
    #[serde(default)]
    pub host: String,
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
    let host = form.host.trim();
    if !host.is_empty() {
        out.push_str(&format!("  host: {}\n", scalar(host)));
    }
    out
}

/// The ports a server of `host` may use, and those its servers declare: with hosts declared,
/// the host's own range and servers (another host's servers may use the same ports); without,
/// the repo's.
fn ports_of(desired: &DesiredState, host: Option<&Name>) -> ((u16, u16), Vec<u16>) {
    let range = match host.and_then(|h| desired.hosts.get(h)) {
        Some(host) => &host.ports,
        None => &desired.settings.ports,
    };
    let on_host = |s: &&left4me_state::Server| desired.hosts.is_empty() || s.host.as_ref() == host;
    let used = desired.servers.values().filter(on_host).map(|s| s.port.number()).collect();
    ((range.first.number(), range.last.number()), used)
}

/// The lowest port of the host's range no server of that host declares.
fn free_port(snapshot: &Snapshot, host: Option<&Name>) -> Option<u16> {
    let ((first, last), used) = ports_of(snapshot.desired.as_ref()?, host);
    (first..=last).find(|p| !used.contains(p))
}

/// The host a new server is offered first: `asked` when the revision declares it, else this
/// host, else the first declared; None without hosts.
fn default_host(snapshot: &Snapshot, asked: Option<&str>) -> Option<Name> {
    let desired = snapshot.desired.as_ref()?;
    let declared = |name: &str| desired.hosts.get(name).map(|h| h.name.clone());
    asked
        .and_then(declared)
        .or_else(|| snapshot.local_host.as_ref().and_then(|h| declared(h.as_str())))
        .or_else(|| desired.hosts.keys().next().cloned())
}

impl ObjectForm for ServerForm {
    const TEMPLATE: &'static str = "server_form.html";

    fn context(&self, session: &Session, snapshot: &Snapshot, editing: bool, diagnostics: &[Shown]) -> Value {
        let blueprints = access::visible_blueprints(snapshot, &session.user);
        let field_errors =
            field_errors(diagnostics, &["name", "blueprint", "port", "state", "hostname", "owner", "host"]);
        let chosen = Name::new(self.host.trim()).ok();
        let range = snapshot.desired.as_ref().map(|d| ports_of(d, chosen.as_ref()).0);
        // Each host with its range and the lowest port free on it: the form's script puts that
        // port in when the host changes (and the hint says it without the script).
        let hosts: Vec<Value> = snapshot.desired.as_ref().map_or(Vec::new(), |d| {
            d.hosts
                .values()
                .map(|h| {
                    let ((first, last), _) = ports_of(d, Some(&h.name));
                    let free = free_port(snapshot, Some(&h.name));
                    context! { name => h.name.as_str(), first, last, free, description => h.description.clone() }
                })
                .collect()
        });
        context! {
            ..base(session, "servers"),
            ..context! { form => v(self), editing, blueprints, diagnostics => v(diagnostics), field_errors, range, hosts }
        }
    }
}

#[derive(Deserialize)]
pub struct NewServerQuery {
    blueprint: Option<String>,
    /// The host to offer first.
    host: Option<String>,
}

pub async fn new_server(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    Query(query): Query<NewServerQuery>,
) -> Response {
    let snapshot = app.current();
    let host = default_host(&snapshot, query.host.as_deref());
    let form = ServerForm {
        blueprint: query.blueprint.unwrap_or_default(),
        port: free_port(&snapshot, host.as_ref()).map(|p| p.to_string()).unwrap_or_default(),
        host: host.map(|h| h.to_string()).unwrap_or_default(),
        state: "running".into(),
        owner: session.user.name.to_string(),
        base: snapshot.head.clone().unwrap_or_default(),
        ..ServerForm::default()
    };
    app.render(ServerForm::TEMPLATE, form.context(&session, &snapshot, false, &[]))
}

pub async fn edit_server(State(app): State<Arc<App>>, Auth(session): Auth, Path(name): Path<String>) -> Response {
    let snapshot = app.current();
    let Some(server) = snapshot.desired.as_ref().and_then(|d| d.servers.get(name.as_str())) else {
        return app.not_found();
    };
    if !access::may_see(&session.user, Some(&server.owner)) {
        return app.not_found();
    }
    let form = ServerForm {
        name: server.name.to_string(),
        blueprint: server.blueprint.to_string(),
        port: server.port.number().to_string(),
        state: power_state(server.state).into(),
        hostname: server.hostname.get().to_owned(),
        owner: server.owner.to_string(),
        host: server.host.as_ref().map(Name::to_string).unwrap_or_default(),
        base: snapshot.revision.clone().unwrap_or_default(),
        original: server.name.to_string(),
        ..ServerForm::default()
    };
    app.render(ServerForm::TEMPLATE, form.context(&session, &snapshot, true, &[]))
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
    form.owner = access::form_owner(&session.user, editing, &form.owner);
    let name = form.name.trim().to_owned();
    let save = FormSave {
        kind: "server",
        back: format!("/servers/{name}"),
        name,
        editing,
        base: form.base.clone(),
        yaml: server_yaml(&form),
    };
    save_form(&app, &session, save, FormPage { form, editing }).await
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
    let (user, reading) = (session.user.clone(), path.clone());
    let read = app.blocking(move |app| server_file(app, &user, &reading, &form.base)).await;
    let (based_on, text) = match read {
        Ok(Ok(Some(found))) => found,
        Ok(Ok(None)) => return app.not_found(),
        Ok(Err(e)) => return failure(&app, &session, &e),
        Err(e) => return interrupted(&app, &e),
    };
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
        host: document.spec.host.map(|h| h.to_string()).unwrap_or_default(),
        ..ServerForm::default()
    };
    let verb = if state == "running" { "Start" } else { "Stop" };
    let change = FileChange { path, content: Some(server_yaml(&form_values)) };
    let message = format!("{verb} {server}");
    let proposal = Proposal {
        base: Some(based_on.id().to_owned()),
        files: vec![change],
        message,
        back: format!("/servers/{server}"),
    };
    commit_change(&app, &session, proposal).await
}

/// The server's file at the revision the page was drawn from (`base`; the branch's head when it
/// names none), when it is there and the user's to change (blocking: git).
fn server_file(app: &App, user: &User, path: &str, base: &str) -> Result<Option<(Revision, Vec<u8>)>, RepoError> {
    let Some(head) = app.repo.head()? else { return Ok(None) };
    let based_on = app.repo.commit_id(base).unwrap_or(head);
    let Some(text) = app.repo.read(Some(&based_on), path)? else { return Ok(None) };
    if access::authorize(user, path, Some(&text), None).is_err() {
        return Ok(None);
    }
    Ok(Some((based_on, text)))
}
