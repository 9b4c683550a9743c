//! The screen's verdict: the patterns and the reading of meaning together
//! (the union decides), over the whole message, each sentence, and the
//! chat's last few messages. Pure: a `Question` in, a `Judgement` out.

use std::sync::OnceLock;

use regex::Regex;

use super::exemplars::Class;
use super::meaning::{Meaning, Nearest};
use super::{Crisis, Refusal, Screen, Verdict};
use crate::model::Vector;
use crate::question::{Question, Scans};

/// The rule's thresholds, fitted on tests/data/safety/safety-tune.jsonl only
/// (SAFETY.md gives the figures on the held-out quarter).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// How many of a class's closest examples are averaged.
    pub k: usize,
    /// A unit signals danger when its closest danger class scores at least
    /// this much...
    pub danger: f32,
    /// ...and at least this much more than the closest safe class.
    pub danger_margin: f32,
    /// A danger or distress score this high, though below `danger`, still
    /// earns a check-in with the crisis lines...
    pub check_in: f32,
    /// ...unless the ordinary examples are closer by more than this. Without
    /// it, nearly every question about ketamine got "Are you thinking about
    /// suicide?": the crisis examples mention the treatment too, so almost
    /// any such question comes within 0.5 of some of them.
    pub check_in_margin: f32,
    /// Personal advice when the refusal examples score at least this much,
    /// ahead of every other class by `refusal_margin`.
    pub refusal: f32,
    pub refusal_margin: f32,
    /// The linear head: danger when its crisis-side scores sum to this much.
    pub head_danger: f32,
    /// The head: personal advice when the refusal score is the highest and
    /// at least this much.
    pub head_refusal: f32,
    /// The head: a check-in when its crisis-side and distress scores sum to
    /// this much. (At 0.5 an off-topic "what is the capital of peru" got one.)
    pub head_check_in: f32,
    /// The calibrator (`stack`): personal advice when its refusal
    /// probability is at least this much (and, as for the head, no ordinary
    /// example is closer than the refusals), read on the whole message only.
    /// (Read on every sentence, 0.6 refused no more on the tune set, 0.9 fewer.)
    pub calibrated_refusal: f32,
}

pub const RULE: Rule = Rule {
    k: 5,
    danger: 0.35,
    danger_margin: 0.03,
    check_in: 0.5,
    check_in_margin: 0.1,
    refusal: 0.55,
    refusal_margin: 0.05,
    head_danger: f32::INFINITY,
    head_refusal: 0.5,
    head_check_in: 0.6,
    calibrated_refusal: 0.75,
};

/// Where a unit of text comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    /// The whole message (as far as the model reads).
    Whole,
    /// One sentence of it.
    Sentence,
    /// The chat's last messages with this one.
    Joined,
    /// One sentence of an earlier message.
    Context,
}

impl UnitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Whole => "whole",
            UnitKind::Sentence => "sentence",
            UnitKind::Joined => "joined",
            UnitKind::Context => "context",
        }
    }
}

/// One text the screen read by meaning, with its closest examples.
#[derive(Debug, Clone)]
pub struct Unit {
    pub kind: UnitKind,
    pub text: String,
    pub nearest: Nearest,
    /// The linear head's scores, by `Class::index`.
    pub head: [f32; Class::ALL.len()],
    /// The calibrator's probabilities, by `Class::index`.
    pub calibrated: [f32; Class::ALL.len()],
}

/// The screen's verdict and why, for replies, `--explain` and `eval-safety`.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub reasons: Vec<String>,
}

/// The texts the screen reads by meaning, each with its vector, in order:
/// the whole, each sentence (when there are several), the joined context,
/// each earlier sentence. Empty without the model.
pub fn unit_texts(question: &Question) -> Vec<(UnitKind, &str, &Vector)> {
    let Some(vectors) = &question.vectors else { return Vec::new() };
    let mut out = vec![(UnitKind::Whole, question.text.as_str(), &vectors.whole)];
    if question.sentences.len() > 1 {
        out.extend(question.sentences.iter().zip(&vectors.sentences).map(|(t, v)| (UnitKind::Sentence, t.as_str(), v)));
    }
    if let (Some(text), Some(vector)) = (&question.joined, &vectors.joined) {
        out.push((UnitKind::Joined, text.as_str(), vector));
    }
    out.extend(
        question.context_sentences.iter().zip(&vectors.context).map(|(t, v)| (UnitKind::Context, t.as_str(), v)),
    );
    out
}

