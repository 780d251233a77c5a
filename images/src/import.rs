//! Import without a registry: an OCI image layout directory, or an archive (tar,
//! optionally compressed) of an OCI layout or of `docker save` output.

use std::io::Read;
use std::path::Path;

use crate::image::ImageStore;
use crate::manifest::{self, Descriptor, Manifest, Parsed};
use crate::store::{digest_hex, sha256_digest};
use crate::{Error, Result};

const REF_NAME: &str = "org.opencontainers.image.ref.name";

impl ImageStore {
    /// Import `src` (a directory or an archive file) as the image `name`.
    /// `tag` picks an entry of a multi-image layout (its ref.name annotation).
    pub fn import(
        &self,
        src: &Path,
        name: &str,
        tag: Option<&str>,
    ) -> Result<crate::store::RefEntry> {
        let md = std::fs::metadata(src).map_err(|e| Error::io("stat import source", src, e))?;
        if md.is_dir() {
            return self.import_dir(src, name, tag);
        }
        // An archive: unpack it with the safe applier into a scratch dir first.
        let scratch = tempfile::Builder::new()
            .prefix("rpaas-import")
            .tempdir_in(self.root())
            .map_err(|e| Error::io("create scratch directory in", self.root(), e))?;
        let f = std::fs::File::open(src).map_err(|e| Error::io("open archive", src, e))?;
        crate::apply::apply_layer(
            scratch.path(),
            f,
            crate::apply::WhiteoutMode::Direct,
            self.limits,
            &src.display().to_string(),
        )?;
        self.import_dir(scratch.path(), name, tag)
    }

    fn import_dir(
        &self,
        dir: &Path,
        name: &str,
        tag: Option<&str>,
    ) -> Result<crate::store::RefEntry> {
        let source = format!("import:{}", dir.display());
        if dir.join("index.json").exists() {
            self.import_oci(dir, name, tag, &source)
        } else if dir.join("manifest.json").exists() {
            self.import_docker(dir, name, &source)
        } else {
            Err(Error::Other(format!(
                "import {}: neither an OCI layout (index.json) nor a docker archive (manifest.json)",
                dir.display()
            )))
        }
    }

    fn copy_blob(&self, dir: &Path, d: &Descriptor) -> Result<()> {
        let rel = format!("blobs/sha256/{}", digest_hex(&d.digest)?);
        let p = dir.join(&rel);
        let size = u64::try_from(d.size).ok();
        if let Some(mut w) = self.store.writer(&d.digest, size)? {
            let mut f = open_in(dir, &rel)?;
            std::io::copy(&mut f, &mut w).map_err(|e| Error::Content {
                digest: d.digest.clone(),
                reason: format!("copy from {}: {e}", p.display()),
            })?;
            w.commit()?;
        }
        Ok(())
    }

    fn import_oci(
        &self,
        dir: &Path,
        name: &str,
        tag: Option<&str>,
        source: &str,
    ) -> Result<crate::store::RefEntry> {
        let ip = dir.join("index.json");
        let bytes = read_all(open_in(dir, "index.json")?, &ip)?;
        let index = match manifest::parse(&bytes, Some(manifest::OCI_INDEX), "index.json")? {
            Parsed::Index(i) => i,
            Parsed::Manifest(_) => {
                return Err(Error::Other(format!("{}: not an index", ip.display())))
            }
        };
        let pick = match tag {
            Some(t) => index
                .manifests
                .iter()
                .find(|d| {
                    d.annotations
                        .as_ref()
                        .and_then(|a| a.get(REF_NAME))
                        .map(String::as_str)
                        == Some(t)
                })
                .ok_or_else(|| Error::NotFound(format!("{}:{t}", dir.display())))?,
            None if index.manifests.len() == 1 => &index.manifests[0],
            None => {
                return Err(Error::Other(format!(
                    "{}: {} images in the layout; name one with DIR:TAG",
                    dir.display(),
                    index.manifests.len()
                )))
            }
        };
        let mut desc = pick.clone();
        // A nested index (multi-platform): pick ours.
        loop {
            self.copy_blob(dir, &desc)?;
            let b = self.store.read(&desc.digest)?;
            match manifest::parse(&b, Some(&desc.media_type), &desc.digest)? {
                Parsed::Index(i) => desc = manifest::select_platform(&i, &desc.digest)?.clone(),
                Parsed::Manifest(m) => {
                    self.copy_blob(dir, &m.config)?;
                    for l in &m.layers {
                        self.copy_blob(dir, l)?;
                    }
                    return self.register(name, &desc.digest, source);
                }
            }
        }
    }

