//! Opening /dev/kvm and checking that it offers what ttvm relies on.

use std::path::PathBuf;

use kvm_ioctls::{Cap, Kvm};

/// Environment variable that overrides the KVM device path (used by tests to simulate a
/// machine without KVM, and by users with an unusual device node).
pub const KVM_DEVICE_ENV: &str = "TTVM_KVM_DEVICE";
const DEFAULT_KVM_DEVICE: &str = "/dev/kvm";

/// Errors opening or probing KVM.
#[allow(missing_docs)] // variant fields are named in the variant's doc and message
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// The device node is missing or not accessible.
    #[error(
        "cannot open {path}: {source}\n\
         ttvm runs guests with Linux KVM: check that the kvm module is loaded, that {path} \
         exists, and that you may read and write it (e.g. membership of the 'kvm' group)"
    )]
    Open { path: String, source: std::io::Error },
    /// KVM reports an API version other than the stable one (12).
    #[error("{path}: KVM API version {version} is not supported (ttvm needs 12)")]
    ApiVersion { path: String, version: i32 },
    /// A capability ttvm cannot work without.
    #[error("KVM at {path} lacks a capability ttvm needs: {cap}")]
    MissingCap { path: String, cap: &'static str },
    /// An ioctl on the KVM system fd failed.
    #[error("KVM {op} failed: {source}")]
    Ioctl { op: &'static str, source: kvm_ioctls::Error },
}

/// The path of the KVM device: `$TTVM_KVM_DEVICE` or `/dev/kvm`.
pub fn kvm_device_path() -> PathBuf {
    std::env::var_os(KVM_DEVICE_ENV).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_KVM_DEVICE))
}

/// Capabilities checked at start-up, with the reason each is needed.
const REQUIRED_CAPS: &[(Cap, &str)] = &[
    (Cap::UserMemory, "KVM_CAP_USER_MEMORY (guest RAM in a host mapping)"),
    (Cap::SetGuestDebug, "KVM_CAP_SET_GUEST_DEBUG (single-step engine)"),
    (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID (fixed CPUID model)"),
    (Cap::VcpuEvents, "KVM_CAP_VCPU_EVENTS (checkpoints)"),
    (Cap::Debugregs, "KVM_CAP_DEBUGREGS (checkpoints)"),
    (Cap::Xsave, "KVM_CAP_XSAVE (checkpoints)"),
    (Cap::Xcrs, "KVM_CAP_XCRS (checkpoints)"),
    (Cap::SyncRegs, "KVM_CAP_SYNC_REGS (registers without extra ioctls per step)"),
];

/// An open, checked KVM system handle.
#[derive(Debug)]
pub struct KvmSystem {
    kvm: Kvm,
    path: String,
}

impl KvmSystem {
    /// Opens the KVM device named by [`kvm_device_path`] and checks required capabilities.
    pub fn open() -> Result<Self, KvmError> {
        let path = kvm_device_path();
        let shown = path.display().to_string();
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| KvmError::Open {
            path: shown.clone(),
            source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
        })?;
        let kvm = Kvm::new_with_path(c_path.as_c_str()).map_err(|e| KvmError::Open {
            path: shown.clone(),
            source: std::io::Error::from_raw_os_error(e.errno()),
        })?;
        let version = kvm.get_api_version();
        if version != 12 {
            return Err(KvmError::ApiVersion { path: shown, version });
        }
        for (cap, what) in REQUIRED_CAPS {
            if !kvm.check_extension(*cap) {
                return Err(KvmError::MissingCap { path: shown, cap: what });
            }
        }
        Ok(Self { kvm, path: shown })
    }

    /// The underlying kvm-ioctls handle.
    pub fn kvm(&self) -> &Kvm {
        &self.kvm
    }

    /// The device path this handle was opened from.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl crate::error_kind::Classify for KvmError {
    fn kind(&self) -> crate::error_kind::ErrorKind {
        crate::error_kind::ErrorKind::NoKvm
    }
}
