//! Appending chunks to a trace file while recording.
//!
//! Each chunk goes to the file with one `write_all` on an unbuffered `File`, so once a call
//! returns the chunk is in the kernel's page cache and survives the process being killed.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::format::*;

/// Writes a trace file.
#[derive(Debug)]
pub struct TraceWriter {
    file: File,
    offset: u64,
    index: TraceIndex,
    finished: bool,
}

impl TraceWriter {
    /// Creates (truncating) `path` and writes the preamble and header. The file stays
    /// locked (flock, exclusive) while the writer lives: a second recording into the same
    /// file fails at once with `ErrorKind::WouldBlock` instead of interleaving its chunks,
    /// and the first is left untouched (the lock is taken before truncating).
    pub fn create(path: &Path, header: &TraceHeader) -> std::io::Result<Self> {
        let raw = bincode::serialize(header).map_err(std::io::Error::other)?;
        // The header carries the kernel image: compress it (LZ4, raw size first).
        let header_bytes = lz4_flex::block::compress_prepend_size(&raw);
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(path)?;
        lock_exclusive(&file, path)?;
        file.set_len(0)?;
        let mut pre = Vec::with_capacity(PREAMBLE_LEN + header_bytes.len());
        pre.extend_from_slice(&MAGIC);
        pre.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let header_len = u32::try_from(header_bytes.len()).map_err(|_| std::io::Error::other("header too large"))?;
        pre.extend_from_slice(&header_len.to_le_bytes());
        pre.extend_from_slice(&header_checksum(FORMAT_VERSION, header_len, &header_bytes).to_le_bytes());
        pre.extend_from_slice(&header_bytes);
        file.write_all(&pre)?;
        Ok(Self { file, offset: pre.len() as u64, index: TraceIndex::default(), finished: false })
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.offset
    }

    /// Whether nothing but the preamble was written (never true after `create`).
    pub fn is_empty(&self) -> bool {
        self.offset == 0
    }

    /// Appends a chunk; `compress` selects LZ4. Returns the chunk's offset.
    pub fn write_chunk(&mut self, kind: ChunkKind, raw: &[u8], compress: bool) -> std::io::Result<u64> {
        let (codec, payload) =
            if compress { (CODEC_LZ4, lz4_flex::block::compress(raw)) } else { (CODEC_RAW, raw.to_vec()) };
        let payload_len = u32::try_from(payload.len()).map_err(|_| std::io::Error::other("chunk too large"))?;
        let raw_len = u32::try_from(raw.len()).map_err(|_| std::io::Error::other("chunk too large"))?;
        let mut buf = Vec::with_capacity(CHUNK_HEADER_LEN + payload.len());
        buf.extend_from_slice(&CHUNK_MAGIC.to_le_bytes());
        buf.push(kind as u8);
        buf.push(codec);
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&payload_len.to_le_bytes());
        buf.extend_from_slice(&raw_len.to_le_bytes());
        let mut header = [0u8; 16];
        header.copy_from_slice(&buf[..16]);
        buf.extend_from_slice(&chunk_checksum(FORMAT_VERSION, &header, &payload).to_le_bytes());
        buf.extend_from_slice(&payload);
        self.file.write_all(&buf)?;
        let at = self.offset;
        self.index.chunks.push((at, kind as u8));
        self.offset += buf.len() as u64;
        Ok(at)
    }

    /// Writes the end record, the index and the trailer, and syncs the file.
    pub fn finish(&mut self, end: &EndRecord) -> std::io::Result<()> {
        if self.finished {
            return Ok(());
        }
        let end_bytes = bincode::serialize(end).map_err(std::io::Error::other)?;
        self.write_chunk(ChunkKind::End, &end_bytes, false)?;
        let index_bytes = bincode::serialize(&self.index).map_err(std::io::Error::other)?;
        let index_offset = self.write_chunk(ChunkKind::Index, &index_bytes, true)?;
        let mut trailer = Vec::with_capacity(TRAILER_LEN);
        trailer.extend_from_slice(&index_offset.to_le_bytes());
        trailer.extend_from_slice(&END_MAGIC);
        self.file.write_all(&trailer)?;
        self.offset += TRAILER_LEN as u64;
        self.file.sync_all()?;
        self.finished = true;
        Ok(())
    }

    /// Whether `finish` has run.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

/// Another process holds the lock of a trace file: a recording into it is in progress.
/// [`TraceWriter::create`] returns it inside an [`std::io::Error`] of kind `WouldBlock`;
/// [`TraceLocked::in_io_error`] finds it there.
#[derive(Debug, thiserror::Error)]
#[error("{} is being written by another ttvm process (it holds the file's lock); choose another output file or wait for that recording to end", path.display())]
pub struct TraceLocked {
    /// The file.
    pub path: std::path::PathBuf,
}

impl TraceLocked {
    /// The [`TraceLocked`] inside `e`, if that is what `e` is.
    pub fn in_io_error(e: &std::io::Error) -> Option<&TraceLocked> {
        e.get_ref().and_then(|inner| inner.downcast_ref::<TraceLocked>())
    }
}

/// Takes an exclusive advisory lock on `file` without waiting.
fn lock_exclusive(file: &File, path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this function borrows; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == std::io::ErrorKind::WouldBlock {
        return Err(std::io::Error::new(std::io::ErrorKind::WouldBlock, TraceLocked { path: path.to_path_buf() }));
    }
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second lock on a file someone holds is refused with the typed error naming the
    /// file (flock locks belong to the open file, so two opens conflict even in one
    /// process); once the first is closed the file can be locked again.
    #[test]
    fn a_locked_trace_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.ttvm");
        let first = File::create(&path).unwrap();
        lock_exclusive(&first, &path).unwrap();
        let second = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let e = lock_exclusive(&second, &path).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        let locked = TraceLocked::in_io_error(&e).expect("typed");
        assert_eq!(locked.path, path);
        assert!(e.to_string().contains("being written by another ttvm process"), "{e}");
        assert!(TraceLocked::in_io_error(&std::io::Error::from(std::io::ErrorKind::WouldBlock)).is_none());
        drop(first);
        lock_exclusive(&second, &path).unwrap();
    }
}
