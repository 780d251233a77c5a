//! One instance's life as a list of steps with an undo log.
//!
//! Up: image → snapshot → files → numa → network → container → started. Each
//! step is written into the instance record *before* it is done, so whatever a
//! killed agent leaves is named by a record; undo walks the recorded steps
//! backwards, and every undo is idempotent (it may meet a step that was only
//! half done, or already undone by an earlier, killed attempt).

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use rpaas_images::convert::ImageConfigFile;
use rpaas_images::inject::{inject_at, FileSpec, Source};
use rpaas_runtime::{Container, Status};

use crate::app::build;
use crate::app::failpoint::point;
use crate::app::record::{InstanceRecord, NumaRecord, Phase, Step};
use crate::app::spec::{AppSpec, NetMode, StopSpec};
use crate::config::HostNetMode;
use crate::error::{Error, Result};
use crate::host::Inner;

/// The image an operation brings instances up from (unpacked once per operation).
pub struct Prepared {
    pub top: String,
    pub config: ImageConfigFile,
}

/// The order instances of one app come up in.
pub const STEPS: [Step; 7] = [
    Step::Image,
    Step::Snapshot,
    Step::Files,
    Step::Numa,
    Step::Network,
    Step::Container,
    Step::Started,
];

impl Inner {
    pub(crate) fn bundle_dir(&self, instance: &str) -> PathBuf {
        self.config.state_root.join("#bundles").join(instance)
    }

    pub(crate) fn netns_dir(&self) -> PathBuf {
        self.config.state_root.join("#netns")
    }

    pub(crate) fn netns_path(&self, instance: &str) -> PathBuf {
        self.netns_dir().join(instance)
    }

    /// Bring a new instance up; on failure undo what was done and drop its
    /// record, and say which step failed.
    pub(crate) fn bring_up(
        &self,
        spec: &AppSpec,
        img: &Prepared,
        rec: &mut InstanceRecord,
    ) -> Result<()> {
        let result = STEPS.iter().try_for_each(|&step| {
            rec.steps.push(step);
            self.records.save_instance(rec)?;
            point(&format!("before-{}", step.name()))?;
            self.do_step(spec, img, rec, step)
                .map_err(|e| e.at_step(&spec.name, &rec.name, step.name()))?;
            point(&format!("after-{}", step.name()))
        });
        match result {
            Ok(()) => {
                rec.phase = Phase::Up;
                self.records.save_instance(rec)
            }
            Err(e) => {
                if let Err(undo) = self.tear_down(rec, None) {
                    tracing::warn!(instance = %rec.name, "undo after a failed step: {undo}");
                }
                Err(e)
            }
        }
    }

    fn do_step(
        &self,
        spec: &AppSpec,
        img: &Prepared,
        rec: &mut InstanceRecord,
        step: Step,
    ) -> Result<()> {
        match step {
            // Checked (and unpacked) once for the whole operation.
            Step::Image => Ok(()),
            Step::Snapshot => self.mount_snapshot(rec, Some(&img.top)),
            Step::Files => self.write_files(spec, rec),
            Step::Numa => self.place(spec, rec),
            Step::Network => self.attach(spec, rec),
            Step::Container => self.write_config(spec, &img.config, rec),
            Step::Started => self.run_container(rec),
        }
    }

    /// Mount the instance's writable snapshot on its bundle's rootfs, preparing
    /// it first when `parent` is given (a new instance) — else it must exist.
    pub(crate) fn mount_snapshot(&self, rec: &InstanceRecord, parent: Option<&str>) -> Result<()> {
        let rootfs = self.bundle_dir(&rec.name).join("rootfs");
        std::fs::create_dir_all(&rootfs).map_err(|e| Error::io("create", &rootfs, e))?;
        let snap = &self.images.snapshotter;
        let mounts = match (parent, snap.stat(&rec.snapshot)?) {
            (_, Some(_)) => snap.mounts(&rec.snapshot)?,
            (Some(p), None) => snap.prepare(&rec.snapshot, Some(p))?,
            (None, None) => {
                return Err(Error::NotFound {
                    what: format!("writable layer {} of {}", rec.snapshot, rec.name),
                })
            }
        };
        rpaas_images::mount::mount_all(&mounts, &rootfs)?;
        Ok(())
    }

