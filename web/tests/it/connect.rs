//! The connect link and command: the host's public address when host.env sets one, else the
//! host name the browser reached the app at, on the dashboard and on the server's page.

use web::app::PublicAddress;

use crate::support::{Setup, TestApp, unescape};

/// What a page says players connect to for coop-1 (port 27015): its links and its commands,
/// each address once (the server page shows its link as its text too).
fn connect_of(body: &str) -> (Vec<String>, Vec<String>) {
    let body = unescape(body);
    let found = |from: &'static str| -> Vec<String> {
        body.match_indices(from)
            .map(|(at, _)| body[at + from.len()..].split(['"', '<']).next().unwrap_or_default())
            .filter(|rest| rest.ends_with(":27015"))
            .map(str::to_owned)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    (found("steam://connect/"), found("data-copy=\"connect "))
}

#[test]
fn the_link_and_the_command_carry_the_public_address() {
    let app = TestApp::start_with(Setup { public_address: Some("game.example.org"), ..Setup::default() });
    let mut alice = app.signed_in("alice");
    for page in ["/", "/servers/coop-1"] {
        // The browser's host name does not matter once the address is set.
        let reply = alice.get_with(page, &[("Host", "127.0.0.1:8080")]);
        assert_eq!(reply.status, 200, "{page}: {}", reply.body);
        let (links, commands) = connect_of(&reply.body);
        assert_eq!(links, ["game.example.org:27015"], "{page}: {}", reply.body);
        assert_eq!(commands, ["game.example.org:27015"], "{page}: {}", reply.body);
        let shown = "<code class=\"connect\">connect game.example.org:27015</code>";
        assert!(unescape(&reply.body).contains(shown), "{page}: {}", reply.body);
    }
}

#[test]
fn without_the_setting_the_host_the_browser_reached_is_used() {
    let app = TestApp::start();
    let mut alice = app.signed_in("alice");
    for page in ["/", "/servers/coop-1"] {
        let reply = alice.get_with(page, &[("Host", "play.example.net:8080")]);
        assert_eq!(reply.status, 200, "{page}: {}", reply.body);
        assert_eq!(
            connect_of(&reply.body),
            (vec!["play.example.net:27015".to_owned()], vec!["play.example.net:27015".to_owned()]),
            "{page}"
        );
    }
    // Another name for the same app gets links of its own.
    let reply = alice.get_with("/", &[("Host", "10.0.0.5:8080")]);
    assert_eq!(connect_of(&reply.body).0, ["10.0.0.5:27015"]);
    // A Host no DNS name can be (over 253 characters) is not drawn into the page: each would be
    // one more copy of the rows in the cache.
    let long = format!("{}.example.net", "a".repeat(8000));
    let reply = alice.get_with("/", &[("Host", long.as_str())]);
    assert_eq!(reply.status, 200);
    assert!(!reply.body.contains(&"a".repeat(300)), "the long Host is in the page");
    assert_eq!(connect_of(&reply.body).0, ["localhost:27015"]);
}

#[test]
fn a_public_address_is_a_host_name_or_an_ip_address() {
    let read = |text: &str| text.parse::<PublicAddress>().map(|a| a.as_str().to_owned());
    assert_eq!(read("Game.Example.org"), Ok("game.example.org".into()));
    assert_eq!(read("203.0.113.7"), Ok("203.0.113.7".into()));
    assert_eq!(read("2001:db8::7"), Ok("[2001:db8::7]".into()));
    assert_eq!(read("[2001:db8::7]"), Ok("[2001:db8::7]".into()));
    for bad in ["", "game.example.org:27015", "a b", "x\"><script>", "-bad.example", "a..b", "http://x"] {
        let refused = read(bad).expect_err(bad);
        assert!(refused.starts_with("LEFT4ME_PUBLIC_ADDRESS"), "{bad:?}: {refused}");
    }
}
