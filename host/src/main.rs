//! The `amiwarden` command.

/// mimalloc rather than the system allocator: a large plan is millions of small strings
/// allocated and freed on both cores, where glibc's per-thread arenas cost time and keep
/// memory (docs/design-notes.md, "Contract `amiwarden:policy@0.2.0`"; BENCHMARKS.md §11).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc v3's `mi_option_purge_delay` (milliseconds before freed pages go back to the
/// OS; 1000 by default): the option before `mi_option_use_numa_nodes` (16) in mimalloc.h,
/// which the binding does not name; `purge_delay_is_mimallocs_option_15` checks it.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // A plan's stages each free 100s of MiB just before the next allocates as much:
    // returned at once, the pages do not add up to a higher peak (BENCHMARKS.md §13). A
    // default: `MIMALLOC_PURGE_DELAY` in the environment still wins.
    #[expect(unsafe_code, reason = "setting an allocator option before any thread starts")]
    unsafe {
        libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, 0);
    }
    std::process::exit(amiwarden::cli::main());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_delay_is_mimallocs_option_15() {
        // Its place before `use_numa_nodes` and its documented default (v3: 1000 ms).
        #[expect(unsafe_code, reason = "reading an allocator option")]
        let delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(delay, 1000);
        assert_eq!(libmimalloc_sys::mi_option_use_numa_nodes - 1, MI_OPTION_PURGE_DELAY);
    }
}
