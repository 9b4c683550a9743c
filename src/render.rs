//! The plain-text layout of an answer: shared by the responder, which builds
//! what users see, and by knowledge validation, which checks that the longest
//! such text still fits one Telegram message.

use crate::knowledge::{Messages, Source};

/// The plain-text reply for one FAQ answer: question, answer, crisis lines if
/// the entry asks for them, a brief source line, and the clinician note.
pub fn answer_text(
    question: &str,
    answer: &str,
    crisis_resources: bool,
    sources: &[&Source],
    messages: &Messages,
) -> String {
    let mut text = format!("{question}\n\n{answer}");
    if crisis_resources {
        text.push_str("\n\n");
        text.push_str(&messages.crisis_resources);
    }
    if !sources.is_empty() {
        let labels: Vec<&str> = sources.iter().map(|source| source.label.as_str()).collect();
        text.push_str(&format!("\n\n{}: {}", messages.sources_label, labels.join("; ")));
    }
    with_note(text, messages)
}

/// Appends the clinician note: every reply of every kind goes through here.
pub fn with_note(mut text: String, messages: &Messages) -> String {
    if !text.is_empty() {
        text.push_str("\n\n");
    }
    text.push_str(&messages.clinician_note);
    text
}

/// Adds the crisis lines before the clinician note of a finished reply,
/// unless the reply already shows them.
pub fn with_resources(text: String, messages: &Messages) -> String {
    if text.contains(&messages.crisis_resources) {
        return text;
    }
    let body = text.strip_suffix(&messages.clinician_note).unwrap_or(&text).trim_end();
    let body = if body.is_empty() {
        messages.crisis_resources.clone()
    } else {
        format!("{body}\n\n{}", messages.crisis_resources)
    };
    with_note(body, messages)
}

/// Adds a gentle check-in and the crisis lines before the clinician note:
/// for messages where distress is likely but not certain.
pub fn with_check_in(text: String, messages: &Messages) -> String {
    let body = text.strip_suffix(&messages.clinician_note).unwrap_or(&text).trim_end();
    let body = body.strip_suffix(&messages.crisis_pointer).unwrap_or(body).trim_end();
    let lines = if body.contains(&messages.crisis_resources) {
        messages.check_in.clone()
    } else {
        format!("{}\n{}", messages.check_in, messages.crisis_resources)
    };
    let body = if body.is_empty() { lines } else { format!("{body}\n\n{lines}") };
    with_note(body, messages)
}

/// Ends a crisis or emergency reply: the clinician note there reads as help
/// that is there now, not as a disclaimer.
pub fn with_crisis_note(mut text: String, messages: &Messages) -> String {
    text.push_str("\n\n");
    text.push_str(&messages.crisis_note);
    text
}
