//! The `amiwarden` command.

/// mimalloc rather than the system allocator: a large plan is millions of small strings
/// allocated and freed on both cores, where glibc's per-thread arenas cost time and keep
/// memory (docs/design-notes.md, "Contract `amiwarden:policy@0.2.0`"; BENCHMARKS.md §11).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(amiwarden::cli::main());
}
