//! What an agent does all day: deploy, scale, restart, recreate, update,
//! remove, and look. Each call holds the app's lock for its whole length, so
//! two calls on one app are serialized and calls on different apps run side
//! by side.

use std::collections::BTreeSet;

use rpaas_images::convert::ImageConfigFile;
use rpaas_runtime::{Container, ExitRecord, Status};
use serde::Serialize;

use crate::app::instance::Prepared;
use crate::app::record::{
    instance_name, parse_instance, AppLock, AppRecord, InstanceRecord, Phase,
};
use crate::app::spec::{AppSpec, Resources, StopSpec};
use crate::error::{Error, Result};
use crate::host::{Host, Inner};

/// An app as it is now.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    pub name: String,
    pub image: String,
    pub desired: u32,
    pub running: u32,
    pub instances: Vec<InstanceStatus>,
}

/// One instance as it is now.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    /// `<app>-<n>`: also its container id.
    pub id: String,
    pub n: u32,
    /// `creating`, `running`, `created`, `paused`, `stopped`, `missing`
    /// (no container: after a reboot, before `recover`), `removing`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numa_node: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<String>,
    pub created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    pub restarts: u32,
    /// From `Host::supervise`'s probes: `starting`, `healthy`, `unhealthy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
}

impl Inner {
    /// The image of `spec`, present (pulled when the store lacks it) and unpacked.
    pub(crate) fn prepare_image(&self, spec: &AppSpec) -> Result<Prepared> {
        if self.images.store.get_ref(&spec.image).is_err() {
            if !looks_like_registry_ref(&spec.image) {
                return Err(Error::Resource {
                    field: "image".into(),
                    reason: format!(
                        "{:?} is not in the image store {} (import or prefetch it)",
                        spec.image,
                        self.images.root().display()
                    ),
                });
            }
            let opts = rpaas_images::registry::PullOptions {
                insecure: self.config.insecure_registries.clone(),
                ..Default::default()
            };
            rpaas_images::registry::prefetch(&self.images, &spec.image, &opts).map_err(|e| {
                Error::Resource {
                    field: "image".into(),
                    reason: format!("{:?}: pull: {e}", spec.image),
                }
            })?;
        }
        let top = self.images.unpack(&spec.image)?;
        let config = self.images.config(&spec.image)?;
        Ok(Prepared { top, config })
    }

    /// Everything about the spec that can be checked on this host before
    /// anything is made: image, files, network master, addresses.
    fn precheck(&self, spec: &AppSpec) -> Result<Prepared> {
        for (i, f) in spec.files.iter().enumerate() {
            let ok = std::fs::metadata(&f.source).map(|m| m.is_file());
            if !matches!(ok, Ok(true)) {
                return Err(Error::Resource {
                    field: format!("files[{i}].source"),
                    reason: format!("{}: not a readable file", f.source.display()),
                });
            }
        }
        self.net_mode(spec)?;
        if !spec.network.addresses.is_empty() {
            let used = self.records.used_addresses()?;
            if let Some((i, a)) = spec
                .network
                .addresses
                .iter()
                .enumerate()
                .find(|(_, a)| used.contains(&a.addr))
            {
                return Err(Error::Resource {
                    field: format!("network.addresses[{i}]"),
                    reason: format!("{} is already used by another instance", a.addr),
                });
            }
        }
        self.prepare_image(spec)
    }

    fn new_record(&self, app: &str, n: u32) -> InstanceRecord {
        let name = instance_name(app, n);
        InstanceRecord {
            snapshot: format!("app-{name}"),
            name,
            app: app.to_string(),
            n,
            phase: Phase::Creating,
            steps: Vec::new(),
            address: None,
            mac: None,
            numa: None,
            created: rpaas_runtime::state::now_rfc3339(),
            started: None,
            restarts: 0,
        }
    }

    /// A record naming only what `name` would hold (gc's handle on leftovers).
    pub(crate) fn stub_record(&self, name: &str) -> InstanceRecord {
        let (app, n) = parse_instance(name).unwrap_or((name, 0));
        self.new_record(app, n)
    }

