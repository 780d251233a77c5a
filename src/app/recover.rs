//! After the agent was killed (at any step) or the host rebooted: finish or
//! undo half-done work, bring back what should run, and collect what no record
//! claims.

use std::collections::{BTreeMap, HashSet};

use rpaas_runtime::{Container, ExitRecord, Status};
use serde::Serialize;

use crate::app::build::APP_ANNOTATION;
use crate::app::record::{parse_instance, Phase};
use crate::error::{Error, Result};
use crate::host::Host;

/// What `recover` found and did.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoverReport {
    /// Instances that had exited while the agent was away, with their exit records.
    pub exited: Vec<(String, ExitRecord)>,
    /// Instances brought back (after an exit, or with their runtime state gone: a reboot).
    pub restarted: Vec<String>,
    /// Half-made instances undone (their creation was cut short).
    pub undone: Vec<String>,
    /// Removals that were cut short, finished.
    pub removed: Vec<String>,
    /// Instances added or removed to reach each app's desired count.
    pub scaled: Vec<String>,
    /// Half-made deploys (no app record) undone.
    pub abandoned_apps: Vec<String>,
    /// What could not be done, one line each (the rest went on).
    pub errors: Vec<String>,
}

/// What `gc` removed.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GcReport {
    pub containers: Vec<String>,
    pub snapshots: Vec<String>,
    pub netns: Vec<String>,
    pub bundles: Vec<String>,
    pub placements: Vec<String>,
    /// Helper logs left by killed agents.
    pub logs: Vec<String>,
    pub runtime: rpaas_runtime::gc::Report,
    pub errors: Vec<String>,
}

impl Host {
    /// Converge every app to its records: undo half-made instances, finish
    /// removals, bring back instances that exited or whose runtime state is
    /// gone (reboot: same address, MAC, NUMA cpus and writable layer, in the
    /// order they were started), then scale each app to its desired count.
    pub fn recover(&self) -> Result<RecoverReport> {
        let i = &self.inner;
        let mut report = RecoverReport::default();
        // States of an earlier boot (a state root that is not tmpfs) go first.
        if let Ok(r) = rpaas_runtime::gc::gc(&i.config.state_root, false) {
            report.errors.extend(r.errors);
        }
        for name in i.records.app_names()? {
            if let Err(e) = self.recover_app(&name, &mut report) {
                report.errors.push(format!("app {name}: {e}"));
            }
        }
        crate::events::publish_recovered(&i.events, &report.exited);
        Ok(report)
    }

    fn recover_app(&self, name: &str, report: &mut RecoverReport) -> Result<()> {
        let i = &self.inner;
        let lock = i.records.lock_app(name)?;
        let Some(mut app) = i.records.app(name)? else {
            // A deploy killed before its record was written, or a remove
            // killed after it dropped it: undo whatever its instances hold.
            for mut rec in i.records.instances(name)? {
                i.tear_down(&mut rec, None)?;
                report.undone.push(rec.name.clone());
            }
            i.records.drop_app(lock, name)?;
            report.abandoned_apps.push(name.to_string());
            return Ok(());
        };
        if app.removing {
            for mut rec in i.records.instances(name)? {
                i.tear_down(&mut rec, Some(&app.spec.stop))?;
                report.removed.push(rec.name.clone());
            }
            i.records.drop_app(lock, name)?;
            return Ok(());
        }
        let mut recs = i.records.instances(name)?;
        // A reboot brings instances back in the order they first started.
        recs.sort_by(|a, b| a.started.cmp(&b.started).then(a.n.cmp(&b.n)));
        let mut image = None;
        for mut rec in recs {
            let outcome = match rec.phase {
                Phase::Creating => i.tear_down(&mut rec, None).map(|()| {
                    report.undone.push(rec.name.clone());
                }),
                Phase::Removing => i.tear_down(&mut rec, Some(&app.spec.stop)).map(|()| {
                    report.removed.push(rec.name.clone());
                }),
                Phase::Up => {
                    let c = Container::load(&i.config.state_root, &rec.name).ok();
                    match c.as_ref().map(Container::status) {
                        Some(Status::Running) | Some(Status::Paused) => Ok(()),
                        Some(Status::Created) => c
                            .map(|mut c| c.start())
                            .transpose()
                            .map(drop)
                            .map_err(Error::from),
                        other => {
                            if other == Some(Status::Stopped) {
                                if let Some(exit) = c.and_then(|c| c.exit_record().ok().flatten()) {
                                    let again = app.spec.restart.restarts_exit(exit.exit_code);
                                    report.exited.push((rec.name.clone(), exit));
                                    if !again {
                                        continue; // its restart policy says no
                                    }
                                }
                            }
                            if image.is_none() {
                                image = Some(i.images.config(&app.spec.image)?);
                            }
                            let cfg = image.as_ref().ok_or_else(|| Error::NotFound {
                                what: format!("image {}", app.spec.image),
                            })?;
                            i.bring_back(&app.spec, cfg, &mut rec).map(|()| {
                                report.restarted.push(rec.name.clone());
                            })
                        }
                    }
                }
            };
            if let Err(e) = outcome {
                report.errors.push(e.to_string());
            }
        }
        let before: HashSet<String> = i
            .records
            .instances(name)?
            .into_iter()
            .map(|r| r.name)
            .collect();
        let desired = app.desired;
        i.scale_locked(&lock, &mut app, desired)?;
        let after: HashSet<String> = i
            .records
            .instances(name)?
            .into_iter()
            .map(|r| r.name)
            .collect();
        report
            .scaled
            .extend(before.symmetric_difference(&after).cloned());
        Ok(())
    }

