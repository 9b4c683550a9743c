//! `faqbot bench --targets`: issue 10's performance targets with the model
//! loaded, each measured in a child process so that its core count, vector
//! cache and peak memory are its own. The per-message figures run pinned to
//! one core (`taskset -c 0`); the MedQuAD build uses every core. It reports;
//! it does not judge beyond printing each target beside its figure.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{median, millis, peak_rss_mib, spread};
use crate::engine::Engine;
use crate::eval;
use crate::model::Semantic;

/// What the parent needs to start its children the same way it was started.
pub struct Setup<'a> {
    pub knowledge: &'a Path,
    pub questions: &'a Path,
    pub medquad: Option<&'a Path>,
    pub model: &'a Path,
    /// Repetitions of each whole-process measurement (medians are reported).
    pub runs: usize,
}

/// Runs every part and returns the report as Markdown.
pub fn run(setup: &Setup) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("finding the faqbot binary")?;
    let cache = tempfile::tempdir().context("creating a vector cache directory")?;
    let child = |pinned: bool, cache: &Path| {
        let mut command = if pinned && taskset_works() {
            let mut command = Command::new("taskset");
            command.args(["-c", "0"]).arg(&exe);
            command
        } else {
            Command::new(&exe)
        };
        command.arg("--knowledge").arg(setup.knowledge).arg("--model").arg(setup.model).arg("--cache").arg(cache);
        command
    };

    eprintln!("bench: per-message latency and reloads on one core");
    let mut parts = Vec::new();
    for run in 0..setup.runs {
        eprintln!("bench:   run {} of {}", run + 1, setup.runs);
        parts.push(figures(
            child(true, cache.path()).args(["bench-part", "latency", "--questions"]).arg(setup.questions),
        )?);
    }
    let pick = |key: &str| -> anyhow::Result<f64> {
        let values: anyhow::Result<Vec<f64>> = parts.iter().map(|part| value(part, key)).collect();
        Ok(median_f64(values?))
    };

    eprintln!("bench: process start to first answer (warm vector cache, {} runs)", setup.runs.max(5));
    let mut starts = Vec::new();
    let mut ask_rss = Vec::new();
    for _ in 0..setup.runs.max(5) {
        let started = Instant::now();
        let output = child(false, cache.path())
            .args(["ask", "--json", "how much does ketamine treatment cost"])
            .output()
            .context("running faqbot ask")?;
        starts.push(started.elapsed());
        if !output.status.success() {
            bail!("faqbot ask failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        ask_rss.push(child_peak_rss_mib(&exe, setup, cache.path()).unwrap_or(f64::NAN));
    }

    let mut out = String::from("## Issue 10 targets, release build\n\n");
    out.push_str(&format!(
        "Machine load (1, 5, 15 min) at the end: {}. Medians of {} runs.\n\n",
        load_average(),
        setup.runs
    ));
    out.push_str("| target | figure |\n| --- | --- |\n");
    let questions = pick("questions")?;
    out.push_str(&format!(
        "| per message, one core, p50 ≤ 5 ms | {:.2} ms ({questions:.0} dev-set questions × {:.0} rounds; forward pass alone p50 {:.2} ms) |\n",
        pick("p50_ms")?,
        pick("rounds")?,
        pick("vectors_p50_ms")?
    ));
    out.push_str(&format!(
        "| per message, one core, p99 ≤ 15 ms | {:.2} ms (forward pass alone p99 {:.2} ms) |\n",
        pick("p99_ms")?,
        pick("vectors_p99_ms")?
    ));
    out.push_str(&format!("| ≥ 150 messages/s per core | {:.0} messages/s |\n", pick("per_second")?));
    out.push_str(&format!(
        "| process start to first answer ≤ 1 s | {} (`faqbot ask`, warm cache) |\n",
        millis(median(starts))
    ));
    out.push_str(&format!(
        "| peak RSS ≤ 300 MB | {:.0} MiB serving the shipped knowledge base through all questions and reloads; {:.0} MiB for `faqbot ask` |\n",
        pick("peak_rss_mib")?,
        median_f64(ask_rss)
    ));
    out.push_str(&format!(
        "| reload of the shipped knowledge base, warm cache, ≤ 100 ms | {:.2} ms unchanged (load, validate, index, vectors, the stored self-test result, swap); after any edit the self-test of {:.0} phrasings runs in full: + {:.0} ms |\n",
        pick("reload_ms")?,
        pick("phrasings")?,
        pick("self_test_ms")?
    ));

    if let Some(medquad) = setup.medquad {
        eprintln!("bench: MedQuAD cold builds (empty cache, every core)");
        let mut colds = Vec::new();
        let mut warms = Vec::new();
        for run in 0..setup.runs {
            eprintln!("bench:   cold run {} of {}", run + 1, setup.runs);
            let fresh = tempfile::tempdir().context("creating a vector cache directory")?;
            let medquad_part = |cache: &Path| -> anyhow::Result<BTreeMap<String, String>> {
                figures(child(false, cache).args(["bench-part", "medquad", "--medquad"]).arg(medquad))
            };
            colds.push(medquad_part(fresh.path())?);
            eprintln!("bench:   warm run {} of {}", run + 1, setup.runs);
            warms.push(medquad_part(fresh.path())?);
        }
        let pick = |parts: &[BTreeMap<String, String>], key: &str| -> anyhow::Result<f64> {
            let values: anyhow::Result<Vec<f64>> = parts.iter().map(|part| value(part, key)).collect();
            Ok(median_f64(values?))
        };
        out.push_str(&format!(
            "| {:.0} MedQuAD entries: cold build ≤ 60 s on 2 cores | {:.1} s ({:.0} phrasings embedded; peak RSS {:.0} MiB) |\n",
            pick(&colds, "entries")?,
            pick(&colds, "build_ms")? / 1e3,
            pick(&colds, "embedded")?,
            pick(&colds, "peak_rss_mib")?
        ));
        out.push_str(&format!(
            "| MedQuAD warm reload ≤ 5 s | {:.2} s unchanged: build from the cache {:.2} s ({:.0} embedded) + the stored self-test result {:.0} ms; after any edit the self-test runs in full: + {:.2} s ({:.0} misses); peak RSS {:.0} MiB |\n",
            (pick(&warms, "build_ms")? + pick(&warms, "reuse_ms")?) / 1e3,
            pick(&warms, "build_ms")? / 1e3,
            pick(&warms, "embedded")?,
            pick(&warms, "reuse_ms")?,
            pick(&warms, "self_test_ms")? / 1e3,
            pick(&warms, "misses")?,
            pick(&warms, "peak_rss_mib")?
        ));
    }
    Ok(out)
}

/// The per-message figures on the shipped knowledge base, printed as
/// `key=value` lines for the parent. Run pinned to one core.
pub fn latency(knowledge: &Path, questions: &Path, semantic: Semantic) -> anyhow::Result<String> {
    let engine = Engine::load_with(knowledge, Some(semantic)).context("building the engine with the model")?;
    let questions: Vec<String> = eval::read_cases(questions)?.into_iter().map(|case| case.text).collect();
    if questions.is_empty() {
        bail!("the question set is empty");
    }
    let rounds = 3;
    let (samples, per_second) = super::time_replies(&engine, &questions, rounds);
    let latency = spread(samples);
    // The model's share of a message: preparing its `Question` (every vector
    // it needs, in one batch) without screening or deciding.
    let vectors: Vec<Duration> = questions
        .iter()
        .map(|question| {
            let asked = Instant::now();
            std::hint::black_box(crate::question::Question::new(
                question,
                &[],
                engine.semantic.as_ref().map(|(semantic, _)| semantic),
            ));
            asked.elapsed()
        })
        .collect();
    let vectors = spread(vectors);

    let cell = std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(engine));
    let reloader = crate::admin::Reloader::new(knowledge.to_path_buf(), cell.clone());
    let mut reloads = Vec::new();
    for _ in 0..10 {
        match reloader.reload() {
            // A first reload in an empty cache runs the self-test in full:
            // it is the edited case, timed below.
            Ok(reloaded) if reloaded.self_test_reused => reloads.push(reloaded.took),
            Ok(_) => {}
            Err(refused) => bail!("the shipped knowledge base did not reload: {refused}"),
        }
    }
    if reloads.is_empty() {
        bail!("no reload found its stored self-test result: is the cache directory writable?");
    }
    let engine = cell.load();
    // What a reload after any edit adds: the self-test in full.
    let self_tests: Vec<Duration> = (0..3)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(crate::responder::self_test(&engine));
            started.elapsed()
        })
        .collect();
    let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
    Ok([
        ("questions", questions.len() as f64),
        ("rounds", rounds as f64),
        ("p50_ms", ms(latency.p50)),
        ("p99_ms", ms(latency.p99)),
        ("per_second", per_second),
        ("vectors_p50_ms", ms(vectors.p50)),
        ("vectors_p99_ms", ms(vectors.p99)),
        ("reload_ms", ms(median(reloads))),
        ("self_test_ms", ms(median(self_tests))),
        ("phrasings", (engine.kb.entries.len() + engine.kb.stats.alternates) as f64),
        ("peak_rss_mib", peak_rss_mib().unwrap_or(f64::NAN)),
    ]
    .iter()
    .map(|(key, value)| format!("{key}={value}\n"))
    .collect())
}