    /// Records of new instances `ns`, with their addresses chosen in instance
    /// order under one hold of the host lock, and written before anything
    /// else is made (the pool never hands an address out twice).
    fn new_records(&self, spec: &AppSpec, ns: &[u32]) -> Result<Vec<InstanceRecord>> {
        let mut recs: Vec<InstanceRecord> =
            ns.iter().map(|&n| self.new_record(&spec.name, n)).collect();
        if self.net_mode(spec)?.is_none() {
            return Ok(recs);
        }
        let _host = self.records.lock_host()?;
        let mut used = self.records.used_addresses()?;
        let mut chosen = Vec::new();
        for r in &mut recs {
            match self.choose_address(spec, r, &used) {
                Ok(a) => {
                    used.insert(a.addr);
                    r.address = Some(a);
                    chosen.push(r.clone());
                }
                Err(e) => {
                    for c in &chosen {
                        self.records.drop_instance(&c.app, c.n)?;
                    }
                    return Err(e.at_step(&spec.name, &r.name, "network"));
                }
            }
            self.records.save_instance(r)?;
        }
        Ok(recs)
    }

    /// Bring up instances `ns` of the app, `parallel` at a time. All or none:
    /// when one fails, those that came up are torn down again.
    fn add_instances(
        &self,
        spec: &AppSpec,
        img: &Prepared,
        ns: &[u32],
    ) -> Result<Vec<InstanceRecord>> {
        let recs = self.new_records(spec, ns)?;
        let results = run_parallel(&recs, self.config.parallel, |rec| {
            let mut rec = rec.clone();
            self.bring_up(spec, img, &mut rec).map(|()| rec)
        });
        let mut up = Vec::new();
        let mut first_err = None;
        for r in results {
            match r {
                Ok(rec) => up.push(rec),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            run_parallel(&up, self.config.parallel, |rec| {
                self.tear_down(&mut rec.clone(), Some(&spec.stop))
            });
            return Err(e);
        }
        Ok(up)
    }

    /// Remove the given instances: stop gracefully (all at once), then tear down.
    fn remove_instances(&self, stop: &StopSpec, recs: Vec<InstanceRecord>) -> Result<()> {
        // Signal every one first so their grace periods run side by side.
        for r in &recs {
            if let Ok(c) = Container::load(&self.config.state_root, &r.name) {
                if c.status() == Status::Running {
                    let sig = crate::signal::parse(&stop.signal)
                        .unwrap_or(nix::sys::signal::Signal::SIGTERM);
                    let _ = c.kill(sig, false);
                }
            }
        }
        // Waiting out grace periods costs no CPU: all of them at once.
        run_parallel(&recs, recs.len(), |rec| {
            self.tear_down(&mut rec.clone(), Some(stop))
        })
        .into_iter()
        .collect()
    }

    pub(crate) fn scale_locked(&self, lock: &AppLock, app: &mut AppRecord, n: u32) -> Result<()> {
        let recs = self.records.instances(&app.spec.name)?;
        let have = recs.len() as u32;
        if n > have {
            let used: BTreeSet<u32> = recs.iter().map(|r| r.n).collect();
            let new: Vec<u32> = (1..)
                .filter(|i| !used.contains(i))
                .take((n - have) as usize)
                .collect();
            let img = self.prepare_image(&app.spec)?;
            app.desired = n;
            self.records.save_app(lock, app)?;
            self.add_instances(&app.spec, &img, &new)?;
        } else if n < have {
            app.desired = n;
            self.records.save_app(lock, app)?;
            let mut recs = recs;
            recs.sort_by_key(|r| std::cmp::Reverse(r.n));
            let gone: Vec<InstanceRecord> = recs.into_iter().take((have - n) as usize).collect();
            self.remove_instances(&app.spec.stop, gone)?;
        } else if app.desired != n {
            app.desired = n;
            self.records.save_app(lock, app)?;
        }
        Ok(())
    }

    fn status_of(&self, rec: &InstanceRecord) -> InstanceStatus {
        let c = Container::load(&self.config.state_root, &rec.name).ok();
        let status = match (rec.phase, &c) {
            (Phase::Creating, _) => "creating".to_string(),
            (Phase::Removing, _) => "removing".to_string(),
            (Phase::Up, None) => "missing".to_string(),
            (Phase::Up, Some(c)) => c.status().as_str().to_string(),
        };
        let pid = c.as_ref().and_then(|c| c.live_init()).map(|p| p.pid);
        let health = crate::supervise::read_status(&self.config.state_root, &rec.name, pid);
        InstanceStatus {
            id: rec.name.clone(),
            n: rec.n,
            pid: c.as_ref().and_then(|c| c.live_init()).map(|p| p.pid),
            exit: c.as_ref().and_then(|c| c.exit_record().ok().flatten()),
            status,
            ip: rec.address.map(|a| a.to_string()),
            mac: rec.mac.clone(),
            numa_node: rec.numa.as_ref().and_then(|n| n.node),
            cpus: rec.numa.as_ref().map(|n| n.cpus.clone()),
            created: rec.created.clone(),
            started: rec.started.clone(),
            restarts: rec.restarts,
            health: health.as_ref().map(|h| h.health.clone()),
            ready: health.map(|h| h.ready),
        }
    }

    /// The app's record, or NotFound.
    pub(crate) fn app_record(&self, name: &str) -> Result<AppRecord> {
        self.records.app(name)?.ok_or_else(|| Error::NotFound {
            what: format!("app {name}"),
        })
    }

    /// The record of `<app>-<n>`, with its app, under the app's lock.
    fn instance_locked(&self, instance: &str) -> Result<(AppLock, AppRecord, InstanceRecord)> {
        let not_found = || Error::NotFound {
            what: format!("instance {instance}"),
        };
        let (app, n) = parse_instance(instance).ok_or_else(not_found)?;
        let lock = self.records.lock_existing_app(app)?;
        let rec = self.app_record(app)?;
        let inst = self.records.instance(app, n)?.ok_or_else(not_found)?;
        Ok((lock, rec, inst))
    }

    fn image_config(&self, spec: &AppSpec) -> Result<ImageConfigFile> {
        Ok(self.images.config(&spec.image)?)
    }
}

/// Run `f` over `items` on at most `width` threads, each taking the next item
/// when it is done with one; the results in the items' order.
fn run_parallel<T: Sync, R: Send>(items: &[T], width: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    if items.len() <= 1 || width <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..width.min(items.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                if let Ok(mut slot) = slots[i].lock() {
                    *slot = Some(r);
                }
            });
        }
    });
    // A panicking worker re-panics at the end of the scope, so every slot is filled.
    slots
        .into_iter()
        .filter_map(|m| m.into_inner().ok().flatten())
        .collect()
}

