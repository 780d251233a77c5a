//! A thin pool on two sparse files attached to loop devices: for dev boxes and
//! tests, where no spare block device or LVM volume group exists.
//!
//! The files are created on first use; after a reboot the loop devices are
//! gone but the files (and the pool metadata in them) are not, so we attach
//! them again and the kernel finds the existing pool.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use loopdev::{LoopControl, LoopDevice};

use crate::{Error, Result};

pub const DATA_FILE: &str = "data";
pub const META_FILE: &str = "metadata";

/// Metadata size for a data size: dm-thin needs roughly 48 bytes per mapped
/// block plus B-tree overhead; 1/256 of the data with a 16 MiB floor and the
/// kernel's 16 GiB ceiling is comfortably above `thin_metadata_size` for
/// 64 KiB blocks.
pub fn metadata_size(data_bytes: u64) -> u64 {
    (data_bytes / 256).clamp(16 << 20, 16 << 30)
}

/// Loop devices (`/dev/loopN`) backing a pool.
pub struct Backing {
    pub data: PathBuf,
    pub meta: PathBuf,
    /// True when the metadata file was created now (the pool gets formatted).
    pub fresh: bool,
    /// Open handles of loop devices attached now: with autoclear, closing the
    /// last fd detaches the device, so keep them until the pool holds them.
    pub _handles: Vec<LoopDevice>,
}

fn io<'a>(op: &'static str, p: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::io(op, p, e)
}

/// Create (sparse) if absent, then attach both files; reuse loop devices that
/// already back them (a second process, or a pool that is still active).
pub fn attach(dir: &Path, data_bytes: u64) -> Result<Backing> {
    fs::create_dir_all(dir).map_err(io("create dir", dir))?;
    let data = dir.join(DATA_FILE);
    let meta = dir.join(META_FILE);
    let fresh = !meta.exists();
    if fresh {
        make_sparse(&data, data_bytes)?;
        let tmp = dir.join("metadata.tmp");
        make_sparse(&tmp, metadata_size(data_bytes))?;
        // An all-zero first block tells dm-thin to format new metadata. Only
        // a brand-new file gets this: zeroing a used one would lose the pool.
        fs::rename(&tmp, &meta).map_err(io("rename into", &meta))?;
    }
    let mut handles = Vec::new();
    let data = loop_for(&data, &mut handles)?;
    let meta = loop_for(&meta, &mut handles)?;
    Ok(Backing {
        data,
        meta,
        fresh,
        _handles: handles,
    })
}

fn make_sparse(path: &Path, bytes: u64) -> Result<()> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .map_err(io("create", path))?;
    f.set_len(bytes).map_err(io("truncate", path))?;
    // first 4 KiB explicitly zero (a sparse hole reads as zero too, but this
    // makes the intent, and the fsync, explicit)
    let mut f = f;
    f.seek(SeekFrom::Start(0)).map_err(io("seek", path))?;
    f.write_all(&[0u8; 4096]).map_err(io("write", path))?;
    f.sync_all().map_err(io("fsync", path))
}

/// The loop device already backing `file`, or a newly attached one.
fn loop_for(file: &Path, handles: &mut Vec<LoopDevice>) -> Result<PathBuf> {
    let file = fs::canonicalize(file).map_err(io("resolve", file))?;
    if let Some(dev) = find_attached(&file)? {
        return Ok(dev);
    }
    let ctl = LoopControl::open().map_err(io("open", Path::new("/dev/loop-control")))?;
    let dev: LoopDevice = ctl
        .next_free()
        .map_err(io("find free loop device for", &file))?;
    // autoclear: once the pool (its only user) is removed, the kernel detaches
    // the loop device by itself, so a torn-down pool leaves no loop behind
    dev.with()
        .autoclear(true)
        .attach(&file)
        .map_err(io("attach loop device to", &file))?;
    let path = dev.path().ok_or_else(|| Error::Devmapper {
        what: format!("loop device for {}", file.display()),
        reason: "attached device has no path".into(),
    })?;
    handles.push(dev);
    Ok(path)
}

/// Scan /sys/block/loop*/loop/backing_file for `file`.
pub fn find_attached(file: &Path) -> Result<Option<PathBuf>> {
    let sys = Path::new("/sys/block");
    let entries = fs::read_dir(sys).map_err(io("read dir", sys))?;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(backing) = fs::read_to_string(e.path().join("loop/backing_file")) else {
            continue;
        };
        if Path::new(backing.trim_end()) == file {
            return Ok(Some(PathBuf::from("/dev").join(name)));
        }
    }
    Ok(None)
}

/// Size in bytes of a block device (BLKGETSIZE64 through the file size).
pub fn block_size_bytes(dev: &Path) -> Result<u64> {
    let mut f = File::open(dev).map_err(io("open", dev))?;
    f.seek(SeekFrom::End(0)).map_err(io("seek end of", dev))
}