    fn rootfs_mounted(&self, instance: &str) -> bool {
        let rootfs = self.bundle_dir(instance).join("rootfs");
        crate::host::is_mount_point(&rootfs)
    }

    pub(crate) fn write_files(&self, spec: &AppSpec, rec: &InstanceRecord) -> Result<()> {
        let rootfs = self.bundle_dir(&rec.name).join("rootfs");
        let root = rpaas_images::fsroot::Root::open(&rootfs)?;
        for (i, f) in spec.files.iter().enumerate() {
            let field = format!("files[{i}]");
            let (uid, gid) = f.owner_ids(&field)?;
            let file = FileSpec {
                dest: f.dest.clone(),
                source: Source::HostFile(f.source.clone()),
                mode: f.mode_bits(&field)?,
                uid,
                gid,
            };
            inject_at(&root, &file)?;
        }
        Ok(())
    }

    fn place(&self, spec: &AppSpec, rec: &mut InstanceRecord) -> Result<()> {
        let policy = spec.numa.policy.unwrap_or(self.config.numa.policy);
        if policy == rpaas_numa::Policy::None {
            return Ok(());
        }
        let req = rpaas_numa::Request::new(
            spec.resources.cpus.unwrap_or(0),
            spec.memory_bytes()?.unwrap_or(0),
            policy,
            spec.numa.exclusive,
        );
        let _lock = self.numa.lock()?;
        let mut placer = self.numa.placer(self.topology.clone())?;
        if let Some(p) = placer.get(&rec.name).cloned() {
            // A placement from a killed attempt: keep it.
            rec.numa = Some(numa_record(&p));
        } else {
            let d = placer.place(&rec.name, &req).map_err(|e| Error::Resource {
                field: "resources/numa".into(),
                reason: e.to_string(),
            })?;
            self.numa.save(placer.placements())?;
            rec.numa = Some(numa_record(&d.placement));
            self.resize_shared(&d.resized);
        }
        self.records.save_instance(rec)
    }

