//! The confirmation of a previewed change (`POST /commit`): the files come again from the
//! browser, so they are bounded, authorised and checked again before the commit.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;

use crate::app::App;
use crate::auth::is_local_path;
use crate::save::change::{FileChange, MAX_SAVE_FILES, Proposal, check_files, check_message, too_many_files};
use crate::save::pipeline::commit_change;
use crate::session::Auth;
use crate::views::page::base;

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
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, too_many_files(listed));
    }
    let mut proposal = read_pairs(pairs);
    if proposal.files.is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "the form names no file to change".into());
    }
    if let Err(why) = check_files(&proposal.files) {
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, why);
    }
    proposal.message = match check_message(&proposal.message) {
        Ok(message) => message,
        Err(why) => return refuse(StatusCode::UNPROCESSABLE_ENTITY, why),
    };
    commit_change(&app, &session, proposal).await
}

/// The change the form's fields list, in order; a `back` that is not a path of this site is
/// left out.
fn read_pairs(pairs: Vec<(String, String)>) -> Proposal {
    let mut proposal = Proposal { base: None, files: Vec::new(), message: String::new(), back: "/".to_owned() };
    for (key, value) in pairs {
        match key.as_str() {
            "base" => proposal.base = Some(value),
            "message" => proposal.message = value,
            "back" if is_local_path(&value) => proposal.back = value,
            "path" => proposal.files.push(FileChange { path: value, content: None }),
            "content" => {
                if let Some(file) = proposal.files.last_mut() {
                    file.content = Some(value.replace("\r\n", "\n"));
                }
            }
            _ => {}
        }
    }
    proposal
}
