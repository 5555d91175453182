//! A real browser (Debian's headless Chromium, driven through ChromeDriver) against the web app
//! and the reconciler, both running as installed in the sandbox host.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::support::{installed_host, wait_coop_1_runs, wait_for};

const PASSWORD: &str = "a long browser password";

#[test]
fn a_person_makes_a_server_in_the_browser_and_watches_it_run_then_stops_it() {
    // The examples, committed by the web app's user as a person's push would be.
    let (disk, sandbox, port) = installed_host("browser-disk-");
    let git = ["-u", "left4me", "--", "git", "-C", "/var/lib/left4me/state"];
    let created = sandbox.run_ok(
        "sh",
        &["-c", &format!("LEFT4ME_PASSWORD='{PASSWORD}' left4me-web create-user alice --email alice@example.org")],
    );
    assert!(created.contains("created alice"), "{created}");
    wait_coop_1_runs(&sandbox, Duration::from_secs(90));

    seed_history(disk.path());

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    // The sandbox host has a network of its own. The browser joins it: this thread enters the
    // sandbox's network namespace (it is per thread), and ChromeDriver and Chromium, started
    // from it, are born there.
    let init = sandbox.init_pid();
    let folder = shots.clone();
    let outcome = std::thread::spawn(move || -> Result<(), String> {
        let netns =
            std::fs::File::open(format!("/proc/{init}/ns/net")).map_err(|e| format!("the sandbox's network: {e}"))?;
        nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("entering the sandbox's network: {e}"))?;
        let driver = ChromeDriver::start();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(drive(&driver, port, &folder))
    })
    .join()
    .unwrap_or_else(|_| Err("the browser thread panicked".into()));
    if let Err(e) = outcome {
        let journal =
            sandbox.run("journalctl", &["-u", "left4me-web", "-u", "left4me-reconciler", "-n", "80", "--no-pager"]);
        // What the console would have shown, and the followers the web app runs for it.
        let game = sandbox.run("journalctl", &["-u", "left4me-server@coop-3.service", "-n", "10", "--no-pager"]);
        let followers = sandbox.run("ps", &["-eo", "pid,user,lstart,args"]);
        let followers = String::from_utf8_lossy(&followers.stdout);
        let followers: Vec<_> =
            followers.lines().filter(|l| l.contains("journalctl") || l.contains(" logs ")).collect();
        panic!(
            "{e}\n\nthe services' journal:\n{}\ncoop-3's journal:\n{}\nconsole followers:\n{}",
            String::from_utf8_lossy(&journal.stdout),
            String::from_utf8_lossy(&game.stdout),
            followers.join("\n")
        );
    }
    let log = sandbox.run_ok("runuser", &[&git[..], &["log", "-3", "--format=%an <%ae>: %s"]].concat());
    assert!(log.contains("alice <alice@example.org>: Stop coop-3"), "{log}");
    assert!(log.contains("alice <alice@example.org>: Add server coop-3"), "{log}");
    println!("screenshots in {}", shots.display());
    sandbox.power_off();
}

async fn drive(driver: &ChromeDriver, port: u16, shots: &Path) -> Result<(), String> {
    let browser = driver.connect().await?;
    let result = steps(&browser, port, shots).await;
    if result.is_err() {
        let _ = shot(&browser, shots, "failure").await;
    }
    let _ = browser.close().await;
    result
}

async fn steps(browser: &Client, port: u16, shots: &Path) -> Result<(), String> {
    let base = format!("http://127.0.0.1:{port}");
    sign_in(browser, &base, shots).await?;
    make_a_server(browser, shots).await?;
    watch_it_run(browser, shots).await?;
    back_it_up(browser, shots).await?;
    read_its_jobs_the_plan_and_the_history(browser, &base, shots).await?;
    stop_it(browser, shots).await?;
    see_the_week(browser, &base, shots).await
}

/// A week of samples of the examples' servers in the host's live.db, one every 10 minutes (every
/// quarter and hour has one), and none for half a day two days ago: a gap.
fn seed_history(disk: &Path) {
    use reconciler::live::db::{LiveDb, Sample};
    let db =
        LiveDb::open(&reconciler::live::db::path(&disk.join("root"))).expect("live.db is made in the host's $ROOT");
    let now = left4me_state::clock::unix_seconds(std::time::SystemTime::now()) as i64;
    let names = ["coop-1", "coop-2", "versus-1"].map(|name| left4me_state::Name::new(name).unwrap());
    for look in 0..7 * 144 {
        let at = now - 7 * 86_400 + look * 600;
        if (now - at) / 3600 >= 36 && (now - at) / 3600 < 48 {
            continue;
        }
        // Busy evenings in UTC: players rise towards 20:00 and fall after.
        let hour = at.rem_euclid(86_400) / 3600;
        let evening = (8 - (hour - 20).abs()).max(0) as u32;
        let samples: Vec<_> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let players = evening.saturating_sub(i as u32 * 2).min(8);
                let sample = Sample {
                    at,
                    players,
                    cpu: Some(3.0 + f64::from(players) * 6.5),
                    memory: Some((380 + u64::from(players) * 12) << 20),
                };
                (name.clone(), sample)
            })
            .collect();
        db.add_samples(&samples).expect("the samples are kept");
    }
}

