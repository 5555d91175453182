//! The web app on the control host of three sandbox hosts set up with deploy/install.sh and
//! deploy/add-host.sh: its dashboard shows every host's servers with a Host column and each
//! server's health from its own host (looked at over ssh to `left4me remote`), over real HTTP and
//! in Chromium; a host powered off shows its servers Unknown with the reason while the others
//! stay Running, and heals when booted again; a remote server's page names its host.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::{Client as Browser, Locator};
use left4me_sim::fleet::{Member, commit, fleet_state, said};

use crate::browser::{ChromeDriver, e, shot, wait_text};
use crate::support::Client;

const ALL: [&str; 3] = ["coop-a", "coop-b", "coop-c"];
const ADMIN: &str = "ada";
const PASSWORD: &str = "a long fleet password";
/// Where deploy/install.sh has the web app listen (`LEFT4ME_WEB_LISTEN`), in a's network.
const WEB: &str = "http://127.0.0.1:8080";
/// How long a dashboard may take to show what the hosts say: a look every 2 s while watched, a
/// remote look bounded by 4 s, a host booted again reached once its sshd answers.
const LOOK_SECONDS: u64 = 60;

#[test]
fn the_control_hosts_dashboard_shows_each_hosts_servers_and_a_host_powered_off_as_unknown_until_it_is_back() {
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_left4me-web")).parent().unwrap().to_path_buf();
    let (network, members) =
        left4me_sim::fleet::set_up(Path::new(env!("CARGO_TARGET_TMPDIR")), &bin_dir, &["a", "b", "c"]);
    let [a, b, mut c]: [Member; 3] = members.try_into().ok().expect("three hosts");
    let state = fleet_state(&[&a, &b, &c]);
    let head = commit(&a, state.path(), "three hosts");
    a.expect_converged(&head, &["coop-a"], &ALL);
    b.expect_converged(&head, &["coop-b"], &ALL);
    c.expect_converged(&head, &["coop-c"], &ALL);

    let created = a
        .host()
        .run_ok("sh", &["-c", &format!("LEFT4ME_PASSWORD='{PASSWORD}' left4me-web create-user {ADMIN} --admin")]);
    assert!(created.contains(&format!("created {ADMIN}")), "{created}");
    let web = in_network_of(&a, sign_in).unwrap_or_else(|e| fail(&a, &e));

    // Every host's server, on its host, Running as its own host says.
    let all_running = [("coop-a", "a", "Running"), ("coop-b", "b", "Running"), ("coop-c", "c", "Running")];
    in_network_of(&a, || dashboard_shows(web.clone(), &all_running, None)).unwrap_or_else(|e| fail(&a, &e));

    // The same in a browser's DOM.
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fleet-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    in_network_of(&a, || in_chromium(&shots)).unwrap_or_else(|e| fail(&a, &e));

    // c powered off: its server Unknown, saying c does not answer; a's and b's keep running.
    c.power_off();
    let off = Instant::now();
    let c_away = [("coop-a", "a", "Running"), ("coop-b", "b", "Running"), ("coop-c", "c", "Unknown")];
    let away = in_network_of(&a, || dashboard_shows(web.clone(), &c_away, Some(("coop-c", "host c does not answer"))))
        .unwrap_or_else(|e| fail(&a, &e));
    assert!(away.contains("<tr id=\"host-c\" data-answered=\"no\">"), "the Hosts card says c did not answer:\n{away}");
    assert!(away.contains("<tr id=\"host-b\" data-answered=\"yes\">"), "b still answers:\n{away}");
    let reason = row(&away, "coop-c").unwrap().reason;
    println!("coop-c Unknown {:.1} s after c went off: {reason:?}", off.elapsed().as_secs_f64());
    in_network_of(&a, || server_page_shows(web.clone(), "coop-c", "c", "Unknown")).unwrap_or_else(|e| fail(&a, &e));

    // c booted again: the dashboard heals.
    c.power_on(&network);
    let on = Instant::now();
    c.expect_converged(&head, &["coop-c"], &ALL);
    in_network_of(&a, || dashboard_shows(web.clone(), &all_running, None)).unwrap_or_else(|e| fail(&a, &e));
    println!("coop-c Running again on the dashboard {:.1} s after c was booted", on.elapsed().as_secs_f64());

    // A remote server's page: its host, and its status from there.
    in_network_of(&a, || server_page_shows(web.clone(), "coop-b", "b", "Running")).unwrap_or_else(|e| fail(&a, &e));
    println!("screenshots in {}", shots.display());
}

/// Runs `work` on a thread that entered `member`'s network namespace (setns is per thread), where
/// its web app listens on the loopback.
fn in_network_of<T: Send>(member: &Member, work: impl FnOnce() -> Result<T, String> + Send) -> Result<T, String> {
    let init = member.host().init_pid();
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let netns = std::fs::File::open(format!("/proc/{init}/ns/net"))
                    .map_err(|e| format!("the host's network: {e}"))?;
                nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("entering the host's network: {e}"))?;
                work()
            })
            .join()
            .unwrap_or_else(|_| Err("the thread in the host's network panicked".into()))
    })
}

/// Panics with `problem` and the control host's web journal.
fn fail(control: &Member, problem: &str) -> ! {
    let journal = control.host().run("journalctl", &["-u", "left4me-web", "--no-pager", "-n", "60"]);
    panic!("{problem}\n\nleft4me-web's journal on {}:\n{}", control.name, said(&journal));
}

/// Signs the admin in over HTTP once the web app answers.
fn sign_in() -> Result<Client, String> {
    let mut client = Client::at(WEB);
    poll("the web app to listen", || {
        Ok(std::net::TcpStream::connect(WEB.trim_start_matches("http://")).is_ok().then_some(()))
    })?;
    let reply = client.post("/login", &[("name", ADMIN), ("password", PASSWORD)]);
    if reply.status != 303 {
        return Err(format!("signing in as {ADMIN}: {} {}", reply.status, reply.body));
    }
    Ok(client)
}

