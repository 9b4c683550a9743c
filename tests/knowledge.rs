//! The knowledge base as admins and users meet it: the shipped files are sound
//! and curated to the project's standards, and a broken copy gets every
//! problem reported at its `path:line:col`.

#[path = "support/bin.rs"]
mod bin;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use faqbot::knowledge::{self, LoadError, Messages, Problem};

fn shipped() -> knowledge::KnowledgeBase {
    match knowledge::load(Path::new("knowledge")) {
        Ok(kb) => kb,
        Err(error) => panic!("shipped knowledge does not load: {error:#?}"),
    }
}

#[test]
fn shipped_knowledge_is_sound_and_large_enough() {
    let kb = shipped();
    assert!(kb.entries.len() >= 75, "only {} entries", kb.entries.len());
    assert!(kb.stats.alternates >= 600, "only {} alternates", kb.stats.alternates);
    for entry in &kb.entries {
        assert!(entry.alternates.len() >= 8, "{} has {} alternates", entry.id, entry.alternates.len());
        assert!(!entry.sources.is_empty(), "{} cites nothing", entry.id);
        assert!(!entry.related.is_empty(), "{} has no related entries", entry.id);
        let length = entry.answer.chars().count();
        assert!(length <= 1200, "{} answer has {length} characters", entry.id);
    }
}

#[test]
fn shipped_knowledge_covers_every_required_topic() {
    // One entry id per topic the knowledge base must cover (issue 2's list).
    let required = [
        "what-is-ptsd",
        "ptsd-symptoms",
        "ptsd-treatments",
        "benzodiazepines-ptsd",
        "what-is-ketamine",
        "how-ketamine-works",
        "legal-status",
        "approved-for-ptsd",
        "esketamine-spravato",
        "spravato-rems",
        "trials-overview",
        "how-fast",
        "how-long-lasts",
        "treatment-resistant",
        "veterans",
        "depression-and-ptsd",
        "anxiety",
        "chronic-pain",
        "is-it-a-cure",
        "first-line",
        "consultation-screening",
        "during-infusion",
        "infusion-length",
        "monitoring",
        "recovery-observation",
        "number-of-sessions",
        "maintenance",
        "preparation-eating",
        "ride-home",
        "driving-after",
        "other-routes",
        "at-home-ketamine",
        "ketamine-assisted-psychotherapy",
        "combining-with-therapy",
        "tell-clinician-medicines",
        "common-side-effects",
        "dissociation",
        "blood-pressure",
        "long-term-risks",
        "addiction-misuse",
        "who-should-not",
        "pregnancy-breastfeeding",
        "young-people",
        "cost",
        "insurance",
        "choosing-provider",
        "compare-ssris",
        "ketamine-suicidal-thoughts",
        "about-bot",
        "privacy",
        // Issue 12: what patients actually ask.
        "get-help-now",
        "worse-after-session",
        "ptsd-worse-memories",
        "psychosis-bipolar",
        "va-tricare",
        "finding-ptsd-care",
        "alcohol-drugs",
        "antidepressants-during",
        "is-it-working",
        "if-it-does-not-work",
        "spravato-course",
        "outside-us",
        "family-help",
        "warning-signs",
        "substance-use-history",
        "mdma-therapy",
        "psilocybin",
        "stellate-ganglion-block",
        "drug-tests-duty",
        "clinical-trials",
        "missed-sessions",
        "older-adults-heart",
        "dissociation-needed",
    ];
    let kb = shipped();
    let missing: Vec<_> = required.iter().filter(|id| kb.entry(id).is_none()).collect();
    assert!(missing.is_empty(), "missing entries: {missing:?}");
    let suicide = kb.entry("ketamine-suicidal-thoughts").map(|entry| entry.crisis_resources);
    assert_eq!(suicide, Some(true), "the suicidal-thoughts entry must always show crisis lines");
    for id in ["get-help-now", "worse-after-session", "warning-signs"] {
        let shows = kb.entry(id).map(|entry| entry.crisis_resources);
        assert_eq!(shows, Some(true), "{id} must always show the crisis lines");
    }
}

