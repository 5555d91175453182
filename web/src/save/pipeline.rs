//! The save pipeline: every change is authorised, checked with the same validation as
//! `left4me validate`, shown as a diff, and committed as the signed-in user on confirmation. A
//! change made from a stale revision to a file that changed meanwhile is a conflict, never a
//! lost update. The git work runs on the blocking pool.

use std::future::Future;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use left4me_state::{Limits, Revision};
use minijinja::context;
use serde::Serialize;

use crate::access;
use crate::accounts::{Session, User};
use crate::app::App;
use crate::repo::{Author, Change, Conflict, Outcome, RepoError};
use crate::save::change::{FileChange, Proposal, Refusal, Shown, check_files, check_path};
use crate::text::unified_diff;
use crate::views::page::{base, v};

/// Where a change goes back to when it cannot be saved: the form or editor that made it, shown
/// again with the problems next to it.
pub trait Reshow: Send + 'static {
    fn reshow(
        self,
        app: &Arc<App>,
        session: &Session,
        files: Vec<FileChange>,
        problems: Vec<Shown>,
        status: StatusCode,
    ) -> impl Future<Output = Response> + Send;
}

/// Authorises and checks a change, then shows its diff for confirmation — or the form again,
/// with the problems next to it. Nothing is written.
pub async fn preview(app: &Arc<App>, session: &Session, proposal: Proposal, origin: impl Reshow) -> Response {
    let Proposal { base: base_rev, files, message, back } = proposal;
    let user = session.user.clone();
    let prepared = app.blocking(move |app| prepare(app, &user, base_rev.as_deref(), &files).map(|r| (r, files))).await;
    let (prepared, files) = match prepared {
        Ok(Ok(prepared)) => prepared,
        Ok(Err(e)) => return failure(app, session, &e),
        Err(e) => return interrupted(app, &e),
    };
    match prepared {
        Prepared::Refused(Refusal::NotFound) => app.not_found(),
        Prepared::Refused(Refusal::Forbidden(why)) => {
            origin.reshow(app, session, files, vec![Shown::plain(why)], StatusCode::FORBIDDEN).await
        }
        Prepared::Invalid(diagnostics) | Prepared::Refused(Refusal::Invalid(diagnostics)) => {
            origin.reshow(app, session, files, diagnostics, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Prepared::Ready { base: base_id, diffs } => {
            if diffs.iter().all(|d| d.diff.is_empty()) {
                let nothing = vec![Shown::plain("This changes nothing.".into())];
                return origin.reshow(app, session, files, nothing, StatusCode::UNPROCESSABLE_ENTITY).await;
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

/// Authorises, checks and commits a change as the signed-in user; a conflict shows both sides.
pub async fn commit_change(app: &Arc<App>, session: &Session, proposal: Proposal) -> Response {
    let Proposal { base: base_rev, files, message, back } = proposal;
    let user = session.user.clone();
    let shown_files = files.clone();
    let based_on = base_rev.clone();
    let done = app
        .blocking(move |app| -> Result<Result<Outcome, Prepared>, RepoError> {
            match prepare(app, &user, base_rev.as_deref(), &files)? {
                Prepared::Ready { base, .. } => {
                    let change = Change {
                        base: base.as_deref().and_then(|b| app.repo.commit_id(b)),
                        files: files
                            .iter()
                            .map(|f| (f.path.clone(), f.content.clone().map(String::into_bytes)))
                            .collect(),
                        author: Author { name: user.name.to_string(), email: user.email.clone() },
                        message,
                    };
                    Ok(Ok(app.repo.commit(&change)?))
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
        Ok(Outcome::Committed(revision)) => committed(app, session, &revision, &back).await,
        Ok(Outcome::Unchanged) => Redirect::to(&back).into_response(),
        Ok(Outcome::Conflict(conflict)) => conflict_page(app, session, conflict, &shown_files),
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

/// After a commit: back to the page the change came from, once the watcher has read the new
/// revision (waited for briefly), so that the next page shows it.
async fn committed(app: &Arc<App>, session: &Session, revision: &Revision, back: &str) -> Response {
    tracing::info!(user = %session.user.name, revision = %revision.short(), "committed");
    app.poke();
    let mut looks = app.snapshot.clone();
    let seen = looks.wait_for(|s| s.head.as_deref() == Some(revision.id()));
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), seen).await;
    let separator = if back.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{back}{separator}saved={}", revision.short())).into_response()
}

/// A file changed on the branch since the editor's base: both diffs and the user's text.
fn conflict_page(app: &App, session: &Session, conflict: Conflict, files: &[FileChange]) -> Response {
    let text = |bytes: &Option<Vec<u8>>| String::from_utf8_lossy(bytes.as_deref().unwrap_or_default()).into_owned();
    let (base_text, head_text, mine) = (text(&conflict.base_text), text(&conflict.head_text), text(&conflict.mine));
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
                files => v(files),
            }
        },
    )
}

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

/// Authorises, diffs and checks a change against the branch (blocking: git).
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
    let diffs = match authorized_diffs(app, user, head.as_ref(), base.as_ref(), files)? {
        Ok(diffs) => diffs,
        Err(refusal) => return Ok(Prepared::Refused(refusal)),
    };
    if let Checked::Invalid(diagnostics) = check(app, head.as_ref(), files)? {
        return Ok(Prepared::Invalid(diagnostics));
    }
    Ok(Prepared::Ready { base: base.map(|b| b.id().to_owned()), diffs })
}

/// Each file authorised against the branch's head, and its diff from the base; every file at
/// the head and at the base is read in one go.
fn authorized_diffs(
    app: &App,
    user: &User,
    head: Option<&Revision>,
    base: Option<&Revision>,
    files: &[FileChange],
) -> Result<Result<Vec<FileDiff>, Refusal>, RepoError> {
    let mut wanted = Vec::with_capacity(files.len() * 2);
    for file in files {
        wanted.push((head, file.path.as_str()));
        wanted.push((base, file.path.as_str()));
    }
    let mut texts = app.repo.read_many(&wanted)?.into_iter();
    let mut diffs = Vec::new();
    for file in files {
        let (at_head, at_base) = (texts.next().flatten(), texts.next().flatten());
        let new = file.content.as_deref().map(str::as_bytes);
        if let Err(denied) = access::authorize(user, &file.path, at_head.as_deref(), new) {
            return Ok(Err(denied.into()));
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
    Ok(Ok(diffs))
}

/// What a page says when git failed under a save: what happened and that nothing was committed,
/// never git's own words or a path of the host (the log has them).
pub fn failure(app: &App, session: &Session, error: &RepoError) -> Response {
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
pub fn interrupted(app: &App, error: &tokio::task::JoinError) -> Response {
    tracing::error!("a save's worker ended: {error}");
    app.server_error("the save was interrupted; nothing was committed — try again")
}
