//! Text normalisation shared by validation (duplicate phrasings), the search
//! analyser's query side, and the safety screen.
//!
//! It folds case, common accents and punctuation so that "Don't", "dont" and
//! "DON'T!" compare equal. It does not stem or remove stop words: that is the
//! search module's job.

/// Lower-cases `text`, folds common Latin accents and typographic quotes, drops
/// apostrophes inside words, turns every other non-alphanumeric run into one
/// space, and trims. Non-Latin letters and digits are kept as they are.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for ch in text.chars() {
        if ch == '\'' || ch == '\u{2019}' || ch == '\u{2018}' || ch == '`' {
            // "don't" -> "dont": apostrophes join a word rather than split it.
            continue;
        }
        if ch.is_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            for lower in ch.to_lowercase() {
                push_folded(&mut out, lower);
            }
        } else {
            pending_space = true;
        }
    }
    out
}

/// Whole messages that tell the bot to stop or sign off ("stop", "quit",
/// "take care"), as `normalize` leaves them. Alone, such a word reads close to
/// "I want it all to stop" for the model; as the entire message it is a
/// command. An exact list, not a bag of words: "end it" and "i quit" are not
/// commands.
const BOT_COMMANDS: &[&str] = &[
    "stop",
    "stop please",
    "please stop",
    "stop it",
    "stop bot",
    "stop the bot",
    "stop messaging me",
    "stop sending me messages",
    "quit",
    "quit bot",
    "exit",
    "exit bot",
    "exit chat",
    "exit the chat",
    "end",
    "end chat",
    "end the chat",
    "close chat",
    "close the chat",
    "close this chat",
    "cancel",
    "unsubscribe",
    "take care",
    "take care bot",
    "take care of yourself",
    "see you",
    "see ya",
];

/// Whether a normalised message is nothing but a command to stop or a
/// sign-off (`BOT_COMMANDS`).
pub fn is_bot_command(normalised: &str) -> bool {
    BOT_COMMANDS.contains(&normalised)
}

/// Pushes `ch` with the accent removed for the Latin letters people commonly
/// type with accents; anything else goes in unchanged.
fn push_folded(out: &mut String, ch: char) {
    let folded = match ch {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
        'ç' => 'c',
        'è' | 'é' | 'ê' | 'ë' => 'e',
        'ì' | 'í' | 'î' | 'ï' => 'i',
        'ñ' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' => 'o',
        'ù' | 'ú' | 'û' | 'ü' => 'u',
        'ý' | 'ÿ' => 'y',
        other => other,
    };
    out.push(folded);
}

/// Removes HTML-like tags (`<b>`, `</i>`, `<a href="...">`) and decodes the
/// common entities, so pasted markup reads as the words it wraps. Anything
/// that only looks partly like a tag ("a < b") is left alone.
pub fn strip_markup(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('<') && !text.contains('&') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let tag_end = after.find('>').filter(|&end| end <= 200);
        let looks_like_tag = after.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '!');
        match tag_end {
            Some(end) if looks_like_tag => {
                out.push(' ');
                rest = &after[end + 1..];
            }
            _ => {
                out.push('<');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    for (entity, character) in
        [("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&#39;", "'"), ("&nbsp;", " "), ("&amp;", "&")]
    {
        out = out.replace(entity, character);
    }
    std::borrow::Cow::Owned(out)
}

/// The number of UTF-16 code units in `text`: how Telegram measures the 4096
/// limit on a message.
pub fn telegram_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Bytes as lowercase hexadecimal (checksums, cache keys).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A UTC time as "2026-11-21 06:30 UTC", without a date library.
pub fn utc_timestamp(time: std::time::SystemTime) -> String {
    let seconds = time.duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs());
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", rest / 3600, rest % 3600 / 60)
}

/// A duration in rough words: "3 days", "5 hours", "12 minutes", "40 seconds".
pub fn duration_words(duration: std::time::Duration) -> String {
    let seconds = duration.as_secs();
    let (amount, unit) = match seconds {
        0..60 => (seconds, "second"),
        60..3600 => (seconds / 60, "minute"),
        3600..86_400 => (seconds / 3600, "hour"),
        _ => (seconds / 86_400, "day"),
    };
    format!("{amount} {unit}{}", if amount == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(normalize(input), expected, "normalising {input:?}");
    }

    #[test]
    fn folds_case_punctuation_and_apostrophes() {
        check("Don't  STOP!", "dont stop");
        check("  What's   ketamine??", "whats ketamine");
        check("Café—crème", "cafe creme");
        check("post-traumatic stress", "post traumatic stress");
        check("", "");
        check("?!...", "");
        check("IV’s price: $400", "ivs price 400");
    }

    #[test]
    fn strips_markup_but_not_comparisons() {
        assert_eq!(strip_markup("<b>how much</b> does it cost &amp; why?"), " how much  does it cost & why?");
        assert_eq!(strip_markup("is 2 < 3 a problem"), "is 2 < 3 a problem");
        assert_eq!(strip_markup("<a href=\"x\">link</a>"), " link ");
        assert_eq!(strip_markup("plain"), "plain");
    }

    #[test]
    fn keeps_other_scripts() {
        check("Кетамин и ПТСР", "кетамин и птср");
        check("ケタミン 😀 ok", "ケタミン ok");
    }

    #[test]
    fn formats_utc_dates_and_durations() {
        use std::time::{Duration, UNIX_EPOCH};
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01 00:00 UTC");
        assert_eq!(utc_timestamp(UNIX_EPOCH + Duration::from_secs(1_795_000_000)), "2026-11-18 11:06 UTC");
        assert_eq!(utc_timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29 00:00 UTC");
        assert_eq!(duration_words(Duration::from_secs(1)), "1 second");
        assert_eq!(duration_words(Duration::from_secs(7200)), "2 hours");
    }

    #[test]
    fn telegram_counts_utf16_units() {
        assert_eq!(telegram_len("abc"), 3);
        assert_eq!(telegram_len("😀"), 2);
    }
}