    /// Remove what no record claims: app containers, writable snapshots,
    /// pinned netns and their links, bundles, NUMA placements; then the
    /// runtime's own gc (stale and half-made containers). Each app's leftovers
    /// are examined under that app's lock, so a deploy or scale running beside
    /// gc never loses what it is making.
    pub fn gc(&self) -> Result<GcReport> {
        let i = &self.inner;
        let mut report = GcReport::default();
        let mut by_app: BTreeMap<String, Leftovers> = BTreeMap::new();
        let mut note = |name: &str, what: Kind| {
            if let Some((app, _)) = parse_instance(name) {
                let l = by_app.entry(app.to_string()).or_default();
                l.items.push((name.to_string(), what));
            }
        };
        for c in Container::list(&i.config.state_root)? {
            let ours = c
                .spec()
                .ok()
                .and_then(|s| {
                    s.annotations()
                        .as_ref()
                        .map(|a| a.contains_key(APP_ANNOTATION))
                })
                .unwrap_or(false);
            if ours {
                note(c.id(), Kind::Container);
            }
        }
        for n in read_names(&i.netns_dir()) {
            note(&n, Kind::Netns);
        }
        for b in read_names(&i.config.state_root.join("#bundles")) {
            note(&b, Kind::Bundle);
        }
        for s in i.images.snapshotter.walk()? {
            if let Some(inst) = s.key.strip_prefix("app-") {
                note(inst, Kind::Snapshot);
            }
        }
        {
            let _lock = i.numa.lock()?;
            let placer = i.numa.placer(i.topology.clone())?;
            for p in placer.placements() {
                note(&p.id, Kind::Placement);
            }
        }
        for (app, left) in by_app {
            let lock = i.records.lock_app(&app)?;
            let claimed: HashSet<String> = i
                .records
                .instances(&app)?
                .into_iter()
                .map(|r| r.name)
                .collect();
            for (name, kind) in left.items {
                if claimed.contains(&name) {
                    continue;
                }
                let stub = i.stub_record(&name);
                let (done, list) = match kind {
                    Kind::Container => (
                        Container::load(&i.config.state_root, &name)
                            .and_then(|c| c.delete(true))
                            .map_err(Error::from),
                        &mut report.containers,
                    ),
                    Kind::Netns => (i.detach(&stub), &mut report.netns),
                    Kind::Bundle => (i.unmount_snapshot(&stub, false), &mut report.bundles),
                    Kind::Snapshot => (
                        i.images
                            .snapshotter
                            .remove(&stub.snapshot)
                            .map_err(Error::from),
                        &mut report.snapshots,
                    ),
                    Kind::Placement => (i.unplace(&stub), &mut report.placements),
                };
                match done {
                    Ok(()) => list.push(name),
                    Err(e) => report.errors.push(format!("{name}: {e}")),
                }
            }
            if i.records.app(&app)?.is_none() && i.records.instances(&app)?.is_empty() {
                i.records.drop_app(lock, &app)?;
            }
        }
        report
            .logs
            .extend(crate::host::remove_dead_logs(&i.config.state_root));
        // Layers a remove killed half-way left without metadata.
        match i.images.snapshotter.cleanup() {
            Ok(gone) => report.snapshots.extend(gone),
            Err(e) => report.errors.push(e.to_string()),
        }
        report.runtime = rpaas_runtime::gc::gc(&i.config.state_root, false)?;
        // The shared netns directory mount goes with its last netns.
        let _host = i.records.lock_host()?;
        if let Err(e) = i.release_netns_dir() {
            report.errors.push(e.to_string());
        }
        Ok(report)
    }
}

#[derive(Default)]
struct Leftovers {
    items: Vec<(String, Kind)>,
}

#[derive(Clone, Copy)]
enum Kind {
    Container,
    Netns,
    Bundle,
    Snapshot,
    Placement,
}

fn read_names(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}
