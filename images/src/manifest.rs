//! Manifests and indexes, Docker's and OCI's (same shapes, different media types),
//! and the media types we accept.

use crate::{Error, Result};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Every manifest-ish media type we ask registries for.
pub const ACCEPTED: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// Layer media types we can apply (compression is detected from the bytes anyway).
const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    #[serde(default)]
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// A parsed manifest-ish document.
pub enum Parsed {
    Manifest(Manifest),
    Index(Index),
}

fn cerr(digest: &str, reason: String) -> Error {
    Error::Content {
        digest: digest.to_string(),
        reason,
    }
}

/// Parse `bytes` as a manifest or an index. `media_type` is the transport's
/// (Content-Type or descriptor); when absent the document's own field decides.
pub fn parse(bytes: &[u8], media_type: Option<&str>, digest: &str) -> Result<Parsed> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes)
        .map_err(|e| cerr(digest, format!("not a JSON manifest: {e}")))?;
    let mt = media_type
        .filter(|m| !m.is_empty() && *m != "application/json" && *m != "text/plain")
        .map(str::to_string)
        .or(probe.media_type.clone())
        .unwrap_or_else(|| {
            if probe.manifests.is_some() {
                OCI_INDEX.into()
            } else if probe.layers.is_some() {
                OCI_MANIFEST.into()
            } else {
                String::new()
            }
        });
    let bad = |e: serde_json::Error| cerr(digest, format!("invalid {mt}: {e}"));
    match mt.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let m: Manifest = serde_json::from_slice(bytes).map_err(bad)?;
            check_manifest(&m, digest)?;
            Ok(Parsed::Manifest(m))
        }
        OCI_INDEX | DOCKER_LIST => Ok(Parsed::Index(serde_json::from_slice(bytes).map_err(bad)?)),
        other => Err(cerr(
            digest,
            format!("unknown manifest media type {other:?}"),
        )),
    }
}

fn check_manifest(m: &Manifest, digest: &str) -> Result<()> {
    if !m.config.media_type.is_empty()
        && m.config.media_type != OCI_CONFIG
        && m.config.media_type != DOCKER_CONFIG
    {
        return Err(cerr(
            digest,
            format!(
                "config {}: unknown media type {:?} (not a container image)",
                m.config.digest, m.config.media_type
            ),
        ));
    }
    for (i, l) in m.layers.iter().enumerate() {
        if !LAYER_TYPES.contains(&l.media_type.as_str()) {
            return Err(cerr(
                digest,
                format!(
                    "layers[{i}] {}: unknown media type {:?}",
                    l.digest, l.media_type
                ),
            ));
        }
        if l.size < 0 {
            return Err(cerr(
                digest,
                format!("layers[{i}] {}: negative size", l.digest),
            ));
        }
    }
    Ok(())
}

/// The host's platform in OCI terms.
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    ("linux", arch)
}

/// Pick the entry of an index for linux on the host's architecture.
pub fn select_platform<'a>(index: &'a Index, digest: &str) -> Result<&'a Descriptor> {
    let (os, arch) = host_platform();
    index
        .manifests
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == os && p.architecture == arch)
        })
        .or_else(|| {
            // Single-platform indexes (skopeo/buildah OCI layouts) often omit platform.
            if index.manifests.len() == 1 && index.manifests[0].platform.is_none() {
                index.manifests.first()
            } else {
                None
            }
        })
        .ok_or_else(|| cerr(digest, format!("index has no manifest for {os}/{arch}")))
}

/// Chain ids from diff ids: chain[0] = diff[0]; chain[i] = sha256(chain[i-1] + " " + diff[i]).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => crate::store::sha256_digest(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}
