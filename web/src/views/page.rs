//! What every signed-in page's context holds, and values for templates.

use minijinja::{Value, context};
use serde::Serialize;

use crate::accounts::Session;

/// What every signed-in page knows.
pub fn base(session: &Session, section: &str) -> Value {
    context! {
        user => context! { name => session.user.name.as_str(), admin => session.user.admin },
        csrf => session.csrf.clone(),
        section,
    }
}

/// Any serializable value, for a template.
pub fn v<T: Serialize>(value: T) -> Value {
    Value::from(minijinja::value::Serde(value))
}
