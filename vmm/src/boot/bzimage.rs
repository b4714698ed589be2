//! Linux `bzImage` files: the real-mode setup header and the compressed kernel payload.
//!
//! A bzImage is `setup sectors | protected-mode part`; the protected-mode part holds the
//! in-kernel decompressor and, at `payload_offset` (boot protocol 2.08+), the compressed
//! `vmlinux` ELF. ttvm decompresses that payload in the host and boots the ELF directly
//! (through its PVH entry when it has one): the guest does not spend tens of millions of
//! emulated instructions decompressing itself, and KASLR's randomisation in the
//! decompressor never runs, which keeps the load address fixed.

use std::io::Read;

/// Offset of the setup header in the file (`struct setup_header` in boot_params).
pub const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// "HdrS" at 0x202.
const HEADER_MAGIC: &[u8; 4] = b"HdrS";
/// Largest decompressed kernel accepted (Debian's 6.1 vmlinux is 63 MiB).
const MAX_KERNEL_SIZE: usize = 512 << 20;

/// Errors reading a bzImage.
#[derive(Debug, thiserror::Error)]
pub enum BzImageError {
    /// Too short or a field points outside the file.
    #[error("bzImage truncated or malformed: {0}")]
    Malformed(String),
    /// Boot protocol older than 2.08 has no payload fields.
    #[error(
        "bzImage boot protocol {major}.{minor:02} is older than 2.08, which introduced \
         payload_offset; ttvm needs it to find the compressed kernel"
    )]
    TooOld {
        /// Major version.
        major: u8,
        /// Minor version.
        minor: u8,
    },
    /// The payload's compression is not recognised or not supported.
    #[error("the bzImage payload is compressed with {0}, which ttvm does not decompress (supported: gzip, xz, lzma, zstd, lz4)")]
    Unsupported(String),
    /// The decompressor rejected the data.
    #[error("decompressing the {format} payload failed: {message}")]
    Decompress {
        /// Compression format.
        format: Compression,
        /// Decompressor message.
        message: String,
    },
    /// The decompressed size does not match the size the kernel build appended.
    #[error("the {format} payload decompressed to {actual} bytes but the image says {expected}")]
    SizeMismatch {
        /// Compression format.
        format: Compression,
        /// Size appended by the kernel build.
        expected: usize,
        /// Size obtained.
        actual: usize,
    },
}

/// Payload compression formats, recognised by their magic bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// gzip (`1f 8b`).
    Gzip,
    /// xz (`fd 37 7a 58 5a 00`), Debian's default; uses the x86 BCJ filter.
    Xz,
    /// Legacy `.lzma` (`5d 00 00`).
    Lzma,
    /// zstd frame (`28 b5 2f fd`).
    Zstd,
    /// LZ4 legacy frame (`02 21 4c 18`).
    Lz4,
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Gzip => "gzip",
            Self::Xz => "xz",
            Self::Lzma => "lzma",
            Self::Zstd => "zstd",
            Self::Lz4 => "lz4",
        })
    }
}

/// A parsed bzImage.
#[derive(Clone, Debug)]
pub struct BzImage<'a> {
    /// Boot protocol version (`0x020f` = 2.15).
    pub protocol: u16,
    /// The setup header bytes (from 0x1f1 to its end), copied into the zero page when the
    /// kernel is booted through the 64-bit boot protocol.
    pub setup_header: &'a [u8],
    /// The compressed payload, without the 4-byte size the build appends.
    pub payload: &'a [u8],
    /// Its compression.
    pub compression: Compression,
    /// Decompressed size, from the 4 bytes appended by the kernel build.
    pub decompressed_size: usize,
}

fn malformed(msg: impl Into<String>) -> BzImageError {
    BzImageError::Malformed(msg.into())
}

fn le_u32(b: &[u8], off: usize) -> Result<u32, BzImageError> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| malformed(format!("file ends before offset {:#x}", off + 4)))
}

/// Whether `image` looks like a bzImage (has the "HdrS" setup header magic).
pub fn is_bzimage(image: &[u8]) -> bool {
    image.get(0x202..0x206) == Some(HEADER_MAGIC.as_slice())
}