    fn import_docker(
        &self,
        dir: &Path,
        name: &str,
        source: &str,
    ) -> Result<crate::store::RefEntry> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            layers: Vec<String>,
        }
        let mp = dir.join("manifest.json");
        let bytes = read_all(open_in(dir, "manifest.json")?, &mp)?;
        let entries: Vec<Entry> = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Other(format!("{}: invalid docker manifest: {e}", mp.display())))?;
        let e = match entries.len() {
            1 => &entries[0],
            _ => entries
                .iter()
                .find(|e| {
                    e.repo_tags
                        .as_ref()
                        .is_some_and(|t| t.iter().any(|t| t == name))
                })
                .ok_or_else(|| {
                    Error::Other(format!(
                        "{}: {} images; none tagged {name}",
                        mp.display(),
                        entries.len()
                    ))
                })?,
        };
        let read_in =
            |rel: &str| -> Result<Vec<u8>> { read_all(open_in(dir, rel)?, &dir.join(rel)) };
        let config = read_in(&e.config)?;
        let config_digest = self.store.put_auto(&config)?;
        let mut layers = Vec::new();
        for l in &e.layers {
            // docker save layers are usually plain tars; newer ones may be compressed.
            // Streamed twice (hash, then copy into the store) rather than held in memory.
            let p = dir.join(l);
            let (digest, size, head) = hash_file(open_in(dir, l)?, &p)?;
            let media_type = match head {
                [0x1f, 0x8b, ..] => "application/vnd.oci.image.layer.v1.tar+gzip",
                [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.oci.image.layer.v1.tar+zstd",
                _ => "application/vnd.oci.image.layer.v1.tar",
            };
            if let Some(mut w) = self.store.writer(&digest, Some(size))? {
                let mut f = open_in(dir, l)?;
                std::io::copy(&mut f, &mut w).map_err(|e| Error::io("copy layer", &p, e))?;
                w.commit()?;
            }
            layers.push(Descriptor {
                media_type: media_type.into(),
                digest,
                size: size as i64,
                platform: None,
                annotations: None,
            });
        }
        let m = Manifest {
            schema_version: 2,
            media_type: Some(manifest::OCI_MANIFEST.into()),
            config: Descriptor {
                media_type: manifest::OCI_CONFIG.into(),
                digest: config_digest,
                size: config.len() as i64,
                platform: None,
                annotations: None,
            },
            layers,
        };
        let mb =
            serde_json::to_vec(&m).map_err(|e| Error::Other(format!("encode manifest: {e}")))?;
        let md = sha256_digest(&mb);
        self.store.put(&md, &mb)?;
        self.register(name, &md, source)
    }
}

/// sha256 digest, size and first four bytes of a file, read in chunks.
fn hash_file(mut f: std::fs::File, p: &Path) -> Result<(String, u64, [u8; 4])> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    let mut head = [0u8; 4];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io("read layer", p, e))?;
        if n == 0 {
            break;
        }
        if size == 0 {
            let k = n.min(4);
            head[..k].copy_from_slice(&buf[..k]);
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((format!("sha256:{}", hex::encode(h.finalize())), size, head))
}

/// Open `rel` inside `dir` with RESOLVE_IN_ROOT: an archive's symlinks (say
/// `layer.tar -> /etc/shadow`) can never make an import read a host file.
fn open_in(dir: &Path, rel: &str) -> Result<std::fs::File> {
    let clean = crate::fsroot::CleanPath::new(Path::new(rel))
        .map_err(|r| Error::Other(format!("import {}: {rel}: {r}", dir.display())))?
        .ok_or_else(|| Error::Other(format!("import {}: empty path", dir.display())))?;
    crate::fsroot::Root::open(dir)?.open_file(&clean)
}

fn read_all(mut f: std::fs::File, shown: &Path) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    f.read_to_end(&mut v)
        .map_err(|e| Error::io("read", shown, e))?;
    Ok(v)
}
