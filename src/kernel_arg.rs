//! Resolving the KERNEL argument: a path to a kernel image, or the name of a bundled sample.

use std::path::Path;

use crate::exit_code::{Exit, BAD_INPUT};

/// A kernel image and what to call it.
#[derive(Debug, Clone)]
pub struct KernelImage {
    /// Display name (file path or sample name).
    pub name: String,
    /// The image bytes.
    pub bytes: Vec<u8>,
}

/// Reads `arg` as a file if it exists, otherwise looks it up among the bundled samples. A
/// directory of a sample's name is not a kernel (the source tree has a `bench/`): the
/// sample is meant.
pub fn resolve(arg: &str) -> Result<KernelImage, Exit> {
    let path = Path::new(arg);
    if path.exists() && !(path.is_dir() && ttvm_sample_kernels::get(arg).is_some()) {
        let bytes = std::fs::read(path).map_err(|e| Exit::new(BAD_INPUT, format!("cannot read kernel {arg}: {e}")))?;
        return Ok(KernelImage { name: arg.to_string(), bytes });
    }
    if let Some(k) = ttvm_sample_kernels::get(arg) {
        return Ok(KernelImage { name: k.name.to_string(), bytes: k.elf.to_vec() });
    }
    let names: Vec<&str> = ttvm_sample_kernels::all().iter().map(|k| k.name).collect();
    Err(Exit::new(
        BAD_INPUT,
        format!("{arg}: no such file, and not a bundled sample kernel (samples: {})", names.join(", ")),
    ))
}