/// One MedQuAD build through the given cache (cold when it is empty), then
/// the self-test a reload would run, as `key=value` lines.
pub fn medquad(knowledge: &Path, medquad: &Path, semantic: Semantic) -> anyhow::Result<String> {
    let shipped = crate::knowledge::load(knowledge).with_context(|| format!("loading {}", knowledge.display()))?;
    let pairs = super::read_medquad(medquad, usize::MAX)?;
    let kb = super::medquad_knowledge(&pairs, &shipped);
    drop(pairs);
    let started = Instant::now();
    let engine = Engine::build(kb, Some(semantic)).context("building the MedQuAD engine")?;
    let build = started.elapsed();
    let embedded = engine.semantic.as_ref().map_or(0, |(_, dense)| dense.embedded);
    let started = Instant::now();
    let misses = crate::self_test::run(&engine).len();
    let self_test = started.elapsed();
    // A warm run finds the result the cold run kept; so does this one.
    let started = Instant::now();
    let stored = crate::self_test::reuse_or_run(&engine);
    let reuse = started.elapsed();
    if !stored.reused {
        bail!("the self-test result just kept was not found again");
    }
    let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
    Ok([
        ("entries", engine.kb.entries.len() as f64),
        ("build_ms", ms(build)),
        ("embedded", embedded as f64),
        ("self_test_ms", ms(self_test)),
        ("reuse_ms", ms(reuse)),
        ("misses", misses as f64),
        ("peak_rss_mib", peak_rss_mib().unwrap_or(f64::NAN)),
    ]
    .iter()
    .map(|(key, value)| format!("{key}={value}\n"))
    .collect())
}