/// Every unit of `question` read by meaning; empty without the model.
pub fn units(meaning: &Meaning, question: &Question) -> Vec<Unit> {
    unit_texts(question)
        .into_iter()
        .map(|(kind, text, vector)| read(meaning, &question.scans, kind, text, vector))
        .collect()
}

fn read(meaning: &Meaning, scans: &Scans, kind: UnitKind, text: &str, vector: &[f32]) -> Unit {
    let nearest = meaning.nearest_of(&scans.examples(vector, meaning.rows()), None);
    Unit { kind, text: text.to_owned(), nearest, head: meaning.head(vector), calibrated: meaning.calibrated(&nearest) }
}

/// What one unit says on its own.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Signal {
    Danger(Class),
    CheckIn,
    Refusal,
    None,
}

fn signal(unit: &Unit, rule: &Rule) -> Signal {
    let nearest = &unit.nearest;
    let score = |class: Class| nearest.score(class, rule.k);
    let danger_classes = || Class::ALL.into_iter().filter(|class| class.is_danger());
    let (danger_class, danger) = danger_classes()
        .map(|class| (class, score(class)))
        .fold((Class::Crisis, f32::MIN), |best, next| if next.1 > best.1 { next } else { best });
    let safe = score(Class::Ordinary).max(score(Class::Distress)).max(score(Class::Refusal));
    if danger >= rule.danger && danger - safe >= rule.danger_margin {
        return Signal::Danger(danger_class);
    }
    let head = |class: Class| unit.head[class.index()];
    let head_danger: f32 = danger_classes().map(head).sum();
    if head_danger >= rule.head_danger {
        let class =
            danger_classes().fold(Class::Crisis, |best, next| if head(next) > head(best) { next } else { best });
        return Signal::Danger(class);
    }
    let refusal = score(Class::Refusal);
    let others = Class::ALL.into_iter().filter(|class| *class != Class::Refusal).map(score).fold(f32::MIN, f32::max);
    if refusal >= rule.refusal && refusal - others >= rule.refusal_margin {
        return Signal::Refusal;
    }
    // The head generalises, and so it also refuses ordinary questions that
    // merely look personal: it counts only when no ordinary example (the
    // knowledge base's own phrasings among them) is closer than the refusals.
    let refusal = head(Class::Refusal);
    if refusal >= rule.head_refusal
        && Class::ALL.into_iter().all(|class| head(class) <= refusal)
        && score(Class::Refusal) >= score(Class::Ordinary)
    {
        return Signal::Refusal;
    }
    // The calibrator, with the head's guard, on the whole message only: a
    // sentence such as "I did all six infusions and my PTSD is the same"
    // reads as personal on its own, though the message asks a general question.
    if unit.calibrated[Class::Refusal.index()] >= rule.calibrated_refusal
        && score(Class::Refusal) >= score(Class::Ordinary)
        && unit.kind == UnitKind::Whole
    {
        return Signal::Refusal;
    }
    let (distress, ordinary) = (score(Class::Distress), score(Class::Ordinary));
    let near_ordinary = |score: f32| score >= rule.check_in && score >= ordinary - rule.check_in_margin;
    if near_ordinary(danger) || near_ordinary(distress) || head_danger + head(Class::Distress) >= rule.head_check_in {
        return Signal::CheckIn;
    }
    Signal::None
}

/// One line for `--explain`: each class's nearest-example, head and
/// calibrated scores.
fn describe(unit: &Unit, rule: &Rule) -> String {
    let scores: Vec<String> = Class::ALL
        .iter()
        .map(|class| {
            let i = class.index();
            let nearest = unit.nearest.score(*class, rule.k);
            format!("{} {nearest:.2}/{:.2}/{:.2}", class.as_str(), unit.head[i], unit.calibrated[i])
        })
        .collect();
    format!("{} {:?}: nearest/head/calibrated {}", unit.kind.as_str(), unit.text, scores.join(", "))
}