/// The history: the dashboard's sparklines and a server's charts of its week, from the samples.
async fn see_the_week(browser: &Client, base: &str, shots: &Path) -> Result<(), String> {
    browser.goto(&format!("{base}/")).await.map_err(e("the dashboard"))?;
    wait_found(browser, "#row-coop-1 svg.sparkline path.line").await?;
    shot(browser, shots, "9-dashboard-history").await?;
    browser.goto(&format!("{base}/servers/coop-1")).await.map_err(e("coop-1's page"))?;
    wait_found(browser, "#chart-memory svg path.line").await?;
    // What its unit uses now, as systemd counts it: memory now and at its peak, tasks.
    let memory = wait_text(browser, "#memory", "peak").await?;
    if !memory.contains("iB") {
        return Err(format!("coop-1's memory reads {memory:?}"));
    }
    wait_found(browser, "#tasks").await?;
    // A window tall enough for the whole card: a screenshot of an element is cut at the window.
    browser.set_window_size(1280, 1600).await.map_err(e("a taller window"))?;
    let charts = browser.find(Locator::Id("charts")).await.map_err(e("the charts"))?;
    let png = charts.screenshot().await.map_err(e("a screenshot of the charts"))?;
    std::fs::write(shots.join("10-server-charts.png"), png).map_err(|e| format!("saving the charts: {e}"))
}

/// Waits until an element matches `css`.
async fn wait_found(browser: &Client, css: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if browser.find(Locator::Css(css)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // The dashboard reads the history with its looks: a fresh page shows the latest.
        browser.refresh().await.map_err(e("reloading"))?;
    }
    Err(format!("nothing matched {css}"))
}

/// What a failed browser command was doing.
pub(crate) fn e(what: &str) -> impl Fn(fantoccini::error::CmdError) -> String {
    let what = what.to_owned();
    move |error| format!("{what}: {error}")
}

/// Signs in as alice; the dashboard shows coop-1 running.
async fn sign_in(browser: &Client, base: &str, shots: &Path) -> Result<(), String> {
    browser.goto(&format!("{base}/")).await.map_err(e("opening the app"))?;
    shot(browser, shots, "1-login").await?;
    browser
        .find(Locator::Css("input[name=name]"))
        .await
        .map_err(e("the name field"))?
        .send_keys("alice")
        .await
        .map_err(e("typing"))?;
    browser
        .find(Locator::Css("input[name=password]"))
        .await
        .map_err(e("the password field"))?
        .send_keys(PASSWORD)
        .await
        .map_err(e("typing"))?;
    browser
        .find(Locator::Css("button[type=submit]"))
        .await
        .map_err(e("the sign-in button"))?
        .click()
        .await
        .map_err(e("signing in"))?;
    wait_text(browser, "#row-coop-1 .badge.health-Running", "Running").await?;
    shot(browser, shots, "2-dashboard").await?;
    Ok(())
}

/// A new server from a blueprint, through the form: its diff previewed, then committed.
async fn make_a_server(browser: &Client, shots: &Path) -> Result<(), String> {
    browser
        .find(Locator::LinkText("New server"))
        .await
        .map_err(e("the New server link"))?
        .click()
        .await
        .map_err(e("opening the form"))?;
    browser
        .find(Locator::Css("input[name=name]"))
        .await
        .map_err(e("the name field"))?
        .send_keys("coop-3")
        .await
        .map_err(e("typing"))?;
    let port_field = browser.find(Locator::Css("input[name=port]")).await.map_err(e("the port field"))?;
    let suggested = port_field.prop("value").await.map_err(e("the port"))?.unwrap_or_default();
    if suggested.is_empty() {
        return Err("the form suggests no free port".into());
    }
    shot(browser, shots, "3-new-server").await?;
    browser
        .find(Locator::Css("form.form button[type=submit]"))
        .await
        .map_err(e("Review change"))?
        .click()
        .await
        .map_err(e("reviewing"))?;
    let diff = wait_text(browser, "#diff", "+  name: coop-3").await?;
    if !diff.contains(&format!("+  port: {suggested}")) {
        return Err(format!("the diff lacks the port: {diff}"));
    }
    shot(browser, shots, "4-diff-preview").await?;
    browser
        .find(Locator::Id("commit"))
        .await
        .map_err(e("the Commit button"))?
        .click()
        .await
        .map_err(e("committing"))?;
    Ok(())
}

