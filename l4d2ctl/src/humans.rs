//! The human players of running games as their own RCON `status` counts them. A2S answers from a
//! cache, and a hibernating server or L4DToolZ can report no players while people play: before a
//! `when-empty` rollout restarts a server that A2S says is empty, its console is asked.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use left4me_state::Name;

use crate::api::InstanceStatus;
use crate::host::Host;
use crate::{instance, rcon};

/// How long one server may take to log in and answer `status`.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Fills `query.humans` of the named servers whose A2S answer shows no human players, asking each
/// over RCON side by side. A server that cannot be asked keeps no count: the caller then has
/// A2S's word only, and says so by waiting for it.
pub fn count(host: &Host, statuses: &mut [InstanceStatus], names: &[Name]) {
    let asked: Vec<&mut InstanceStatus> = statuses
        .iter_mut()
        .filter(|status| names.contains(&status.name))
        .filter(|status| status.query.as_ref().is_some_and(|query| query.human_players() == 0))
        .collect();
    std::thread::scope(|scope| {
        for status in asked {
            scope.spawn(move || {
                let humans = ask(host, status);
                if let Some(query) = status.query.as_mut() {
                    query.humans = humans;
                }
            });
        }
    });
}

fn ask(host: &Host, status: &InstanceStatus) -> Option<u8> {
    let password = instance::read_rcon_password(host, &status.name).ok()?;
    let port = status.started_port.unwrap_or(status.port);
    let mut console = rcon::Rcon::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), &password, TIMEOUT).ok()?;
    parse(&console.exec("status").ok()?)
}

/// The human count of a `status` answer's `players : 2 humans, 0 bots (8 max) …` line.
pub fn parse(status: &str) -> Option<u8> {
    let line = status.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "players").then_some(value)
    })?;
    let (number, rest) = line.trim().split_once(' ')?;
    rest.starts_with("human").then(|| number.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn the_players_line_of_status_gives_the_humans() {
        let status = "hostname: coop\nversion : 2.2.4.3 secure\nmap     : c1m1_hotel\n\
                      players : 3 humans, 1 bots (8 max) (not hibernating) (unreserved)\n\n# userid name\n";
        assert_eq!(parse(status), Some(3));
        assert_eq!(parse("players : 1 human, 0 bots (4 max)"), Some(1));
        assert_eq!(parse("players : 0 humans, 4 bots (4/0 max) (hibernating)"), Some(0));
        assert_eq!(parse("hostname: x\nmap : c1m1_hotel\n"), None, "no players line, no count");
        assert_eq!(parse("players : many humans"), None);
        assert_eq!(parse("players : 300 humans"), None, "more than a server holds is no count");
    }
}
