use std::process::ExitCode;

fn main() -> ExitCode {
    faqbot::cli::main()
}
