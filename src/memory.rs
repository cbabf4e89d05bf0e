//! Hands memory freed after a burst back to the system.
//!
//! glibc's allocator keeps freed heap pages for reuse, so after shipping a burst of lines the daemon
//! would sit at its peak resident size for good. Once the pipeline is idle again, [`release_free_memory`]
//! asks the allocator to return its free pages ([`TrimGate`] decides when: once per burst).
//! [`use_one_arena`] keeps every allocation in the one heap that such a release can shrink whole.

/// Makes every thread allocate from glibc's main heap (`mallopt(M_ARENA_MAX, 1)`); a no-op where glibc
/// is not the allocator. Call it before starting threads.
///
/// Why: `malloc_trim` gives back the free top of the main heap, but not that of the extra arenas glibc
/// creates for other threads, and the daemon runs its tasks on one thread anyway. The alternative, a low
/// `M_TRIM_THRESHOLD`, returns memory on every large `free` and pays for it with page faults on the next
/// request body: `MALLOC_TRIM_THRESHOLD_=131072 scripts/measure-daemon.sh` reads about 20 % more CPU per
/// shipped line than the script without it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn use_one_arena() {
    // SAFETY: mallopt takes two integers and only changes a setting of glibc's allocator; the call is
    // made once, on the main thread, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// See the `linux`/`gnu` variant.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn use_one_arena() {}

/// Returns the allocator's free pages to the system (`malloc_trim(0)`); a no-op where glibc is not the
/// allocator.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn release_free_memory() {
    // SAFETY: malloc_trim takes no pointers and only walks glibc's own free lists under the arena locks;
    // it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// See the `linux`/`gnu` variant: other allocators return memory on their own terms.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}

/// Decides, once per health tick, whether to release memory: when the pipeline has nothing pending and
/// moved since the last release (at most once per tick, so a steady trickle costs one cheap call per tick).
#[derive(Debug, Default)]
pub(crate) struct TrimGate {
    trimmed_at: u64,
}

impl TrimGate {
    /// True when nothing is pending and `activity` moved since the last release.
    pub(crate) fn tick(&mut self, activity: u64, idle: bool) -> bool {
        if idle && activity != self.trimmed_at {
            self.trimmed_at = activity;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_once_per_burst_when_idle() {
        let mut g = TrimGate::default();
        assert!(!g.tick(0, true), "nothing happened yet");
        assert!(!g.tick(5, false), "busy");
        assert!(!g.tick(7, false), "still work pending");
        assert!(g.tick(7, true), "idle after a burst");
        assert!(!g.tick(7, true), "already released for this burst");
        assert!(g.tick(9, true), "the next burst is over");
        release_free_memory();
    }
}
