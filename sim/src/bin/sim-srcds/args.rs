//! The srcds command line: `-flag [value]` launch options and `+command [args…]` console commands.

/// What the command line asks for.
#[derive(Debug)]
pub struct LaunchArgs {
    pub game: Option<String>,
    pub ip: String,
    pub port: u16,
    pub map: Option<String>,
    pub max_players: u32,
    pub insecure: bool,
    /// The other `+command args…` in order, each as its words (`+hostname "a b"` is `["hostname", "a b"]`).
    pub commands: Vec<Vec<String>>,
}

/// Launch options that never take a value, so a word after them is not swallowed as one.
const VALUELESS_FLAGS: &[&str] = &[
    "norestart",
    "insecure",
    "secure",
    "nomaster",
    "nohltv",
    "console",
    "debug",
    "autoupdate",
    "nobots",
    "nowatchdog",
];

pub fn parse(argv: &[String]) -> Result<LaunchArgs, String> {
    let mut launch = LaunchArgs {
        game: None,
        ip: "0.0.0.0".to_owned(),
        port: 27015,
        map: None,
        max_players: 4,
        insecure: false,
        commands: Vec::new(),
    };
    let mut i = 0;
    while i < argv.len() {
        let word = &argv[i];
        i += 1;
        if let Some(name) = word.strip_prefix('+').filter(|name| !name.is_empty()) {
            // srcds gives a +command every following word up to the next switch; each argv word stays whole.
            let start = i;
            while i < argv.len() && !is_switch(&argv[i]) {
                i += 1;
            }
            let values = &argv[start..i];
            match name.to_ascii_lowercase().as_str() {
                "map" => match values.first() {
                    Some(map) => launch.map = Some(map.clone()),
                    None => crate::console::log("Warning: +map without a map name is ignored"),
                },
                "hostport" => launch.port = parse_port("+hostport", values.first().map(String::as_str))?,
                "ip" => {
                    launch.ip = values.first().ok_or("+ip needs an address")?.clone();
                }
                _ => {
                    let mut command = vec![name.to_owned()];
                    command.extend(values.iter().cloned());
                    launch.commands.push(command);
                }
            }
        } else if let Some(flag) = word.strip_prefix('-').filter(|flag| !flag.is_empty()) {
            let flag = flag.to_ascii_lowercase();
            if VALUELESS_FLAGS.contains(&flag.as_str()) {
                launch.insecure |= flag == "insecure";
                continue;
            }
            let value = match argv.get(i) {
                Some(next) if !is_switch(next) => {
                    i += 1;
                    Some(next.as_str())
                }
                _ => None,
            };
            match flag.as_str() {
                "game" => launch.game = Some(value.ok_or("-game needs a game folder")?.to_owned()),
                "port" => launch.port = parse_port("-port", value)?,
                "maxplayers" => {
                    let value = value.ok_or("-maxplayers needs a number")?;
                    launch.max_players = value
                        .parse()
                        .map_err(|err| format!("-maxplayers '{value}' is not a number of players: {err}"))?;
                }
                // Every other launch option (-tickrate 100, …) is accepted and has no effect here.
                _ => {}
            }
        }
        // A bare word outside any +command is ignored, as srcds does.
    }
    Ok(launch)
}

/// A word that starts a new option: `+x` or `-x`, but not a negative number (`+sv_region -1`).
fn is_switch(word: &str) -> bool {
    let mut chars = word.chars();
    match (chars.next(), chars.next()) {
        (Some('+'), Some(_)) => true,
        (Some('-'), Some(c)) => !(c.is_ascii_digit() || c == '.'),
        _ => false,
    }
}

fn parse_port(option: &str, value: Option<&str>) -> Result<u16, String> {
    let value = value.ok_or_else(|| format!("{option} needs a port number"))?;
    match value.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        Ok(_) => Err(format!("{option} '{value}' is not a usable port: 0")),
        Err(err) => Err(format!("{option} '{value}' is not a port number: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &[&str]) -> Vec<String> {
        line.iter().map(|word| (*word).to_owned()).collect()
    }

    #[test]
    fn parses_a_production_command_line() {
        let launch = parse(&words(&[
            "-game",
            "left4dead2",
            "-norestart",
            "+ip",
            "0.0.0.0",
            "+hostport",
            "27016",
            "-tickrate",
            "100",
            "+map",
            "c1m1_hotel",
            "+sv_gametypes",
            "coop",
            "-maxplayers",
            "8",
            "+hostname",
            "two words",
            "+sv_region",
            "-1",
        ]))
        .expect("the command line is valid");
        assert_eq!(launch.game.as_deref(), Some("left4dead2"));
        assert_eq!(launch.ip, "0.0.0.0");
        assert_eq!(launch.port, 27016);
        assert_eq!(launch.map.as_deref(), Some("c1m1_hotel"));
        assert_eq!(launch.max_players, 8);
        assert_eq!(
            launch.commands,
            vec![words(&["sv_gametypes", "coop"]), words(&["hostname", "two words"]), words(&["sv_region", "-1"])]
        );
    }

    #[test]
    fn port_option_and_bad_values() {
        assert_eq!(parse(&words(&["-port", "27020"])).expect("valid").port, 27020);
        assert!(parse(&words(&["+hostport", "x"])).is_err());
        assert!(parse(&words(&["-maxplayers", "many"])).is_err());
        assert!(parse(&words(&["-game"])).is_err());
    }
}
