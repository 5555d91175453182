//! Validation of a whole revision: every file, every reference, every rule, every problem listed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use crate::calendar;
use crate::desired::{
    Blueprint, DesiredState, FileKind, Game, Host, Overlay, OverlayContent, OverlayFile, Server, Settings,
};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::model::{
    ActionName, AlertDocument, ArchiveSource, BlueprintDocument, HostDocument, Hostname, OverlayDocument, OverlayType,
    Port, PortRange, PowerState, Rollout, ScheduleDocument, ScheduleSpec, ServerDocument, SettingsDocument, WarnSpec,
    WorkshopItem,
};
use crate::name::Name;
use crate::operations::{Alert, Backups, Schedule, ScheduleAction, ScheduleServers, Warning, When};
use crate::render::InstanceSpec;
use crate::tree::{Entry, Tree};
use crate::yaml::{Seg, locate, parse};

/// The port range when left4me.yaml names none.
pub const DEFAULT_PORTS: (u16, u16) = (27015, 27115);
/// The server limit when left4me.yaml names none.
pub const DEFAULT_MAX_SERVERS: u32 = 64;
/// The share of servers one revision may delete without confirmation, when left4me.yaml names none.
pub const DEFAULT_PRUNE_LIMIT_PERCENT: u8 = 50;
pub const DEFAULT_JOB_RETENTION_DAYS: u32 = 30;
pub const MAX_JOB_RETENTION_DAYS: u32 = 3650;
/// The most backups of a server a blueprint may keep.
pub const MAX_BACKUPS_KEEP: u32 = 1000;
/// How long `when: empty` waits when a schedule names no `within`.
pub const DEFAULT_WITHIN_SECONDS: u64 = 3600;
/// The shortest and longest `within`: the schedule runner's own tests wait seconds, and a run
/// that waits more than a day would meet the next one.
pub const WITHIN_SECONDS: (u64, u64) = (10, 86_400);
/// The most warnings one schedule says, and the longest before its action.
pub const MAX_WARNINGS: usize = 8;
pub const MAX_WARNING_SECONDS: u64 = 3600;
/// The shortest time a schedule's calendar may leave between two runs, and a backup's: each run
/// is root's work on the host (a job and its log, a restart, a copy of the server's data), and
/// any user may commit schedules for their own servers.
pub const SHORTEST_SCHEDULE_GAP: Duration = Duration::from_secs(5 * 60);
pub const SHORTEST_BACKUP_GAP: Duration = Duration::from_secs(60 * 60);

/// Diagnostics placed in one file beyond this many are summed up in one line, so a file full of
/// mistakes cannot make validation slow or its output unreadable.
const MAX_PLACED_PER_FILE: usize = 20;

/// Symlinks followed while resolving one symlink before it counts as a loop (the kernel's limit).
const MAX_SYMLINK_HOPS: usize = 40;

/// Checks a whole revision. Either every rule holds and the desired state is returned, or every
/// problem found is.
pub fn validate(tree: &Tree) -> Result<DesiredState, Diagnostics> {
    let mut v = Validator { tree, diagnostics: Diagnostics::default(), placed: HashMap::new() };
    let state = v.run();
    v.summarise_crowded_files();
    match state {
        Some(state) if v.diagnostics.is_empty() => Ok(state),
        _ => Err(v.diagnostics.sorted()),
    }
}

struct Validator<'t> {
    tree: &'t Tree,
    diagnostics: Diagnostics,
    /// Placed diagnostics per file: (shown, held back).
    placed: HashMap<String, (usize, usize)>,
}

/// A parsed document with the file it came from.
struct Parsed<D> {
    file: String,
    doc: D,
}

