//! Golden encodings: saved state must keep its bytes, so tests compare a value's bincode
//! encoding with a hex dump kept in the repository.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The bytes of the hex dump `dir/name` (whitespace ignored).
pub fn fixture(dir: &str, name: &str) -> Vec<u8> {
    let path = std::path::Path::new(dir).join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap()).collect()
}

/// `value` encodes to the bytes of fixture `dir/name` and the fixture decodes to `value`;
/// returns the decoded value.
pub fn assert_golden<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    dir: &str,
    value: &T,
    name: &str,
) -> T {
    let expected = fixture(dir, name);
    let encoded = bincode::serialize(value).unwrap();
    if encoded != expected {
        let at = encoded.iter().zip(&expected).position(|(a, b)| a != b).unwrap_or(encoded.len().min(expected.len()));
        panic!(
            "{name}: the encoding changed (first difference at byte {at}; {} bytes, fixture {}). Saved states \
             must keep their encoding: make a new version type and a conversion instead.",
            encoded.len(),
            expected.len()
        );
    }
    let decoded: T = bincode::deserialize(&expected).unwrap();
    assert_eq!(&decoded, value, "{name} decodes back");
    decoded
}