/// Runs a child and reads its `key=value` lines.
fn figures(command: &mut Command) -> anyhow::Result<BTreeMap<String, String>> {
    let output = command.output().with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!("{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect())
}

fn value(figures: &BTreeMap<String, String>, key: &str) -> anyhow::Result<f64> {
    let text = figures.get(key).with_context(|| format!("the child reported no `{key}`"))?;
    text.parse().with_context(|| format!("`{key}={text}` is not a number"))
}

fn median_f64(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Whether `taskset` is there to pin a child to one core.
fn taskset_works() -> bool {
    Command::new("taskset").args(["-c", "0", "true"]).output().is_ok_and(|output| output.status.success())
}

/// Peak RSS of one `faqbot ask` as `/usr/bin/time -v` reports it, when that tool exists.
fn child_peak_rss_mib(exe: &Path, setup: &Setup, cache: &Path) -> Option<f64> {
    let output = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(exe)
        .arg("--knowledge")
        .arg(setup.knowledge)
        .arg("--model")
        .arg(setup.model)
        .arg("--cache")
        .arg(cache)
        .args(["ask", "--json", "how much does ketamine treatment cost"])
        .output()
        .ok()?;
    let report = String::from_utf8_lossy(&output.stderr);
    let line = report.lines().find(|line| line.trim_start().starts_with("Maximum resident set size"))?;
    let kib: f64 = line.rsplit(':').next()?.trim().parse().ok()?;
    Some(kib / 1024.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|_| "unknown".to_owned())
}
