//! `rpaas-run image …` and `rpaas-run bundle …` (owned by the images work).
use std::path::{Path, PathBuf};

use anyhow::Context;
use rpaas_images::registry::PullOptions;
use rpaas_images::snapshot::devmapper::{Config as DmConfig, DevmapperSnapshotter};
use rpaas_images::ImageStore;

use crate::Global;

/// Flags shared by `pull` and `prefetch`.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryFlags {
    /// Reach the reference's registry over plain http (only for registries you name so).
    #[arg(long)]
    pub insecure: bool,
    /// Docker-style credentials file (`{"auths": {"host": {"auth": base64(user:pass)}}}`).
    #[arg(long, value_name = "F")]
    pub creds_file: Option<PathBuf>,
    /// Registry user name (with --password).
    #[arg(long, requires = "password")]
    pub username: Option<String>,
    /// Registry password (with --username).
    #[arg(long, requires = "username")]
    pub password: Option<String>,
    /// Extra CA certificate (PEM) for https.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Concurrent layer downloads.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Attempts per blob on network errors.
    #[arg(long, default_value_t = 4)]
    pub attempts: u32,
}

#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Pull an image from a registry into the content store.
    Pull {
        reference: String,
        #[command(flatten)]
        flags: RegistryFlags,
    },
    /// Pull and unpack images ahead of any create (a later create only snapshots).
    Prefetch {
        #[arg(required = true)]
        references: Vec<String>,
        #[command(flatten)]
        flags: RegistryFlags,
    },
    /// Import an OCI layout directory or an OCI/docker archive as REF.
    Import {
        /// Directory or archive file.
        source: PathBuf,
        reference: String,
        /// Which image of a multi-image layout (its org.opencontainers.image.ref.name).
        #[arg(long)]
        tag: Option<String>,
        /// Also unpack it now.
        #[arg(long)]
        unpack: bool,
    },
    /// List images.
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show an image's ref entry and config as JSON.
    Inspect { reference: String },
    /// Remove image refs (content stays until gc).
    Rm {
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Remove blobs and snapshots no image or bundle uses.
    Gc,
}

#[derive(Debug, clap::Args)]
pub struct BundleArgs {
    /// Image reference.
    pub reference: Option<String>,
    /// Bundle directory to prepare.
    pub dir: Option<PathBuf>,
    /// Files to place in the container: SRC:DEST[:MODE[:UID:GID]].
    #[arg(long = "file", value_name = "SRC:DEST")]
    pub files: Vec<String>,
    /// Unmount and remove the bundle prepared in DIR.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["reference", "dir", "files"])]
    pub remove: Option<PathBuf>,
}

fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => anyhow::bail!("--dm-size {s}: unknown unit {c:?} (K, M, G, T)"),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("--dm-size {s}: not a number"))?;
    n.checked_mul(mult)
        .with_context(|| format!("--dm-size {s}: too large"))
}

/// The image store with the snapshotter the global flags choose.
fn open_store(g: &Global) -> anyhow::Result<ImageStore> {
    let root = &g.image_root;
    match g.snapshotter.as_str() {
        "overlay" => ImageStore::open_overlay(root)
            .with_context(|| format!("image store {}", root.display())),
        "devmapper" => {
            let dmroot = root.join("snapshots/devmapper");
            let cfg = match (&g.dm_pool, &g.dm_loopback) {
                (Some(pool), _) => DmConfig::existing(dmroot, pool),
                (None, Some(dir)) => {
                    let size = parse_size(g.dm_size.as_deref().unwrap_or("20G"))?;
                    DmConfig::loopback(dmroot, "rpaas-thinpool", dir, size)
                }
                (None, None) => {
                    anyhow::bail!("--snapshotter devmapper needs --dm-pool or --dm-loopback")
                }
            };
            let snap = DevmapperSnapshotter::new(cfg).context("devmapper snapshotter")?;
            ImageStore::open(root, Box::new(snap))
                .with_context(|| format!("image store {}", root.display()))
        }
        other => anyhow::bail!("--snapshotter {other}: unknown (overlay or devmapper)"),
    }
}

