//! Revert: a commit of the history undone with a new commit, its files checked and authorised
//! like any save.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;

use crate::app::App;
use crate::save::change::{FileChange, MAX_SAVE_FILES, Proposal, check_message};
use crate::save::pipeline::{commit_change, failure, interrupted};
use crate::session::Auth;
use crate::views::page::base;

/// Undoes a commit with a new commit, once its files are checked and authorised like any save.
pub async fn revert(State(app): State<Arc<App>>, Auth(session): Auth, Path(rev): Path<String>) -> Response {
    let (user, asked) = (session.user.clone(), rev.clone());
    let undo = app
        .blocking(move |app| {
            let Some(revision) = app.repo.commit_id(&asked) else { return Ok(None) };
            // Only what the user may see in the history is theirs to undo (a commit kept
            // elsewhere in the repo, or one of others' objects only, is not there for them), and
            // nothing of a hidden commit shows, not even its size.
            if !crate::history::visible(app.repo.path(), &app.config.branch, &user, &revision)? {
                return Ok(None);
            }
            app.repo.revert_change(&revision, MAX_SAVE_FILES).map(Some)
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
    let proposal = Proposal { base: Some(base_rev), files, message, back: "/history".into() };
    commit_change(&app, &session, proposal).await
}
