//! What the server and blueprint forms share: the object's file a form saves to, the save
//! itself (previewed like any change), and the problems by the field they are about.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use left4me_state::Name;
use minijinja::Value;

use crate::accounts::Session;
use crate::app::App;
use crate::save::change::{FileChange, Proposal, Refusal, Shown};
use crate::save::pipeline::{Reshow, interrupted, preview};
use crate::snapshot::Snapshot;

/// A form of one object: its page's template, and the page's context with the problems of what
/// it would save.
pub trait ObjectForm: Send + 'static {
    const TEMPLATE: &'static str;

    fn context(&self, session: &Session, snapshot: &Snapshot, editing: bool, diagnostics: &[Shown]) -> Value;
}

/// A form's page again, with the problems of what it would save.
pub struct FormPage<F> {
    pub form: F,
    pub editing: bool,
}

impl<F: ObjectForm> Reshow for FormPage<F> {
    async fn reshow(
        self,
        app: &Arc<App>,
        session: &Session,
        _: Vec<FileChange>,
        problems: Vec<Shown>,
        status: StatusCode,
    ) -> Response {
        let context = self.form.context(session, &app.current(), self.editing, &problems);
        app.render_status(status, F::TEMPLATE, context)
    }
}

/// What a form saves: the YAML of one object of `kind` (server, blueprint) named `name`.
pub struct FormSave {
    pub kind: &'static str,
    pub name: String,
    pub editing: bool,
    /// The revision the form was opened at.
    pub base: String,
    pub yaml: String,
    /// Where the preview's Back goes.
    pub back: String,
}

/// Saves a form: its object's file previewed as a change — or the form again, with why the name
/// cannot be used.
pub async fn save_form(app: &Arc<App>, session: &Session, save: FormSave, origin: impl Reshow) -> Response {
    let FormSave { kind, name, editing, base, yaml, back } = save;
    let named = name.clone();
    let target = app.blocking(move |app| form_target(app, kind, &named, editing)).await;
    let path = match target {
        Ok(Ok(path)) => path,
        Ok(Err(Refusal::NotFound)) => return app.not_found(),
        Ok(Err(Refusal::Forbidden(why))) => {
            return origin.reshow(app, session, vec![], vec![Shown::plain(why)], StatusCode::FORBIDDEN).await;
        }
        Ok(Err(Refusal::Invalid(problems))) => {
            return origin.reshow(app, session, vec![], problems, StatusCode::UNPROCESSABLE_ENTITY).await;
        }
        Err(e) => return interrupted(app, &e),
    };
    let files = vec![FileChange { path, content: Some(yaml) }];
    let message = format!("{} {kind} {name}", if editing { "Change" } else { "Add" });
    preview(app, session, Proposal { base: Some(base), files, message, back }, origin).await
}

/// The file a form saves its object to (`servers/<name>.yaml`, `blueprints/<name>.yaml`), or why
/// the name cannot be used (blocking: git). An edit is of an object that exists: one that does
/// not is not found, exactly as another user's object is (which the pipeline refuses so).
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

/// Diagnostics by the form field they are about (`spec.port: …` → `port`).
pub fn field_errors(diagnostics: &[Shown], fields: &[&str]) -> BTreeMap<String, String> {
    let mut errors = BTreeMap::new();
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
