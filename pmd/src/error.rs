//! Errors at this crate's API boundary. Each one names the thing (option,
//! port, devargs) and says what is wrong and, where it can, what to do.

use std::ffi::CStr;

/// What went wrong setting up DPDK, a mempool or a port.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid option `{option}`: {why}")]
    InvalidOption {
        /// The option's name as the user wrote it.
        option: String,
        /// What is wrong with it.
        why: String,
    },
    /// Hugepages were asked for and are not there.
    #[error("hugepages: {0}\n  reserve and mount them as root:\n    echo 1024 > /proc/sys/vm/nr_hugepages\n    mkdir -p /dev/hugepages && mount -t hugetlbfs nodev /dev/hugepages\n  (ci/setup does both), or run without hugepages (memory = \"no-huge\")")]
    Hugepages(String),
    /// `rte_eal_init` refused its arguments.
    #[error("EAL initialisation failed with arguments {args:?}: {reason}")]
    EalInit {
        /// The arguments given to EAL.
        args: Vec<String>,
        /// DPDK's reason.
        reason: String,
    },
    /// EAL can be initialised once per process.
    #[error("EAL is already initialised in this process")]
    EalAlreadyInitialised,
    /// A DPDK call on a port failed.
    #[error("port {port}: {op} failed: {reason}")]
    Port {
        /// The port's name.
        port: String,
        /// The operation.
        op: &'static str,
        /// DPDK's reason.
        reason: String,
    },
    /// A mempool could not be created.
    #[error("mempool {name}: {reason}")]
    Mempool {
        /// The pool's name.
        name: String,
        /// DPDK's reason.
        reason: String,
    },
    /// A thread could not be started or pinned.
    #[error("PMD thread on core {core}: {reason}")]
    Thread {
        /// The core.
        core: usize,
        /// The reason.
        reason: String,
    },
}

/// DPDK's text for an errno value (negative or positive).
pub(crate) fn strerror(errnum: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local
    // NUL-terminated string, valid until the next call on this thread; it
    // is copied out at once.
    unsafe {
        let p = dpdk_sys::rte_strerror(errnum.abs());
        if p.is_null() {
            return format!("error {errnum}");
        }
        format!("{} ({})", CStr::from_ptr(p).to_string_lossy(), errnum.abs())
    }
}

/// The calling thread's `rte_errno`, as text.
pub(crate) fn rte_errno_str() -> String {
    // SAFETY: vs_errno reads the calling thread's rte_errno.
    strerror(unsafe { dpdk_sys::vs_errno() })
}

/// Result with this crate's error.
pub type Result<T> = std::result::Result<T, Error>;
