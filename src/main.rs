fn main() {
    std::process::exit(e2e_plan::cli::main());
}