    /// Exclusive cpus left or returned to a node's shared pool: the shared
    /// instances there get their new cpuset live.
    fn resize_shared(&self, resized: &[rpaas_numa::Resized]) {
        for r in resized {
            let res = serde_json::json!({"cpu": {"cpus": r.cpus.to_string()}});
            let applied = serde_json::from_value(res)
                .map_err(|e| e.to_string())
                .and_then(|res| {
                    Container::load(&self.config.state_root, &r.id)
                        .and_then(|c| c.update(&res))
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = applied {
                tracing::warn!(instance = %r.id, "new shared cpuset not applied: {e}");
            }
        }
    }

    pub(crate) fn unplace(&self, rec: &InstanceRecord) -> Result<()> {
        let _lock = self.numa.lock()?;
        let mut placer = self.numa.placer(self.topology.clone())?;
        if placer.get(&rec.name).is_some() {
            let (_, resized) = placer.release(&rec.name)?;
            self.numa.save(placer.placements())?;
            self.resize_shared(&resized);
        }
        Ok(())
    }

    /// The netns is pinned and its interface attached with the recorded
    /// address (chosen now for a new instance).
    pub(crate) fn attach(&self, spec: &AppSpec, rec: &mut InstanceRecord) -> Result<()> {
        let Some(mode) = self.net_mode(spec)? else {
            return Ok(());
        };
        if rec.address.is_none() {
            // Chosen and recorded under the host lock, before it is used: the
            // pool never hands it out twice (instances come up in parallel).
            let _lock = self.records.lock_host()?;
            let used = self.records.used_addresses()?;
            rec.address = Some(self.choose_address(spec, rec, &used)?);
            self.records.save_instance(rec)?;
        }
        let dir = self.netns_dir();
        let path = self.netns_path(&rec.name);
        if !rpaas_netsetup::pin::is_pinned(&path) {
            // The directory's shared mount is made with its first netns and
            // goes with its last (`detach`): both under the host lock.
            let _host = self.records.lock_host()?;
            rpaas_netsetup::pin::prepare_dir(&dir)?;
            rpaas_netsetup::pin::remove(&path)?;
            rpaas_netsetup::pin::create(&path)?;
        }
        let host_ns = self.host_netns()?;
        let net = self.config.network.as_ref();
        let mut a =
            rpaas_netsetup::AttachSpec::new(&rec.name, mode, rec.address.into_iter().collect());
        a.gateways = spec
            .network
            .gateway
            .or_else(|| net.and_then(|n| n.gateway))
            .into_iter()
            .collect();
        a.routes = spec.network.routes.iter().map(|&r| r.into()).collect();
        a.mtu = spec.network.mtu.or_else(|| net.and_then(|n| n.mtu));
        a.sysctls = self.config.sysctls.clone();
        a.sysctls.extend(spec.network.sysctls.clone());
        let target = rpaas_netsetup::Netns::open(&path)?;
        let done = rpaas_netsetup::attach(&target, host_ns.as_ref(), &a)?;
        rec.mac = Some(done.mac);
        self.records.save_instance(rec)
    }

    fn host_netns(&self) -> Result<Option<rpaas_netsetup::Netns>> {
        match self
            .config
            .network
            .as_ref()
            .and_then(|n| n.host_netns.as_ref())
        {
            Some(p) => Ok(Some(rpaas_netsetup::Netns::open(p)?)),
            None => Ok(None),
        }
    }

    /// The netsetup mode of the app on this host; None: no interface.
    pub(crate) fn net_mode(&self, spec: &AppSpec) -> Result<Option<rpaas_netsetup::Mode>> {
        let net = self.config.network.as_ref();
        let mode = match spec.network.mode {
            NetMode::None => return Ok(None),
            NetMode::Default => match net {
                None => return Ok(None),
                Some(n) => match n.mode {
                    HostNetMode::Bridge => NetMode::Bridge,
                    HostNetMode::Macvlan => NetMode::Macvlan,
                },
            },
            m => m,
        };
        let missing = |field: &str| Error::Spec {
            field: field.into(),
            reason: "not given, and the host config names none".into(),
        };
        Ok(Some(match mode {
            NetMode::Bridge => rpaas_netsetup::Mode::Bridge {
                bridge: spec
                    .network
                    .bridge
                    .clone()
                    .or_else(|| net.and_then(|n| n.bridge.clone()))
                    .ok_or_else(|| missing("network.bridge"))?,
            },
            _ => rpaas_netsetup::Mode::Macvlan {
                master: spec
                    .network
                    .master
                    .clone()
                    .or_else(|| net.and_then(|n| n.master.clone()))
                    .ok_or_else(|| missing("network.master"))?,
                mode: spec
                    .network
                    .macvlan_mode
                    .or_else(|| net.and_then(|n| n.macvlan_mode))
                    .unwrap_or_default(),
            },
        }))
    }

    /// The spec's address for this instance, or the pool's lowest free one.
    /// The caller holds the host lock until the choice is recorded.
    pub(crate) fn choose_address(
        &self,
        spec: &AppSpec,
        rec: &InstanceRecord,
        used: &std::collections::HashSet<std::net::IpAddr>,
    ) -> Result<rpaas_netsetup::IpCidr> {
        if !spec.network.addresses.is_empty() {
            let i = (rec.n - 1) as usize;
            let a = *spec.network.addresses.get(i).ok_or_else(|| Error::Spec {
                field: "network.addresses".into(),
                reason: format!(
                    "no address for instance {} (give one per instance)",
                    rec.name
                ),
            })?;
            if used.contains(&a.addr) {
                return Err(Error::Resource {
                    field: format!("network.addresses[{i}]"),
                    reason: format!("{} is already used by another instance", a.addr),
                });
            }
            return Ok(a);
        }
        let net = self.config.network.as_ref().ok_or_else(|| Error::Spec {
            field: "network.addresses".into(),
            reason: "none given, and the host config has no address pool".into(),
        })?;
        crate::app::pool::allocate(net, used)
    }

    pub(crate) fn detach(&self, rec: &InstanceRecord) -> Result<()> {
        let path = self.netns_path(&rec.name);
        let target = if rpaas_netsetup::pin::is_pinned(&path) {
            Some(rpaas_netsetup::Netns::open(&path)?)
        } else {
            None
        };
        let host_ns = self.host_netns()?;
        // Removing the host end of a veth takes its peer with it; a macvlan goes
        // with its netns. Either way the pinned file is the last thing.
        rpaas_netsetup::detach(target.as_ref(), host_ns.as_ref(), &rec.name)?;
        drop(target);
        let _host = self.records.lock_host()?;
        rpaas_netsetup::pin::remove(&path)?;
        self.release_netns_dir()
    }

    /// Unmount the netns directory once no netns is left in it (call with the
    /// host lock held).
    pub(crate) fn release_netns_dir(&self) -> Result<()> {
        let dir = self.netns_dir();
        let empty = std::fs::read_dir(&dir).map_or(true, |mut rd| rd.next().is_none());
        if empty {
            rpaas_netsetup::pin::release_dir(&dir)?;
        }
        Ok(())
    }

    pub(crate) fn write_config(
        &self,
        spec: &AppSpec,
        image: &ImageConfigFile,
        rec: &InstanceRecord,
    ) -> Result<()> {
        let bundle = self.bundle_dir(&rec.name);
        let rootfs = bundle.join("rootfs");
        let netns = self.net_mode(spec)?.map(|_| self.netns_path(&rec.name));
        let cfg = build::runtime_config(&build::Inputs {
            host: &self.config,
            spec,
            image,
            rec,
            rootfs: &rootfs,
            netns: netns.as_deref(),
        })?;
        let bytes = serde_json::to_vec(&cfg).map_err(|e| Error::Record {
            path: bundle.join("config.json"),
            reason: format!("encode: {e}"),
        })?;
        let path = bundle.join("config.json");
        rpaas_fsutil::write_atomic(&path, &bytes, false).map_err(|e| Error::io("replace", &path, e))
    }

    /// Create and start the container in keeper mode (one `rpaas-run run`).
    pub(crate) fn run_container(&self, rec: &mut InstanceRecord) -> Result<()> {
        self.run_bundle(&rec.name, &self.bundle_dir(&rec.name))?;
        rec.started = Some(rpaas_runtime::state::now_rfc3339());
        self.records.save_instance(rec)
    }

    /// Stop the instance's container: `stop.signal`, SIGKILL after the grace.
    pub(crate) fn stop_container(&self, name: &str, stop: &StopSpec) -> Result<()> {
        let c = match Container::load(&self.config.state_root, name) {
            Ok(c) => c,
            Err(rpaas_runtime::Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if c.status() == Status::Stopped {
            return Ok(());
        }
        let sig = crate::signal::parse(&stop.signal).unwrap_or(Signal::SIGTERM);
        let _ = c.kill(sig, false);
        let grace = Duration::from_secs_f64(stop.grace);
        if c.wait(Some(grace))?.is_none() && c.status() != Status::Stopped {
            c.kill(Signal::SIGKILL, true)?;
            c.wait(Some(Duration::from_secs(10)))?;
        }
        Ok(())
    }

    /// Delete the container, also what a delete killed half-way left (a state
    /// dir without its state.json).
    fn delete_container(&self, name: &str) -> Result<()> {
        match Container::delete_id(&self.config.state_root, name, true) {
            Ok(()) | Err(rpaas_runtime::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn unmount_snapshot(&self, rec: &InstanceRecord, remove: bool) -> Result<()> {
        let bundle = self.bundle_dir(&rec.name);
        rpaas_images::mount::unmount_all(&bundle.join("rootfs"))?;
        if remove && self.images.snapshotter.stat(&rec.snapshot)?.is_some() {
            self.images.snapshotter.remove(&rec.snapshot)?;
        }
        match std::fs::remove_dir_all(&bundle) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &bundle, e)),
        }
    }

    /// Undo every recorded step (stopping the app first when `stop` is given),
    /// then drop the record. Idempotent: a killed teardown is finished by
    /// running it again.
    pub(crate) fn tear_down(
        &self,
        rec: &mut InstanceRecord,
        stop: Option<&StopSpec>,
    ) -> Result<()> {
        if rec.phase != Phase::Removing {
            rec.phase = Phase::Removing;
            self.records.save_instance(rec)?;
        }
        if let Some(s) = stop {
            self.stop_container(&rec.name, s)
                .map_err(|e| e.at_step(&rec.app, &rec.name, "stop"))?;
        }
        point("teardown-stopped")?;
        let steps: Vec<Step> = rec.steps.iter().rev().copied().collect();
        for step in steps {
            let undone = match step {
                Step::Image | Step::Files | Step::Started => Ok(()),
                Step::Container => self.delete_container(&rec.name),
                Step::Network => self.detach(rec),
                Step::Numa => self.unplace(rec),
                Step::Snapshot => self.unmount_snapshot(rec, true),
            };
            undone.map_err(|e| e.at_step(&rec.app, &rec.name, step.name()))?;
            point(&format!("undone-{}", step.name()))?;
        }
        self.records.drop_instance(&rec.app, rec.n)
    }

    /// Bring an instance that is Up in its record back to running with what it
    /// had: its writable layer, NUMA cpus, address and MAC (after an exit, a
    /// restart, or a reboot that took the runtime state, mounts and netns).
    pub(crate) fn bring_back(
        &self,
        spec: &AppSpec,
        image: &ImageConfigFile,
        rec: &mut InstanceRecord,
    ) -> Result<()> {
        let (app, name) = (spec.name.clone(), rec.name.clone());
        let at = |step: &'static str| {
            let (app, name) = (app.clone(), name.clone());
            move |e: Error| e.at_step(&app, &name, step)
        };
        self.delete_container(&rec.name).map_err(at("container"))?;
        if !self.rootfs_mounted(&rec.name) {
            self.mount_snapshot(rec, None).map_err(at("snapshot"))?;
        }
        if rec.numa.is_some() {
            self.replace(spec, rec).map_err(at("numa"))?;
        }
        if self.net_mode(spec)?.is_some()
            && !rpaas_netsetup::pin::is_pinned(&self.netns_path(&rec.name))
        {
            self.attach(spec, rec).map_err(at("network"))?;
        }
        self.write_config(spec, image, rec)
            .map_err(at("container"))?;
        rec.restarts += 1;
        self.run_container(rec).map_err(at("start"))
    }

    /// Make sure the recorded placement is booked (it is, unless the NUMA books
    /// were lost); the instance keeps its cpus.
    fn replace(&self, spec: &AppSpec, rec: &mut InstanceRecord) -> Result<()> {
        let booked = {
            let _lock = self.numa.lock()?;
            self.numa
                .placer(self.topology.clone())?
                .get(&rec.name)
                .is_some()
        };
        if !booked {
            self.place(spec, rec)?;
        }
        Ok(())
    }

    pub(crate) fn fresh_layer(&self, img: &Prepared, rec: &InstanceRecord) -> Result<()> {
        self.unmount_snapshot(rec, true)?;
        self.mount_snapshot(rec, Some(&img.top))
    }
}

fn numa_record(p: &rpaas_numa::Placement) -> NumaRecord {
    let s = p.spec_cpuset();
    NumaRecord {
        node: p.node,
        cpus: s.cpus,
        mems: s.mems,
    }
}