impl<'a> BzImage<'a> {
    /// Parses the setup header and locates the payload.
    pub fn parse(image: &'a [u8]) -> Result<Self, BzImageError> {
        if !is_bzimage(image) {
            return Err(malformed("no \"HdrS\" setup header magic at offset 0x202"));
        }
        let protocol = u16::from_le_bytes([image[0x206], image[0x207]]);
        if protocol < 0x0208 {
            return Err(BzImageError::TooOld { major: (protocol >> 8) as u8, minor: protocol as u8 });
        }
        // setup_sects == 0 means 4, for historical reasons (boot.rst).
        let setup_sects = match image[SETUP_HEADER_OFFSET] {
            0 => 4,
            n => usize::from(n),
        };
        let header_end = 0x202 + usize::from(image[0x201]);
        let setup_header = image
            .get(SETUP_HEADER_OFFSET..header_end)
            .ok_or_else(|| malformed("setup header extends past the end of the file"))?;
        let pm_start = (setup_sects + 1) * 512;
        let payload_offset = le_u32(image, 0x248)? as usize;
        let payload_length = le_u32(image, 0x24c)? as usize;
        let start = pm_start.checked_add(payload_offset).ok_or_else(|| malformed("payload_offset overflows"))?;
        let end = start.checked_add(payload_length).ok_or_else(|| malformed("payload_length overflows"))?;
        let full = image.get(start..end).ok_or_else(|| {
            malformed(format!("payload {start:#x}..{end:#x} lies outside the {:#x}-byte file", image.len()))
        })?;
        // Every Linux compressor rule ends with `size_append`: 4 bytes of decompressed size.
        if full.len() < 8 {
            return Err(malformed(format!("payload is only {} bytes", full.len())));
        }
        let (payload, size) = full.split_at(full.len() - 4);
        let decompressed_size = u32::from_le_bytes([size[0], size[1], size[2], size[3]]) as usize;
        let compression = detect(payload)?;
        Ok(Self { protocol, setup_header, payload, compression, decompressed_size })
    }

    /// Decompresses the payload: the kernel's `vmlinux` ELF.
    pub fn decompress(&self) -> Result<Vec<u8>, BzImageError> {
        if self.decompressed_size > MAX_KERNEL_SIZE {
            return Err(malformed(format!(
                "the payload claims to decompress to {} bytes (more than {} MiB)",
                self.decompressed_size,
                MAX_KERNEL_SIZE >> 20
            )));
        }
        let format = self.compression;
        let err = |e: &dyn std::fmt::Display| BzImageError::Decompress { format, message: e.to_string() };
        let mut out = Vec::with_capacity(self.decompressed_size);
        // Reading one byte more than announced detects a payload that is longer than it says.
        let limit = self.decompressed_size as u64 + 1;
        match format {
            Compression::Gzip => {
                flate2::read::GzDecoder::new(self.payload).take(limit).read_to_end(&mut out).map_err(|e| err(&e))?;
            }
            Compression::Xz => {
                let stream = liblzma::stream::Stream::new_stream_decoder(u64::MAX, 0).map_err(|e| err(&e))?;
                liblzma::read::XzDecoder::new_stream(self.payload, stream)
                    .take(limit)
                    .read_to_end(&mut out)
                    .map_err(|e| err(&e))?;
            }
            Compression::Lzma => {
                let stream = liblzma::stream::Stream::new_lzma_decoder(u64::MAX).map_err(|e| err(&e))?;
                liblzma::read::XzDecoder::new_stream(self.payload, stream)
                    .take(limit)
                    .read_to_end(&mut out)
                    .map_err(|e| err(&e))?;
            }
            Compression::Zstd => {
                let mut d = ruzstd::decoding::StreamingDecoder::new(self.payload).map_err(|e| err(&e))?;
                (&mut d).take(limit).read_to_end(&mut out).map_err(|e| err(&e))?;
            }
            Compression::Lz4 => lz4_legacy(self.payload, self.decompressed_size, &mut out).map_err(|m| err(&m))?,
        }
        if out.len() != self.decompressed_size {
            return Err(BzImageError::SizeMismatch { format, expected: self.decompressed_size, actual: out.len() });
        }
        Ok(out)
    }
}

/// Recognises the compression by magic bytes.
pub fn detect(payload: &[u8]) -> Result<Compression, BzImageError> {
    let starts = |m: &[u8]| payload.starts_with(m);
    if starts(&[0x1f, 0x8b]) {
        Ok(Compression::Gzip)
    } else if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Ok(Compression::Xz)
    } else if starts(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Compression::Zstd)
    } else if starts(&[0x02, 0x21, 0x4c, 0x18]) {
        Ok(Compression::Lz4)
    } else if starts(&[0x5d, 0, 0]) {
        Ok(Compression::Lzma)
    } else if starts(b"BZh") {
        Err(BzImageError::Unsupported("bzip2".into()))
    } else if starts(&[0x89, b'L', b'Z', b'O']) {
        Err(BzImageError::Unsupported("lzo".into()))
    } else {
        let head: Vec<String> = payload.iter().take(6).map(|b| format!("{b:02x}")).collect();
        Err(BzImageError::Unsupported(format!("an unknown format (first bytes {})", head.join(" "))))
    }
}