/// The server page follows the reconciler: Running, with players and map from the game; its
/// live console and RCON.
async fn watch_it_run(browser: &Client, shots: &Path) -> Result<(), String> {
    wait_text(browser, "#health", "Running").await?;
    wait_text(browser, "#map", "c1m1_hotel").await?;
    let players = wait_text(browser, "#players", "/").await?;
    let url = browser.current_url().await.map_err(e("the page address"))?;
    if !url.path().ends_with("/servers/coop-3") {
        return Err(format!("after the commit the browser is on {url}"));
    }
    // The live console shows the game's own output.
    let console = wait_nonempty(browser, "#console").await?;
    // RCON, from the owner's console; the players it sets show up live.
    let command = browser.find(Locator::Css("#rcon input[name=command]")).await.map_err(e("the RCON field"))?;
    command.send_keys("sim_players 2").await.map_err(e("typing a command"))?;
    browser.find(Locator::Css("#rcon button")).await.map_err(e("Send"))?.click().await.map_err(e("sending"))?;
    wait_text(browser, "#rcon-output", "sim_players set to 2").await?;
    wait_text(browser, "#players", "2/").await?;
    shot(browser, shots, "5-server-running").await?;
    println!("coop-3 runs with {players} players; its console begins: {}", console.lines().next().unwrap_or(""));
    Ok(())
}

/// Its backups: the panel on its page, "Back up now" (a request the reconciler's service runs as a
/// job), the backup listed once taken.
async fn back_it_up(browser: &Client, shots: &Path) -> Result<(), String> {
    wait_text(browser, "#backups-panel", "No backups yet").await?;
    browser.find(Locator::Id("back-up")).await.map_err(e("Back up now"))?.click().await.map_err(e("backing up"))?;
    wait_text(browser, "#backup-asked", "was asked for").await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while browser.find(Locator::Css("#backups tbody tr")).await.is_err() {
        if Instant::now() > deadline {
            return Err("the backup asked for was never listed".into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        browser.refresh().await.map_err(e("reloading the backups"))?;
    }
    wait_text(browser, "#backups", "Download").await?;
    shot(browser, shots, "5b-backups").await?;
    browser.back().await.map_err(e("back to the server"))?;
    Ok(())
}

/// Its jobs, one job's log, the plan and the history.
async fn read_its_jobs_the_plan_and_the_history(browser: &Client, base: &str, shots: &Path) -> Result<(), String> {
    browser.goto(&format!("{base}/jobs?server=coop-3")).await.map_err(e("the jobs page"))?;
    let jobs = wait_text(browser, "table", "start").await?;
    if !jobs.contains("create") {
        return Err(format!("the jobs of coop-3 lack its creation: {jobs}"));
    }
    browser.find(Locator::Css("tbody a")).await.map_err(e("a job"))?.click().await.map_err(e("opening a job"))?;
    wait_text(browser, "#joblog", "l4d2ctl").await?;
    shot(browser, shots, "6-job").await?;
    browser.goto(&format!("{base}/plan")).await.map_err(e("the plan"))?;
    wait_text(browser, "main", "Nothing to do").await?;
    browser.goto(&format!("{base}/history")).await.map_err(e("the history"))?;
    wait_text(browser, "main", "Add server coop-3").await?;
    shot(browser, shots, "7-history").await?;
    browser.goto(&format!("{base}/servers/coop-3")).await.map_err(e("back to the server"))?;
    Ok(())
}

/// Stop it: a commit of spec.state, and the page shows it stopped.
async fn stop_it(browser: &Client, shots: &Path) -> Result<(), String> {
    browser.find(Locator::Id("stop")).await.map_err(e("the Stop button"))?.click().await.map_err(e("stopping"))?;
    wait_text(browser, "#health", "Stopped").await?;
    browser.find(Locator::Id("start")).await.map_err(e("the Start button after stopping"))?;
    shot(browser, shots, "8-server-stopped").await?;
    Ok(())
}

/// Waits until the element's text contains `expected`; returns the text.
pub(crate) async fn wait_text(browser: &Client, css: &str, expected: &str) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(element) = browser.find(Locator::Css(css)).await
            && let Ok(text) = element.text().await
        {
            if text.contains(expected) {
                return Ok(text);
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("{css} never showed {expected:?} (last: {last:?})"))
}

async fn wait_nonempty(browser: &Client, css: &str) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(element) = browser.find(Locator::Css(css)).await
            && let Ok(text) = element.text().await
            && !text.trim().is_empty()
        {
            return Ok(text);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("{css} stayed empty"))
}

pub(crate) async fn shot(browser: &Client, folder: &Path, name: &str) -> Result<(), String> {
    let png = browser.screenshot().await.map_err(|e| format!("screenshot {name}: {e}"))?;
    std::fs::write(folder.join(format!("{name}.png")), png).map_err(|e| format!("saving {name}.png: {e}"))
}

/// Debian's ChromeDriver on a free port, ended (by its PID) when dropped.
pub(crate) struct ChromeDriver {
    child: Child,
    port: u16,
    profile: tempfile::TempDir,
}

impl ChromeDriver {
    pub(crate) fn start() -> ChromeDriver {
        let port = left4me_sim::free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (Debian's chromium-driver; scripts/test installs it)");
        let profile = tempfile::tempdir().unwrap();
        let driver = ChromeDriver { child, port, profile };
        wait_for(Duration::from_secs(20), "chromedriver to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        driver
    }

    pub(crate) async fn connect(&self) -> Result<Client, String> {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", self.profile.path().display()),
                ],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .map_err(|e| format!("starting Chromium through chromedriver: {e}"))
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("Chromium is installed (Debian's chromium; scripts/test installs it)")
}
