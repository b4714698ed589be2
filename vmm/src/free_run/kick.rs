//! Getting the vCPU out of KVM_RUN when a device deadline arrives (free-running engine).
//!
//! A one-shot SIGALRM is armed for the next deadline. Its handler sets `immediate_exit` in
//! the kvm_run page, so a signal that lands just before KVM_RUN is not lost, and KVM_RUN
//! returns EINTR when it lands during the run.

use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::Duration;

static IMMEDIATE_EXIT: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());

extern "C" fn on_alarm(_sig: libc::c_int) {
    let p = IMMEDIATE_EXIT.load(Ordering::SeqCst);
    if !p.is_null() {
        // SAFETY: `p` points at the `immediate_exit` byte of a live kvm_run mapping; it is
        // registered by `Kicker::install` and cleared before the mapping goes away.
        unsafe { std::ptr::write_volatile(p, 1) };
    }
}

/// Owns the SIGALRM handler while a free-running loop is active.
#[derive(Debug)]
pub struct Kicker {
    _private: (),
}

impl Kicker {
    /// Installs the handler, pointing it at `immediate_exit` of the running vCPU.
    ///
    /// # Safety
    /// `immediate_exit` must stay valid until the returned `Kicker` is dropped.
    pub unsafe fn install(immediate_exit: *mut u8) -> std::io::Result<Self> {
        IMMEDIATE_EXIT.store(immediate_exit, Ordering::SeqCst);
        // SAFETY: installing a handler that only does an atomic load and a volatile store.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_alarm as *const () as usize;
            sa.sa_flags = 0; // no SA_RESTART: KVM_RUN must return EINTR
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(Self { _private: () })
    }

    /// Arms a one-shot alarm `after` from now (replacing any armed one).
    pub fn arm(&self, after: Duration) {
        let after = after.max(Duration::from_micros(1));
        let it = libc::itimerval {
            it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 },
            it_value: libc::timeval {
                tv_sec: after.as_secs() as libc::time_t,
                tv_usec: after.subsec_micros() as libc::suseconds_t,
            },
        };
        // SAFETY: plain setitimer with a valid struct.
        unsafe { libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()) };
    }

    /// Disarms the alarm.
    pub fn disarm(&self) {
        let zero = libc::itimerval {
            it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 },
            it_value: libc::timeval { tv_sec: 0, tv_usec: 0 },
        };
        // SAFETY: plain setitimer with a valid struct.
        unsafe { libc::setitimer(libc::ITIMER_REAL, &zero, std::ptr::null_mut()) };
    }
}

impl Drop for Kicker {
    fn drop(&mut self) {
        self.disarm();
        IMMEDIATE_EXIT.store(std::ptr::null_mut(), Ordering::SeqCst);
    }
}
