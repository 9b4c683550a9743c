//! `faqbot bench`: the performance figures in BENCHMARKS.md, measured the
//! same way every time. Latencies are medians and percentiles over many
//! questions; each scale run is a child process so its peak memory is its own.
//! Never used on the answer path.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::engine::Engine;
use crate::eval;
use crate::knowledge::{Entry, KnowledgeBase, LoadStats, Source, Topic};
use crate::model::Semantic;

pub mod targets;

/// Percentiles of a set of durations.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub p50: Duration,
    pub p99: Duration,
}

/// Answers every question once to warm up (first use touches the weights
/// and fills allocator pools), then `rounds` times timed: each reply's time
/// and the replies per second over the timed rounds.
pub fn time_replies(engine: &Engine, questions: &[String], rounds: usize) -> (Vec<Duration>, f64) {
    for question in questions {
        crate::responder::respond(engine, question);
    }
    let mut samples = Vec::with_capacity(questions.len() * rounds);
    let started = Instant::now();
    for _ in 0..rounds {
        for question in questions {
            let asked = Instant::now();
            std::hint::black_box(crate::responder::respond(engine, question));
            samples.push(asked.elapsed());
        }
    }
    let per_second = samples.len() as f64 / started.elapsed().as_secs_f64();
    (samples, per_second)
}

pub fn spread(mut samples: Vec<Duration>) -> Spread {
    samples.sort();
    let at = |share: f64| samples.get(((samples.len() as f64 * share) as usize).min(samples.len().saturating_sub(1)));
    Spread { p50: at(0.5).copied().unwrap_or_default(), p99: at(0.99).copied().unwrap_or_default() }
}

fn median(samples: Vec<Duration>) -> Duration {
    spread(samples).p50
}

fn micros(duration: Duration) -> String {
    format!("{:.1} µs", duration.as_secs_f64() * 1e6)
}

fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