/// The words that make a danger signal a likely false alarm: someone's past,
/// people in general, a joke, or a bare command to the bot. Such messages
/// are answered with the crisis lines and a check-in, never plainly.
struct Markers {
    past: Regex,
    general: Regex,
    joke: Regex,
    /// Someone else's event: "my husband's suicide attempt", "her overdose".
    others: Regex,
    /// The writer speaking of themselves.
    first_person: Regex,
    /// Now, again, still: the past is not over.
    present: Regex,
}

impl Markers {
    fn new() -> Result<Markers, regex::Error> {
        Ok(Markers {
            past: Regex::new(
                r"\b(ago|years back|last (year|month|spring|summer|fall|autumn|winter)|in the past|used to|back (then|when|in)|when i was (a |little|young|younger|in)|as a (kid|teen|teenager)|history of|in (19|20)\d\d|since (19|20)\d\d|survivor|survived|passed away|died|killed himself|killed herself|took (his|her|their) (own )?life|lost (him|her|them|my \w+) to)\b",
            )?,
            general: Regex::new(
                r"\b(people|someone|somebody|patients|veterans|those|anyone|a person) (who|with|that)\b|\b(how common|is it common|statistics|studies|study|research|in general|why do (they|clinics|doctors)|why does (the|my) (clinic|doctor|form))\b",
            )?,
            joke: Regex::new(r"(😂|🤣|😆|😅|🙃|😜|😝|😹|\b(lol|lmao|lmfao|rofl|haha\w*|jk|jking|kidding|joking)\b)")?,
            others: Regex::new(
                r"\b(my (husband|wife|partner|friend|brother|sister|son|daughter|mom|dad|mother|father|uncle|aunt|cousin|buddy|boyfriend|girlfriend|grandpa|grandma)s|his|her|their) (suicide|overdose|attempt|death)\b",
            )?,
            first_person: Regex::new(r"\b(i|im|ive|ill|id|me|my|myself|mine|kms)\b")?,
            present: Regex::new(
                r"\b(again|now|tonight|today|still|anymore|lately|these days|this week|feel like|want to|wanna|going to|gonna)\b",
            )?,
        })
    }

    /// The markers, compiled once; `None` (never lowering) if they failed to compile.
    fn get() -> Option<&'static Markers> {
        static MARKERS: OnceLock<Option<Markers>> = OnceLock::new();
        MARKERS.get_or_init(|| Markers::new().ok()).as_ref()
    }

    /// Whether a danger signal of `class` in `text` may be lowered to a
    /// check-in. A first-person danger to oneself is lowered only when it is
    /// told as past; jokes and general talk never lower it. A bare command to
    /// the bot ("stop", "quit") is lowered: alone, the model reads it as
    /// "make it all stop".
    fn lowers(&self, class: Class, text: &str) -> bool {
        let plain = crate::text::normalize(text);
        if crate::text::is_bot_command(&plain) {
            return true;
        }
        let past = self.past.is_match(&plain);
        let general = self.general.is_match(&plain);
        let joke = self.joke.is_match(&plain) || self.joke.is_match(text);
        let others = self.others.is_match(&plain);
        let to_self = matches!(class, Class::Crisis | Class::SelfHarm);
        if to_self && !others && self.first_person.is_match(&plain) {
            return past && !self.present.is_match(&plain);
        }
        past || general || joke || others
    }
}

/// Whether the patterns' danger in `question` may be lowered: judged on each
/// sentence that signals it, so a past event early in a long message does
/// not lower danger told later.
fn patterns_lowerable(screen: &Screen, question: &Question, kind: Crisis) -> bool {
    let mut signalling = question
        .sentences
        .iter()
        .filter_map(|sentence| match screen.screen(sentence) {
            Verdict::Crisis(found) => Some((found, sentence.as_str())),
            _ => None,
        })
        .peekable();
    if signalling.peek().is_none() {
        // The signal spans sentences: judge the whole.
        return lowerable(class_of(kind), &question.full);
    }
    signalling.all(|(found, sentence)| lowerable(class_of(found), sentence))
}

/// Whether a danger signal may be lowered (see `Markers::lowers`).
pub fn lowerable(class: Class, text: &str) -> bool {
    Markers::get().is_some_and(|markers| markers.lowers(class, text))
}

