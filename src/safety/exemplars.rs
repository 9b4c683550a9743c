//! The safety screen's examples: messages grouped by what the bot must do
//! with them, in a TOML file curators edit (`knowledge/safety.toml`). The
//! shipped file is compiled in, so a knowledge directory without one (a
//! second topic, an import) is still screened by meaning.

use std::collections::HashMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::text::normalize;

/// The shipped examples, used when a knowledge directory has none.
pub const BUILT_IN: &str = include_str!("../../knowledge/safety.toml");

/// The file's name inside a knowledge directory.
pub const FILE: &str = "safety.toml";

/// Each class needs at least this many examples: a class with a handful
/// would be recognised by luck.
pub const MIN_PER_CLASS: usize = 10;

/// What a message is, as far as safety goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// Suicidal thoughts, intent, plans, means, warning-sign behaviour,
    /// someone else in danger now, lethal-amount questions.
    Crisis,
    SelfHarm,
    /// A medical emergency happening now.
    Emergency,
    /// Intent or threat to harm other people.
    Violence,
    /// Personal medical advice the bot must not give.
    Refusal,
    /// Low mood, or danger words in the past, in general or in jest: answered,
    /// with the crisis lines and a gentle check-in.
    Distress,
    Ordinary,
}

impl Class {
    pub const ALL: [Class; 7] = [
        Class::Crisis,
        Class::SelfHarm,
        Class::Emergency,
        Class::Violence,
        Class::Refusal,
        Class::Distress,
        Class::Ordinary,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Crisis => "crisis",
            Class::SelfHarm => "self_harm",
            Class::Emergency => "emergency",
            Class::Violence => "violence",
            Class::Refusal => "refusal",
            Class::Distress => "distress",
            Class::Ordinary => "ordinary",
        }
    }

    pub fn parse(name: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|class| class.as_str() == name)
    }

    /// The classes whose miss can cost a life: they get the crisis reply.
    pub fn is_danger(self) -> bool {
        matches!(self, Class::Crisis | Class::SelfHarm | Class::Emergency | Class::Violence)
    }

    /// Position in `ALL`, for per-class arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One group of examples following one piece of public guidance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub class: Class,
    /// The guidance the group follows, or the near-miss family it belongs to.
    pub follows: String,
    pub examples: Vec<String>,
}

/// A validated examples file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exemplars {
    pub groups: Vec<Group>,
}

impl Exemplars {
    /// The shipped examples. They are checked by a test, so this fails only
    /// if the build itself is broken.
    pub fn built_in() -> anyhow::Result<Exemplars> {
        parse(BUILT_IN).map_err(|problems| {
            let first = problems.first().map(|(_, message)| message.as_str()).unwrap_or_default();
            anyhow::anyhow!("the built-in safety examples are invalid: {first}")
        })
    }

    /// Every example with its class, in file order.
    pub fn examples(&self) -> impl Iterator<Item = (Class, &str)> {
        self.groups.iter().flat_map(|group| group.examples.iter().map(move |text| (group.class, text.as_str())))
    }

    pub fn len(&self) -> usize {
        self.groups.iter().map(|group| group.examples.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    group: Vec<RawGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    class: Spanned<String>,
    follows: Spanned<String>,
    examples: Spanned<Vec<Spanned<String>>>,
}

/// Parses and checks an examples file. On failure, every problem found, each
/// with the byte range it is about.
pub fn parse(text: &str) -> Result<Exemplars, Vec<(Range<usize>, String)>> {
    let raw: RawFile = toml::from_str(text)
        .map_err(|error| vec![(error.span().unwrap_or(0..0), format!("TOML: {}", error.message().trim()))])?;
    let mut problems = Vec::new();
    let mut groups = Vec::new();
    let mut seen: HashMap<String, Class> = HashMap::new();
    for group in raw.group {
        let Some(class) = Class::parse(group.class.get_ref()) else {
            let names: Vec<&str> = Class::ALL.iter().map(|class| class.as_str()).collect();
            problems.push((
                group.class.span(),
                format!("unknown class `{}`; expected one of {}", group.class.get_ref(), names.join(", ")),
            ));
            continue;
        };
        if group.follows.get_ref().trim().is_empty() {
            problems
                .push((group.follows.span(), String::from("`follows` is empty: name the guidance this group follows")));
        }
        let span = group.examples.span();
        let examples = group.examples.into_inner();
        if examples.is_empty() {
            problems.push((span, String::from("a group needs at least one example")));
        }
        let mut texts = Vec::with_capacity(examples.len());
        for example in examples {
            if example.get_ref().trim().is_empty() {
                problems.push((example.span(), String::from("an example is empty")));
                continue;
            }
            // Emoji-only examples ("👍") have no words: compare them as typed.
            let key = match normalize(example.get_ref()) {
                words if words.is_empty() => example.get_ref().trim().to_owned(),
                words => words,
            };
            if let Some(earlier) = seen.get(&key) {
                let message = if *earlier == class {
                    format!("{:?} is already an example of {}", example.get_ref(), class.as_str())
                } else {
                    format!(
                        "{:?} is already an example of {}; one message cannot be both",
                        example.get_ref(),
                        earlier.as_str()
                    )
                };
                problems.push((example.span(), message));
                continue;
            }
            seen.insert(key, class);
            texts.push(example.into_inner().trim().to_owned());
        }
        groups.push(Group { class, follows: group.follows.into_inner(), examples: texts });
    }
    if problems.is_empty() {
        for class in Class::ALL {
            let count: usize =
                groups.iter().filter(|group| group.class == class).map(|group| group.examples.len()).sum();
            if count < MIN_PER_CLASS {
                problems.push((
                    0..0,
                    format!("class {} has {count} examples; it needs at least {MIN_PER_CLASS}", class.as_str()),
                ));
            }
        }
    }
    if problems.is_empty() { Ok(Exemplars { groups }) } else { Err(problems) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_examples_are_valid_and_cover_every_class() {
        let exemplars = Exemplars::built_in();
        assert!(exemplars.is_ok(), "{:?}", exemplars.err());
        let exemplars = exemplars.unwrap_or_else(|_| Exemplars { groups: Vec::new() });
        let danger = exemplars.examples().filter(|(class, _)| class.is_danger()).count();
        let ordinary = exemplars.examples().filter(|(class, _)| *class == Class::Ordinary).count();
        assert!(danger >= 600, "{danger} crisis-side examples");
        assert!(ordinary >= 800, "{ordinary} ordinary and near-miss examples");
    }

    #[test]
    fn problems_are_located() {
        let text = "[[group]]\nclass = \"crisiss\"\nfollows = \"x\"\nexamples = [\"a\"]\n";
        let problems = parse(text).err().unwrap_or_default();
        assert_eq!(problems.len(), 1, "{problems:?}");
        let (span, message) = &problems[0];
        assert_eq!(&text[span.clone()], "\"crisiss\"");
        assert!(message.contains("unknown class"), "{message}");

        let text = "[[group]]\nclass = \"ordinary\"\nfollows = \"x\"\nexamples = [\"Hi there\", \"hi there!\"]\n";
        let problems = parse(text).err().unwrap_or_default();
        assert!(problems.iter().any(|(_, message)| message.contains("already an example")), "{problems:?}");
    }
}
