//! Writing entries, topics and sources as knowledge TOML, laid out the way a
//! curator would write them by hand (answers as multi-line strings), so the
//! import's output is a starting point worth editing.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::knowledge::{Entry, Source, Topic};

/// The files of a knowledge directory (relative paths and contents):
/// `faq/NN-<topic>.toml` per topic, in order, and `sources.toml`.
pub(super) fn files(topics: &[Topic], entries: &[Entry], sources: &[Source], origin: &str) -> Vec<(PathBuf, String)> {
    let width = topics.len().saturating_sub(1).to_string().len().max(2);
    let mut files = Vec::with_capacity(topics.len() + 1);
    for (index, topic) in topics.iter().enumerate() {
        let members: Vec<&Entry> = entries.iter().filter(|entry| entry.topic == index).collect();
        if members.is_empty() {
            continue;
        }
        let mut text = format!("# Imported from {origin} by `faqbot import`; review, then run `faqbot check`.\n\n");
        let _ = write!(text, "[topic]\nid = {}\ntitle = {}\n", basic(&topic.id), basic(&topic.title));
        for entry in members {
            text.push('\n');
            entry_toml(&mut text, entry);
        }
        files.push((PathBuf::from("faq").join(format!("{index:0width$}-{}.toml", topic.id)), text));
    }
    let mut text = format!("# Imported from {origin} by `faqbot import`: check every reference before use.\n");
    for source in sources {
        let _ = write!(
            text,
            "\n[[source]]\nid = {}\nlabel = {}\ncitation = {}\n",
            basic(&source.id),
            basic(&source.label),
            basic(&source.citation)
        );
        if let Some(doi) = &source.doi {
            let _ = writeln!(text, "doi = {}", basic(doi));
        }
        if let Some(url) = &source.url {
            let _ = writeln!(text, "url = {}", basic(url));
        }
    }
    files.push((PathBuf::from("sources.toml"), text));
    files
}

fn entry_toml(text: &mut String, entry: &Entry) {
    let _ = write!(text, "[[entry]]\nid = {}\nquestion = {}\n", basic(&entry.id), basic(&entry.question));
    if entry.alternates.is_empty() {
        text.push_str("alternates = []\n");
    } else {
        text.push_str("alternates = [\n");
        for alternate in &entry.alternates {
            let _ = writeln!(text, "  {},", basic(alternate));
        }
        text.push_str("]\n");
    }
    let _ = writeln!(text, "answer = {}", multi_line(&entry.answer));
    let _ = writeln!(text, "sources = {}", list(&entry.sources));
    if !entry.related.is_empty() {
        let _ = writeln!(text, "related = {}", list(&entry.related));
    }
    if entry.crisis_resources {
        text.push_str("crisis_resources = true\n");
    }
}

fn list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|item| basic(item)).collect();
    format!("[{}]", items.join(", "))
}

/// A TOML basic string: `"..."` with every quote, backslash and control
/// character escaped.
pub(crate) fn basic(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            ch if ch.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(ch));
            }
            ch => out.push(ch),
        }
    }
    out.push('"');
    out
}

/// A TOML multi-line basic string starting on its own line. Line breaks and
/// tabs stay as they are; a quote is escaped only where it could end the
/// string (next to another quote, or last).
pub(super) fn multi_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str("\"\"\"\n");
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '"' if matches!(chars.peek(), None | Some('"')) => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' | '\t' => out.push(ch),
            ch if ch.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(ch));
            }
            ch => out.push(ch),
        }
    }
    out.push_str("\"\"\"");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the text, TOML reads back exactly that text.
    #[test]
    fn strings_read_back_as_written() {
        let samples = [
            "plain",
            "quote \" inside",
            "two \"\" quotes and three \"\"\" quotes",
            "ends with a quote\"",
            "back\\slash \\n not a newline",
            "line\nbreak\tand tab\r\nand CR",
            "bell \u{7} and é and emoji 🙂",
            "\"",
            "",
        ];
        for sample in samples {
            for (written, kind) in [(basic(sample), "basic"), (multi_line(sample), "multi-line")] {
                let document = format!("value = {written}\n");
                let table: toml::Table =
                    toml::from_str(&document).unwrap_or_else(|error| panic!("{kind} {sample:?}: {error}\n{document}"));
                assert_eq!(table.get("value").and_then(|value| value.as_str()), Some(sample), "{kind}: {document}");
            }
        }
    }
}
