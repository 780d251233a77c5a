//! Pulling from a registry with oci-client: manifests and indexes (Docker and OCI),
//! platform selection, basic/bearer auth, an extra CA, plain http only for
//! registries named insecure, parallel layer downloads with retries that resume
//! (HTTP Range) where the registry allows it. Blobs land in the content store
//! through [`crate::store::BlobWriter`], which verifies size and digest.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use oci_client::client::{
    BlobResponse, Certificate, CertificateEncoding, ClientConfig, ClientProtocol,
};
use oci_client::secrets::RegistryAuth;
pub use oci_client::Reference;
use oci_client::{Client, RegistryOperation};

use crate::image::ImageStore;
use crate::manifest::{self, Descriptor, Parsed};
use crate::store::{sha256_digest, RefEntry};
use crate::{Error, Result};

/// How to reach the registry.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Registries (host[:port]) reached over plain http.
    pub insecure: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// A Docker-style config.json (`{"auths": {"host": {"auth": base64(user:pass)}}}`).
    pub creds_file: Option<PathBuf>,
    /// Extra PEM CA certificate for https.
    pub ca_file: Option<PathBuf>,
    /// Attempts per blob (network errors only; bad content is never retried).
    pub attempts: u32,
    /// Concurrent layer downloads.
    pub parallel: usize,
    /// First retry delay; doubled for each further attempt.
    pub backoff: Duration,
    /// Show progress bars (only when stderr is a terminal).
    pub progress: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            insecure: vec![],
            username: None,
            password: None,
            creds_file: None,
            ca_file: None,
            attempts: 4,
            parallel: 4,
            backoff: Duration::from_millis(200),
            progress: false,
        }
    }
}

fn rerr(reference: &str, reason: impl Into<String>) -> Error {
    Error::Registry {
        reference: reference.to_string(),
        reason: reason.into(),
    }
}

/// Credentials for `registry` from the options (flags win over the file).
fn auth_for(registry: &str, opts: &PullOptions, reference: &str) -> Result<RegistryAuth> {
    if let (Some(u), Some(p)) = (&opts.username, &opts.password) {
        return Ok(RegistryAuth::Basic(u.clone(), p.clone()));
    }
    let Some(path) = &opts.creds_file else {
        return Ok(RegistryAuth::Anonymous);
    };
    let bytes = std::fs::read(path).map_err(|e| Error::io("read credentials file", path, e))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        rerr(
            reference,
            format!("credentials file {}: not JSON: {e}", path.display()),
        )
    })?;
    let Some(entry) = v["auths"].get(registry) else {
        return Ok(RegistryAuth::Anonymous);
    };
    if let (Some(u), Some(p)) = (entry["username"].as_str(), entry["password"].as_str()) {
        return Ok(RegistryAuth::Basic(u.into(), p.into()));
    }
    if let Some(token) = entry["registrytoken"]
        .as_str()
        .or(entry["identitytoken"].as_str())
    {
        return Ok(RegistryAuth::Bearer(token.into()));
    }
    let enc = entry["auth"].as_str().ok_or_else(|| {
        rerr(
            reference,
            format!(
                "credentials file {}: auths.{registry} has no auth, username/password or token",
                path.display()
            ),
        )
    })?;
    use base64::Engine;
    let dec = base64::engine::general_purpose::STANDARD
        .decode(enc)
        .map_err(|e| {
            rerr(
                reference,
                format!(
                    "credentials file {}: auths.{registry}.auth: {e}",
                    path.display()
                ),
            )
        })?;
    let s = String::from_utf8(dec).map_err(|_| {
        rerr(
            reference,
            format!(
                "credentials file {}: auths.{registry}.auth is not UTF-8",
                path.display()
            ),
        )
    })?;
    let (u, p) = s.split_once(':').ok_or_else(|| {
        rerr(
            reference,
            format!(
                "credentials file {}: auths.{registry}.auth is not user:password",
                path.display()
            ),
        )
    })?;
    Ok(RegistryAuth::Basic(u.into(), p.into()))
}

fn client(opts: &PullOptions) -> Result<Client> {
    let mut cfg = ClientConfig {
        protocol: if opts.insecure.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(opts.insecure.clone())
        },
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(60)),
        ..ClientConfig::default()
    };
    if let Some(ca) = &opts.ca_file {
        let data = std::fs::read(ca).map_err(|e| Error::io("read CA file", ca, e))?;
        cfg.extra_root_certificates.push(Certificate {
            encoding: CertificateEncoding::Pem,
            data,
        });
    }
    Ok(Client::new(cfg))
}

/// Pull `reference` into the store and register it under that name.
pub fn pull(images: &ImageStore, reference: &str, opts: &PullOptions) -> Result<RefEntry> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("start tokio runtime", "(pull)", e))?;
    rt.block_on(pull_async(images, reference, opts))
}

