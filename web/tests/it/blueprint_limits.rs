//! The blueprint form's resource limits: shown as the blueprint has them, written as
//! `spec.resources` when given, left out when not, and a bad one refused at its field.

use crate::support::{TestApp, hidden_fields, unescape};

/// The coop blueprint's form fields as the examples have them, with these limits.
fn coop_form<'a>(base: &'a str, limits: [&'a str; 4]) -> Vec<(&'a str, &'a str)> {
    let [cpus, cpu_weight, memory_max, nice] = limits;
    vec![
        ("overlays", "tickrate"),
        ("arguments", "+map\nc1m1_hotel"),
        ("config", "sv_consistency 0"),
        ("rollout", "when-empty"),
        ("cpus", cpus),
        ("cpu_weight", cpu_weight),
        ("memory_max", memory_max),
        ("nice", nice),
        ("base", base),
    ]
}

#[test]
fn the_blueprint_form_edits_the_resource_limits() {
    let app = TestApp::start();
    let mut alice = app.signed_in("alice");
    let edit = alice.get("/blueprints/coop/edit");
    assert_eq!(edit.status, 200);
    assert!(edit.body.contains("name=\"cpu_weight\" value=\"200\""), "{}", edit.body);
    assert!(edit.body.contains("name=\"memory_max\" value=\"2G\""), "{}", edit.body);
    assert!(edit.body.contains("name=\"cpus\" value=\"\""), "{}", edit.body);

    let base = app.head();
    let content = |reply: &crate::support::Reply| {
        hidden_fields(&reply.body).into_iter().find(|(k, _)| k == "content").map(|(_, v)| v).unwrap_or_default()
    };
    let preview = alice.submit("/blueprints/coop/edit", &coop_form(&base, ["0,1", "300", "1536M", "-5"]));
    assert_eq!(preview.status, 200, "{}", preview.body);
    let yaml = content(&preview);
    assert!(
        yaml.ends_with("  resources:\n    cpus: \"0,1\"\n    cpuWeight: 300\n    memoryMax: \"1536M\"\n    nice: -5\n"),
        "{yaml}"
    );

    let preview = alice.submit("/blueprints/coop/edit", &coop_form(&base, ["", "", "", ""]));
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert!(!content(&preview).contains("resources"), "no limits, no resources: {}", content(&preview));

    let commits = app.commits();
    let refused = alice.submit("/blueprints/coop/edit", &coop_form(&base, ["", "0", "32M", ""]));
    assert_eq!(refused.status, 422, "{}", refused.body);
    let body = unescape(&refused.body);
    assert!(body.contains("spec.resources.cpuWeight: CPU weight 0 is outside 1 to 10000"), "{body}");
    assert!(body.contains("class=\"field-error\">spec.resources.cpuWeight: CPU weight 0"), "at its field: {body}");
    assert_eq!(app.commits(), commits, "nothing was committed");
}