/// What the files of a revision are, by where they sit.
#[derive(Default)]
struct Layout<'t> {
    settings: Vec<(&'t str, &'t Entry)>,
    blueprints: Vec<(&'t str, &'t str, &'t Entry)>,
    servers: Vec<(&'t str, &'t str, &'t Entry)>,
    schedules: Vec<(&'t str, &'t str, &'t Entry)>,
    alerts: Vec<(&'t str, &'t str, &'t Entry)>,
    hosts: Vec<(&'t str, &'t str, &'t Entry)>,
    /// Overlay folder name → (path inside the folder, full path, entry).
    overlays: BTreeMap<&'t str, Vec<(&'t str, &'t str, &'t Entry)>>,
}

impl<'t> Validator<'t> {
    fn run(&mut self) -> Option<DesiredState> {
        self.diagnostics.extend(self.tree.problems.iter().cloned());
        if self.tree.truncated {
            // Only part of the revision was read; rules checked on a part would mislead.
            return None;
        }
        let layout = self.layout();
        let (settings, settings_ok) = self.settings(&layout.settings);
        let mut broken = Broken::default();
        let overlays = self.overlays(&layout.overlays, &mut broken);
        let (hosts, own_ports) = self.hosts(&layout.hosts, &settings, &mut broken);
        let blueprints = self.blueprints(&layout.blueprints, &settings, &overlays, &mut broken);
        let placement =
            Placement { settings: &settings, settings_ok, hosts: &hosts, own_ports: &own_ports, broken: &broken };
        let servers = self.servers(&layout.servers, &placement, &blueprints, &overlays);
        // A server whose file is there but that was refused is reported already; a schedule or
        // alert naming it is not told again that it does not exist.
        broken.servers = layout.servers.iter().map(|(stem, ..)| stem.to_string()).collect();
        let scope = Scope { blueprints: &blueprints, servers: &servers, broken: &broken };
        let schedules = self.schedules(&layout.schedules, &scope);
        let alerts = self.alerts(&layout.alerts, &scope);
        let elsewhere = BTreeMap::new();
        Some(DesiredState { settings, hosts, elsewhere, blueprints, servers, overlays, schedules, alerts })
    }

    fn layout(&mut self) -> Layout<'t> {
        let mut layout = Layout::default();
        for (path, entry) in &self.tree.entries {
            // Neither reader can produce these; a tree with a change put in (`Tree::insert_file`)
            // can, and git could not commit it.
            if let Err(why) = plain_path(path) {
                self.file_error(&path.escape_debug().to_string(), why);
                continue;
            }
            if let Some(file) = file_above(&self.tree.entries, path) {
                self.file_error(path, format!("cannot be saved: {file} is a file, so it cannot also be a folder"));
                continue;
            }
            let parts: Vec<&str> = path.split('/').collect();
            match parts.as_slice() {
                ["left4me.yaml" | "left4me.yml"] => layout.settings.push((path, entry)),
                [settings @ ("left4me.yaml" | "left4me.yml"), ..] => {
                    self.file_error(
                        &format!("{settings}/"),
                        "must be a file holding the host's settings, not a folder",
                    );
                }
                [folder @ ("blueprints" | "servers" | "overlays" | "schedules" | "alerts" | "hosts")] => {
                    self.file_error(path, format!("must be a folder holding the {folder}"));
                }
                [folder @ ("blueprints" | "servers" | "schedules" | "alerts" | "hosts"), file] => match yaml_stem(file)
                {
                    Some(stem) => {
                        let files = match *folder {
                            "blueprints" => &mut layout.blueprints,
                            "servers" => &mut layout.servers,
                            "schedules" => &mut layout.schedules,
                            "hosts" => &mut layout.hosts,
                            _ => &mut layout.alerts,
                        };
                        files.push((stem, path, entry));
                    }
                    None => self.file_error(
                        path,
                        format!("{folder}/ holds one <name>.yaml file per resource; this is not a .yaml file"),
                    ),
                },
                [folder @ ("blueprints" | "servers" | "schedules" | "alerts" | "hosts"), sub, ..] => {
                    self.file_error(
                        &format!("{folder}/{sub}/"),
                        format!("{folder}/ holds .yaml files only, not folders"),
                    );
                }
                ["overlays", _] => {
                    self.file_error(path, "overlays/ holds one folder per overlay, not files");
                }
                ["overlays", name, ..] => {
                    let inner = &path["overlays/".len() + name.len() + 1..];
                    layout.overlays.entry(name).or_default().push((inner, path, entry));
                }
                // The rest of a repo (a README, CI files) is not desired state.
                _ => {}
            }
        }
        layout
    }

    fn settings(&mut self, files: &[(&'t str, &'t Entry)]) -> (Settings, bool) {
        let mut settings = Settings {
            ports: PortRange {
                first: Port::new(DEFAULT_PORTS.0).expect("the default ports are valid"),
                last: Port::new(DEFAULT_PORTS.1).expect("the default ports are valid"),
            },
            max_servers: DEFAULT_MAX_SERVERS,
            prune_limit_percent: DEFAULT_PRUNE_LIMIT_PERCENT,
            job_retention_days: DEFAULT_JOB_RETENTION_DAYS,
            default_state: PowerState::Running,
            default_rollout: Rollout::WhenEmpty,
            game: Game::default(),
        };
        let mut ok = true;
        let mut seen: Option<&str> = None;
        for (path, entry) in files {
            let Some(data) = self.regular_file(path, entry) else {
                ok = false;
                continue;
            };
            if let Some(first) = seen {
                self.file_error(path, format!("the host's settings are already in {first}; keep one of the two"));
                ok = false;
                continue;
            }
            seen = Some(path);
            let doc: SettingsDocument = match parse(path, data) {
                Ok(doc) => doc,
                Err(diagnostic) => {
                    self.diagnostics.push(diagnostic);
                    ok = false;
                    continue;
                }
            };
            let spec = doc.spec;
            if let Some(ports) = spec.ports {
                if ports.first.number() > ports.last.number() {
                    self.at(
                        path,
                        &[Seg::Key("spec"), Seg::Key("ports")],
                        format!("spec.ports: first port {} is above last port {}", ports.first, ports.last),
                    );
                    ok = false;
                } else {
                    settings.ports = ports;
                }
            }
            if let Some(max) = spec.max_servers {
                settings.max_servers = max;
            }
            match spec.prune_limit_percent {
                Some(percent) if percent > 100 => {
                    self.at(
                        path,
                        &[Seg::Key("spec"), Seg::Key("pruneLimitPercent")],
                        format!("spec.pruneLimitPercent: {percent} is not a percentage (0 to 100)"),
                    );
                    ok = false;
                }
                Some(percent) => settings.prune_limit_percent = percent,
                None => {}
            }
            match spec.job_retention_days {
                Some(days) if !(1..=MAX_JOB_RETENTION_DAYS).contains(&days) => {
                    self.at(
                        path,
                        &[Seg::Key("spec"), Seg::Key("jobRetentionDays")],
                        format!("spec.jobRetentionDays: {days} is outside 1 to {MAX_JOB_RETENTION_DAYS} days"),
                    );
                    ok = false;
                }
                Some(days) => settings.job_retention_days = days,
                None => {}
            }
            if let Some(defaults) = spec.defaults {
                settings.default_state = defaults.state.unwrap_or(settings.default_state);
                settings.default_rollout = defaults.rollout.unwrap_or(settings.default_rollout);
            }
            if let Some(game) = spec.game {
                let fallback = Game::default();
                settings.game = Game {
                    branch: game.branch.unwrap_or(fallback.branch),
                    build: game.build.unwrap_or(fallback.build),
                    check_every: game.check_every.unwrap_or(fallback.check_every),
                };
            }
        }
        (settings, ok)
    }

    /// The hosts servers are placed on, each with its own ports and limit (the settings' where it
    /// names none), and those that name their own ports. Names of hosts whose file was refused go
    /// to `broken`.
    fn hosts(
        &mut self,
        files: &[(&'t str, &'t str, &'t Entry)],
        settings: &Settings,
        broken: &mut Broken,
    ) -> (BTreeMap<Name, Host>, BTreeSet<Name>) {
        let docs = self.resources::<HostDocument>("host", files, &mut broken.hosts, |d| &d.metadata.name);
        let (mut hosts, mut own_ports) = (BTreeMap::new(), BTreeSet::new());
        for Parsed { file, doc } in docs {
            let (name, spec) = (doc.metadata.name, doc.spec);
            let ports = match spec.ports {
                Some(ports) if ports.first.number() > ports.last.number() => {
                    self.at(
                        &file,
                        &[Seg::Key("spec"), Seg::Key("ports")],
                        format!("spec.ports: first port {} is above last port {}", ports.first, ports.last),
                    );
                    None
                }
                Some(ports) => {
                    own_ports.insert(name.clone());
                    Some(ports)
                }
                None => Some(settings.ports.clone()),
            };
            let Some(ports) = ports else {
                broken.hosts.insert(name.to_string());
                continue;
            };
            hosts.insert(
                name.clone(),
                Host {
                    name,
                    address: spec.address,
                    ports,
                    max_servers: spec.max_servers.unwrap_or(settings.max_servers),
                    description: spec.description.map(|d| d.get().clone()),
                    file,
                },
            );
        }
        (hosts, own_ports)
    }

    fn overlays(
        &mut self,
        folders: &BTreeMap<&'t str, Vec<(&'t str, &'t str, &'t Entry)>>,
        broken: &mut Broken,
    ) -> BTreeMap<Name, Overlay> {
        let mut overlays = BTreeMap::new();
        for (folder, entries) in folders {
            let folder_path = format!("overlays/{folder}/");
            let name = match Name::new(*folder) {
                Ok(name) => name,
                Err(e) => {
                    self.file_error(&folder_path, format!("{folder:?} is not a valid overlay name: {e}"));
                    broken.overlays.insert(folder.to_string());
                    continue;
                }
            };
            match self.overlay(&name, &folder_path, entries) {
                Some(overlay) => {
                    overlays.insert(name, overlay);
                }
                None => {
                    broken.overlays.insert(name.to_string());
                }
            }
        }
        overlays
    }

    /// One overlay folder, its rules checked in the order the docs give them: what the folder
    /// holds, its one overlay.yaml, the name it declares, the parts its type has, and its content.
    fn overlay(&mut self, name: &Name, folder: &str, entries: &[(&str, &str, &'t Entry)]) -> Option<Overlay> {
        let parts = self.overlay_parts(entries);
        let (document, mut ok) = self.overlay_document(name, &parts.documents);
        let Some(Parsed { file, doc }) = document else {
            if ok {
                self.file_error(folder, "has no overlay.yaml, so it is not an overlay");
            }
            return None;
        };
        ok &= self.overlay_name_is_its_folder(&file, &doc.metadata.name, name, folder);
        let source = doc.spec.source;
        let (items, collections, sources) = (doc.spec.items, doc.spec.collections, doc.spec.sources);
        let lists = (&items[..], &collections[..], &sources[..]);
        ok &= self.overlay_has_only_its_type_parts(&file, name, folder, source, lists, &parts);
        let content = match source {
            OverlayType::Files => self.files_content(&file, folder, &parts.files)?,
            OverlayType::Script => self.script_content(&file, folder, parts.build)?,
            OverlayType::Workshop => self.workshop_content(&file, items, collections)?,
            OverlayType::Archive => self.archive_content(&file, sources)?,
        };
        if !ok {
            return None;
        }
        let digest = content.digest();
        Some(Overlay {
            name: name.clone(),
            owner: doc.metadata.owner,
            description: doc.spec.description,
            content,
            digest,
            file,
        })
    }

    /// Sorts an overlay folder's files by what they are: an overlay folder holds overlay.yaml,
    /// README.md, and files/ or build.sh; anything else is reported.
    fn overlay_parts<'e>(&mut self, entries: &'e [(&'e str, &'e str, &'t Entry)]) -> OverlayParts<'e, 't> {
        let mut parts = OverlayParts { documents: Vec::new(), build: None, files: BTreeMap::new() };
        for (inner, path, entry) in entries {
            match *inner {
                "overlay.yaml" | "overlay.yml" => parts.documents.push((*path, *entry)),
                "build.sh" => parts.build = Some((*path, *entry)),
                "README.md" => {}
                _ => match inner.strip_prefix("files/") {
                    Some(file) => {
                        parts.files.insert(file, (path, entry));
                    }
                    None => self.file_error(
                        path,
                        "unexpected file: an overlay folder holds overlay.yaml, README.md, and files/ (type files) \
                         or build.sh (type script)",
                    ),
                },
            }
        }
        parts
    }

    /// The overlay's one overlay.yaml, parsed, and whether every copy of it could be read.
    fn overlay_document(
        &mut self,
        name: &Name,
        documents: &[(&str, &'t Entry)],
    ) -> (Option<Parsed<OverlayDocument>>, bool) {
        let mut parsed: Option<Parsed<OverlayDocument>> = None;
        let mut ok = true;
        for (path, entry) in documents {
            let Some(data) = self.regular_file(path, entry) else {
                ok = false;
                continue;
            };
            if let Some(first) = &parsed {
                let first = first.file.clone();
                self.file_error(path, format!("overlay {name} is already defined in {first}; keep one of the two"));
                ok = false;
                continue;
            }
            match parse::<OverlayDocument>(path, data) {
                Ok(doc) => parsed = Some(Parsed { file: (*path).to_owned(), doc }),
                Err(diagnostic) => {
                    self.diagnostics.push(diagnostic);
                    ok = false;
                }
            }
        }
        (parsed, ok)
    }

    /// An overlay's `metadata.name` is the name of its folder.
    fn overlay_name_is_its_folder(&mut self, file: &str, declared: &Name, name: &Name, folder: &str) -> bool {
        if declared == name {
            return true;
        }
        self.at(
            file,
            &[Seg::Key("metadata"), Seg::Key("name")],
            format!("metadata.name {:?} does not match the folder name {folder}", declared.as_str()),
        );
        false
    }

    /// Only workshop overlays list items and collections, only archive overlays list sources,
    /// only script overlays have a build.sh, only files overlays have a files/ folder.
    fn overlay_has_only_its_type_parts(
        &mut self,
        file: &str,
        name: &Name,
        folder: &str,
        source: OverlayType,
        (items, collections, sources): (&[WorkshopItem], &[WorkshopItem], &[ArchiveSource]),
        parts: &OverlayParts<'_, 't>,
    ) -> bool {
        let mut ok = true;
        for (key, ids) in [("items", items), ("collections", collections)] {
            if source != OverlayType::Workshop && !ids.is_empty() {
                self.at(
                    file,
                    &[Seg::Key("spec"), Seg::Key(key)],
                    format!("spec.{key}: only workshop overlays list {key}; this overlay is of type {source}"),
                );
                ok = false;
            }
        }
        if source != OverlayType::Archive && !sources.is_empty() {
            self.at(
                file,
                &[Seg::Key("spec"), Seg::Key("sources")],
                format!("spec.sources: only archive overlays list sources; this overlay is of type {source}"),
            );
            ok = false;
        }
        if source != OverlayType::Script
            && let Some((path, _)) = parts.build
        {
            self.file_error(path, format!("only script overlays have a build.sh; {name} is of type {source}"));
            ok = false;
        }
        if source != OverlayType::Files && !parts.files.is_empty() {
            self.file_error(
                &format!("{folder}files/"),
                format!("only files overlays have a files/ folder; {name} is of type {source}"),
            );
            ok = false;
        }
        ok
    }

    /// A files overlay keeps a tree under files/.
    fn files_content(
        &mut self,
        file: &str,
        folder: &str,
        files: &BTreeMap<&str, (&str, &'t Entry)>,
    ) -> Option<OverlayContent> {
        if files.is_empty() {
            self.at(
                file,
                &AT_TYPE,
                format!("a files overlay keeps its tree under {folder}files/, and there is nothing there"),
            );
            return None;
        }
        Some(OverlayContent::Files(self.overlay_files(folder, files)?))
    }

    /// A script overlay has its recipe, not empty, in build.sh.
    fn script_content(&mut self, file: &str, folder: &str, build: Option<(&str, &'t Entry)>) -> Option<OverlayContent> {
        let Some((path, entry)) = build else {
            self.at(file, &AT_TYPE, format!("a script overlay needs its recipe in {folder}build.sh"));
            return None;
        };
        let data = self.regular_file(path, entry)?;
        if data.iter().all(u8::is_ascii_whitespace) {
            self.file_error(path, "build.sh is empty");
            return None;
        }
        Some(OverlayContent::Script { build: data.to_vec() })
    }

    /// A workshop overlay lists at least one item or collection, each once in its list.
    fn workshop_content(
        &mut self,
        file: &str,
        items: Vec<WorkshopItem>,
        collections: Vec<WorkshopItem>,
    ) -> Option<OverlayContent> {
        if items.is_empty() && collections.is_empty() {
            self.at(
                file,
                &AT_TYPE,
                "a workshop overlay lists at least one item id in spec.items or collection id in spec.collections",
            );
            return None;
        }
        let mut ok = true;
        for (key, what, ids) in [("items", "item", &items), ("collections", "collection", &collections)] {
            let mut seen = BTreeMap::new();
            for (index, id) in ids.iter().enumerate() {
                if let Some(first) = seen.insert(id.get(), index) {
                    self.at(
                        file,
                        &[Seg::Key("spec"), Seg::Key(key), Seg::Index(index)],
                        format!("spec.{key}[{index}]: {what} {} is already listed as spec.{key}[{first}]", id.get()),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(OverlayContent::Workshop { items, collections })
    }

    /// An archive overlay lists at least one source. (Each source's fields were checked as they
    /// were read; the same archive listed twice is allowed: unpacking it again changes nothing.)
    fn archive_content(&mut self, file: &str, sources: Vec<ArchiveSource>) -> Option<OverlayContent> {
        if sources.is_empty() {
            self.at(
                file,
                &AT_TYPE,
                "an archive overlay lists at least one archive in spec.sources (url and sha256 each)",
            );
            return None;
        }
        Some(OverlayContent::Archive(sources))
    }

    /// The tree of a files overlay, with every symlink checked to stay inside it.
    fn overlay_files(&mut self, folder: &str, files: &BTreeMap<&str, (&str, &Entry)>) -> Option<Vec<OverlayFile>> {
        let mut ok = true;
        let mut tree = Vec::with_capacity(files.len());
        for (inner, (path, entry)) in files {
            let kind = match entry {
                Entry::File { data, executable } => FileKind::Regular { data: data.clone(), executable: *executable },
                Entry::Symlink { target } => {
                    if let Err(why) = resolve_symlink(files, inner, target) {
                        self.file_error(
                            path,
                            format!("symlink to {target:?} {why}; it must stay inside {folder}files/"),
                        );
                        ok = false;
                    }
                    FileKind::Symlink { target: target.clone() }
                }
            };
            tree.push(OverlayFile { path: inner.to_string(), kind });
        }
        ok.then_some(tree)
    }

    fn blueprints(
        &mut self,
        files: &[(&'t str, &'t str, &'t Entry)],
        settings: &Settings,
        overlays: &BTreeMap<Name, Overlay>,
        broken: &mut Broken,
    ) -> BTreeMap<Name, Blueprint> {
        let mut blueprints = BTreeMap::new();
        let docs =
            self.resources::<BlueprintDocument>("blueprint", files, &mut broken.blueprints, |d| &d.metadata.name);
        for Parsed { file, doc } in docs {
            let mut ok = true;
            let mut seen: BTreeMap<&Name, usize> = BTreeMap::new();
            for (index, overlay) in doc.spec.overlays.iter().enumerate() {
                let at = [Seg::Key("spec"), Seg::Key("overlays"), Seg::Index(index)];
                if let Some(first) = seen.insert(overlay, index) {
                    self.at(
                        &file,
                        &at,
                        format!(
                            "spec.overlays[{index}]: overlay {overlay} is already stacked as spec.overlays[{first}]; \
                         a layer can be stacked once"
                        ),
                    );
                    ok = false;
                } else if !overlays.contains_key(overlay) && !broken.overlays.contains(overlay.as_str()) {
                    self.at(
                        &file,
                        &at,
                        format!(
                            "spec.overlays[{index}]: overlay {overlay} does not exist{}",
                            known("overlays", overlays.keys())
                        ),
                    );
                    ok = false;
                }
            }
            let backups = self.backups_in_bounds(&file, doc.spec.backups.as_ref().map(|b| b.keep));
            let Some(backups) = backups.filter(|_| ok) else {
                broken.blueprints.insert(doc.metadata.name.to_string());
                continue;
            };
            let spec = doc.spec;
            blueprints.insert(
                doc.metadata.name.clone(),
                Blueprint {
                    name: doc.metadata.name,
                    owner: doc.metadata.owner,
                    overlays: spec.overlays,
                    arguments: spec.arguments,
                    config: spec.config,
                    rollout: spec.rollout.unwrap_or(settings.default_rollout),
                    build: spec.game.and_then(|game| game.build).unwrap_or(settings.game.build),
                    backups,
                    resources: spec.resources,
                    file,
                },
            );
        }
        blueprints
    }

    /// The servers, their rules checked in turn: placed on a declared host (when the repo declares
    /// hosts), how many each host allows, a port of their own on their host, inside its range, a
    /// blueprint of their own owner's. Each admitted server is rendered.
    fn servers(
        &mut self,
        files: &[(&'t str, &'t str, &'t Entry)],
        placement: &Placement<'_>,
        blueprints: &BTreeMap<Name, Blueprint>,
        overlays: &BTreeMap<Name, Overlay>,
    ) -> BTreeMap<Name, Server> {
        let mut ignored = BTreeSet::new();
        let docs = self.resources::<ServerDocument>("server", files, &mut ignored, |d| &d.metadata.name);
        if placement.hosts.is_empty() && placement.broken.hosts.is_empty() {
            if placement.settings_ok {
                self.servers_within_limit(files.len(), placement.settings);
            }
        } else {
            self.hosts_within_limits(&docs, placement.hosts);
        }
        let clashing = self.ports_of_their_own(&docs);
        let mut servers = BTreeMap::new();
        for Parsed { file, doc } in &docs {
            let mut ok = !clashing.contains(&doc.metadata.name);
            let host = self.host_of(file, doc, placement);
            if let Some(host) = host.as_ref().filter(|_| placement.settings_ok) {
                ok &= self.port_in_range(file, doc, host);
            }
            let blueprint = self.blueprint_of_own_owner(
                file,
                &doc.spec.blueprint,
                &doc.metadata.owner,
                blueprints,
                placement.broken,
            );
            let (Some(blueprint), Some(host)) = (blueprint.filter(|_| ok), host) else { continue };
            // Every overlay of an admitted blueprint resolves, or it is broken and already reported.
            let Some(spec) = render(doc, blueprint, overlays) else { continue };
            servers.insert(
                doc.metadata.name.clone(),
                Server {
                    name: doc.metadata.name.clone(),
                    owner: doc.metadata.owner.clone(),
                    blueprint: doc.spec.blueprint.clone(),
                    port: doc.spec.port.clone(),
                    state: doc.spec.state.unwrap_or(placement.settings.default_state),
                    hostname: spec.hostname.clone(),
                    host: host.name,
                    file: file.clone(),
                    spec,
                },
            );
        }
        servers
    }

    /// Where a server runs: the one host of a repo without `hosts/`, else the declared host it
    /// names. `None` when that is wrong (reported) or when its host's file was refused (reported
    /// there).
    fn host_of(&mut self, file: &str, doc: &ServerDocument, placement: &Placement<'_>) -> Option<HostPorts> {
        let at = [Seg::Key("spec"), Seg::Key("host")];
        let declared = !placement.hosts.is_empty() || !placement.broken.hosts.is_empty();
        match (&doc.spec.host, declared) {
            (None, false) => Some(HostPorts {
                name: None,
                ports: placement.settings.ports.clone(),
                source: "spec.ports in left4me.yaml".into(),
            }),
            (Some(host), false) => {
                self.at(
                    file,
                    &at,
                    format!(
                        "spec.host: host {host} does not exist: this repo declares no hosts/, so it describes \
                         one host; leave spec.host out, or declare hosts/{host}.yaml"
                    ),
                );
                None
            }
            (None, true) => {
                let known = placement.hosts.keys().map(Name::as_str).collect::<Vec<_>>().join(", ");
                let known = if known.is_empty() { "hosts/, each refused above".to_owned() } else { known };
                self.file_error(
                    file,
                    format!(
                        "spec.host is missing: this repo declares hosts ({known}), so every server names the \
                         one it runs on"
                    ),
                );
                None
            }
            (Some(name), true) => match placement.hosts.get(name) {
                Some(host) => Some(HostPorts {
                    name: Some(name.clone()),
                    ports: host.ports.clone(),
                    source: if placement.own_ports.contains(name) {
                        format!("spec.ports in {}", host.file)
                    } else {
                        "spec.ports in left4me.yaml".into()
                    },
                }),
                None if placement.broken.hosts.contains(name.as_str()) => None,
                None => {
                    self.at(
                        file,
                        &at,
                        format!("spec.host: host {name} does not exist{}", known("hosts", placement.hosts.keys())),
                    );
                    None
                }
            },
        }
    }

    /// No more servers than the host's `spec.maxServers`.
    fn servers_within_limit(&mut self, declared: usize, settings: &Settings) {
        if declared > settings.max_servers as usize {
            self.file_error(
                "servers/",
                format!(
                    "{declared} servers are declared, more than this host's limit of {} (spec.maxServers in left4me.yaml)",
                    settings.max_servers
                ),
            );
        }
    }

    /// No more servers placed on a declared host than its `spec.maxServers`.
    fn hosts_within_limits(&mut self, docs: &[Parsed<ServerDocument>], hosts: &BTreeMap<Name, Host>) {
        let mut placed: BTreeMap<&Name, usize> = BTreeMap::new();
        for parsed in docs {
            if let Some(host) = &parsed.doc.spec.host {
                *placed.entry(host).or_default() += 1;
            }
        }
        for (name, count) in placed {
            let Some(host) = hosts.get(name) else { continue };
            if count > host.max_servers as usize {
                self.file_error(
                    &host.file,
                    format!(
                        "{count} servers are placed on host {name}, more than its limit of {} (spec.maxServers)",
                        host.max_servers
                    ),
                );
            }
        }
    }

    /// Each server has a port of its own on its host (the same port on two hosts is fine); the
    /// servers that share one.
    fn ports_of_their_own(&mut self, docs: &[Parsed<ServerDocument>]) -> BTreeSet<Name> {
        let mut by_port: BTreeMap<(Option<&Name>, u16), Vec<&Parsed<ServerDocument>>> = BTreeMap::new();
        for parsed in docs {
            let key = (parsed.doc.spec.host.as_ref(), parsed.doc.spec.port.number());
            by_port.entry(key).or_default().push(parsed);
        }
        let mut clashing = BTreeSet::new();
        for ((host, port), users) in &by_port {
            if users.len() < 2 {
                continue;
            }
            let on = host.map(|host| format!(" on host {host}")).unwrap_or_default();
            let places: Vec<String> = users.iter().map(|p| self.place(&p.file, &AT_PORT)).collect();
            for (index, user) in users.iter().enumerate() {
                let others: Vec<String> = users
                    .iter()
                    .zip(&places)
                    .enumerate()
                    .filter(|(other, _)| *other != index)
                    .map(|(_, (other, place))| format!("server {} ({place})", other.doc.metadata.name))
                    .collect();
                self.at(
                    &user.file,
                    &AT_PORT,
                    format!(
                        "spec.port: port {port} is also used{on} by {}; each server needs a port of its own",
                        others.join(", ")
                    ),
                );
                clashing.insert(user.doc.metadata.name.clone());
            }
        }
        clashing
    }

    /// A server's port is inside its host's `spec.ports`.
    fn port_in_range(&mut self, file: &str, doc: &ServerDocument, host: &HostPorts) -> bool {
        let (first, last) = (host.ports.first.number(), host.ports.last.number());
        let port = doc.spec.port.number();
        if (first..=last).contains(&port) {
            return true;
        }
        let which = host.name.as_ref().map(|name| format!("host {name}'s")).unwrap_or_else(|| "this host's".into());
        self.at(
            file,
            &AT_PORT,
            format!("spec.port: port {port} is outside {which} range {first}-{last} ({})", host.source),
        );
        false
    }

    /// A server (or a schedule) names a blueprint of its own owner; the blueprint, when it does.
    fn blueprint_of_own_owner<'b>(
        &mut self,
        file: &str,
        wanted: &Name,
        owner: &Name,
        blueprints: &'b BTreeMap<Name, Blueprint>,
        broken: &Broken,
    ) -> Option<&'b Blueprint> {
        match blueprints.get(wanted) {
            Some(blueprint) if &blueprint.owner == owner => return Some(blueprint),
            None if broken.blueprints.contains(wanted.as_str()) => return None,
            // Another owner's blueprint is told exactly as one that does not exist: blueprints
            // are private, and the message must not tell one user what another has.
            _ => {}
        }
        let own = blueprints.values().filter(|b| &b.owner == owner).map(|b| &b.name);
        self.at(
            file,
            &[Seg::Key("spec"), Seg::Key("blueprint")],
            format!(
                "spec.blueprint: blueprint {wanted} does not exist{}",
                known(&format!("blueprints of {owner}"), own)
            ),
        );
        None
    }

    /// A blueprint keeps from 1 to 1000 backups of each server; its policy, when it does.
    fn backups_in_bounds(&mut self, file: &str, keep: Option<u32>) -> Option<Backups> {
        let Some(keep) = keep else { return Some(Backups::default()) };
        if (1..=MAX_BACKUPS_KEEP).contains(&keep) {
            return Some(Backups { keep });
        }
        self.at(
            file,
            &[Seg::Key("spec"), Seg::Key("backups"), Seg::Key("keep")],
            format!("spec.backups.keep: {keep} is outside 1 to {MAX_BACKUPS_KEEP} backups"),
        );
        None
    }

    /// The schedules, their rules checked in turn: what they act on, what they do, when they
    /// wait, what they say first.
    fn schedules(&mut self, files: &[(&'t str, &'t str, &'t Entry)], scope: &Scope<'_>) -> BTreeMap<Name, Schedule> {
        let mut ignored = BTreeSet::new();
        let docs = self.resources::<ScheduleDocument>("schedule", files, &mut ignored, |d| &d.metadata.name);
        let mut schedules = BTreeMap::new();
        for Parsed { file, doc } in docs {
            let (name, owner, spec) = (doc.metadata.name, doc.metadata.owner, doc.spec);
            let servers = self.schedule_targets(&file, &owner, &spec, scope);
            let action = self.schedule_action(&file, &spec);
            let paced = self.schedule_pace(&file, &spec);
            let window = self.schedule_window(&file, &spec);
            let warn = match spec.warn {
                Some(warn) => self.schedule_warning(&file, warn).map(Some),
                None => Some(None),
            };
            let (Some(servers), Some(action), Some((when, within)), Some(warn), true) =
                (servers, action, window, warn, paced)
            else {
                continue;
            };
            schedules
                .insert(name.clone(), Schedule { name, owner, servers, at: spec.at, action, when, within, warn, file });
        }
        schedules
    }

    /// A schedule names its servers or one blueprint, not both; each of the owner's.
    fn schedule_targets(
        &mut self,
        file: &str,
        owner: &Name,
        spec: &ScheduleSpec,
        scope: &Scope<'_>,
    ) -> Option<ScheduleServers> {
        match (&spec.servers, &spec.blueprint) {
            (Some(_), Some(_)) => {
                self.at(
                    file,
                    &[Seg::Key("spec"), Seg::Key("blueprint")],
                    "spec.blueprint: a schedule acts on the servers it names or on every server of a blueprint, \
                     not both; keep spec.servers or spec.blueprint",
                );
                None
            }
            (None, None) => {
                self.at(
                    file,
                    &[Seg::Key("spec")],
                    "spec: name the servers the schedule acts on (spec.servers) or a blueprint (spec.blueprint)",
                );
                None
            }
            (None, Some(blueprint)) => {
                self.blueprint_of_own_owner(file, blueprint, owner, scope.blueprints, scope.broken)?;
                Some(ScheduleServers::Blueprint(blueprint.clone()))
            }
            (Some(names), None) => {
                let ok = self.servers_of(file, Some(owner), names, scope);
                ok.then(|| ScheduleServers::Named(names.clone()))
            }
        }
    }

    /// A list of servers (a schedule's or an alert's) is not empty, names each once, and names
    /// servers that exist: the owner's, when there is one. Another owner's server is told exactly
    /// as one that does not exist: servers are private too.
    fn servers_of(&mut self, file: &str, owner: Option<&Name>, names: &[Name], scope: &Scope<'_>) -> bool {
        let at = [Seg::Key("spec"), Seg::Key("servers")];
        if names.is_empty() {
            let hint = match owner {
                Some(_) => "name at least one server, or the blueprint whose servers it acts on",
                None => "leave it out to hear about every server",
            };
            self.at(file, &at, format!("spec.servers is empty; {hint}"));
            return false;
        }
        let mut ok = true;
        let mut seen: BTreeMap<&Name, usize> = BTreeMap::new();
        for (index, name) in names.iter().enumerate() {
            let at = [Seg::Key("spec"), Seg::Key("servers"), Seg::Index(index)];
            if let Some(first) = seen.insert(name, index) {
                self.at(
                    file,
                    &at,
                    format!("spec.servers[{index}]: server {name} is already listed as spec.servers[{first}]"),
                );
                ok = false;
                continue;
            }
            match scope.servers.get(name) {
                Some(server) if owner.is_none_or(|owner| &server.owner == owner) => continue,
                None if scope.broken.servers.contains(name.as_str()) => {
                    ok = false;
                    continue;
                }
                _ => {}
            }
            let (what, listed): (String, Vec<&Name>) = match owner {
                Some(owner) => (
                    format!("servers of {owner}"),
                    scope.servers.values().filter(|s| &s.owner == owner).map(|s| &s.name).collect(),
                ),
                None => ("servers".to_owned(), scope.servers.keys().collect()),
            };
            self.at(
                file,
                &at,
                format!("spec.servers[{index}]: server {name} does not exist{}", known(&what, listed.into_iter())),
            );
            ok = false;
        }
        ok
    }

    /// `spec.command` is there for action command, and only for it.
    fn schedule_action(&mut self, file: &str, spec: &ScheduleSpec) -> Option<ScheduleAction> {
        let action = match (spec.action, &spec.command) {
            (ActionName::Command, Some(command)) => ScheduleAction::Command(command.as_str().to_owned()),
            (ActionName::Command, None) => {
                self.at(
                    file,
                    &[Seg::Key("spec"), Seg::Key("action")],
                    "spec.action: action command sends a console command; write the command in spec.command",
                );
                return None;
            }
            (other, Some(_)) => {
                let name = other.as_str();
                self.at(
                    file,
                    &[Seg::Key("spec"), Seg::Key("command")],
                    format!("spec.command: only action command sends a command; this schedule's action is {name}"),
                );
                return None;
            }
            (ActionName::Restart, None) => ScheduleAction::Restart,
            (ActionName::Start, None) => ScheduleAction::Start,
            (ActionName::Stop, None) => ScheduleAction::Stop,
            (ActionName::Backup, None) => ScheduleAction::Backup,
        };
        Some(action)
    }

    /// The calendar leaves at least 5 minutes between runs, a backup's at least an hour.
    fn schedule_pace(&mut self, file: &str, spec: &ScheduleSpec) -> bool {
        let shortest = match spec.action {
            ActionName::Backup => SHORTEST_BACKUP_GAP,
            _ => SHORTEST_SCHEDULE_GAP,
        };
        let at = [Seg::Key("spec"), Seg::Key("at")];
        let problem = match calendar::read(spec.at.as_str()) {
            Ok(times) if times.shortest_gap() >= shortest => return true,
            Ok(times) => format!(
                "{:?} can fire {} after it last fired; a schedule may run at most every 5 minutes (a backup at \
                 most hourly)",
                spec.at.as_str(),
                show_gap(times.shortest_gap())
            ),
            // `Calendar` took it already; told all the same, should the two ever part.
            Err(why) => format!("calendar expression {:?}: {why}", spec.at.as_str()),
        };
        self.at(file, &at, format!("spec.at: {problem}"));
        false
    }

    /// `spec.within` goes with `when: empty`, from 10s to 24h; `when` and `within` with their
    /// defaults filled in.
    fn schedule_window(&mut self, file: &str, spec: &ScheduleSpec) -> Option<(When, u64)> {
        let when = spec.when.unwrap_or(When::Always);
        let Some(within) = &spec.within else { return Some((when, DEFAULT_WITHIN_SECONDS)) };
        let at = [Seg::Key("spec"), Seg::Key("within")];
        if when != When::Empty {
            self.at(
                file,
                &at,
                "spec.within: only when: empty waits; set when: empty, or leave within out to act at once",
            );
            return None;
        }
        let (shortest, longest) = WITHIN_SECONDS;
        if !(shortest..=longest).contains(&within.seconds()) {
            self.at(file, &at, format!("spec.within: {} s is outside {shortest}s to 24h", within.seconds()));
            return None;
        }
        Some((when, within.seconds()))
    }

    /// `spec.warn.before` lists 1 to 8 distinct times, each at most 1h; kept longest first.
    fn schedule_warning(&mut self, file: &str, warn: WarnSpec) -> Option<Warning> {
        let at = [Seg::Key("spec"), Seg::Key("warn"), Seg::Key("before")];
        if warn.before.is_empty() || warn.before.len() > MAX_WARNINGS {
            self.at(
                file,
                &at,
                format!(
                    "spec.warn.before lists {} times; list 1 to {MAX_WARNINGS}, or leave warn out",
                    warn.before.len()
                ),
            );
            return None;
        }
        let mut ok = true;
        let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
        for (index, before) in warn.before.iter().enumerate() {
            let at = [Seg::Key("spec"), Seg::Key("warn"), Seg::Key("before"), Seg::Index(index)];
            let seconds = before.seconds();
            let problem = if let Some(first) = seen.insert(seconds, index) {
                format!("{seconds} s before is already listed as spec.warn.before[{first}]")
            } else if seconds > MAX_WARNING_SECONDS {
                format!("{seconds} s is more than 1h; players are warned at most an hour before")
            } else {
                continue;
            };
            self.at(file, &at, format!("spec.warn.before[{index}]: {problem}"));
            ok = false;
        }
        let mut before: Vec<u64> = warn.before.iter().map(|b| b.seconds()).collect();
        before.sort_unstable_by(|a, b| b.cmp(a));
        ok.then(|| Warning { before, message: warn.message.as_str().to_owned() })
    }

    /// The alerts: at least one event, each once; the servers they name exist.
    fn alerts(&mut self, files: &[(&'t str, &'t str, &'t Entry)], scope: &Scope<'_>) -> BTreeMap<Name, Alert> {
        let mut ignored = BTreeSet::new();
        let docs = self.resources::<AlertDocument>("alert", files, &mut ignored, |d| &d.metadata.name);
        let mut alerts = BTreeMap::new();
        for Parsed { file, doc } in docs {
            let spec = doc.spec;
            let mut ok = self.events_listed_once(&file, &spec.events);
            if let Some(servers) = &spec.servers {
                ok &= self.servers_of(&file, None, servers, scope);
            }
            if !ok {
                continue;
            }
            let name = doc.metadata.name;
            alerts.insert(
                name.clone(),
                Alert {
                    name,
                    provider: spec.provider,
                    secret_ref: spec.secret_ref,
                    events: spec.events,
                    servers: spec.servers,
                    file,
                },
            );
        }
        alerts
    }

    fn events_listed_once(&mut self, file: &str, events: &[crate::model::AlertEvent]) -> bool {
        if events.is_empty() {
            self.at(
                file,
                &[Seg::Key("spec"), Seg::Key("events")],
                "spec.events is empty; list the kinds of notice this alert delivers, as server-failed",
            );
            return false;
        }
        let mut ok = true;
        let mut seen = BTreeMap::new();
        for (index, event) in events.iter().enumerate() {
            if let Some(first) = seen.insert(event, index) {
                self.at(
                    file,
                    &[Seg::Key("spec"), Seg::Key("events"), Seg::Index(index)],
                    format!("spec.events[{index}]: {event} is already listed as spec.events[{first}]"),
                );
                ok = false;
            }
        }
        ok
    }

    /// Parses the `<name>.yaml` files of one folder, checking each name against its file name and
    /// for duplicates. Names of files that could not be read go to `broken`, so references to them
    /// are not reported a second time as missing.
    fn resources<D: serde::de::DeserializeOwned>(
        &mut self,
        kind: &str,
        files: &[(&'t str, &'t str, &'t Entry)],
        broken: &mut BTreeSet<String>,
        name_of: impl Fn(&D) -> &Name,
    ) -> Vec<Parsed<D>> {
        let mut parsed: Vec<Parsed<D>> = Vec::new();
        let mut defined: HashMap<Name, String> = HashMap::new();
        let at_name = [Seg::Key("metadata"), Seg::Key("name")];
        for (stem, path, entry) in files {
            broken.insert(stem.to_string());
            let stem_ok = match Name::new(*stem) {
                Ok(_) => true,
                Err(e) => {
                    self.file_error(path, format!("file name {stem:?} is not a valid {kind} name: {e}"));
                    false
                }
            };
            let Some(data) = self.regular_file(path, entry) else { continue };
            let doc: D = match parse(path, data) {
                Ok(doc) => doc,
                Err(diagnostic) => {
                    self.diagnostics.push(diagnostic);
                    continue;
                }
            };
            let name = name_of(&doc).clone();
            if stem_ok && name.as_str() != *stem {
                self.at(
                    path,
                    &at_name,
                    format!(
                        "metadata.name {:?} does not match the file name {path}; rename one so they agree",
                        name.as_str()
                    ),
                );
                continue;
            }
            if let Some(first) = defined.get(&name) {
                let place = self.place(first, &at_name);
                self.at(path, &at_name, format!("{kind} {name} is already defined in {place}; keep one of the two"));
                continue;
            }
            if !stem_ok {
                continue;
            }
            defined.insert(name, path.to_string());
            broken.remove(*stem);
            parsed.push(Parsed { file: path.to_string(), doc });
        }
        parsed
    }

    /// The bytes of a file that must be a regular file (a resource, a build.sh).
    fn regular_file(&mut self, path: &str, entry: &'t Entry) -> Option<&'t [u8]> {
        match entry {
            Entry::File { data, .. } => Some(data),
            Entry::Symlink { target } => {
                self.file_error(path, format!("is a symlink (to {target:?}); it must be a regular file"));
                None
            }
        }
    }

    fn file_error(&mut self, path: &str, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::file(path, message));
    }

    /// Reports a problem at the value `at` in the YAML file `path`.
    fn at(&mut self, path: &str, at: &[Seg<'_>], message: impl Into<String>) {
        let counts = self.placed.entry(path.to_owned()).or_default();
        if counts.0 >= MAX_PLACED_PER_FILE {
            counts.1 += 1;
            return;
        }
        counts.0 += 1;
        let position = self.text(path).and_then(|text| locate(text, at));
        self.diagnostics.push(Diagnostic { path: path.to_owned(), position, message: message.into() });
    }

    /// `path:line:col` of the value `at` in `path`, for messages that point at a second place.
    fn place(&self, path: &str, at: &[Seg<'_>]) -> String {
        match self.text(path).and_then(|text| locate(text, at)) {
            Some(p) => format!("{path}:{}:{}", p.line, p.column),
            None => path.to_owned(),
        }
    }

    fn text(&self, path: &str) -> Option<&'t str> {
        match self.tree.entries.get(path)? {
            Entry::File { data, .. } => std::str::from_utf8(data).ok(),
            Entry::Symlink { .. } => None,
        }
    }

    fn summarise_crowded_files(&mut self) {
        let mut crowded: Vec<_> = self.placed.iter().filter(|(_, (_, held))| *held > 0).collect();
        crowded.sort();
        let summaries: Vec<Diagnostic> = crowded
            .into_iter()
            .map(|(path, (_, held))| Diagnostic::file(path, format!("{held} more problems in this file are not shown")))
            .collect();
        self.diagnostics.extend(summaries);
    }
}

/// The files of an overlay folder, by what they are.
struct OverlayParts<'e, 't> {
    /// overlay.yaml (or .yml): path, entry.
    documents: Vec<(&'e str, &'t Entry)>,
    build: Option<(&'e str, &'t Entry)>,
    /// Path under files/ → (full path, entry).
    files: BTreeMap<&'e str, (&'e str, &'t Entry)>,
}

/// Where a server's port is written.
const AT_PORT: [Seg<'static>; 2] = [Seg::Key("spec"), Seg::Key("port")];

/// Where an overlay's type is written, for messages about the parts that type needs.
const AT_TYPE: [Seg<'static>; 2] = [Seg::Key("spec"), Seg::Key("type")];

/// Names of resources that exist in the revision but could not be read; references to them are
/// not reported again.
#[derive(Default)]
struct Broken {
    overlays: BTreeSet<String>,
    /// Hosts whose file was refused (reported); servers placed on them are not told again.
    hosts: BTreeSet<String>,
    blueprints: BTreeSet<String>,
    /// Every server with a file; those not admitted were reported.
    servers: BTreeSet<String>,
}

/// Where servers may be placed: the settings, and the declared hosts.
struct Placement<'k> {
    settings: &'k Settings,
    /// Whether left4me.yaml was read: when it was not, the revision is refused for it and no
    /// port range is checked.
    settings_ok: bool,
    hosts: &'k BTreeMap<Name, Host>,
    /// The hosts whose file names their ports; the others take left4me.yaml's.
    own_ports: &'k BTreeSet<Name>,
    broken: &'k Broken,
}

/// The host a server is placed on, with the ports it may use and where those are written.
struct HostPorts {
    /// `None` in a repo without `hosts/`.
    name: Option<Name>,
    ports: PortRange,
    source: String,
}

/// What schedules and alerts may name: the admitted blueprints and servers, and what is broken.
struct Scope<'k> {
    blueprints: &'k BTreeMap<Name, Blueprint>,
    servers: &'k BTreeMap<Name, Server>,
    broken: &'k Broken,
}

/// The instance a server renders to: its own name, port and hostname (by default its name) with its
/// blueprint's overlays, arguments and config; `None` when an overlay of the blueprint is missing.
fn render(doc: &ServerDocument, blueprint: &Blueprint, overlays: &BTreeMap<Name, Overlay>) -> Option<InstanceSpec> {
    let layers = blueprint.overlays.iter().map(|name| overlays.get(name).map(Overlay::layer)).collect::<Option<_>>()?;
    Some(InstanceSpec {
        name: doc.metadata.name.clone(),
        port: doc.spec.port.clone(),
        hostname: doc.spec.hostname.clone().unwrap_or_else(|| Hostname::from_name(&doc.metadata.name)),
        overlays: layers,
        arguments: blueprint.arguments.clone(),
        config: blueprint.config.clone(),
        resources: blueprint.resources.clone(),
    })
}

/// A path git can hold as it is: relative, no empty, `.` or `..` component, no `.git`.
fn plain_path(path: &str) -> Result<(), &'static str> {
    if path.starts_with('/') {
        return Err("is an absolute path; paths in the state repo are relative to its top");
    }
    for part in path.split('/') {
        match part {
            "" => return Err("has an empty component (`//`, or a `/` at an end)"),
            "." | ".." => return Err("has a `.` or `..` component; name the file by its own path"),
            _ if part.eq_ignore_ascii_case(".git") => return Err("has a `.git` component, which git keeps for itself"),
            _ => {}
        }
    }
    Ok(())
}

/// The first folder of `path` that is a file of the tree, if any.
fn file_above<'e>(entries: &'e BTreeMap<String, Entry>, path: &str) -> Option<&'e str> {
    path.match_indices('/').find_map(|(at, _)| entries.get_key_value(&path[..at]).map(|(k, _)| k.as_str()))
}

fn yaml_stem(file: &str) -> Option<&str> {
    file.strip_suffix(".yaml").or_else(|| file.strip_suffix(".yml"))
}

/// A time between runs as a message says it: "a second", "4 minutes", "0.5 seconds".
fn show_gap(gap: Duration) -> String {
    let seconds = gap.as_secs();
    let (count, unit) = match seconds {
        _ if gap.subsec_nanos() != 0 => return format!("{} seconds", gap.as_secs_f64()),
        _ if seconds % 3600 == 0 => (seconds / 3600, "hour"),
        _ if seconds % 60 == 0 => (seconds / 60, "minute"),
        _ => (seconds, "second"),
    };
    match count {
        1 => format!("a {unit}"),
        _ => format!("{count} {unit}s"),
    }
}

/// `"; overlays are: a, b, c"`, or a note that there are none, for "does not exist" messages.
fn known<'a>(what: &str, names: impl Iterator<Item = &'a Name>) -> String {
    const SHOWN: usize = 10;
    let names: Vec<&str> = names.map(Name::as_str).collect();
    match names.len() {
        0 => format!("; there are no {what}"),
        n if n <= SHOWN => format!("; {what}: {}", names.join(", ")),
        n => format!("; {what}: {}, and {} more", names[..SHOWN].join(", "), n - SHOWN),
    }
}

/// Resolves the symlink at `link` (a path under an overlay's `files/`) the way the kernel would,
/// following the tree's own symlinks, and fails when the result leaves the tree.
fn resolve_symlink(files: &BTreeMap<&str, (&str, &Entry)>, link: &str, target: &str) -> Result<(), &'static str> {
    if target.starts_with('/') {
        return Err("is absolute");
    }
    // The resolved path so far, kept as one string with the length before each component, so
    // that each step costs one lookup rather than a join.
    let mut resolved = String::new();
    let mut lengths: Vec<usize> = Vec::new();
    let mut pending: Vec<&str> = target.split('/').rev().collect();
    pending.extend(link.split('/').rev().skip(1));
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part {
            "" | "." => {}
            ".." => match lengths.pop() {
                Some(length) => resolved.truncate(length),
                None => return Err("leaves the overlay"),
            },
            name => {
                lengths.push(resolved.len());
                if !resolved.is_empty() {
                    resolved.push('/');
                }
                resolved.push_str(name);
                if let Some((_, Entry::Symlink { target })) = files.get(resolved.as_str()) {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err("loops");
                    }
                    if target.starts_with('/') {
                        return Err("leads to an absolute symlink");
                    }
                    resolved.truncate(lengths.pop().expect("a component was just pushed"));
                    pending.extend(target.split('/').rev());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_like_the_kernel() {
        let link = |target: &str| Entry::Symlink { target: target.into() };
        let file = Entry::File { data: vec![], executable: false };
        let entries = [
            ("cfg/a.cfg", file.clone()),
            ("root", link(".")),
            ("up", link("root/..")),
            ("loop", link("loop")),
            ("deep/x", link("../cfg/a.cfg")),
        ];
        let files: BTreeMap<&str, (&str, &Entry)> = entries.iter().map(|(p, e)| (*p, (*p, e))).collect();
        let check = |link: &str, target: &str| resolve_symlink(&files, link, target);
        assert_eq!(check("deep/x", "../cfg/a.cfg"), Ok(()));
        assert_eq!(check("cfg/b", "a.cfg"), Ok(()));
        assert_eq!(check("cfg/b", "../../etc/passwd"), Err("leaves the overlay"));
        assert_eq!(check("cfg/b", "/etc/passwd"), Err("is absolute"));
        // Lexically "root/../x" is "x", but root is the tree itself, so its parent is outside.
        assert_eq!(check("cfg/b", "../root/../x"), Err("leaves the overlay"));
        assert_eq!(check("z", "up"), Err("leaves the overlay"));
        assert_eq!(check("z", "loop"), Err("loops"));
    }
}
