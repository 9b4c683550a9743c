//! The safety screen: sees every message before retrieval and says whether it
//! signals a crisis, asks for personal medical advice, or mentions suicide or
//! overdose in passing. Pure: text in, verdict out.
//!
//! It works on a *screened* copy of the text: normalised (case, accents,
//! apostrophes), stretched letters collapsed ("sooo"), leetspeak undone inside
//! words ("su1c1de"), and typos of a few key words repaired ("sucide",
//! "myslef"), then matched against the pattern files beside this module. It
//! does not decide what to say: the responder does.

pub mod exemplars;
mod head;
mod judge;
pub mod meaning;
pub mod stack;

use anyhow::Context;
use regex::RegexSet;

pub use exemplars::Class;
pub use judge::{Judgement, Unit, UnitKind, judge, unit_texts, units};
pub use meaning::Meaning;

use crate::text::normalize;

const CRISIS: &str = include_str!("crisis.txt");
const REFUSAL: &str = include_str!("refusal.txt");
const SENSITIVE: &str = include_str!("sensitive.txt");

/// Words whose typos are repaired before matching. Kept short on purpose:
/// each one is a chance to turn an ordinary word into an alarming one.
const KEY_WORDS: &[&str] = &["suicide", "suicidal", "myself", "overdose", "overdosed", "unalive"];

/// What a message signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Danger: crisis resources first, and nothing else.
    Crisis(Crisis),
    /// A request for personal medical advice.
    Refusal(Refusal),
    /// Distress is likely but not certain (low mood, or danger words in the
    /// past, in general, about someone else's past, or in jest): answered as
    /// usual, with a gentle check-in and the crisis lines.
    CheckIn,
    /// Mentions suicide, self-harm or overdose without signalling danger:
    /// answered as usual, with the crisis resources shown too.
    Sensitive,
    Clear,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crisis {
    Suicide,
    SelfHarm,
    HarmOthers,
    Overdose,
    /// A medical emergency: chest pain, not breathing, won't wake up.
    Emergency,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Dose,
    Sourcing,
    Medication,
    Diagnosis,
    Candidacy,
}

/// The compiled patterns. Built once per engine.
pub struct Screen {
    crisis: RegexSet,
    crisis_kinds: Vec<Crisis>,
    refusal: RegexSet,
    refusal_kinds: Vec<Refusal>,
    sensitive: RegexSet,
}

impl Screen {
    /// The pattern lines `text` matches, with their file: for `ask --explain`.
    pub fn explain(&self, text: &str) -> Vec<String> {
        let screened = screened(text);
        let mut out = vec![format!("screened: {screened:?}")];
        for (set, file) in
            [(&self.crisis, "crisis.txt"), (&self.refusal, "refusal.txt"), (&self.sensitive, "sensitive.txt")]
        {
            for index in set.matches(&screened).iter() {
                out.push(format!("{file}: {}", set.patterns()[index]));
            }
        }
        out
    }
}

impl Screen {
    /// Compiles the pattern files; fails only if one of them is malformed.
    pub fn new() -> anyhow::Result<Self> {
        let (crisis, crisis_kinds) = compile(CRISIS, "crisis.txt", |category| match category {
            "suicide" => Some(Crisis::Suicide),
            "self_harm" => Some(Crisis::SelfHarm),
            "harm_others" => Some(Crisis::HarmOthers),
            "overdose" => Some(Crisis::Overdose),
            "emergency" => Some(Crisis::Emergency),
            _ => None,
        })?;
        let (refusal, refusal_kinds) = compile(REFUSAL, "refusal.txt", |category| match category {
            "dose" => Some(Refusal::Dose),
            "sourcing" => Some(Refusal::Sourcing),
            "medication" => Some(Refusal::Medication),
            "diagnosis" => Some(Refusal::Diagnosis),
            "candidacy" => Some(Refusal::Candidacy),
            _ => None,
        })?;
        let (sensitive, _) = compile(SENSITIVE, "sensitive.txt", |category| (category == "sensitive").then_some(()))?;
        Ok(Self { crisis, crisis_kinds, refusal, refusal_kinds, sensitive })
    }

    /// The compiled patterns, built once per process: they are part of the
    /// program, not of the knowledge base, so reloads need not rebuild them.
    pub fn global() -> anyhow::Result<&'static Screen> {
        static SCREEN: std::sync::OnceLock<Result<Screen, String>> = std::sync::OnceLock::new();
        match SCREEN.get_or_init(|| Screen::new().map_err(|error| format!("{error:#}"))) {
            Ok(screen) => Ok(screen),
            Err(error) => anyhow::bail!("{error}"),
        }
    }

    /// The verdict for one message: crisis before refusal before sensitive.
    pub fn screen(&self, text: &str) -> Verdict {
        let screened = screened(text);
        // `is_match` can stop at the first match; most messages match nothing.
        if self.crisis.is_match(&screened) {
            let kinds: Vec<Crisis> =
                self.crisis.matches(&screened).iter().map(|index| self.crisis_kinds[index]).collect();
            // An emergency needs the emergency number first, whatever else.
            let kind = if kinds.contains(&Crisis::Emergency) { Crisis::Emergency } else { kinds[0] };
            return Verdict::Crisis(kind);
        }
        if self.refusal.is_match(&screened)
            && let Some(index) = self.refusal.matches(&screened).iter().next()
        {
            return Verdict::Refusal(self.refusal_kinds[index]);
        }
        if self.sensitive.is_match(&screened) {
            return Verdict::Sensitive;
        }
        Verdict::Clear
    }
}