/// The LZ4 "legacy" frame `lz4 -l` writes: magic, then blocks of `u32 size | data`, each
/// decompressing to at most 8 MiB.
fn lz4_legacy(data: &[u8], expected: usize, out: &mut Vec<u8>) -> Result<(), String> {
    const MAGIC: u32 = 0x184c_2102;
    const BLOCK_MAX: usize = 8 << 20;
    let mut pos = 4;
    while pos + 4 <= data.len() {
        let size = u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]);
        pos += 4;
        if size == MAGIC {
            continue; // concatenated frames
        }
        let end = pos.checked_add(size as usize).filter(|&e| e <= data.len()).ok_or("lz4 block runs past the end")?;
        let room = BLOCK_MAX.min(expected.saturating_sub(out.len()));
        let block = lz4_flex::block::decompress(&data[pos..end], room).map_err(|e| e.to_string())?;
        out.extend_from_slice(&block);
        pos = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A fake bzImage: 1 setup sector + boot sector, header 2.15, payload at offset 0x100 of
    /// the protected-mode part.
    pub(crate) fn fake_bzimage(payload: &[u8], decompressed_len: usize) -> Vec<u8> {
        let mut b = vec![0u8; 1024 + 0x100];
        b[SETUP_HEADER_OFFSET] = 1;
        b[0x1fe] = 0x55;
        b[0x1ff] = 0xaa;
        b[0x200] = 0xeb;
        b[0x201] = 0x6a; // header ends at 0x26c
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        b[0x248..0x24c].copy_from_slice(&0x100u32.to_le_bytes());
        b[0x24c..0x250].copy_from_slice(&((payload.len() + 4) as u32).to_le_bytes());
        b.extend_from_slice(payload);
        b.extend_from_slice(&(decompressed_len as u32).to_le_bytes());
        b
    }

    #[test]
    fn gzip_payload_round_trips() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&data).unwrap();
        let img = fake_bzimage(&enc.finish().unwrap(), data.len());
        let bz = BzImage::parse(&img).unwrap();
        assert_eq!(bz.compression, Compression::Gzip);
        assert_eq!(bz.protocol, 0x020f);
        assert_eq!(bz.decompress().unwrap(), data);
    }

    #[test]
    fn xz_payload_round_trips() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 13) as u8).collect();
        let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 1);
        enc.write_all(&data).unwrap();
        let img = fake_bzimage(&enc.finish().unwrap(), data.len());
        let bz = BzImage::parse(&img).unwrap();
        assert_eq!(bz.compression, Compression::Xz);
        assert_eq!(bz.decompress().unwrap(), data);
    }

    #[test]
    fn lz4_legacy_payload_round_trips() {
        let data: Vec<u8> = (0..70_000u32).map(|i| (i % 17) as u8).collect();
        let block = lz4_flex::block::compress(&data);
        let mut p = 0x184c_2102u32.to_le_bytes().to_vec();
        p.extend_from_slice(&(block.len() as u32).to_le_bytes());
        p.extend_from_slice(&block);
        let img = fake_bzimage(&p, data.len());
        assert_eq!(BzImage::parse(&img).unwrap().decompress().unwrap(), data);
    }

    #[test]
    fn wrong_size_and_garbage_are_reported() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"hello hello hello").unwrap();
        let img = fake_bzimage(&enc.finish().unwrap(), 5);
        let e = BzImage::parse(&img).unwrap().decompress().unwrap_err();
        assert!(matches!(e, BzImageError::SizeMismatch { .. }), "{e}");
        let img = fake_bzimage(b"BZh91AY&SY garbage", 10);
        assert!(BzImage::parse(&img).unwrap_err().to_string().contains("bzip2"));
        let img = fake_bzimage(&[0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2, 3, 4], 10);
        let e = BzImage::parse(&img).unwrap().decompress().unwrap_err();
        assert!(e.to_string().contains("xz"), "{e}");
        let mut img = fake_bzimage(b"12345678", 10);
        img.truncate(0x300);
        assert!(matches!(BzImage::parse(&img), Err(BzImageError::Malformed(_))));
        assert!(!is_bzimage(b"\x7fELF"));
    }
}
