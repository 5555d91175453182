//! A server's files, for its owner and admins: its merged tree as the game sees it, read through
//! `l4d2ctl::files` in process on the blocking pool — a folder's entries with the layer of each,
//! a file's preview, a download. Nothing is written. Anyone else's server, a path refused, and
//! anything not in the tree answer the same 404, as what does not exist.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use l4d2ctl::files::{self, Download, FilesError, Kind, TreePath};
use left4me_state::Name;
use minijinja::context;
use serde::Deserialize;

use crate::access;
use crate::accounts::Session;
use crate::app::App;
use crate::handlers::stream;
use crate::session::Auth;
use crate::views::page::{base, v};

#[derive(Deserialize)]
pub struct Asked {
    path: Option<String>,
}

/// What a path of the tree shows: a folder's listing, or a file's preview.
enum Shown {
    Folder(files::Listing),
    File(files::Preview),
}

/// The folder or file at `?path=` (default: the top of the tree).
pub async fn browse(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    Path(name): Path<String>,
    Query(asked): Query<Asked>,
) -> Response {
    let read = read(&app, &session, &name, asked, |tree, path| match tree.entry(path)?.kind {
        Kind::Folder => Ok(Shown::Folder(tree.list(path)?)),
        _ => Ok(Shown::File(tree.preview(path)?)),
    });
    let (path, shown) = match read.await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let crumbs: Vec<_> = (1..=path.parts().len())
        .map(|n| context! { name => path.parts()[n - 1].clone(), path => path.parts()[..n].join("/") })
        .collect();
    let prefix = if path.is_top() { String::new() } else { format!("{path}/") };
    let (listing, preview) = match shown {
        Shown::Folder(listing) => (Some(v(&listing)), None),
        Shown::File(preview) => (None, Some(v(&preview))),
    };
    app.render(
        "files.html",
        context! {
            ..base(&session, "servers"),
            ..context! { name, path => path.to_string(), prefix, crumbs, listing, preview }
        },
    )
}

/// The file at `?path=`: streamed as it is, or (a config file) with its secrets hidden.
pub async fn download(
    State(app): State<Arc<App>>,
    Auth(session): Auth,
    Path(name): Path<String>,
    Query(asked): Query<Asked>,
) -> Response {
    let (entry, body) = match read(&app, &session, &name, asked, |tree, path| tree.download(path)).await {
        Ok((_, Download::Stream(entry, file))) => (entry, stream::file_body(file)),
        Ok((_, Download::Shown(entry, bytes))) => (entry, Body::from(bytes)),
        Err(response) => return response,
    };
    // The name as a header allows it: no quote, backslash or control character.
    let filename: String = entry
        .name
        .chars()
        .map(|c| if c.is_control() || c == '"' || c == '\\' || !c.is_ascii() { '_' } else { c })
        .collect();
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
        ],
        body,
    )
        .into_response()
}

/// What `work` reads of the path asked for in server `name`'s tree, in one hop to the blocking
/// pool; else the answer (not found for anything refused or missing).
async fn read<T: Send + 'static>(
    app: &Arc<App>,
    session: &Session,
    name: &str,
    asked: Asked,
    work: impl FnOnce(&files::Tree, &TreePath) -> Result<T, FilesError> + Send + 'static,
) -> Result<(TreePath, T), Response> {
    let Some(server) = browsable(app, session, name) else { return Err(app.not_found()) };
    let text = asked.path.unwrap_or_default();
    let read = app.blocking(move |app| {
        let path = TreePath::parse(&text)?;
        let tree = files::open(&l4d2ctl::Host::at(&app.config.root), &server)?;
        work(&tree, &path).map(|found| (path, found))
    });
    match read.await {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(e)) => Err(refused(app, &e)),
        Err(e) => Err(app.interrupted("reading the server's files", &e)),
    }
}

/// The server `name` when it is declared, on this host, and `session`'s user may browse its
/// files: a server of another host has its files there (its page says so, and links none).
fn browsable(app: &App, session: &Session, name: &str) -> Option<Name> {
    let snapshot = app.current();
    if snapshot.elsewhere(name).is_some() {
        return None;
    }
    let server = snapshot.desired.as_ref()?.servers.get(name)?;
    access::may_browse_files(&session.user, &server.owner).then(|| server.name.clone())
}

/// The answer for a path that cannot be shown: not found, whatever the reason, unless the host
/// failed or a config file is too large to hide its secrets.
fn refused(app: &App, error: &FilesError) -> Response {
    match error {
        FilesError::Refused(_) | FilesError::Missing(_) => app.not_found(),
        FilesError::TooLarge(message) => app.render_status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "error.html",
            context! { title => "Too large to download here", message },
        ),
        FilesError::Host(e) => app.server_error(&e.to_string()),
    }
}