#[test]
fn the_welcome_text_has_a_one_line_crisis_pointer() {
    let kb = shipped();
    let pointer = kb.messages.welcome.lines().find(|line| line.contains("988"));
    let Some(line) = pointer else { panic!("no line of the welcome text mentions 988:\n{}", kb.messages.welcome) };
    assert!(line.to_lowercase().contains("suicide") || line.to_lowercase().contains("danger"), "{line}");
    assert!(line.contains("emergency"), "the pointer should also name the emergency number: {line}");
}

// ---- Readability ------------------------------------------------------------

/// The most an answer's Flesch-Kincaid grade may be: about grade 8, with a
/// little room for the counter's roughness.
const MAX_GRADE: f64 = 9.0;

#[test]
fn every_answer_reads_at_about_grade_eight() {
    let kb = shipped();
    let mut too_hard: Vec<(f64, &str)> = kb
        .entries
        .iter()
        .map(|entry| (flesch_kincaid_grade(&entry.answer), entry.id.as_str()))
        .filter(|(grade, _)| *grade > MAX_GRADE)
        .collect();
    too_hard.sort_by(|a, b| b.0.total_cmp(&a.0));
    let listed: Vec<String> = too_hard.iter().map(|(grade, id)| format!("{id}: {grade:.1}")).collect();
    assert!(too_hard.is_empty(), "answers above grade {MAX_GRADE}:\n{}", listed.join("\n"));
}

#[test]
fn the_grade_counter_tells_plain_from_dense_text() {
    let plain = "The cat sat on the mat. It was a warm day. We went home.";
    let dense = "Pharmacological interventions demonstrating considerable heterogeneity necessitate \
                 comprehensive individualized evaluation incorporating multidimensional psychiatric assessment.";
    assert!(flesch_kincaid_grade(plain) < 2.0, "plain: {}", flesch_kincaid_grade(plain));
    assert!(flesch_kincaid_grade(dense) > 20.0, "dense: {}", flesch_kincaid_grade(dense));
    for (word, syllables) in [("cat", 1), ("ketamine", 3), ("infusion", 3), ("table", 2), ("make", 1), ("PTSD", 1)] {
        assert_eq!(syllable_count(word), syllables, "{word}");
    }
}

/// Flesch-Kincaid grade: 0.39 × words per sentence + 11.8 × syllables per
/// word − 15.59. A sentence ends at `.`, `!` or `?` before a space or the end,
/// and at each line break, so every bullet counts as one sentence.
fn flesch_kincaid_grade(text: &str) -> f64 {
    let words: Vec<&str> = text
        .split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’' || c == '-'))
        .filter(|word| word.chars().next().is_some_and(char::is_alphanumeric))
        .collect();
    let mut sentences = 0;
    for line in text.lines() {
        let mut current_has_word = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if c.is_alphanumeric() {
                current_has_word = true;
            }
            let ends = matches!(c, '.' | '!' | '?') && chars.peek().is_none_or(|next| next.is_whitespace());
            if ends && current_has_word {
                sentences += 1;
                current_has_word = false;
            }
        }
        if current_has_word {
            sentences += 1;
        }
    }
    if words.is_empty() || sentences == 0 {
        return 0.0;
    }
    let syllables: usize = words.iter().map(|word| syllable_count(word)).sum();
    0.39 * words.len() as f64 / sentences as f64 + 11.8 * syllables as f64 / words.len() as f64 - 15.59
}