pub async fn pull_async(
    images: &ImageStore,
    reference: &str,
    opts: &PullOptions,
) -> Result<RefEntry> {
    pull_notify(images, reference, opts, None).await
}

/// What a pull reports as it goes, so layers can be unpacked while later ones download.
#[derive(Debug)]
pub enum Event {
    Manifest(manifest::Manifest),
    /// A blob is now in the store.
    Blob(String),
}

/// Pull and unpack `reference`: each layer is applied as soon as it (and every layer
/// below it) is in the store, while later layers are still downloading. Returns the
/// ref entry and the top chain id.
pub fn prefetch(
    images: &ImageStore,
    reference: &str,
    opts: &PullOptions,
) -> Result<(RefEntry, String)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("start tokio runtime", "(prefetch)", e))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let unpacker = std::thread::Builder::new()
            .name("rpaas-unpack".into())
            .spawn_scoped(s, move || unpack_as_ready(images, &rx, reference))
            .map_err(|e| Error::io("spawn unpack thread", "(prefetch)", e))?;
        let pulled = rt.block_on(pull_notify(images, reference, opts, Some(&tx)));
        drop(tx);
        let top = unpacker
            .join()
            .map_err(|_| Error::Other(format!("prefetch {reference}: unpack thread panicked")))?;
        // The download's error is the cause when both failed.
        let entry = pulled?;
        Ok((entry, top?))
    })
}

/// Block until `digest` is in the store (or the pull gave up).
fn wait_for(
    images: &ImageStore,
    rx: &std::sync::mpsc::Receiver<Event>,
    digest: &str,
    reference: &str,
) -> Result<()> {
    while !images.store.has(digest) {
        if rx.recv().is_err() {
            return Err(rerr(
                reference,
                format!("pull stopped before blob {digest} arrived"),
            ));
        }
    }
    Ok(())
}

fn unpack_as_ready(
    images: &ImageStore,
    rx: &std::sync::mpsc::Receiver<Event>,
    reference: &str,
) -> Result<String> {
    let m = loop {
        match rx.recv() {
            Ok(Event::Manifest(m)) => break m,
            Ok(Event::Blob(_)) => {}
            Err(_) => return Err(rerr(reference, "pull stopped before the manifest arrived")),
        }
    };
    wait_for(images, rx, &m.config.digest, reference)?;
    let config =
        crate::convert::ImageConfigFile::parse(&images.store.read(&m.config.digest)?, reference)?;
    let diff_ids = config.rootfs.map(|r| r.diff_ids).unwrap_or_default();
    if diff_ids.len() != m.layers.len() {
        return Err(Error::Config {
            reference: reference.to_string(),
            field: "rootfs.diff_ids".into(),
            reason: format!("{} diff ids for {} layers", diff_ids.len(), m.layers.len()),
        });
    }
    let chains = manifest::chain_ids(&diff_ids);
    let mut parent: Option<&str> = None;
    for (i, chain) in chains.iter().enumerate() {
        if images.snapshotter.stat(chain)?.is_none() {
            wait_for(images, rx, &m.layers[i].digest, reference)?;
            images.unpack_layer(&m.layers[i].digest, &diff_ids[i], chain, parent)?;
        }
        parent = Some(chain);
    }
    parent
        .map(str::to_string)
        .ok_or_else(|| rerr(reference, "image has no layers"))
}

