//! `left4me-web`: the web app's command line.

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use reconciler::engine::Config;
use web::accounts::Accounts;

#[derive(Parser)]
#[command(
    name = "left4me-web",
    version,
    about = "The left4me web app: edit the desired state as reviewed commits, watch servers live"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the web app (TLS and a public name belong to a reverse proxy in front).
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080", env = "LEFT4ME_WEB_LISTEN")]
        listen: SocketAddr,
        /// Mark session cookies Secure (set it when a TLS proxy is in front).
        #[arg(long, env = "LEFT4ME_WEB_SECURE_COOKIES")]
        secure_cookies: bool,
        /// Reverse proxies in front, as addresses or CIDR blocks separated by commas: their
        /// X-Forwarded-For names the client (for the sign-in limits). None: the peer is the client.
        #[arg(long, env = "LEFT4ME_TRUSTED_PROXIES", default_value = "")]
        trusted_proxies: web::auth::TrustedProxies,
        /// The address players connect to (the host's public DNS name or IP address), shown in
        /// each server's connect link. None: the host name the browser reached the app at.
        #[arg(long, env = "LEFT4ME_PUBLIC_ADDRESS")]
        public_address: Option<web::app::PublicAddress>,
    },
    /// Add a user. The password is read from LEFT4ME_PASSWORD, else from the first line of stdin.
    CreateUser {
        name: String,
        #[arg(long)]
        admin: bool,
        /// For commit authorship (default: <name>@left4me.invalid).
        #[arg(long)]
        email: Option<String>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt().with_target(false).with_writer(std::io::stderr).init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("left4me-web: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::from_env(None)?;
    match cli.command {
        Cmd::Serve { listen, secure_cookies, trusted_proxies, public_address } => {
            // Blocking work (git, SQLite, password hashes) has a bounded pool, so the unit's
            // TasksMax= is never reached by threads alone.
            let runtime = tokio::runtime::Builder::new_multi_thread().max_blocking_threads(64).enable_all().build()?;
            runtime.block_on(async {
                // Connections to other hosts are kept open in the unit's RuntimeDirectory, so a
                // dashboard of many hosts costs no handshake per look.
                let control_dir = std::env::var_os("RUNTIME_DIRECTORY")
                    .filter(|d| !d.is_empty())
                    .and_then(|d| std::env::split_paths(&d).next());
                let ssh = reconciler::remote::Ssh::from_env(reconciler::remote::WEB_KEY, control_dir);
                let options = web::Options { config, secure_cookies, trusted_proxies, public_address, ssh };
                let app = web::App::start(options)?;
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen} (is another program using it?)"))?;
                tracing::info!("serving on http://{}", listener.local_addr()?);
                web::serve(app, listener).await?;
                Ok(())
            })
        }
        Cmd::CreateUser { name, admin, email } => {
            let password = match std::env::var("LEFT4ME_PASSWORD") {
                Ok(password) => password,
                Err(_) => {
                    if std::io::stdin().is_terminal() {
                        eprintln!("password for {name} (one line):");
                    }
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line)?;
                    line.trim_end_matches(['\n', '\r']).to_owned()
                }
            };
            let accounts = Accounts::open(&web::web_db(&config.root))?;
            let user = accounts.create_user(&name, email.as_deref(), &password, admin)?;
            let made = if user.admin { format!("{} (admin)", user.name) } else { user.name.to_string() };
            l4d2ctl::audit::record_by_hand(&config.root, "user-created", None, &made);
            println!("created {}{} <{}>", user.name, if user.admin { " (admin)" } else { "" }, user.email);
            Ok(())
        }
    }
}