/// Vowel groups (with y), less a silent final e; at least one. Numbers and
/// abbreviations count as one syllable.
fn syllable_count(word: &str) -> usize {
    let letters: String = word.chars().filter(char::is_ascii_alphabetic).map(|c| c.to_ascii_lowercase()).collect();
    if letters.is_empty() {
        return 1;
    }
    let is_vowel = |c: char| matches!(c, 'a' | 'e' | 'i' | 'o' | 'u' | 'y');
    let mut groups = 0;
    let mut previous_vowel = false;
    for c in letters.chars() {
        let vowel = is_vowel(c);
        if vowel && !previous_vowel {
            groups += 1;
        }
        previous_vowel = vowel;
    }
    if letters.ends_with('e') && !letters.ends_with("le") && groups > 1 {
        groups -= 1;
    }
    groups.max(1)
}

#[test]
fn shipped_knowledge_makes_no_marketing_claims_and_cites_no_unusable_source() {
    let banned = [
        "non-addictive",
        "minimal side effects",
        "cures ptsd",
        "miracle",
        "breakthrough",
        "groundbreaking",
        "revolutionary",
        "mcgirr",
        "aan het rot",
        "lai 2014",
        "price 2018",
        "smith & lee",
        "169(6)",
        "171(6)",
    ];
    // The TOML files are what users read; knowledge/README.md names these
    // phrases as ones to avoid.
    let content = knowledge_files().into_iter().filter(|path| path.extension().is_some_and(|ext| ext == "toml"));
    for path in content {
        let text = fs::read_to_string(&path).unwrap_or_default().to_lowercase();
        for phrase in banned {
            assert!(!text.contains(phrase), "{} contains {phrase:?}", path.display());
        }
    }
}

#[test]
fn every_doi_and_url_in_knowledge_is_a_verified_reference() {
    let verified: HashSet<String> = fs::read_to_string("tests/data/verified-references.txt")
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let doi = regex::Regex::new(r#"\b10\.\d{4,9}/[^\s"',;]+[^\s"',;.]"#).expect("valid pattern");
    let domain = regex::Regex::new(r"\b(?:https?://)?((?:[a-z0-9-]+\.)+(?:org|com|net|gov|edu|io|uk|info)\b)")
        .expect("valid pattern");
    let mut found = 0;
    for path in knowledge_files() {
        let text = fs::read_to_string(&path).unwrap_or_default();
        for hit in doi.find_iter(&text) {
            found += 1;
            assert!(verified.contains(hit.as_str()), "{}: unverified DOI {}", path.display(), hit.as_str());
        }
        for hit in domain.captures_iter(&text.to_lowercase()) {
            found += 1;
            assert!(verified.contains(&hit[1]), "{}: unverified address {}", path.display(), &hit[1]);
        }
    }
    assert!(found >= 8, "expected the DOIs and crisis sites, found {found} references");
}

fn knowledge_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["knowledge", "knowledge/faq"] {
        for item in fs::read_dir(dir).into_iter().flatten().flatten() {
            if item.path().is_file() {
                files.push(item.path());
            }
        }
    }
    assert!(files.len() >= 5, "knowledge files not found");
    files
}

// ---- A broken knowledge base: every problem, each at its place -------------

/// Writes `files` into a fresh directory and returns it.
fn fixture(files: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        let path = dir.path().join(name);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, text).expect("write fixture");
    }
    dir
}

fn messages_without(missing: &str) -> String {
    Messages::KEYS
        .iter()
        .filter(|key| **key != missing)
        .map(|key| format!("{key} = \"Some text for {key}.\"\n"))
        .collect()
}

const SOURCES: &str = r#"
[[source]]
id = "trial"
label = "A trial"
citation = "A trial of something. Journal 2020."
doi = "10.1000/trial"

[[source]]
id = "orphan"
label = "Nobody cites me"
citation = "An uncited review. Journal 2021."
publisher = "unknown key here"
"#;

const SYNONYMS: &str = "groups = [[\"iv\", \"infusion\"]]\n";

const BROKEN_SYNTAX: &str = "[topic]\nid = \"a\"\ntitle = \"Unclosed\n";