/// Peak resident memory of this process in MiB (Linux), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Runs every benchmark and returns the report as Markdown.
pub fn run(
    knowledge: &Path,
    dev_set: &Path,
    medquad: Option<&Path>,
    scales: &[usize],
    semantic: Option<Semantic>,
) -> anyhow::Result<String> {
    let mut out = String::new();
    let engine = Engine::load_with(knowledge, semantic.clone())?;
    // A forward pass per question makes each round cost seconds, not milliseconds.
    let rounds = if semantic.is_some() { 3 } else { 30 };
    let questions: Vec<String> = eval::read_cases(dev_set)?.into_iter().map(|case| case.text).collect();
    if questions.is_empty() {
        bail!("{} has no questions", dev_set.display());
    }

    eprintln!("bench: index build, shipped knowledge base");
    let builds: Vec<Duration> = (0..30)
        .map(|_| Engine::build(engine.kb.clone(), semantic.clone()).map(|engine| engine.build_time))
        .collect::<anyhow::Result<_>>()?;

    eprintln!("bench: per-question latency over the dev set");
    let (samples, in_process_rate) = time_replies(&engine, &questions, rounds);
    let latency = spread(samples);

    eprintln!("bench: reloads (load, validate, index, self-test, swap)");
    let cell = std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(Engine::load_with(knowledge, semantic.clone())?));
    let reloader = std::sync::Arc::new(crate::admin::Reloader::new(knowledge.to_path_buf(), cell.clone()));
    let mut reloads = Vec::new();
    for _ in 0..10 {
        match reloader.reload() {
            Ok(reloaded) => reloads.push(reloaded.took),
            Err(refused) => bail!("the shipped knowledge base did not reload: {refused}"),
        }
    }
    eprintln!("bench: latency while reloading continuously");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let storm = {
        let (reloader, stop) = (reloader.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut count = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = reloader.reload();
                count += 1;
            }
            count
        })
    };
    let mut during = Vec::new();
    for _ in 0..10 {
        for question in &questions {
            let started = Instant::now();
            std::hint::black_box(crate::responder::respond(&cell.load(), question));
            during.push(started.elapsed());
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reloads_during = storm.join().unwrap_or(0);
    let during_samples = during.len();
    let during = spread(during);

    eprintln!("bench: process start to first answer");
    let exe = std::env::current_exe().context("finding the faqbot binary")?;
    let knowledge_arg = knowledge.to_string_lossy().into_owned();
    let mut starts = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let output = Command::new(&exe)
            .args(["--knowledge", &knowledge_arg, "ask", "--json", "how much does it cost"])
            .output()
            .context("running faqbot ask")?;
        if !output.status.success() {
            bail!("faqbot ask failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        starts.push(started.elapsed());
    }

    eprintln!("bench: ask batch throughput");
    let batch: String = (0..20).flat_map(|_| questions.iter().map(|q| format!("{}\n", q.replace('\n', " ")))).collect();
    let lines = batch.lines().count();
    let started = Instant::now();
    let mut child = Command::new(&exe)
        .args(["--knowledge", &knowledge_arg, "ask", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running faqbot ask")?;
    let mut stdin = child.stdin.take().context("ask's standard input")?;
    let writer = std::thread::spawn(move || stdin.write_all(batch.as_bytes()));
    let answered = BufReader::new(child.stdout.take().context("ask's standard output")?).lines().count();
    let _ = writer.join();
    child.wait().context("waiting for faqbot ask")?;
    let batch_time = started.elapsed();
    if answered != lines {
        bail!("ask answered {answered} of {lines} lines");
    }

    out.push_str("## Shipped knowledge base\n\n| measure | value |\n| --- | --- |\n");
    out.push_str(&format!(
        "| entries | {} ({} phrasings) |\n",
        engine.kb.entries.len(),
        engine.kb.entries.len() + engine.kb.stats.alternates
    ));
    out.push_str(&format!("| index build, median of 30 | {} |\n", millis(median(builds))));
    out.push_str(&format!(
        "| latency per question, {} dev-set questions × {rounds} | p50 {} · p99 {} |\n",
        questions.len(),
        micros(latency.p50),
        micros(latency.p99)
    ));
    out.push_str(&format!("| in-process throughput, one thread | {in_process_rate:.0} questions/s |\n"));
    out.push_str(&format!(
        "| `ask --json` batch of {lines} lines, whole process | {:.0} questions/s ({}) |\n",
        lines as f64 / batch_time.as_secs_f64(),
        millis(batch_time)
    ));
    out.push_str(&format!("| process start to first answer, median of 20 | {} |\n", millis(median(starts))));
    out.push_str(&format!(
        "| reload (load, validate, index, self-test, swap), median of 10 | {} |\n",
        millis(median(reloads))
    ));
    out.push_str(&format!(
        "| latency during continuous reloads ({during_samples} questions, {reloads_during} reloads) | p50 {} · p99 {} |\n",
        micros(during.p50),
        micros(during.p99)
    ));

    if let Some(medquad) = medquad {
        out.push_str("\n## Scale: MedQuAD entries\n\n| entries | build (median of 3) | reload (build + self-test) | latency p50 | latency p99 | peak RSS: serving · during a reload |\n| --- | --- | --- | --- | --- | --- |\n");
        for &entries in scales {
            eprintln!("bench: scale {entries} (child process)");
            let output = Command::new(&exe)
                .args(["--knowledge", &knowledge_arg, "bench-scale", "--medquad"])
                .arg(medquad)
                .args(["--entries", &entries.to_string()])
                .output()
                .context("running the scale benchmark")?;
            if !output.status.success() {
                bail!("scale benchmark failed: {}", String::from_utf8_lossy(&output.stderr));
            }
            out.push_str(String::from_utf8_lossy(&output.stdout).trim_end());
            out.push('\n');
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct MedQuad {
    question: String,
    answer: String,
    #[serde(default)]
    qtype: String,
}

/// Reads the first `limit` pairs of a MedQuAD JSONL file (gzip or plain).
pub fn read_medquad(path: &Path, limit: usize) -> anyhow::Result<Vec<(String, String, String)>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader: Box<dyn BufRead> = if path.extension().is_some_and(|ext| ext == "gz") {
        Box::new(BufReader::new(flate2::read::GzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    let mut pairs = Vec::new();
    for line in reader.lines().take(limit) {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        let pair: MedQuad = serde_json::from_str(&line).with_context(|| format!("parsing {}", path.display()))?;
        pairs.push((pair.question, pair.answer, pair.qtype));
    }
    Ok(pairs)
}

/// A knowledge base of MedQuAD pairs with the shipped messages and synonyms.
pub fn medquad_knowledge(pairs: &[(String, String, String)], shipped: &KnowledgeBase) -> KnowledgeBase {
    let mut topics: Vec<Topic> = Vec::new();
    let entries = pairs
        .iter()
        .enumerate()
        .map(|(index, (question, answer, qtype))| {
            let topic = match topics.iter().position(|topic| &topic.id == qtype) {
                Some(position) => position,
                None => {
                    topics.push(Topic { id: qtype.clone(), title: qtype.clone() });
                    topics.len() - 1
                }
            };
            Entry {
                id: format!("medquad-{index}"),
                topic,
                question: question.clone(),
                alternates: Vec::new(),
                answer: answer.clone(),
                sources: vec!["medquad".to_owned()],
                related: Vec::new(),
                crisis_resources: false,
            }
        })
        .collect();
    KnowledgeBase {
        topics,
        entries,
        sources: vec![Source {
            id: "medquad".to_owned(),
            label: "MedQuAD".to_owned(),
            citation: "Ben Abacha A, Demner-Fushman D. BMC Bioinformatics 2019;20:511.".to_owned(),
            doi: None,
            url: None,
        }],
        messages: shipped.messages.clone(),
        synonyms: shipped.synonyms.clone(),
        exemplars: shipped.exemplars.clone(),
        stats: LoadStats { files: 1, alternates: 0, content_hash: String::from("medquad") },
    }
}

/// One scale run, printed as one Markdown table row: build time, latency
/// over up to 2,000 of the set's own questions, and this process's peak RSS.
pub fn scale(knowledge: &Path, medquad: &Path, entries: usize, semantic: Option<Semantic>) -> anyhow::Result<String> {
    let shipped = crate::knowledge::load(knowledge).with_context(|| format!("loading {}", knowledge.display()))?;
    let pairs = read_medquad(medquad, entries)?;
    let kb = medquad_knowledge(&pairs, &shipped);
    drop(pairs);
    let mut builds = Vec::new();
    for _ in 0..2 {
        // Dropped at once: the peak below is one engine's, as in serving.
        builds.push(Engine::build(kb.clone(), semantic.clone())?.build_time);
    }
    let engine = Engine::build(kb, semantic.clone())?;
    builds.push(engine.build_time);
    let kb = &engine.kb;
    let step = (kb.entries.len() / 2000).max(1);
    let questions: Vec<&str> = kb.entries.iter().step_by(step).map(|entry| entry.question.as_str()).collect();
    let mut samples = Vec::with_capacity(questions.len());
    for question in &questions {
        let started = Instant::now();
        std::hint::black_box(crate::responder::respond(&engine, question));
        samples.push(started.elapsed());
    }
    let latency = spread(samples);
    let serving_rss = peak_rss_mib();
    // What a reload of this size costs: a fresh build plus the self-test,
    // beside the engine in use, as in a real reload.
    let reload_started = Instant::now();
    let rebuilt = Engine::build(kb.clone(), semantic)?;
    let failures = crate::responder::self_test(&rebuilt).len();
    let reload = reload_started.elapsed();
    drop(rebuilt);
    let mib = |value: Option<f64>| value.map_or_else(|| "n/a".to_owned(), |mib| format!("{mib:.0} MiB"));
    let rss = format!("{} · {} during a reload", mib(serving_rss), mib(peak_rss_mib()));
    Ok(format!(
        "| {} | {} | {} ({failures} self-test misses) | {} | {} | {rss} |",
        kb.entries.len(),
        millis(median(builds)),
        millis(reload),
        micros(latency.p50),
        micros(latency.p99)
    ))
}
