//! The command line: parses arguments, runs one command, and maps the outcome
//! to the documented exit codes (0 fine, 1 problems found, 2 could not run).
//!
//! Commands are thin: they load what they need and call into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::knowledge::{self, KnowledgeBase, LoadError};

/// Exit code when the command ran and found problems (or fell below a floor).
pub const EXIT_PROBLEMS: u8 = 1;
/// Exit code when the command could not run at all.
pub const EXIT_FAILURE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "faqbot",
    version,
    about = "Answers questions about ketamine therapy for PTSD from a curated FAQ."
)]
pub struct Cli {
    /// The knowledge directory.
    #[arg(
        long,
        global = true,
        env = "FAQBOT_KNOWLEDGE",
        default_value = "knowledge",
        value_name = "DIR"
    )]
    pub knowledge: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the knowledge directory and list every problem as path:line:col.
    Check,
}

/// Parses the process arguments, runs the command and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("faqbot: error: {error:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Logs go to standard error so that standard output stays machine-readable.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs one parsed command; `Err` means it could not run.
pub fn run(cli: &Cli) -> anyhow::Result<u8> {
    match &cli.command {
        Command::Check => check(&cli.knowledge),
    }
}

fn check(dir: &std::path::Path) -> anyhow::Result<u8> {
    match knowledge::load(dir) {
        Ok(kb) => {
            println!("{}: sound: {}", dir.display(), kb.summary());
            Ok(0)
        }
        Err(LoadError::Invalid(problems)) => {
            for problem in &problems.problems {
                println!("{problem}");
            }
            eprintln!(
                "{}: {} problem(s); nothing was loaded",
                dir.display(),
                problems.problems.len()
            );
            Ok(EXIT_PROBLEMS)
        }
        Err(error @ LoadError::Io { .. }) => Err(error.into()),
    }
}

/// Loads the knowledge base for commands that need a sound one.
pub fn load_knowledge(dir: &std::path::Path) -> anyhow::Result<KnowledgeBase> {
    knowledge::load(dir).with_context(|| format!("loading {}", dir.display()))
}
