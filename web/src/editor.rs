//! The raw editor: any file of the state repo's resources, its text changed or the file removed
//! (Delete of a server or blueprint too), previewed as a change. Problems are shown in the
//! editor, next to the text.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use left4me_state::Name;
use minijinja::context;
use serde::Deserialize;

use crate::access::{self, Denied};
use crate::accounts::Session;
use crate::app::App;
use crate::save::change::{FileChange, Proposal, Shown, check_path};
use crate::save::pipeline::{Reshow, failure, interrupted, preview};
use crate::session::Auth;
use crate::views::page::{base, v};

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
    let reading = path.clone();
    let read = app
        .blocking(move |app| {
            let head = app.repo.head()?;
            let text = app.repo.read(head.as_ref(), &reading)?;
            Ok((head, text))
        })
        .await;
    let (head, text) = match read {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => return failure(&app, &session, &e),
        Err(e) => return interrupted(&app, &e),
    };
    if let Err(denied) = access::authorize(&session.user, &path, text.as_deref(), None) {
        return match denied {
            Denied::NotFound | Denied::Unreadable(_) => app.not_found(),
            Denied::Forbidden(why) => app.render_status(
                StatusCode::FORBIDDEN,
                "error.html",
                context! { ..base(&session, "servers"), ..context! { title => "Not yours to change", message => why } },
            ),
        };
    }
    // A user's server or blueprint that does not exist answers as another user's does: not
    // found. (New ones are made with their forms.)
    if text.is_none() && !access::administers(&session.user) {
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
    preview(&app, &session, Proposal { base: base.clone(), files, message, back }, EditorPage { base }).await
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

/// Previews the removal of a file the user may change; not found for any other.
async fn delete_file(app: Arc<App>, session: Session, path: String, message: String, back: String) -> Response {
    let (user, removing) = (session.user.clone(), path.clone());
    let found = app
        .blocking(move |app| {
            let head = app.repo.head().ok().flatten()?;
            let text = app.repo.read(Some(&head), &removing).ok().flatten()?;
            access::authorize(&user, &removing, Some(&text), None).is_ok().then_some(head)
        })
        .await;
    let head = match found {
        Ok(Some(head)) => head,
        Ok(None) => return app.not_found(),
        Err(e) => return interrupted(&app, &e),
    };
    let files = vec![FileChange { path, content: None }];
    let base = Some(head.id().to_owned());
    preview(&app, &session, Proposal { base: base.clone(), files, message, back }, EditorPage { base }).await
}

/// The editor again, with the problems of what it would save, from the revision it started at
/// (kept, so that a fix is checked against it).
pub struct EditorPage {
    base: Option<String>,
}

impl Reshow for EditorPage {
    async fn reshow(
        self,
        app: &Arc<App>,
        session: &Session,
        files: Vec<FileChange>,
        problems: Vec<Shown>,
        status: StatusCode,
    ) -> Response {
        let file = files.into_iter().next().unwrap_or(FileChange { path: String::new(), content: None });
        let path = file.path.clone();
        let exists = app
            .blocking(move |app| {
                let head = app.repo.head().ok().flatten();
                app.repo.read(head.as_ref(), &path).ok().flatten().is_some()
            })
            .await
            .unwrap_or(false);
        app.render_status(
            status,
            "editor.html",
            context! {
                ..base(session, "servers"),
                ..context! {
                    path => file.path, content => file.content.clone().unwrap_or_default(),
                    remove => file.content.is_none(), base => self.base, diagnostics => v(&problems), exists,
                    lines => file.content.unwrap_or_default().lines().count().max(12),
                }
            },
        )
    }
}
