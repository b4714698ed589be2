//! Saved forms that are the memory image of a C struct from KVM's API (`kvm_regs`,
//! `kvm_sregs`, ...), written and read field by field from ttvm's own types.
//!
//! kvm-bindings 0.14's serde support (which ttvm used at first) serialises such a struct as
//! a byte string: serde's `serialize_bytes` of the struct's memory image, which bincode
//! writes as a little-endian u64 length followed by the bytes. [`serialize`] writes exactly
//! that, so traces recorded then decode now. [`deserialize`] accepts only a byte string of
//! the struct's exact size (kvm-bindings padded or cut other lengths silently): KVM's ABI
//! fixes these sizes, so any other length is damage.
//!
//! Reserved and padding fields are kept as fields of the ttvm types: KVM fills them, and
//! keeping every byte is what makes a decoded state encode to the same bytes again.

use std::marker::PhantomData;

use serde::{Deserializer, Serializer};

/// A type saved as the little-endian memory image of a C struct of [`CLayout::SIZE`] bytes.
pub trait CLayout: Sized {
    /// The C struct, for error messages.
    const C_NAME: &'static str;
    /// Its size in bytes.
    const SIZE: usize;
    /// Appends the image, field by field in C order (exactly [`CLayout::SIZE`] bytes).
    fn write(&self, out: &mut LayoutWriter);
    /// Reads the image back; None when the input ends early.
    fn read(input: &mut LayoutReader<'_>) -> Option<Self>;
}

/// Builds a C struct's image.
#[derive(Debug, Default)]
pub struct LayoutWriter {
    bytes: Vec<u8>,
}

impl LayoutWriter {
    /// A `u8` field.
    pub fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }

    /// A `u16` field.
    pub fn u16(&mut self, v: u16) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    /// A `u32` field.
    pub fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    /// A `u64` field.
    pub fn u64(&mut self, v: u64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    /// A byte array field.
    pub fn bytes(&mut self, v: &[u8]) {
        self.bytes.extend_from_slice(v);
    }

    /// A nested struct.
    pub fn nested<T: CLayout>(&mut self, v: &T) {
        v.write(self);
    }
}

/// Reads a C struct's image.
#[derive(Debug)]
pub struct LayoutReader<'a> {
    rest: &'a [u8],
}

impl<'a> LayoutReader<'a> {
    /// Reads from `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// The next `N` bytes.
    pub fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.rest.split_first_chunk::<N>()?;
        self.rest = rest;
        Some(*head)
    }

    /// A `u8` field.
    pub fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    /// A `u16` field.
    pub fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    /// A `u32` field.
    pub fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    /// A `u64` field.
    pub fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// A nested struct.
    pub fn nested<T: CLayout>(&mut self) -> Option<T> {
        T::read(self)
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

/// The image of `value`.
pub fn to_bytes<T: CLayout>(value: &T) -> Vec<u8> {
    let mut out = LayoutWriter { bytes: Vec::with_capacity(T::SIZE) };
    value.write(&mut out);
    debug_assert_eq!(out.bytes.len(), T::SIZE, "{} image", T::C_NAME);
    out.bytes
}

/// The value whose image is `bytes`; None unless `bytes` is exactly one image.
pub fn from_bytes<T: CLayout>(bytes: &[u8]) -> Option<T> {
    if bytes.len() != T::SIZE {
        return None;
    }
    let mut input = LayoutReader::new(bytes);
    let value = T::read(&mut input)?;
    input.is_empty().then_some(value)
}

/// serde: the image as a byte string, as kvm-bindings wrote it.
pub fn serialize<T: CLayout, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(&to_bytes(value))
}

/// serde: a byte string of exactly one image.
pub fn deserialize<'de, T: CLayout, D: Deserializer<'de>>(deserializer: D) -> Result<T, D::Error> {
    deserializer.deserialize_bytes(ImageVisitor(PhantomData))
}

struct ImageVisitor<T>(PhantomData<T>);

impl<T: CLayout> serde::de::Visitor<'_> for ImageVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the {}-byte image of a {}", T::SIZE, T::C_NAME)
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<T, E> {
        from_bytes(bytes).ok_or_else(|| E::invalid_length(bytes.len(), &self))
    }
}

/// Implements `Serialize` and `Deserialize` for a [`CLayout`] type through its image.
macro_rules! c_layout_serde {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                $crate::persist::c_layout::serialize(self, serializer)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                $crate::persist::c_layout::deserialize(deserializer)
            }
        }
    };
}
pub(crate) use c_layout_serde;

#[cfg(test)]
mod tests {
    use super::*;

    /// A C struct `{ u8 a; u8 pad; u16 b; u32 c; u64 d; }`.
    #[derive(Debug, PartialEq)]
    struct Sample {
        a: u8,
        pad: u8,
        b: u16,
        c: u32,
        d: u64,
    }

    impl CLayout for Sample {
        const C_NAME: &'static str = "sample";
        const SIZE: usize = 16;

        fn write(&self, out: &mut LayoutWriter) {
            out.u8(self.a);
            out.u8(self.pad);
            out.u16(self.b);
            out.u32(self.c);
            out.u64(self.d);
        }

        fn read(input: &mut LayoutReader<'_>) -> Option<Self> {
            Some(Self { a: input.u8()?, pad: input.u8()?, b: input.u16()?, c: input.u32()?, d: input.u64()? })
        }
    }

    c_layout_serde!(Sample);

    const SAMPLE: Sample = Sample { a: 1, pad: 2, b: 0x0403, c: 0x0807_0605, d: 0x100f_0e0d_0c0b_0a09 };

    #[test]
    fn bincode_writes_a_length_prefixed_little_endian_image() {
        let encoded = bincode::serialize(&SAMPLE).unwrap();
        let mut expected = 16u64.to_le_bytes().to_vec();
        expected.extend(1u8..=16);
        assert_eq!(encoded, expected);
        assert_eq!(bincode::deserialize::<Sample>(&encoded).unwrap(), SAMPLE);
    }

    #[test]
    fn other_lengths_are_refused() {
        for len in [0u64, 15, 17] {
            let mut encoded = len.to_le_bytes().to_vec();
            encoded.extend(std::iter::repeat_n(0u8, len as usize));
            let err = bincode::deserialize::<Sample>(&encoded).unwrap_err().to_string();
            assert!(err.contains("16-byte image of a sample"), "{len}: {err}");
        }
        assert!(from_bytes::<Sample>(&[0; 16]).is_some());
        assert!(from_bytes::<Sample>(&[0; 17]).is_none());
    }
}
