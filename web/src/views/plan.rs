//! The plan page: what the next pass will do, with the rendered files' diffs, for the servers
//! the user sees; the host's own parts for admins.

use std::sync::Arc;

use left4me_state::Name;
use minijinja::{Value, context};
use reconciler::plan::{Action, Plan, Step};

use crate::access;
use crate::accounts::Session;
use crate::app::App;
use crate::snapshot::Snapshot;
use crate::text::unified_diff;
use crate::views::page::base;

/// The plan page's context for `session`'s user.
pub async fn plan_context(app: &Arc<App>, session: &Session) -> Value {
    let snapshot = app.current();
    let Some(plan) = snapshot.plan.clone() else {
        return context! { ..base(session, "plan"), ..context! { problem => snapshot.problem.clone(), revision_error => snapshot.revision_error.clone() } };
    };
    let user = &session.user;
    let mut steps = Vec::new();
    for step in plan.steps.iter().filter(|s| access::target_visible(&snapshot, user, s.server.as_str())) {
        let diff = step_diff(app, step).await;
        steps.push(context! {
            server => step.server.to_string(), action => step.action.name(), reason => step.reason.clone(), diff,
        });
    }
    let (host, waiting) = (host_parts(&plan, session), waiting(&snapshot, &plan, session));
    context! {
        ..base(session, "plan"),
        ..context! {
            steps, waiting, held => plan.held, head => snapshot.head.clone(),
            revision_error => snapshot.revision_error.clone(), problem => snapshot.problem.clone(),
        },
        ..host
    }
}

/// What a step that writes a server's files changes in them, as a diff against what the host
/// has (read on the blocking pool); None for a step that writes none.
async fn step_diff(app: &Arc<App>, step: &Step) -> Option<String> {
    let (Action::Rerender { spec, .. } | Action::Create { spec, .. }) = &step.action else { return None };
    let current = if matches!(step.action, Action::Create { .. }) {
        Ok(String::new())
    } else {
        let server = step.server.clone();
        app.blocking(move |app| reconciler::engine::rendered(&app.config, &server))
            .await
            .unwrap_or_else(|e| Err(reconciler::engine::Error::Host(e.to_string())))
    };
    Some(match current {
        Ok(current) => unified_diff(&current, &spec.to_json(), step.server.as_str()),
        Err(e) => format!("(no diff: {e})"),
    })
}

/// The host's own parts, apart from any one server: for admins.
fn host_parts(plan: &Plan, session: &Session) -> Value {
    let admin = access::administers(&session.user);
    let overlays: Vec<String> = if admin { plan.overlays.iter().map(Name::to_string).collect() } else { vec![] };
    let units: Vec<String> = if admin { plan.units.clone() } else { vec![] };
    // Which build is installed is everyone's to know; why names servers, which are their owners'.
    let install = plan.install.as_ref().map(|install| {
        let why = if admin { install.reason.clone() } else { format!("the {} branch's current build", install.branch) };
        context! { build => install.build, why }
    });
    let (adopt, remove_builds) = if admin { (plan.adopt, plan.remove_builds.clone()) } else { (None, vec![]) };
    context! { units, overlays, install, adopt, remove_builds }
}

/// The servers the pass waits on, of those the user sees.
fn waiting(snapshot: &Snapshot, plan: &Plan, session: &Session) -> Vec<Value> {
    plan.waiting
        .iter()
        .filter(|(server, _)| access::target_visible(snapshot, &session.user, server.as_str()))
        .map(|(server, why)| context! { server => server.to_string(), why => why.clone() })
        .collect()
}
