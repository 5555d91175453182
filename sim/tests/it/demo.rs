//! The README's first command, run as a newcomer would, without a terminal: it comes up with the
//! example servers running behind the printed URL and password, and Ctrl-C leaves nothing behind.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn the_demo_comes_up_with_the_examples_running_and_ctrl_c_leaves_nothing_behind() {
    assert!(nix::unistd::geteuid().is_root(), "the demo boots a sandbox host: run the tests as root (scripts/test)");
    let port = left4me_sim::free_port();
    let mut demo = Demo(
        Command::new(env!("CARGO_BIN_EXE_left4me-demo"))
            .args(["--no-build", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, lines) = mpsc::channel();
    let stdout = demo.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = Vec::new();
    let (mut url, mut password, mut repo) = (None, None, None);
    while repo.is_none() {
        let line = lines
            .recv_timeout(Duration::from_secs(180))
            .unwrap_or_else(|_| panic!("the demo never came up:\n{}", printed.join("\n")));
        if let Some(rest) = line.trim().strip_prefix("web app") {
            url = Some(rest.trim().to_owned());
        }
        if let Some(rest) = line.trim().strip_prefix("state repo") {
            repo = Some(std::path::PathBuf::from(rest.trim()));
        }
        if let Some(rest) = line.trim().strip_prefix("sign in as") {
            password = rest.split('/').nth(1).map(|p| p.trim().to_owned());
        }
        printed.push(line);
    }
    let output = printed.join("\n");
    for stage in
        ["==> booting the sandbox host", "==> installing left4me", "==> waiting for the example servers to run"]
    {
        assert!(output.contains(stage), "the demo names its stages: {output}");
    }
    let url = url.unwrap();
    assert_eq!(url, format!("http://127.0.0.1:{port}/"));
    let repo = repo.unwrap();
    assert!(repo.join(".git").is_dir(), "the printed state repo exists: {}", repo.display());
    let disk = repo.parent().unwrap().parent().unwrap().to_path_buf();

    // The page answers from this machine, with the example servers Running.
    let agent: ureq::Agent = ureq::Agent::config_builder().max_redirects(0).http_status_as_error(false).build().into();
    let login = agent
        .post(format!("{url}login"))
        .send_form([("name", "admin"), ("password", password.unwrap().as_str())])
        .unwrap();
    assert_eq!(login.status(), 303, "{:?}", login.headers());
    let cookie = login
        .headers()
        .get("set-cookie")
        .unwrap_or_else(|| panic!("{:?}", login.headers()))
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    // The web app looks at the host every 2 s: the rows fill in within a look or two.
    let running = |server: &str| {
        let mut page = agent.get(&url).header("Cookie", &cookie).call().unwrap();
        let body = page.body_mut().read_to_string().unwrap();
        let row = body
            .split(&format!("id=\"row-{server}\""))
            .nth(1)
            .map(|r| r.split("</tr>").next().unwrap_or("").to_owned());
        (row.is_some_and(|r| r.contains("data-health=\"Running\"")), body)
    };
    for server in ["coop-1", "versus-1"] {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (ok, body) = running(server);
            if ok {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{server} is not shown Running: {body}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    // Ctrl-C: the demo powers the host off, removes its disk and ends well.
    let status = demo.interrupt().expect("the demo ends within a minute of Ctrl-C");
    assert!(status.success(), "{status}");
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(rest.iter().any(|l| l.contains("nothing is left running")), "{rest:?}");
    assert!(!disk.exists(), "{} is removed", disk.display());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(disk.to_str().unwrap()), "no mount of the demo is left: {mounts}");
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(), "the forwarded port is free again");
}

/// The demo process; interrupted (Ctrl-C) and waited for when the test ends, whatever happens.
struct Demo(std::process::Child);

impl Demo {
    fn interrupt(&mut self) -> Option<std::process::ExitStatus> {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) && self.interrupt().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