/// Polls the dashboard until each of `expected` (server, host, health) is so; with `reason`
/// (server, words), that server's health says those words too. Returns the page that did.
fn dashboard_shows(
    mut web: Client,
    expected: &[(&str, &str, &str)],
    reason: Option<(&str, &str)>,
) -> Result<String, String> {
    let mut last = String::new();
    poll(&format!("the dashboard to show {expected:?} ({reason:?})"), || {
        let reply = web.get("/");
        if reply.status != 200 {
            return Err(format!("GET / answered {}: {}", reply.status, reply.body));
        }
        // A first page after a quiet spell may still show the look from before the commit
        // (the app waits a few seconds at most for a fresh one): the next one shows the hosts.
        if !reply.body.contains("<th>Host</th>") {
            last = format!("no Host column yet:\n{}", reply.body);
            return Ok(None);
        }
        let rows: Result<Vec<Row>, String> = expected.iter().map(|(server, ..)| row(&reply.body, server)).collect();
        let rows = rows?;
        last = format!("{rows:#?}");
        let as_expected =
            rows.iter().zip(expected).all(|(row, (_, host, health))| row.host == *host && row.health == *health);
        let reasoned =
            reason.is_none_or(|(server, words)| rows.iter().any(|r| r.server == server && r.reason.contains(words)));
        Ok((as_expected && reasoned).then_some(reply.body))
    })
    .map_err(|e| format!("{e}; last rows:\n{last}"))
}

/// A server's page over HTTP names `host` and shows `health`.
fn server_page_shows(mut web: Client, server: &str, host: &str, health: &str) -> Result<(), String> {
    let path = format!("/servers/{server}");
    let on_host = format!("On host <strong>{host}</strong>");
    let badge = format!("id=\"health\">{health}</span>");
    poll(&format!("{path} to show host {host} and {health}"), || {
        let reply = web.get(&path);
        if reply.status != 200 {
            return Err(format!("GET {path} answered {}: {}", reply.status, reply.body));
        }
        Ok((reply.body.contains(&on_host) && reply.body.contains(&badge)).then_some(()))
    })
}

/// One row of the dashboard's servers, as the page shows it.
#[derive(Debug)]
struct Row {
    server: String,
    host: String,
    health: String,
    /// The health badge's title: why, when it is Unknown.
    reason: String,
}

fn row(page: &str, server: &str) -> Result<Row, String> {
    let start = format!("<tr id=\"row-{server}\"");
    let at = page.find(&start).ok_or_else(|| format!("the dashboard has no row for {server}:\n{page}"))?;
    let html = &page[at..];
    let html = &html[..html.find("</tr>").unwrap_or(html.len())];
    let between = |from: &str, to: &str| -> String {
        html.find(from)
            .map(|i| &html[i + from.len()..])
            .and_then(|rest| rest.find(to).map(|j| crate::support::unescape(&rest[..j])))
            .unwrap_or_default()
    };
    Ok(Row {
        server: server.to_owned(),
        host: between("<td class=\"host\">", "</td>"),
        health: between("data-health=\"", "\""),
        reason: between("<span class=\"badge health-Unknown\" title=\"", "\""),
    })
}

/// Calls `check` every half second for up to [`LOOK_SECONDS`] until it gives a value; an error
/// from it ends the wait at once.
fn poll<T>(what: &str, mut check: impl FnMut() -> Result<Option<T>, String>) -> Result<T, String> {
    let deadline = Instant::now() + Duration::from_secs(LOOK_SECONDS);
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(format!("waited {LOOK_SECONDS} s for {what}"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Chromium signs in and finds each host's server in the dashboard's DOM, on its host, Running.
fn in_chromium(shots: &Path) -> Result<(), String> {
    let driver = ChromeDriver::start();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let browser = driver.connect().await?;
        let result = dashboard_in_browser(&browser, shots).await;
        if result.is_err() {
            let _ = shot(&browser, shots, "failure").await;
        }
        let _ = browser.close().await;
        result
    })
}

async fn dashboard_in_browser(browser: &Browser, shots: &Path) -> Result<(), String> {
    browser.goto(&format!("{WEB}/")).await.map_err(e("opening the app"))?;
    for (field, value) in [("name", ADMIN), ("password", PASSWORD)] {
        let input = browser.find(Locator::Css(&format!("input[name={field}]"))).await.map_err(e(field))?;
        input.send_keys(value).await.map_err(e("typing"))?;
    }
    browser
        .find(Locator::Css("button[type=submit]"))
        .await
        .map_err(e("Sign in"))?
        .click()
        .await
        .map_err(e("signing in"))?;
    wait_text(browser, "table.servers thead", "Host").await?;
    for (server, host) in [("coop-a", "a"), ("coop-b", "b"), ("coop-c", "c")] {
        wait_text(browser, &format!("#row-{server} .badge.health-Running"), "Running").await?;
        let shown = wait_text(browser, &format!("#row-{server} td.host"), host).await?;
        if shown.trim() != host {
            return Err(format!("{server}'s Host cell reads {shown:?}, not {host:?}"));
        }
    }
    for host in ["a", "b", "c"] {
        let answered = browser.find(Locator::Id(&format!("host-{host}"))).await.map_err(e("the Hosts card"))?;
        let answered = answered.attr("data-answered").await.map_err(e("data-answered"))?;
        if answered.as_deref() != Some("yes") {
            return Err(format!("the Hosts card says host {host} answered: {answered:?}"));
        }
    }
    shot(browser, shots, "dashboard-three-hosts").await
}
