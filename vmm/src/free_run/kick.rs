//! Getting the vCPU out of KVM_RUN when a device deadline arrives (free-running engine).
//!
//! A one-shot SIGALRM is armed for the next deadline. Its handler sets `immediate_exit` in
//! the kvm_run page, so a signal that lands just before KVM_RUN is not lost, and KVM_RUN
//! returns EINTR when it lands during the run.
//!
//! Per thread: several VMs run at once in one process (a network), each on its own thread,
//! so the alarm is a POSIX timer that signals the thread that armed it
//! (`SIGEV_THREAD_ID`), and the handler finds that thread's `immediate_exit` in a
//! thread-local.

use std::cell::Cell;
use std::time::Duration;

thread_local! {
    // Const-initialised and without a destructor: a plain TLS slot the signal handler can
    // read without any lazy initialisation.
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(std::ptr::null_mut()) };
}

extern "C" fn on_alarm(_sig: libc::c_int) {
    let p = IMMEDIATE_EXIT.with(Cell::get);
    if !p.is_null() {
        // SAFETY: `p` points at the `immediate_exit` byte of a live kvm_run mapping; it is
        // registered by `Kicker::install` on this thread and cleared before the mapping goes
        // away.
        unsafe { std::ptr::write_volatile(p, 1) };
    }
}

/// Owns the SIGALRM handler and this thread's alarm timer while a free-running loop is
/// active.
#[derive(Debug)]
pub struct Kicker {
    timer: libc::timer_t,
}

impl Kicker {
    /// Installs the handler, pointing it at `immediate_exit` of the vCPU this thread runs.
    ///
    /// # Safety
    /// `immediate_exit` must stay valid until the returned `Kicker` is dropped, and the
    /// `Kicker` must be dropped on the thread that installed it.
    pub unsafe fn install(immediate_exit: *mut u8) -> std::io::Result<Self> {
        IMMEDIATE_EXIT.with(|c| c.set(immediate_exit));
        // SAFETY: installing a handler that only reads a thread-local and does a volatile
        // store; creating a timer with valid out-pointers.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_alarm as *const () as usize;
            sa.sa_flags = 0; // no SA_RESTART: KVM_RUN must return EINTR
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut sev: libc::sigevent = std::mem::zeroed();
            sev.sigev_notify = libc::SIGEV_THREAD_ID;
            sev.sigev_signo = libc::SIGALRM;
            sev.sigev_notify_thread_id = libc::gettid();
            let mut timer: libc::timer_t = std::ptr::null_mut();
            if libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut timer) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Self { timer })
        }
    }

    fn set(&self, after: Duration) {
        let it = libc::itimerspec {
            it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `self.timer` is a live timer created by `install`; the struct is valid.
        unsafe { libc::timer_settime(self.timer, 0, &it, std::ptr::null_mut()) };
    }

    /// Arms a one-shot alarm `after` from now (replacing any armed one).
    pub fn arm(&self, after: Duration) {
        self.set(after.max(Duration::from_micros(1)));
    }

    /// Disarms the alarm.
    pub fn disarm(&self) {
        self.set(Duration::ZERO);
    }
}

impl Drop for Kicker {
    fn drop(&mut self) {
        // SAFETY: deleting the timer `install` created; it is not used afterwards.
        unsafe { libc::timer_delete(self.timer) };
        IMMEDIATE_EXIT.with(|c| c.set(std::ptr::null_mut()));
    }
}
