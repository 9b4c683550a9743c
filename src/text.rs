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

/// The number of UTF-16 code units in `text`: how Telegram measures the 4096
/// limit on a message.
pub fn telegram_len(text: &str) -> usize {
    text.encode_utf16().count()
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
    fn keeps_other_scripts() {
        check("Кетамин и ПТСР", "кетамин и птср");
        check("ケタミン 😀 ok", "ケタミン ok");
    }

    #[test]
    fn telegram_counts_utf16_units() {
        assert_eq!(telegram_len("abc"), 3);
        assert_eq!(telegram_len("😀"), 2);
    }
}
