//! Turns replies into Telegram messages: HTML with every user- and
//! file-supplied string escaped, split at paragraph breaks to fit 4096
//! characters (never inside an entity), and the inline keyboards.

use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};
use teloxide::utils::html::escape;

use crate::knowledge::KnowledgeBase;
use crate::reply::{Kind, Reply, Style, layout};
use crate::text::telegram_len;

/// Telegram's limit on one message, in UTF-16 code units.
pub const LIMIT: usize = 4096;
/// Telegram's limit on callback data, in bytes.
pub const CALLBACK_LIMIT: usize = 64;
/// Longer button labels are cut: Telegram shows little of them anyway.
const LABEL_CHARS: usize = 60;

/// One or more HTML messages and the keyboard for the last of them.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub chunks: Vec<String>,
    pub keyboard: Option<InlineKeyboardMarkup>,
}

/// Callback data: what a button does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Show an entry's answer.
    Entry(String),
    /// 👍 (true) or 👎 (false) for an entry.
    Feedback(bool, String),
    /// Show the questions of a topic.
    Topic(String),
    /// Show the list of topics.
    Topics,
}

impl Action {
    pub fn encode(&self) -> String {
        match self {
            Action::Entry(id) => format!("e:{id}"),
            Action::Feedback(true, id) => format!("f+:{id}"),
            Action::Feedback(false, id) => format!("f-:{id}"),
            Action::Topic(id) => format!("t:{id}"),
            Action::Topics => "topics".to_owned(),
        }
    }

    pub fn decode(data: &str) -> Option<Action> {
        if data == "topics" {
            return Some(Action::Topics);
        }
        let (tag, id) = data.split_once(':')?;
        let id = id.to_owned();
        match tag {
            "e" => Some(Action::Entry(id)),
            "f+" => Some(Action::Feedback(true, id)),
            "f-" => Some(Action::Feedback(false, id)),
            "t" => Some(Action::Topic(id)),
            _ => None,
        }
    }
}

/// A button, or `None` if its data would not fit Telegram's limit.
pub fn button(label: &str, action: &Action) -> Option<InlineKeyboardButton> {
    let data = action.encode();
    if data.len() > CALLBACK_LIMIT {
        return None;
    }
    let label: String = if label.chars().count() > LABEL_CHARS {
        label.chars().take(LABEL_CHARS - 1).chain(std::iter::once('…')).collect()
    } else {
        label.to_owned()
    };
    Some(InlineKeyboardButton::callback(label, data))
}

/// One button per row for each entry id that exists.
fn entry_rows(ids: &[String], kb: &KnowledgeBase) -> Vec<Vec<InlineKeyboardButton>> {
    ids.iter()
        .filter_map(|id| kb.entry(id))
        .filter_map(|entry| button(&entry.question, &Action::Entry(entry.id.clone())))
        .map(|button| vec![button])
        .collect()
}

/// One button per row for each topic.
pub fn topic_rows(kb: &KnowledgeBase) -> Vec<Vec<InlineKeyboardButton>> {
    kb.topics
        .iter()
        .filter_map(|topic| button(&topic.title, &Action::Topic(topic.id.clone())))
        .map(|b| vec![b])
        .collect()
}

/// The keyboard for a reply: related questions and 👍/👎 under an answer, the
/// candidates of a clarification or refusal, topics under no answer, and
/// nothing under a crisis reply or small talk.
pub fn keyboard(reply: &Reply, kb: &KnowledgeBase) -> Option<InlineKeyboardMarkup> {
    let rows = match reply.kind {
        Kind::Answer => {
            let mut rows = entry_rows(&reply.suggestions, kb);
            if let Some(id) = &reply.entry {
                let feedback: Vec<InlineKeyboardButton> = [("👍", true), ("👎", false)]
                    .into_iter()
                    .filter_map(|(label, up)| button(label, &Action::Feedback(up, id.clone())))
                    .collect();
                rows.push(feedback);
            }
            rows
        }
        Kind::Clarify | Kind::Refusal => entry_rows(&reply.suggestions, kb),
        Kind::NoMatch => topic_rows(kb),
        Kind::Crisis | Kind::Smalltalk => Vec::new(),
    };
    let rows: Vec<_> = rows.into_iter().filter(|row| !row.is_empty()).collect();
    (!rows.is_empty()).then(|| InlineKeyboardMarkup::new(rows))
}

/// The messages for a reply, laid out as `reply::layout` orders it (an
/// answer's question bold, the clinician note last and italic).
pub fn reply(reply: &Reply, kb: &KnowledgeBase) -> Outgoing {
    Outgoing { chunks: chunks(&layout(reply, &kb.messages)), keyboard: keyboard(reply, kb) }
}

/// Plain text with the clinician note in italics: for command replies.
pub fn with_note(text: &str, kb: &KnowledgeBase) -> Vec<String> {
    let mut paragraphs: Vec<(String, Style)> = text.split("\n\n").map(|p| (p.to_owned(), Style::Plain)).collect();
    paragraphs.push((kb.messages.clinician_note.clone(), Style::Italic));
    chunks(&paragraphs)
}

/// The reference list (`/sources`): each full citation, linked where it
/// has a DOI or URL, and the clinician note.
pub fn sources_list(kb: &KnowledgeBase) -> Vec<String> {
    let mut lines = vec![format!("<b>{}</b>", escape(&kb.messages.sources_label))];
    for source in &kb.sources {
        let line = match source.link() {
            Some(link) => format!("• <a href=\"{}\">{}</a>", escape(&link), escape(&source.citation)),
            None => format!("• {}", escape(&source.citation)),
        };
        lines.push(line);
    }
    lines.push(format!("<i>{}</i>", escape(&kb.messages.clinician_note)));
    // One message in practice; split by lines if a long list ever needs it.
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in lines {
        if !current.is_empty() && telegram_len(&current) + telegram_len(&line) + 2 > 3800 {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push_str("\n\n");
        }
        current.push_str(&line);
    }
    out.push(current);
    out
}

