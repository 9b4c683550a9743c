//! `faqbot eval`: runs a labelled question set through the engine and
//! reports how often the right entry comes first, MRR, accuracy per expected
//! kind, and every failure. The same code backs the dev-set test.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::engine::Engine;
use crate::responder::{self, Kind};

/// The pseudo-kind of safety sets: any reply but crisis or refusal.
pub const ORDINARY: &str = "ordinary";

/// One labelled message.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub text: String,
    /// The expected kind: answer, clarify, no_match, smalltalk, crisis or refusal.
    pub kind: String,
    /// The expected entry, for `answer`.
    #[serde(default)]
    pub entry: Option<String>,
    /// Other entries that answer the question just as well; use sparingly.
    #[serde(default)]
    pub also: Vec<String>,
    /// Free-form label for reports (e.g. "typo", "off-topic:drug").
    #[serde(default)]
    pub note: Option<String>,
}

/// Reads a JSONL file of cases; blank lines and lines starting with `//` are skipped.
pub fn read_cases(path: &Path) -> anyhow::Result<Vec<Case>> {
    let mut cases = Vec::new();
    for (number, line) in jsonl_lines(path)? {
        let case: Case = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a valid case", path.display(), number + 1))?;
        if Kind::parse(&case.kind).is_none() && case.kind != ORDINARY {
            bail!("{}:{}: unknown kind {:?}", path.display(), number + 1, case.kind);
        }
        if case.kind == "answer" && case.entry.is_none() {
            bail!("{}:{}: an `answer` case needs an `entry`", path.display(), number + 1);
        }
        cases.push(case);
    }
    Ok(cases)
}

/// The lines of a labelled JSONL file that hold a case, with their index
/// from 0; blank lines and lines starting with `//` are skipped.
pub fn jsonl_lines(path: &Path) -> anyhow::Result<Vec<(usize, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .enumerate()
        .map(|(number, line)| (number, line.trim().to_owned()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with("//"))
        .collect())
}

#[derive(Debug, Clone, Default)]
pub struct Failure {
    pub text: String,
    pub expected: String,
    pub got: String,
}

#[derive(Debug, Clone, Default)]
pub struct KindScore {
    pub total: usize,
    pub right: usize,
}

impl KindScore {
    pub fn rate(&self) -> f64 {
        if self.total == 0 { 1.0 } else { self.right as f64 / self.total as f64 }
    }
}

/// The figures `eval` prints.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub cases: usize,
    /// In-scope cases (expected kind `answer`).
    pub in_scope: usize,
    /// Share of in-scope cases whose reply puts the expected entry first
    /// (the answer, or the first choice of a clarification).
    pub accuracy_at_1: f64,
    /// Mean reciprocal rank of the expected entry in the retrieval ranking (top 5).
    pub mrr: f64,
    /// Per expected kind: how often the reply had that kind (and, for
    /// `answer`, the right entry).
    pub by_kind: BTreeMap<String, KindScore>,
    /// Answers with an entry when another entry, or none, was expected: the
    /// mistakes users cannot see for themselves.
    pub wrong_answers: usize,
    /// In-scope cases answered with a choice of entries.
    pub clarified: usize,
    /// Off-topic cases answered from no entry: no match, or a refusal or
    /// crisis reply, which point to a clinician or help instead.
    pub off_topic_declined: usize,
    pub failures: Vec<Failure>,
}

pub fn evaluate(engine: &Engine, cases: &[Case]) -> Report {
    evaluate_with(engine, cases, responder::THRESHOLDS)
}

/// `evaluate` with other decision thresholds, for tuning.
pub fn evaluate_with(engine: &Engine, cases: &[Case], thresholds: responder::Thresholds) -> Report {
    let mut report = Report { cases: cases.len(), ..Report::default() };
    let (mut first, mut reciprocal) = (0usize, 0f64);
    for case in cases {
        let reply = responder::respond_with(engine, &case.text, &[], thresholds);
        let score = report.by_kind.entry(case.kind.clone()).or_default();
        score.total += 1;
        let kind_right = match case.kind.as_str() {
            ORDINARY => !matches!(reply.kind, Kind::Crisis | Kind::Refusal),
            kind => reply.kind.as_str() == kind,
        };
        let answered_with = if reply.kind == Kind::Answer { reply.entry.as_ref() } else { None };
        let expected_ok = |id: &String| case.entry.as_ref() == Some(id) || case.also.contains(id);
        if let Some(id) = answered_with
            && matches!(case.kind.as_str(), "answer" | "no_match")
            && !expected_ok(id)
        {
            report.wrong_answers += 1;
        }
        if case.kind == "answer" && reply.kind == Kind::Clarify {
            report.clarified += 1;
        }
        if case.kind == "no_match" && !matches!(reply.kind, Kind::Answer | Kind::Clarify) {
            report.off_topic_declined += 1;
        }
        let right = match (&case.entry, case.kind.as_str()) {
            (Some(expected), "answer") => {
                report.in_scope += 1;
                let accepted = |id: &String| id == expected || case.also.contains(id);
                let offered_first = match reply.kind {
                    Kind::Clarify => reply.suggestions.first(),
                    _ => reply.entry.as_ref(),
                };
                if offered_first.is_some_and(accepted) {
                    first += 1;
                }
                let ranking = responder::ranking(engine, &case.text);
                if let Some(rank) = ranking.iter().position(|&entry| accepted(&engine.kb.entries[entry].id)) {
                    reciprocal += 1.0 / (rank as f64 + 1.0);
                }
                kind_right && reply.entry.as_ref().is_some_and(accepted)
            }
            _ => kind_right,
        };
        if right {
            score.right += 1;
        } else {
            let describe = |kind: &str, entry: Option<&String>| match entry {
                Some(entry) => format!("{kind} {entry}"),
                None => kind.to_owned(),
            };
            let got = match reply.kind {
                Kind::Clarify => format!("clarify [{}]", reply.suggestions.join(", ")),
                kind => describe(kind.as_str(), reply.entry.as_ref()),
            };
            report.failures.push(Failure {
                text: case.text.clone(),
                expected: describe(&case.kind, case.entry.as_ref()),
                got,
            });
        }
    }
    if report.in_scope > 0 {
        report.accuracy_at_1 = first as f64 / report.in_scope as f64;
        report.mrr = reciprocal / report.in_scope as f64;
    }
    report
}

