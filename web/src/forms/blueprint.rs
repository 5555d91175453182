//! The blueprint form: a blueprint's YAML written from its fields, and the form's page with the
//! problems by field.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::response::Response;
use left4me_state::Name;
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};

use crate::access;
use crate::accounts::Session;
use crate::app::App;
use crate::forms::object::{FormPage, FormSave, ObjectForm, field_errors, save_form};
use crate::forms::yaml::{lines_of, list, number, scalar};
use crate::save::change::Shown;
use crate::session::Auth;
use crate::snapshot::Snapshot;
use crate::views::catalog::rollout_name;
use crate::views::page::{base, v};

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
    /// `spec.resources`, each as typed; empty: not set.
    #[serde(default)]
    pub cpus: String,
    #[serde(default)]
    pub cpu_weight: String,
    #[serde(default)]
    pub memory_max: String,
    #[serde(default)]
    pub nice: String,
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
    // Numbers as typed when they are numbers, else quoted: validation then names the field.
    let signed = |text: &str| match text.parse::<i64>() {
        Ok(value) => value.to_string(),
        Err(_) => scalar(text),
    };
    let resources: Vec<String> = [
        ("cpus", form.cpus.trim(), scalar(form.cpus.trim())),
        ("cpuWeight", form.cpu_weight.trim(), number(&form.cpu_weight)),
        ("memoryMax", form.memory_max.trim(), scalar(form.memory_max.trim())),
        ("nice", form.nice.trim(), signed(form.nice.trim())),
    ]
    .into_iter()
    .filter(|(_, typed, _)| !typed.is_empty())
    .map(|(key, _, value)| format!("    {key}: {value}\n"))
    .collect();
    if !resources.is_empty() {
        out.push_str("  resources:\n");
        out.push_str(&resources.concat());
    }
    out
}

impl ObjectForm for BlueprintForm {
    const TEMPLATE: &'static str = "blueprint_form.html";

    fn context(&self, session: &Session, snapshot: &Snapshot, editing: bool, diagnostics: &[Shown]) -> Value {
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
        let fields = [
            "name",
            "overlays",
            "arguments",
            "config",
            "rollout",
            "resources.cpus",
            "resources.cpuWeight",
            "resources.memoryMax",
            "resources.nice",
            "owner",
        ];
        let field_errors = field_errors(diagnostics, &fields);
        context! {
            ..base(session, "blueprints"),
            ..context! { form => v(self), editing, overlays, diagnostics => v(diagnostics), field_errors, rollouts => ["immediate", "when-empty", "next-start"] }
        }
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
    app.render(BlueprintForm::TEMPLATE, form.context(&session, &snapshot, false, &[]))
}

pub async fn edit_blueprint(State(app): State<Arc<App>>, Auth(session): Auth, Path(name): Path<String>) -> Response {
    let snapshot = app.current();
    let Some(blueprint) = snapshot.desired.as_ref().and_then(|d| d.blueprints.get(name.as_str())) else {
        return app.not_found();
    };
    if !access::may_see(&session.user, Some(&blueprint.owner)) {
        return app.not_found();
    }
    let join = |items: Vec<&str>| items.join("\n");
    let limits = &blueprint.resources;
    let form = BlueprintForm {
        name: blueprint.name.to_string(),
        overlays: join(blueprint.overlays.iter().map(Name::as_str).collect()),
        arguments: join(blueprint.arguments.iter().map(|a| a.get().as_str()).collect()),
        config: join(blueprint.config.iter().map(|c| c.get().as_str()).collect()),
        rollout: rollout_name(blueprint.rollout).into(),
        cpus: limits.cpus.as_ref().map(ToString::to_string).unwrap_or_default(),
        cpu_weight: limits.cpu_weight.map(|w| w.get().to_string()).unwrap_or_default(),
        memory_max: limits.memory_max.map(|m| m.to_string()).unwrap_or_default(),
        nice: limits.nice.map(|n| n.get().to_string()).unwrap_or_default(),
        owner: blueprint.owner.to_string(),
        base: snapshot.revision.clone().unwrap_or_default(),
    };
    app.render(BlueprintForm::TEMPLATE, form.context(&session, &snapshot, true, &[]))
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
    form.owner = access::form_owner(&session.user, editing, &form.owner);
    let save = FormSave {
        kind: "blueprint",
        name: form.name.trim().to_owned(),
        editing,
        base: form.base.clone(),
        yaml: blueprint_yaml(&form),
        back: "/blueprints".into(),
    };
    save_form(&app, &session, save, FormPage { form, editing }).await
}