/// A menu's heading with the clinician note under it, as one message.
pub fn menu_text(heading: &str, style: Style, kb: &KnowledgeBase) -> String {
    format!("{}\n\n{}", html(heading, style), html(&kb.messages.clinician_note, Style::Italic))
}

/// A topic's questions as buttons, with a way back to the topics; `None`
/// for a topic that does not exist (any more).
pub fn topic_menu(id: &str, kb: &KnowledgeBase) -> Option<(String, InlineKeyboardMarkup)> {
    let topic = kb.topics.iter().position(|topic| topic.id == id)?;
    let rows: Vec<Vec<InlineKeyboardButton>> = kb
        .entries
        .iter()
        .filter(|entry| entry.topic == topic)
        .filter_map(|entry| button(&entry.question, &Action::Entry(entry.id.clone())))
        .map(|button| vec![button])
        .chain(button("« Topics", &Action::Topics).map(|button| vec![button]))
        .collect();
    let title = kb.topics.get(topic).map(|topic| topic.title.as_str()).unwrap_or_default();
    Some((menu_text(title, Style::Bold, kb), InlineKeyboardMarkup::new(rows)))
}

fn html(text: &str, style: Style) -> String {
    let escaped = escape(text);
    match style {
        Style::Plain => escaped,
        Style::Bold => format!("<b>{escaped}</b>"),
        Style::Italic => format!("<i>{escaped}</i>"),
    }
}

/// Packs paragraphs into messages of at most `LIMIT` characters (as
/// Telegram counts them, after entities are parsed), splitting only between
/// paragraphs, or inside an overlong one between lines or words. Each piece
/// carries its own tags, so no entity spans two messages.
pub fn chunks(paragraphs: &[(String, Style)]) -> Vec<String> {
    let mut pieces: Vec<(String, Style)> = Vec::new();
    for (text, style) in paragraphs {
        for piece in split_long(text, LIMIT) {
            pieces.push((piece, *style));
        }
    }
    let mut out: Vec<String> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut length = 0;
    for (text, style) in pieces {
        let added = telegram_len(&text) + if current.is_empty() { 0 } else { 2 };
        if !current.is_empty() && length + added > LIMIT {
            out.push(current.join("\n\n"));
            current.clear();
            length = 0;
        }
        length += telegram_len(&text) + if current.is_empty() { 0 } else { 2 };
        current.push(html(&text, style));
    }
    if !current.is_empty() {
        out.push(current.join("\n\n"));
    }
    out
}

/// Splits text longer than `limit` at line breaks, then spaces, then anywhere.
fn split_long(text: &str, limit: usize) -> Vec<String> {
    if telegram_len(text) <= limit {
        return vec![text.to_owned()];
    }
    let mut out = Vec::new();
    let mut current = String::new();
    for word in text.split_inclusive(['\n', ' ']) {
        if telegram_len(&current) + telegram_len(word) > limit && !current.is_empty() {
            out.push(current.trim_end().to_owned());
            current.clear();
        }
        if telegram_len(word) > limit {
            // One "word" longer than a message: cut it by characters.
            let mut piece = String::new();
            for ch in word.chars() {
                if telegram_len(&piece) + ch.len_utf16() > limit {
                    out.push(std::mem::take(&mut piece));
                }
                piece.push(ch);
            }
            current = piece;
            continue;
        }
        current.push_str(word);
    }
    if !current.trim().is_empty() {
        out.push(current.trim_end().to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_within_the_callback_limit() {
        for action in [
            Action::Entry("cost".into()),
            Action::Feedback(true, "cost".into()),
            Action::Feedback(false, "cost".into()),
            Action::Topic("risks".into()),
            Action::Topics,
        ] {
            assert_eq!(Action::decode(&action.encode()), Some(action.clone()));
        }
        assert!(button("x", &Action::Entry("a".repeat(63))).is_none());
        assert_eq!(Action::decode("nonsense"), None);
    }

    #[test]
    fn escapes_and_splits_at_paragraphs_without_breaking_tags() {
        let long = "word ".repeat(700);
        let paragraphs = vec![
            ("<b>R&D</b>".to_owned(), Style::Bold),
            (long.trim().to_owned(), Style::Plain),
            (long.trim().to_owned(), Style::Plain),
            ("note".to_owned(), Style::Italic),
        ];
        let messages = chunks(&paragraphs);
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].starts_with("<b>&lt;b&gt;R&amp;D&lt;/b&gt;</b>\n\n"));
        assert!(messages[1].ends_with("<i>note</i>"));
        for message in &messages {
            let visible = message.replace("<b>", "").replace("</b>", "").replace("<i>", "").replace("</i>", "");
            let visible = visible.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
            assert!(telegram_len(&visible) <= LIMIT);
        }
    }

    #[test]
    fn an_overlong_paragraph_is_split_between_words() {
        let text = "abc ".repeat(3000);
        let pieces = split_long(text.trim(), LIMIT);
        assert_eq!(pieces.len(), 3);
        assert!(pieces.iter().all(|piece| telegram_len(piece) <= LIMIT && !piece.starts_with(' ')));
        let unbroken = "x".repeat(9000);
        assert_eq!(split_long(&unbroken, LIMIT).len(), 3);
    }
}