fn entries_b(long_answer: &str) -> String {
    format!(
        r#"[topic]
id = "b"
title = "Topic B"

[[entry]]
id = "first"
question = "What is first?"
alternates = ["Tell me about FIRST!", "first thing"]
answer = "An answer."
sources = ["trial", "missing-source"]
related = ["second", "ghost"]
colour = "unknown key"

[[entry]]
id = "second"
alternates = "not a list"
answer = "   "
sources = ["trial"]

[[entry]]
id = "long"
question = "Why so long?"
alternates = ["very long"]
answer = "{long_answer}"
sources = ["trial"]
"#
    )
}

const ENTRIES_C: &str = r#"[topic]
id = "c"
title = "Topic C"

[[entry]]
id = "first"
question = "tell me about first"
alternates = ["something else"]
answer = "Another answer."
sources = ["trial"]
"#;

/// Line and column (1-based, characters) where `needle` starts in `text`.
fn at(text: &str, needle: &str) -> (usize, usize) {
    let offset = text.find(needle).unwrap_or_else(|| panic!("{needle:?} not in fixture"));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}

#[test]
fn a_broken_knowledge_base_reports_every_problem_at_its_place() {
    let long_answer = "word ".repeat(900);
    let b = entries_b(long_answer.trim());
    let dir = fixture(&[
        ("sources.toml", SOURCES.to_owned()),
        ("messages.toml", messages_without("refusal")),
        ("synonyms.toml", SYNONYMS.to_owned()),
        ("faq/a.toml", BROKEN_SYNTAX.to_owned()),
        ("faq/b.toml", b.clone()),
        ("faq/c.toml", ENTRIES_C.to_owned()),
    ]);
    let problems = match knowledge::load(dir.path()) {
        Err(LoadError::Invalid(problems)) => problems.problems,
        other => panic!("expected problems, got {other:?}"),
    };
    let path = |name: &str| dir.path().join(name);
    let expected: Vec<(PathBuf, (usize, usize), &str)> = vec![
        (path("faq/a.toml"), (3, 18), "TOML syntax"),
        (
            path("faq/b.toml"),
            at(&b, "\"missing-source\""),
            "cites source `missing-source`, which is not in sources.toml",
        ),
        (path("faq/b.toml"), at(&b, "\"ghost\""), "relates to `ghost`, which is not an entry id"),
        (path("faq/b.toml"), at(&b, "colour"), "unknown key `colour` in [[entry]]"),
        (path("faq/b.toml"), at(&b, "[[entry]]\nid = \"second\""), "missing required key `question`"),
        (
            path("faq/b.toml"),
            at(&b, "\"not a list\""),
            "`alternates` in [[entry]] must be an array of strings, found string",
        ),
        (path("faq/b.toml"), at(&b, "\"   \""), "`answer` in [[entry]] is empty"),
        (path("faq/b.toml"), at(&b, "\"long\"\n"), "too long for one Telegram message"),
        (path("faq/c.toml"), at(ENTRIES_C, "\"first\""), "duplicate entry id `first`"),
        (path("faq/c.toml"), at(ENTRIES_C, "\"tell me about first\""), "is the same as one of entry `first`"),
        (path("messages.toml"), (1, 1), "required message `refusal` is missing"),
        (path("sources.toml"), at(SOURCES, "\"orphan\""), "source `orphan` is not cited by any entry"),
        (path("sources.toml"), at(SOURCES, "publisher"), "unknown key `publisher` in [[source]]"),
    ];
    for (file, (line, col), fragment) in &expected {
        let found = problems
            .iter()
            .any(|p: &Problem| &p.path == file && p.line == *line && p.col == *col && p.message.contains(fragment));
        assert!(found, "no problem {fragment:?} at {}:{line}:{col}; got:\n{}", file.display(), list(&problems));
    }
    assert_eq!(problems.len(), expected.len(), "unexpected extra problems:\n{}", list(&problems));
}

fn list(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("  {p}\n")).collect()
}