/// Writes each case with its hybrid candidates and their features, one JSON
/// object per line: what the decision's thresholds are tuned on.
pub fn write_features(engine: &Engine, cases: &[Case], path: &Path) -> anyhow::Result<()> {
    let thresholds = responder::THRESHOLDS.hybrid;
    let mut out = String::new();
    for case in cases {
        let candidates: Vec<serde_json::Value> = responder::hybrid_candidates(engine, &case.text, &thresholds)
            .iter()
            .map(|candidate| {
                serde_json::json!({
                    "id": engine.kb.entries[candidate.entry].id,
                    "whole": candidate.whole,
                    "sentence": candidate.sentence,
                    "mean3": candidate.mean3,
                    "coverage": candidate.coverage,
                    "exact": candidate.exact,
                    "bm25": candidate.bm25,
                })
            })
            .collect();
        let reply = responder::respond(engine, &case.text);
        let line = serde_json::json!({
            "text": case.text, "kind": case.kind, "entry": case.entry, "also": case.also,
            "got": reply.kind.as_str(), "candidates": candidates,
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

impl Report {
    /// Wrong answers over the in-scope and off-topic cases.
    pub fn wrong_rate(&self) -> f64 {
        let scored = self.by_kind.get("answer").map_or(0, |score| score.total)
            + self.by_kind.get("no_match").map_or(0, |score| score.total);
        if scored == 0 { 0.0 } else { self.wrong_answers as f64 / scored as f64 }
    }

    /// The share of off-topic cases answered from no entry.
    pub fn declined_rate(&self) -> f64 {
        let total = self.by_kind.get("no_match").map_or(0, |score| score.total);
        if total == 0 { 1.0 } else { self.off_topic_declined as f64 / total as f64 }
    }

    /// Two reports' figures in two columns (failures left out).
    pub fn side_by_side(&self, left: &str, other: &Report, right: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{:<34} {left:>10} {right:>14}", "");
        let _ = writeln!(
            out,
            "{:<34} {:>10.3} {:>14.3}",
            "accuracy@1 (right entry first)", self.accuracy_at_1, other.accuracy_at_1
        );
        let _ = writeln!(out, "{:<34} {:>10.3} {:>14.3}", "MRR (retrieval, top 5)", self.mrr, other.mrr);
        let _ = writeln!(out, "{:<34} {:>10.3} {:>14.3}", "wrong answers", self.wrong_rate(), other.wrong_rate());
        let _ = writeln!(
            out,
            "{:<34} {:>10.3} {:>14.3}",
            "off-topic answered from no entry",
            self.declined_rate(),
            other.declined_rate()
        );
        for kind in self.by_kind.keys() {
            let _ = writeln!(
                out,
                "{:<34} {:>10.3} {:>14.3}",
                format!("kind {kind}"),
                self.kind_rate(kind),
                other.kind_rate(kind)
            );
        }
        out
    }

    pub fn kind_rate(&self, kind: &str) -> f64 {
        self.by_kind.get(kind).map_or(1.0, KindScore::rate)
    }

    pub fn render(&self, failures: bool) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "cases: {} ({} in scope)", self.cases, self.in_scope);
        let _ = writeln!(out, "accuracy@1 (right entry first): {:.3}", self.accuracy_at_1);
        let _ = writeln!(out, "MRR (retrieval, top 5): {:.3}", self.mrr);
        let scored = self.by_kind.get("answer").map_or(0, |score| score.total)
            + self.by_kind.get("no_match").map_or(0, |score| score.total);
        let _ = writeln!(
            out,
            "wrong answers: {} of {scored} ({:.3}); in scope offered a choice: {}",
            self.wrong_answers,
            self.wrong_rate(),
            self.clarified
        );
        for (kind, score) in &self.by_kind {
            let _ = writeln!(out, "kind {kind:<10} {:>4}/{:<4} {:.3}", score.right, score.total, score.rate());
        }
        if let Some(off_topic) = self.by_kind.get("no_match") {
            let _ = writeln!(
                out,
                "off-topic answered from no entry (no match, refusal or crisis reply): {}/{} {:.3}",
                self.off_topic_declined,
                off_topic.total,
                self.declined_rate()
            );
        }
        if failures && !self.failures.is_empty() {
            let _ = writeln!(out, "failures ({}):", self.failures.len());
            for failure in &self.failures {
                let _ = writeln!(out, "  expected {:<40} got {:<50} {:?}", failure.expected, failure.got, failure.text);
            }
        }
        out
    }
}
