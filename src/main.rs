use std::process::ExitCode;

fn main() -> ExitCode {
    impact_in::cli::main()
}
