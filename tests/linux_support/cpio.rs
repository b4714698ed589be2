//! A writer for the cpio "newc" format (`070701`), the format Linux unpacks an initramfs
//! from (Documentation/driver-api/early-userspace/buffer-format.rst).

/// Builds an archive in memory.
#[derive(Debug, Default)]
pub struct Writer {
    out: Vec<u8>,
    next_ino: u32,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

impl Writer {
    /// An empty archive.
    pub fn new() -> Self {
        Self { out: Vec::new(), next_ino: 1 }
    }

    /// Adds a directory.
    pub fn directory(&mut self, name: &str, perm: u32) {
        self.entry(name, S_IFDIR | perm, 2, (0, 0), &[]);
    }

    /// Adds a regular file.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, S_IFREG | perm, 1, (0, 0), data);
    }

    /// Adds a character device node.
    pub fn char_device(&mut self, name: &str, perm: u32, major: u32, minor: u32) {
        self.entry(name, S_IFCHR | perm, 1, (major, minor), &[]);
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.raw_entry(ino, name, mode, nlink, rdev, data);
    }

    fn raw_entry(&mut self, ino: u32, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: fixed, so the archive is reproducible
            data.len() as u32,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    /// Header+name and data are each padded to a multiple of four bytes.
    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    /// Appends the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.raw_entry(0, "TRAILER!!!", 0, 1, (0, 0), &[]);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout() {
        let mut w = Writer::new();
        w.file("init", 0o755, b"abcde");
        let a = w.finish();
        assert_eq!(&a[..6], b"070701");
        // mode field (second) of the first header.
        assert_eq!(&a[14..22], b"000081ed");
        // header 110 bytes + "init\0" = 115 -> padded to 116; data 5 -> 8.
        assert_eq!(&a[110..115], b"init\0");
        assert_eq!(&a[116..121], b"abcde");
        assert_eq!(&a[124..130], b"070701");
        assert!(a.windows(10).any(|w| w == b"TRAILER!!!"));
        assert_eq!(a.len() % 4, 0);
    }
}