/// Parses `category: regex` lines into one set, mapping categories with `kind`.
fn compile<K>(text: &str, file: &str, kind: impl Fn(&str) -> Option<K>) -> anyhow::Result<(RegexSet, Vec<K>)> {
    let mut patterns = Vec::new();
    let mut kinds = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (category, pattern) =
            line.split_once(": ").with_context(|| format!("{file}:{}: expected `category: regex`", number + 1))?;
        let category =
            kind(category.trim()).with_context(|| format!("{file}:{}: unknown category `{category}`", number + 1))?;
        kinds.push(category);
        patterns.push(pattern.trim().to_owned());
    }
    let set = RegexSet::new(&patterns).with_context(|| format!("compiling {file}"))?;
    Ok((set, kinds))
}

/// The text the patterns see (see the module comment).
pub fn screened(text: &str) -> String {
    normalize(text).split(' ').map(screen_word).collect::<Vec<_>>().join(" ")
}

fn screen_word(word: &str) -> String {
    // Text-speak "2" for "to": "want 2 die".
    if word == "2" {
        return String::from("to");
    }
    if is_plain(word) {
        return repair(word).unwrap_or_else(|| word.to_owned());
    }
    let source: Vec<char> = word.chars().collect();
    let mut chars: Vec<char> = Vec::with_capacity(source.len());
    let mut at = 0;
    while at < source.len() {
        let ch = source[at];
        let run = source[at..].iter().take_while(|&&c| c == ch).count();
        // A letter stretched three or more times counts once: "dieee" -> "die",
        // "sooo" -> "so". Digits stay ("999").
        let keep = if run >= 3 && ch.is_alphabetic() { 1 } else { run };
        chars.extend(std::iter::repeat_n(ch, keep));
        at += run;
    }
    let has_letter = chars.iter().any(|c| c.is_alphabetic());
    if has_letter && chars.iter().any(|c| c.is_ascii_digit()) {
        for ch in &mut chars {
            *ch = match *ch {
                '0' => 'o',
                '1' => 'i',
                '3' => 'e',
                '4' => 'a',
                '5' => 's',
                '7' => 't',
                other => other,
            };
        }
    }
    let word: String = chars.into_iter().collect();
    repair(&word).unwrap_or(word)
}

/// True for the common case: no letter three times in a row and no digits
/// among letters, so the word needs no rewriting.
fn is_plain(word: &str) -> bool {
    let bytes = word.as_bytes();
    let has_digit = bytes.iter().any(u8::is_ascii_digit);
    let has_letter = word.chars().any(char::is_alphabetic);
    let stretched = bytes.windows(3).any(|w| w[0] == w[1] && w[1] == w[2] && w[0].is_ascii_alphabetic())
        || (!word.is_ascii() && {
            let chars: Vec<char> = word.chars().collect();
            chars.windows(3).any(|w| w[0] == w[1] && w[1] == w[2] && w[0].is_alphabetic())
        });
    !(stretched || (has_digit && has_letter))
}

/// The longest word compared with the key words.
const MAX_REPAIR_LEN: usize = 16;

/// The key word `word` is a typo of, if any: within one edit for words of
/// five or six letters, two for longer ones (a swap of neighbours is one).
fn repair(word: &str) -> Option<String> {
    let length = word.len();
    if !(5..=MAX_REPAIR_LEN).contains(&length) || !word.is_ascii() || KEY_WORDS.contains(&word) {
        return None;
    }
    let limit = if length >= 7 { 2 } else { 1 };
    KEY_WORDS
        .iter()
        .filter(|key| key.len().abs_diff(length) <= limit)
        .map(|key| (osa_distance(word, key), *key))
        .filter(|(distance, _)| *distance <= limit)
        .min()
        .map(|(_, key)| key.to_owned())
}

/// Optimal string alignment distance (Levenshtein plus swaps of neighbours)
/// between two ASCII words of at most `MAX_REPAIR_LEN` letters.
fn osa_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() > MAX_REPAIR_LEN || b.len() > MAX_REPAIR_LEN {
        return usize::MAX;
    }
    let mut d = [[0usize; MAX_REPAIR_LEN + 1]; MAX_REPAIR_LEN + 1];
    for (i, row) in d.iter_mut().enumerate().take(a.len() + 1) {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate().take(b.len() + 1) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screened_text_undoes_stretching_leetspeak_and_key_typos() {
        assert_eq!(screened("I want to diiiie"), "i want to die");
        assert_eq!(screened("want 2 die 999"), "want to die 999");
        assert_eq!(screened("su1c1de"), "suicide");
        assert_eq!(screened("thinking of sucide"), "thinking of suicide");
        assert_eq!(screened("kill myslef"), "kill myself");
        assert_eq!(screened("I'm SO tired"), "im so tired");
        // Ordinary words stay as they are.
        assert_eq!(screened("decide billing itself diet 988"), "decide billing itself diet 988");
    }

    #[test]
    fn the_pattern_files_compile() {
        assert!(Screen::new().is_ok());
    }

    #[test]
    fn asking_to_take_more_than_prescribed_is_a_dose_question() {
        let Ok(screen) = Screen::new() else { panic!("the patterns compile") };
        for text in ["can I double my spravato since it's not working", "should I do an extra spray if I feel nothing"]
        {
            assert_eq!(screen.screen(text), Verdict::Refusal(Refusal::Dose), "{text:?}");
        }
        for text in ["how many sprays are in a spravato dose", "do people ever get a second infusion the same week"] {
            assert_eq!(screen.screen(text), Verdict::Clear, "{text:?}");
        }
    }
}