fn pull_options(reference: &str, f: &RegistryFlags) -> PullOptions {
    let mut o = PullOptions {
        creds_file: f.creds_file.clone(),
        username: f.username.clone(),
        password: f.password.clone(),
        ca_file: f.ca_file.clone(),
        parallel: f.parallel,
        attempts: f.attempts.max(1),
        progress: true,
        ..PullOptions::default()
    };
    if f.insecure {
        if let Ok(r) = reference.parse::<rpaas_images::registry::Reference>() {
            o.insecure.push(r.resolve_registry().to_string());
        }
    }
    o
}

pub fn run(g: &Global, cmd: ImageCommand) -> anyhow::Result<i32> {
    let store = open_store(g)?;
    match cmd {
        ImageCommand::Pull { reference, flags } => {
            let e =
                rpaas_images::registry::pull(&store, &reference, &pull_options(&reference, &flags))
                    .with_context(|| format!("pull {reference}"))?;
            println!("{reference} {}", e.manifest);
        }
        ImageCommand::Prefetch { references, flags } => {
            for reference in references {
                let (e, top) = rpaas_images::registry::prefetch(
                    &store,
                    &reference,
                    &pull_options(&reference, &flags),
                )
                .with_context(|| format!("prefetch {reference}"))?;
                println!("{reference} {} {top}", e.manifest);
            }
        }
        ImageCommand::Import {
            source,
            reference,
            tag,
            unpack,
        } => {
            let e = store
                .import(&source, &reference, tag.as_deref())
                .with_context(|| format!("import {} as {reference}", source.display()))?;
            if unpack {
                store
                    .unpack(&reference)
                    .with_context(|| format!("unpack {reference}"))?;
            }
            println!("{reference} {}", e.manifest);
        }
        ImageCommand::Ls { json } => {
            let refs = store.store.refs()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&refs)?);
            } else {
                println!(
                    "{:<50} {:<20} {:>6}  SOURCE",
                    "REFERENCE", "MANIFEST", "LAYERS"
                );
                for (name, e) in refs {
                    let short: String = e
                        .manifest
                        .trim_start_matches("sha256:")
                        .chars()
                        .take(12)
                        .collect();
                    println!("{name:<50} {short:<20} {:>6}  {}", e.layers.len(), e.source);
                }
            }
        }
        ImageCommand::Inspect { reference } => {
            let e = store.store.get_ref(&reference)?;
            let config: serde_json::Value = serde_json::from_slice(&store.store.read(&e.config)?)?;
            let unpacked = e
                .chain_ids
                .last()
                .map(|c| store.snapshotter.stat(c).map(|s| s.is_some()))
                .transpose()?
                .unwrap_or(false);
            let out = serde_json::json!({"name": reference, "ref": e, "unpacked": unpacked, "config": config});
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        ImageCommand::Rm { references } => {
            for r in references {
                store.remove(&r).with_context(|| format!("rm {r}"))?;
                println!("{r}");
            }
        }
        ImageCommand::Gc => {
            let rep = store.gc()?;
            for s in &rep.snapshots {
                println!("snapshot {s}");
            }
            for b in &rep.blobs {
                println!("blob {b}");
            }
        }
    }
    Ok(0)
}

pub fn bundle(g: &Global, args: BundleArgs) -> anyhow::Result<i32> {
    let store = open_store(g)?;
    if let Some(dir) = args.remove {
        store
            .remove_bundle(&dir)
            .with_context(|| format!("remove bundle {}", dir.display()))?;
        return Ok(0);
    }
    let (Some(reference), Some(dir)) = (args.reference, args.dir) else {
        anyhow::bail!("bundle: usage: bundle REF DIR [--file SRC:DEST]… | bundle --remove DIR");
    };
    let files = args
        .files
        .iter()
        .map(|f| rpaas_images::inject::parse_file_arg(f))
        .collect::<Result<Vec<_>, _>>()?;
    let config = store
        .create_bundle(&reference, &dir, &files)
        .with_context(|| format!("bundle {reference} in {}", dir.display()))?;
    println!("{}", config.parent().unwrap_or(Path::new(".")).display());
    Ok(0)
}