fn looks_like_registry_ref(image: &str) -> bool {
    // host[:port]/path: the first component has a dot or a port, or is localhost.
    image
        .split_once('/')
        .is_some_and(|(host, _)| host.contains('.') || host.contains(':') || host == "localhost")
}

impl Host {
    /// Deploy a new app: its record and `spec.instances` instances, all or none.
    pub fn deploy(&self, spec: &AppSpec) -> Result<AppStatus> {
        spec.validate()?;
        let i = &self.inner;
        let lock = i.records.lock_app(&spec.name)?;
        if i.records.app(&spec.name)?.is_some() {
            return Err(Error::Exists {
                app: spec.name.clone(),
            });
        }
        let img = match i.precheck(spec) {
            Ok(img) => img,
            Err(e) => {
                // Nothing was made but the app's lock directory.
                i.records.drop_app(lock, &spec.name)?;
                return Err(e);
            }
        };
        let rec = AppRecord {
            spec: spec.clone(),
            desired: spec.instances,
            created: rpaas_runtime::state::now_rfc3339(),
            removing: false,
        };
        i.records.save_app(&lock, &rec)?;
        let ns: Vec<u32> = (1..=spec.instances).collect();
        if let Err(e) = i.add_instances(spec, &img, &ns) {
            i.records.drop_app(lock, &spec.name)?;
            return Err(e);
        }
        drop(lock);
        self.app(&spec.name)
    }

    /// Scale to `n` instances: new ones are added with the lowest free numbers;
    /// the highest-numbered ones are stopped gracefully and removed.
    pub fn scale(&self, name: &str, n: u32) -> Result<AppStatus> {
        let i = &self.inner;
        let lock = i.records.lock_existing_app(name)?;
        let mut rec = i.app_record(name)?;
        i.scale_locked(&lock, &mut rec, n)?;
        drop(lock);
        self.app(name)
    }

