//! The panic guard: [`guarded`] runs a frame, NAT poll or command under
//! [`std::panic::catch_unwind`], and a process-wide panic hook keeps the panics it catches off
//! stderr (their location goes into the log line instead). [`Health`] is where the engine
//! counts them for the control plane. Also the debug-only test trigger that makes a frame panic.

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, Once};

/// Panics caught on one network's data path, shared with the control plane (read without a
/// round trip through the thread, so a wedged thread can still be reported).
#[derive(Debug, Default)]
pub struct Health {
    pub(super) panics: AtomicU64,
    pub(super) last_panic: Mutex<Option<String>>,
}

/// The health of a data path at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthReport {
    /// The thread is still running (it only stops when told to, or on an unrecoverable error).
    pub running: bool,
    /// Panics caught (each dropped one frame, NAT poll or command).
    pub panics: u64,
    /// The last one: message, source location, and what was being processed.
    pub last_panic: Option<String>,
}

impl HealthReport {
    /// Running and never panicked.
    pub fn healthy(&self) -> bool {
        self.running && self.panics == 0
    }
}

thread_local! {
    /// Set while a data path thread runs guarded code: the panic hook then records the
    /// location here instead of printing.
    static GUARDED: Cell<bool> = const { Cell::new(false) };
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that keeps caught data path panics off stderr.
pub(super) fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if GUARDED.with(Cell::get) {
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()));
                PANIC_LOCATION.with(|p| *p.borrow_mut() = at);
            } else {
                default(info);
            }
        }));
    });
}

/// Runs `f`, catching a panic; the panic's message and location on failure.
pub(super) fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    GUARDED.with(|g| g.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(false));
    result.map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_string());
        match PANIC_LOCATION.with(|p| p.borrow_mut().take()) {
            Some(at) => format!("{msg} at {at}"),
            None => msg,
        }
    })
}

/// The test-only panic trigger (see the `datapath` module docs); always `None` in release builds.
pub(super) fn test_panic_ethertype() -> Option<u16> {
    #[cfg(debug_assertions)]
    {
        let v = std::env::var("VSWITCHD_TEST_PANIC_ETHERTYPE").ok()?;
        let t = u16::from_str_radix(v.trim_start_matches("0x"), 16);
        if t.is_err() {
            tracing::warn!("ignoring VSWITCHD_TEST_PANIC_ETHERTYPE={v:?}: not a hex EtherType");
        }
        t.ok()
    }
    #[cfg(not(debug_assertions))]
    None
}
