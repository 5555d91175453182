//! The page templates, compiled into the binary.

use minijinja::Environment;

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../templates/", $name)))),*]
    };
}

const TEMPLATES: &[(&str, &str)] = templates![
    "base.html",
    "audit.html",
    "login.html",
    "error.html",
    "dashboard.html",
    "server_rows.html",
    "server_status.html",
    "server.html",
    "server_form.html",
    "blueprint_form.html",
    "blueprints.html",
    "overlays.html",
    "editor.html",
    "preview.html",
    "conflict.html",
    "plan.html",
    "history.html",
    "commit.html",
    "jobs.html",
    "job.html",
    "backups.html",
    "restore.html",
    "files.html",
    "users.html",
    "account.html",
];

pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, source) in TEMPLATES {
        env.add_template(name, source).expect("the templates compiled into the binary parse");
    }
    env.add_filter("short", |id: String| id.chars().take(12).collect::<String>());
    env.add_filter("unixtime", |secs: i64| {
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
        left4me_state::clock::rfc3339(time).replace('T', " ").replace('Z', " UTC")
    });
    env.add_filter("difflines", |text: String| {
        text.lines()
            .map(|line| {
                let kind = if line.starts_with("+++")
                    || line.starts_with("---")
                    || line.starts_with("diff ")
                    || line.starts_with("index ")
                {
                    "meta"
                } else if line.starts_with('+') {
                    "add"
                } else if line.starts_with('-') {
                    "del"
                } else if line.starts_with("@@") {
                    "hunk"
                } else {
                    "ctx"
                };
                minijinja::context! { kind, text => line }
            })
            .collect::<Vec<_>>()
    });
    env.add_filter("size", |bytes: u64| {
        const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
        let (mut value, mut unit) = (bytes as f64, 0);
        while value >= 1024.0 && unit < UNITS.len() - 1 {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
    });
    env.add_filter("when", |stamp: String| stamp.get(..19).unwrap_or(&stamp).replace('T', " "));
    env
}