    /// Stop and start an instance again with the same writable layer, address,
    /// MAC and NUMA cpus.
    pub fn restart(&self, instance: &str) -> Result<InstanceStatus> {
        let i = &self.inner;
        let (_lock, app, mut rec) = i.instance_locked(instance)?;
        i.stop_container(&rec.name, &app.spec.stop)?;
        let image = i.image_config(&app.spec)?;
        i.bring_back(&app.spec, &image, &mut rec)?;
        Ok(i.status_of(&rec))
    }

    /// Like `restart`, with a fresh writable layer from the image (the app's
    /// files written again).
    pub fn recreate(&self, instance: &str) -> Result<InstanceStatus> {
        let i = &self.inner;
        let (_lock, app, mut rec) = i.instance_locked(instance)?;
        i.stop_container(&rec.name, &app.spec.stop)?;
        let img = i.prepare_image(&app.spec)?;
        let c = Container::load(&i.config.state_root, &rec.name);
        if let Ok(c) = c {
            c.delete(true)?;
        }
        i.fresh_layer(&img, &rec)?;
        i.write_files(&app.spec, &rec)?;
        i.bring_back(&app.spec, &img.config, &mut rec)?;
        Ok(i.status_of(&rec))
    }

    /// Change the app's limits live on every instance (and for instances to come).
    pub fn update(&self, name: &str, resources: &Resources) -> Result<AppStatus> {
        let i = &self.inner;
        let lock = i.records.lock_existing_app(name)?;
        let mut app = i.app_record(name)?;
        let mut spec = app.spec.clone();
        spec.resources = resources.clone();
        spec.validate()?;
        let image = i.image_config(&spec)?;
        for rec in i.records.instances(name)? {
            let res = crate::app::build::resources(&spec, rec.numa.as_ref())?;
            let res: oci_spec::runtime::LinuxResources =
                serde_json::from_value(res).map_err(|e| Error::Spec {
                    field: "resources".into(),
                    reason: e.to_string(),
                })?;
            if let Ok(c) = Container::load(&i.config.state_root, &rec.name) {
                if c.status() != Status::Stopped {
                    c.update(&res)
                        .map_err(|e| Error::from(e).at_step(name, &rec.name, "update"))?;
                }
            }
            // Restarts keep the new limits.
            if rec.phase == Phase::Up {
                i.write_config(&spec, &image, &rec)?;
            }
        }
        app.spec = spec;
        i.records.save_app(&lock, &app)?;
        drop(lock);
        self.app(name)
    }

    /// Remove the app: every instance stopped gracefully and torn down
    /// (container, netns and links, address, NUMA cpus, writable layer), then
    /// its records.
    pub fn remove(&self, name: &str) -> Result<()> {
        let i = &self.inner;
        let lock = i.records.lock_existing_app(name)?;
        let recs = i.records.instances(name)?;
        let stop = match i.records.app(name)? {
            Some(mut app) => {
                // Recorded first: a remove cut short is finished by `recover`.
                app.removing = true;
                app.desired = 0;
                i.records.save_app(&lock, &app)?;
                app.spec.stop
            }
            None if recs.is_empty() => {
                i.records.drop_app(lock, name)?;
                return Err(Error::NotFound {
                    what: format!("app {name}"),
                });
            }
            // A deploy cut short before its record: its instances still say
            // what to undo.
            None => crate::app::spec::StopSpec::default(),
        };
        i.remove_instances(&stop, recs)?;
        i.records.drop_app(lock, name)
    }

    /// Every app, by name.
    pub fn apps(&self) -> Result<Vec<AppStatus>> {
        let mut out = Vec::new();
        for name in self.inner.records.app_names()? {
            match self.app(&name) {
                Ok(a) => out.push(a),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// One app and its instances.
    pub fn app(&self, name: &str) -> Result<AppStatus> {
        let i = &self.inner;
        let rec = i.app_record(name)?;
        let instances: Vec<InstanceStatus> = i
            .records
            .instances(name)?
            .iter()
            .map(|r| i.status_of(r))
            .collect();
        Ok(AppStatus {
            name: rec.spec.name.clone(),
            image: rec.spec.image.clone(),
            desired: rec.desired,
            running: instances.iter().filter(|s| s.status == "running").count() as u32,
            instances,
        })
    }

    /// The spec an app was deployed (and updated) with.
    pub fn spec(&self, name: &str) -> Result<AppSpec> {
        Ok(self.inner.app_record(name)?.spec)
    }
}
