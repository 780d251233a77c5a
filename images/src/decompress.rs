//! Compression detection by magic number, and decompression on its own thread.
//!
//! Decompressing gzip costs about as much CPU as writing the files; running the
//! decoder on a second thread, handing chunks through a small bounded channel,
//! lets both proceed at once (like `tar -xzf`, which pipes from a gzip process).

use std::io::{BufRead, Read};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use crate::{Error, Result};

/// Layer compression, as found in the stream itself (media types lie sometimes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const CHUNK: usize = 1 << 18;
const DEPTH: usize = 16;

/// Detect the compression of `input` without consuming it.
pub fn detect<R: BufRead>(input: &mut R) -> std::io::Result<Compression> {
    let head = input.fill_buf()?;
    Ok(if head.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(&ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    })
}

/// The decoder thread; it yields the sha256 digest ("sha256:hex") of everything it
/// decoded, i.e. the layer's diff id, once the reader has drained the stream.
pub type Worker = JoinHandle<std::io::Result<String>>;

/// A reader of the decompressed stream; the input is decoded (and hashed) on a thread.
pub fn open<R: BufRead + Send + 'static>(
    mut input: R,
    layer: &str,
) -> Result<(Box<dyn Read + Send>, Compression, Worker)> {
    let c = detect(&mut input).map_err(|e| Error::Content {
        digest: layer.to_string(),
        reason: format!("read: {e}"),
    })?;
    let decoder: Box<dyn Read + Send> = match c {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input).map_err(
            |e| Error::Content {
                digest: layer.to_string(),
                reason: format!("zstd: {e}"),
            },
        )?),
    };
    let (tx, rx) = sync_channel::<std::io::Result<Vec<u8>>>(DEPTH);
    let name = layer.to_string();
    let worker = std::thread::Builder::new()
        .name("rpaas-decompress".into())
        .spawn(move || pump(decoder, tx, &name))
        .map_err(|e| Error::io("spawn decompressor thread", layer, e))?;
    Ok((
        Box::new(ChannelReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        }),
        c,
        worker,
    ))
}

fn pump(
    mut decoder: Box<dyn Read + Send>,
    tx: std::sync::mpsc::SyncSender<std::io::Result<Vec<u8>>>,
    _layer: &str,
) -> std::io::Result<String> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    loop {
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        // Fill whole chunks: fewer channel hand-offs.
        while filled < CHUNK {
            match decoder.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let copy = std::io::Error::new(e.kind(), e.to_string());
                    let _ = tx.send(Err(e));
                    return Err(copy);
                }
            }
        }
        if filled == 0 {
            return Ok(format!("sha256:{}", hex::encode(hasher.finalize())));
        }
        buf.truncate(filled);
        hasher.update(&buf);
        if tx.send(Ok(buf)).is_err() {
            // The reader gave up (error or limit): stop decoding.
            return Err(std::io::Error::other(
                "reader stopped before the end of the stream",
            ));
        }
    }
}

struct ChannelReader {
    rx: Receiver<std::io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.cur = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
