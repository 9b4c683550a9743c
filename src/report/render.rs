//! The plain-text layout of grouped unanswered questions: in full for
//! `faqbot report`, within one Telegram message for `/unanswered`.

use std::fmt::Write as _;

use super::{Group, Grouping, Method};
use crate::text::telegram_len;

/// Examples longer than this are cut in listings.
const EXAMPLE_CHARS: usize = 120;
/// Other phrasings shown under a group in the full listing.
const OTHER_PHRASINGS: usize = 3;

/// Every group, most frequent first, with a few of its other phrasings.
pub fn render(grouping: &Grouping) -> String {
    let mut out = header(grouping);
    for group in &grouping.groups {
        out.push('\n');
        out.push_str(&line(group, grouping.method));
        for other in group.members.iter().filter(|asked| asked.text != group.example).take(OTHER_PHRASINGS) {
            let _ = write!(out, "\n         also: {}× {}", other.count, shorten(&other.text));
        }
        let more = group.members.len().saturating_sub(OTHER_PHRASINGS + 1);
        if more > 0 {
            let _ = write!(out, "\n         and {more} more phrasing(s)");
        }
    }
    out.push_str(&footer(grouping));
    out
}

/// One line per group, as many as fit in `limit` UTF-16 units (Telegram's
/// measure), then how many were left out.
pub fn render_bounded(grouping: &Grouping, limit: usize) -> String {
    let mut out = header(grouping);
    let footer = footer(grouping);
    // Room for the "more groups" line, which is at most this long.
    let reserve = telegram_len(&footer) + 80;
    for (shown, group) in grouping.groups.iter().enumerate() {
        let next = format!("\n{}", line(group, grouping.method));
        if telegram_len(&out) + telegram_len(&next) + reserve > limit {
            let left = grouping.groups.len() - shown;
            let _ = write!(out, "\n… and {left} more group(s): `faqbot report` lists them all.");
            break;
        }
        out.push_str(&next);
    }
    out.push_str(&footer);
    out
}

fn header(grouping: &Grouping) -> String {
    let days = grouping.days;
    if grouping.groups.is_empty() {
        return format!("No unanswered questions in the last {days} day(s).");
    }
    let how = match grouping.method {
        Method::Meaning => "grouped by meaning",
        Method::Text => {
            "grouped by exact text only (no embedding model: questions worded differently are listed apart)"
        }
    };
    format!(
        "Unanswered questions, last {days} day(s): {} asked, {} group(s), {how}, most frequent first:",
        grouping.questions,
        grouping.groups.len()
    )
}

fn line(group: &Group, method: Method) -> String {
    let mut out = if group.members.len() > 1 {
        format!("{:>4} similar, e.g. “{}”", group.count, shorten(&group.example))
    } else {
        format!("{:>4}× {}", group.count, shorten(&group.example))
    };
    if let Some(nearest) = &group.nearest {
        let score = match method {
            Method::Meaning => format!("{:.2}", nearest.score),
            Method::Text => format!("covers {:.0}% of the words", nearest.score * 100.0),
        };
        let _ = write!(out, " — nearest entry: {}, {score}, 👎 {}", nearest.entry, nearest.dislikes);
    }
    out
}

fn footer(grouping: &Grouping) -> String {
    let mut out = String::new();
    if grouping.not_grouped > 0 {
        let _ = write!(
            out,
            "\n{} less frequent distinct question(s) were not grouped (at most {} are).",
            grouping.not_grouped,
            super::MAX_GROUPED
        );
    }
    if grouping.screened_out > 0 {
        let _ = write!(
            out,
            "\n{} stored question(s) left out: the safety screen reads them as a crisis.",
            grouping.screened_out
        );
    }
    out
}

/// `text` on one line, cut to `EXAMPLE_CHARS` characters with an ellipsis.
fn shorten(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= EXAMPLE_CHARS {
        return one_line;
    }
    let cut: String = one_line.chars().take(EXAMPLE_CHARS - 1).collect();
    format!("{}…", cut.trim_end())
}
