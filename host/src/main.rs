//! The `amiwarden` command.

fn main() {
    std::process::exit(amiwarden::cli::main());
}