async fn pull_notify(
    images: &ImageStore,
    reference: &str,
    opts: &PullOptions,
    notify: Option<&std::sync::mpsc::Sender<Event>>,
) -> Result<RefEntry> {
    let r: Reference = reference
        .parse()
        .map_err(|e| rerr(reference, format!("invalid reference: {e}")))?;
    let client = client(opts)?;
    let auth = auth_for(r.resolve_registry(), opts, reference)?;
    client
        .auth(&r, &auth, RegistryOperation::Pull)
        .await
        .map_err(|e| rerr(reference, format!("authenticate: {e}")))?;

    // Manifest, following an index to our platform.
    let mut target = r.clone();
    let manifest_digest;
    let m = loop {
        let (bytes, _) = with_retries(opts, reference, "manifest", || {
            client.pull_manifest_raw(&target, &auth, manifest::ACCEPTED)
        })
        .await?;
        let digest = sha256_digest(&bytes);
        if let Some(want) = target.digest() {
            if want != digest {
                return Err(Error::Content {
                    digest: want.to_string(),
                    reason: format!("registry sent a manifest hashing to {digest}"),
                });
            }
        }
        match manifest::parse(&bytes, None, &digest)? {
            Parsed::Index(i) => {
                let d = manifest::select_platform(&i, &digest)?;
                target = Reference::with_digest(
                    r.registry().to_string(),
                    r.repository().to_string(),
                    d.digest.clone(),
                );
            }
            Parsed::Manifest(m) => {
                images.store.put(&digest, &bytes)?;
                manifest_digest = digest;
                if let Some(n) = notify {
                    let _ = n.send(Event::Manifest(m.clone()));
                }
                break m;
            }
        }
    };

    // Config then layers; the content store skips what it already has.
    let mut all: Vec<&Descriptor> = vec![&m.config];
    all.extend(m.layers.iter());
    let bars = Progress::new(opts.progress);
    futures::stream::iter(all.into_iter().filter(|d| !images.store.has(&d.digest)))
        .map(|d| async {
            fetch_blob(images, &client, &r, d, opts, reference, &bars).await?;
            if let Some(n) = notify {
                let _ = n.send(Event::Blob(d.digest.clone()));
            }
            Ok::<(), Error>(())
        })
        .buffer_unordered(opts.parallel.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    images.register(
        reference,
        &manifest_digest,
        &format!("registry:{}", r.whole()),
    )
}

/// Call a registry operation, retrying transport errors with exponential backoff.
async fn with_retries<T, F, Fut>(
    opts: &PullOptions,
    reference: &str,
    what: &str,
    mut f: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<
        Output = std::result::Result<T, oci_client::errors::OciDistributionError>,
    >,
{
    let mut delay = opts.backoff;
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < opts.attempts && retryable(&e) => {
                tracing::warn!(reference, what, attempt, error = %e, "retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(e) => return Err(rerr(reference, format!("{what}: {e}"))),
        }
    }
}

/// Transport trouble is worth another try; answers like 404/401/unknown are not.
fn retryable(e: &oci_client::errors::OciDistributionError) -> bool {
    use oci_client::errors::OciDistributionError as E;
    matches!(e, E::RequestError(_) | E::IoError(_))
        || matches!(e, E::ServerError { code, .. } if *code >= 500)
}

async fn fetch_blob(
    images: &ImageStore,
    client: &Client,
    r: &Reference,
    d: &Descriptor,
    opts: &PullOptions,
    reference: &str,
    bars: &Progress,
) -> Result<()> {
    let size = u64::try_from(d.size).map_err(|_| Error::Content {
        digest: d.digest.clone(),
        reason: format!("negative size {}", d.size),
    })?;
    let Some(mut w) = images.store.writer(&d.digest, Some(size))? else {
        return Ok(()); // a concurrent pull stored it while we waited
    };
    let bar = bars.bar(&d.digest, size);
    let desc = oci_client::manifest::OciDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
        ..Default::default()
    };
    let mut delay = opts.backoff;
    let mut attempt = 1;
    loop {
        let offset = w.written();
        let res: std::result::Result<(), (bool, String)> = async {
            let resp = client
                .pull_blob_stream_partial(r, &desc, offset, None)
                .await
                .map_err(|e| (retryable(&e), e.to_string()))?;
            let mut stream = match resp {
                // The registry ignored the Range: start over.
                BlobResponse::Full(s) => {
                    if offset > 0 {
                        w.reset().map_err(|e| (false, e.to_string()))?;
                    }
                    s
                }
                BlobResponse::Partial(s) => s,
            };
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| {
                    let msg = e.to_string();
                    (!msg.contains("Invalid digest"), msg)
                })?;
                // Local write errors and over-long blobs are not transport trouble.
                w.write_all(&chunk).map_err(|e| (false, e.to_string()))?;
                bar.set(w.written());
            }
            Ok(())
        }
        .await;
        match res {
            Ok(()) => break,
            Err((true, msg)) if attempt < opts.attempts => {
                tracing::warn!(digest = %d.digest, attempt, error = %msg, "blob download failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err((_, msg)) => {
                return Err(Error::Content {
                    digest: d.digest.clone(),
                    reason: format!("download from {reference}: {msg}"),
                })
            }
        }
    }
    // fsync + rename off the async threads, so other downloads keep streaming.
    tokio::task::spawn_blocking(move || w.commit())
        .await
        .map_err(|e| Error::Other(format!("blob {}: commit task failed: {e}", d.digest)))??;
    bar.done();
    Ok(())
}

/// Progress bars on a terminal; nothing otherwise.
struct Progress {
    multi: Option<indicatif::MultiProgress>,
}

struct Bar(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(wanted: bool) -> Progress {
        use std::io::IsTerminal;
        let on = wanted && std::io::stderr().is_terminal();
        Progress {
            multi: on.then(indicatif::MultiProgress::new),
        }
    }
    fn bar(&self, digest: &str, size: u64) -> Bar {
        Bar(self.multi.as_ref().map(|m| {
            let b = m.add(indicatif::ProgressBar::new(size));
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg:19} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}",
            ) {
                b.set_style(style);
            }
            b.set_message(digest.chars().take(19).collect::<String>());
            b
        }))
    }
}

impl Bar {
    fn set(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.set_position(n);
        }
    }
    fn done(&self) {
        if let Some(b) = &self.0 {
            b.finish();
        }
    }
}
