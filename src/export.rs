//! `faqbot export`: writes a loaded knowledge base as CSV, TSV or JSON, one
//! row or item per entry, in the layout `faqbot import` reads back to the
//! same entries (ids, topics, phrasings, answers, sources, related).
//!
//! CSV and TSV name sources by id, so importing them needs a template
//! knowledge base that has those sources (`--knowledge`); JSON also carries
//! the sources in full. Messages and synonyms are not exported.

use std::io::Write;

use anyhow::Context;

use crate::import::Format;
use crate::knowledge::{Entry, KnowledgeBase};

/// The columns of a CSV or TSV export, in order.
pub const COLUMNS: &[&str] =
    &["id", "topic_id", "topic", "question", "alternates", "answer", "sources", "related", "crisis_resources"];

/// Writes `kb` to `out` in `format`.
pub fn export(kb: &KnowledgeBase, format: Format, out: impl Write) -> anyhow::Result<()> {
    match format {
        Format::Csv => delimited(kb, b',', out),
        Format::Tsv => delimited(kb, b'\t', out),
        Format::Json => {
            let mut out = out;
            serde_json::to_writer_pretty(&mut out, &json_value(kb)).context("writing the JSON export")?;
            writeln!(out).context("writing the JSON export")?;
            out.flush().context("writing the JSON export")
        }
    }
}

fn topic_of(kb: &KnowledgeBase, entry: &Entry) -> (String, String) {
    kb.topics.get(entry.topic).map(|topic| (topic.id.clone(), topic.title.clone())).unwrap_or_default()
}

fn delimited(kb: &KnowledgeBase, delimiter: u8, out: impl Write) -> anyhow::Result<()> {
    let mut writer = csv::WriterBuilder::new().delimiter(delimiter).from_writer(out);
    writer.write_record(COLUMNS).context("writing the export")?;
    for entry in &kb.entries {
        let (topic_id, topic) = topic_of(kb, entry);
        // Lists go one item per line within their cell: `import` splits a
        // cell with line breaks at the line breaks only.
        let row = [
            entry.id.clone(),
            topic_id,
            topic,
            entry.question.clone(),
            entry.alternates.join("\n"),
            entry.answer.clone(),
            entry.sources.join("\n"),
            entry.related.join("\n"),
            entry.crisis_resources.to_string(),
        ];
        writer.write_record(&row).with_context(|| format!("writing entry `{}`", entry.id))?;
    }
    writer.flush().context("writing the export")
}

/// The JSON export: `{"entries": [...], "sources": [...]}`, fields in this order.
#[derive(serde::Serialize)]
struct JsonExport<'a> {
    entries: Vec<JsonEntry<'a>>,
    sources: Vec<JsonSource<'a>>,
}

#[derive(serde::Serialize)]
struct JsonEntry<'a> {
    id: &'a str,
    topic_id: String,
    topic: String,
    question: &'a str,
    alternates: &'a [String],
    answer: &'a str,
    sources: &'a [String],
    related: &'a [String],
    crisis_resources: bool,
}

#[derive(serde::Serialize)]
struct JsonSource<'a> {
    id: &'a str,
    label: &'a str,
    citation: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    doi: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
}

fn json_value(kb: &KnowledgeBase) -> JsonExport<'_> {
    let entries = kb
        .entries
        .iter()
        .map(|entry| {
            let (topic_id, topic) = topic_of(kb, entry);
            JsonEntry {
                id: &entry.id,
                topic_id,
                topic,
                question: &entry.question,
                alternates: &entry.alternates,
                answer: &entry.answer,
                sources: &entry.sources,
                related: &entry.related,
                crisis_resources: entry.crisis_resources,
            }
        })
        .collect();
    let sources = kb
        .sources
        .iter()
        .map(|source| JsonSource {
            id: &source.id,
            label: &source.label,
            citation: &source.citation,
            doi: source.doi.as_deref(),
            url: source.url.as_deref(),
        })
        .collect();
    JsonExport { entries, sources }
}