fn class_of(kind: Crisis) -> Class {
    match kind {
        Crisis::SelfHarm => Class::SelfHarm,
        Crisis::Emergency => Class::Emergency,
        Crisis::HarmOthers => Class::Violence,
        Crisis::Suicide | Crisis::Overdose => Class::Crisis,
    }
}

fn crisis_kind(class: Class) -> Crisis {
    match class {
        Class::SelfHarm => Crisis::SelfHarm,
        Class::Emergency => Crisis::Emergency,
        Class::Violence => Crisis::HarmOthers,
        _ => Crisis::Suicide,
    }
}

/// The verdict for `question`: the patterns on the whole text and on each
/// earlier message, and, given `meaning`, the closest examples of every unit.
pub fn judge(screen: &Screen, meaning: Option<&Meaning>, question: &Question) -> Judgement {
    let rule = &RULE;
    let mut reasons = Vec::new();
    let mut danger: Option<Crisis> = None;
    // Danger signals that were lowered: they still earn the crisis lines.
    let mut lowered = false;
    let mut refusal: Option<Refusal> = None;
    let mut check_in = false;
    let mut sensitive = false;
    let note_danger = |kind: Crisis, danger: &mut Option<Crisis>| {
        // An emergency needs the emergency number first, whatever else.
        if danger.is_none() || kind == Crisis::Emergency {
            *danger = Some(kind);
        }
    };
    match screen.screen(&question.full) {
        Verdict::Crisis(kind) if patterns_lowerable(screen, question, kind) => {
            reasons.push(format!("patterns: {kind:?}, lowered (past, general or a joke)"));
            lowered = true;
        }
        Verdict::Crisis(kind) => {
            reasons.push(format!("patterns: {kind:?}"));
            note_danger(kind, &mut danger);
        }
        Verdict::Refusal(kind) => {
            reasons.push(format!("patterns: refusal ({kind:?})"));
            refusal = Some(kind);
        }
        Verdict::Sensitive => sensitive = true,
        Verdict::CheckIn | Verdict::Clear => {}
    }
    for earlier in &question.context {
        if let Verdict::Crisis(kind) = screen.screen(earlier) {
            if lowerable(class_of(kind), earlier) {
                lowered = true;
                continue;
            }
            reasons.push(format!("patterns, an earlier message: {kind:?}"));
            note_danger(kind, &mut danger);
        }
    }
    if let Some(meaning) = meaning {
        // A unit without a letter ("1 2", "!!!") gives the model nothing to
        // read: its closest examples would be noise. The patterns still see it.
        let lettered = unit_texts(question).into_iter().filter(|(_, text, _)| text.chars().any(char::is_alphabetic));
        for unit in lettered.map(|(kind, text, vector)| read(meaning, &question.scans, kind, text, vector)) {
            reasons.push(describe(&unit, rule));
            match signal(&unit, rule) {
                Signal::Danger(class) if lowerable(class, &unit.text) => {
                    reasons.push(format!(
                        "meaning, {}: {}, lowered (past, general or a joke) {:?}",
                        unit.kind.as_str(),
                        class.as_str(),
                        unit.text
                    ));
                    lowered = true;
                }
                Signal::Danger(class) => {
                    reasons.push(format!("meaning, {}: {} {:?}", unit.kind.as_str(), class.as_str(), unit.text));
                    note_danger(crisis_kind(class), &mut danger);
                }
                Signal::Refusal if matches!(unit.kind, UnitKind::Whole | UnitKind::Sentence) => {
                    reasons.push(format!("meaning, {}: refusal {:?}", unit.kind.as_str(), unit.text));
                    refusal = refusal.or(Some(Refusal::Medication));
                }
                Signal::CheckIn => check_in = true,
                Signal::Refusal | Signal::None => {}
            }
        }
    }
    let verdict = if let Some(kind) = danger {
        Verdict::Crisis(kind)
    } else if let Some(kind) = refusal {
        Verdict::Refusal(kind)
    } else if check_in || lowered {
        Verdict::CheckIn
    } else if sensitive {
        Verdict::Sensitive
    } else {
        Verdict::Clear
    };
    Judgement { verdict, reasons }
}
