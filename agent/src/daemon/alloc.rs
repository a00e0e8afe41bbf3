//! The long-running agent's use of the C allocator (glibc malloc): how many arenas it may
//! keep, and giving freed memory back to the kernel once the loop is idle.
//!
//! Why (issue 20 item 3, figures in `docs/daemon.md` "Memory"): every change is applied on a
//! thread of tokio's blocking pool, and glibc gives each thread that allocates while another holds
//! an arena an arena of its own, up to 8 per core. An edit burst runs a dozen works at once, so
//! the agent ended up with that many arenas, each keeping the freed memory of its busiest moment:
//! the resident size rose in steps with the bursts and never came down, while the live heap stayed
//! flat. Two arenas are plenty for a process that is idle almost always, and a trim when the
//! work queue empties returns what a burst freed.
//!
//! `MALLOC_ARENA_MAX` in the environment still wins (an operator's choice, read by glibc itself).
//! Other C libraries: nothing is done.

/// Arenas the agent lets glibc create (the main one and one more).
pub const ARENA_MAX: i32 = 2;

/// Caps glibc's arenas at [`ARENA_MAX`] unless `MALLOC_ARENA_MAX` is set. Call before any thread
/// is started.
pub fn tune() {
    #[cfg(target_env = "gnu")]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes an allocator parameter; called before other threads exist.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX) };
    }
}

/// Returns the free memory of every arena to the kernel (whole free pages, also in the middle of
/// a heap). Cheap on the agent's small heap; the loop calls it when its work queue has emptied.
pub fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap memory; it takes the arenas' own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}