#[test]
fn a_missing_required_file_or_empty_faq_is_reported() {
    let dir = fixture(&[("messages.toml", messages_without("none")), ("notes.toml", "x = 1\n".to_owned())]);
    let problems = match knowledge::load(dir.path()) {
        Err(LoadError::Invalid(problems)) => problems.problems,
        other => panic!("expected problems, got {other:?}"),
    };
    let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
    for fragment in ["`sources.toml` is missing", "`synonyms.toml` is missing", "no FAQ files", "unexpected file"] {
        assert!(messages.iter().any(|m| m.contains(fragment)), "no {fragment:?} in {messages:?}");
    }
}

// ---- The `check` command ----------------------------------------------------

fn faqbot(args: &[&str]) -> std::process::Output {
    bin::faqbot().args(args).output().expect("run faqbot")
}

#[test]
fn check_prints_a_summary_and_exits_zero_on_the_shipped_knowledge() {
    let output = faqbot(&["check"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "stdout: {stdout}");
    assert_eq!(stdout.lines().count(), 1, "one summary line: {stdout}");
    assert!(stdout.contains("52 entries") || stdout.contains(" entries,"), "{stdout}");
    assert!(stdout.contains("alternates") && stdout.contains("sources") && stdout.contains("files"), "{stdout}");
}

#[test]
fn output_closed_early_ends_the_command_quietly() {
    // `faqbot check | head -0`: the reader is gone before the summary line
    // is written. That used to panic (exit 101) in `println!`.
    let mut child = bin::faqbot()
        .args(["--lexical-only", "check"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run faqbot");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("wait for faqbot");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn check_lists_problems_as_path_line_col_and_exits_one() {
    let dir = fixture(&[
        ("sources.toml", SOURCES.to_owned()),
        ("messages.toml", messages_without("refusal")),
        ("synonyms.toml", SYNONYMS.to_owned()),
        ("faq/a.toml", BROKEN_SYNTAX.to_owned()),
    ]);
    let knowledge = dir.path().to_string_lossy().into_owned();
    let output = faqbot(&["check", "--knowledge", &knowledge]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let expected_a = format!("{}:3:18: TOML syntax", dir.path().join("faq/a.toml").display());
    assert!(stdout.lines().any(|line| line.starts_with(&expected_a)), "{stdout}");
    let expected_m =
        format!("{}:1:1: required message `refusal` is missing", dir.path().join("messages.toml").display());
    assert!(stdout.lines().any(|line| line == expected_m), "{stdout}");
}

#[test]
fn check_on_a_missing_directory_cannot_run_and_exits_two() {
    let output = faqbot(&["check", "--knowledge", "/nonexistent/faqbot-knowledge"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot read the knowledge directory"), "{stderr}");
}

#[test]
fn check_notes_entries_with_few_alternates() {
    let dir = tempfile::tempdir().expect("temporary directory");
    bin::copy_dir(Path::new("tests/data/kb2/knowledge"), dir.path());
    let file = dir.path().join("faq/01-sleep-basics.toml");
    let text = std::fs::read_to_string(&file).expect("read the sleep basics");
    let start = text.find("alternates = [").expect("an alternates list");
    let end = start + text[start..].find("]\n").expect("the list's end") + 1;
    let thinned = format!("{}alternates = [\"how long should a grown up sleep\"]{}", &text[..start], &text[end..]);
    std::fs::write(&file, thinned).expect("write the thinned entry");

    let knowledge = dir.path().to_string_lossy().into_owned();
    let output = faqbot(&["--lexical-only", "check", "--knowledge", &knowledge]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .lines()
            .any(|line| line.starts_with("note: 1 of 42 entries have fewer than 12 alternates: how-much-sleep (1).")),
        "{stderr}"
    );
    // The shipped knowledge base has no such entry.
    assert!(!String::from_utf8_lossy(&faqbot(&["--lexical-only", "check"]).stderr).contains("note:"));
}
