//! Curators see what the bot could not answer, grouped by meaning, and get
//! proposals to copy from: `faqbot report`, `/unanswered`'s text and
//! `faqbot suggest`, on fixtures of realistic unanswered questions.

#[path = "support/bin.rs"]
mod bin;

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::SystemTime;

use faqbot::engine::Engine;
use faqbot::model::Semantic;
use faqbot::report::{self, Grouping, Method};
use faqbot::responder::Kind;
use faqbot::store::{self, Event, Store};
use faqbot::text::normalize;

/// The shipped knowledge base with the embedding model.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let semantic = Semantic::load(&bin::model_dir(), None).expect("the model loads");
        Engine::load_with(Path::new("knowledge"), Some(semantic)).expect("the shipped knowledge loads")
    })
}

/// One block of a fixture: the entries its group may be nearest to, whether
/// suggest should call it close (`Some(true)`), new (`Some(false)`) or
/// either, and its questions.
struct Topic {
    nearest: Vec<String>,
    close: Option<bool>,
    questions: Vec<String>,
}

fn fixture(name: &str) -> Vec<Topic> {
    let path = Path::new("tests/data/unanswered").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let mut topics: Vec<Topic> = Vec::new();
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
        if let Some(header) = line.strip_prefix("## ") {
            let (nearest, class) = header.split_once(' ').expect("## <entries> <close|new|either>");
            let close = match class {
                "close" => Some(true),
                "new" => Some(false),
                "either" => None,
                other => panic!("{name}: unknown class {other:?}"),
            };
            let nearest = nearest.split('|').map(str::to_owned).collect();
            topics.push(Topic { nearest, close, questions: Vec::new() });
        } else if !line.starts_with('#') {
            topics.last_mut().expect("a question before the first block").questions.push(line.to_owned());
        }
    }
    topics
}

/// The rows the store would give for these questions.
fn rows(questions: &[&str]) -> Vec<(String, String, i64)> {
    let mut counts: HashMap<(String, String), i64> = HashMap::new();
    for question in questions {
        *counts.entry((normalize(question), (*question).to_owned())).or_default() += 1;
    }
    counts.into_iter().map(|((normalised, text), count)| (normalised, text, count)).collect()
}

fn group(engine: &Engine, questions: &[&str]) -> Grouping {
    report::group(engine, rows(questions), &HashMap::new(), 30).expect("grouping")
}

/// Groups the fixture and checks what it shows: every question in one
/// group, at most `max_groups` groups, at most `max_strays` questions grouped
/// with another topic's, and the largest group of each topic that an entry
/// covers ("close") nearest one of the block's entries. A new topic has no
/// right entry: the block names plausible ones for readers, and the suggest
/// test checks that it is proposed as new.
fn check_fixture(name: &str, max_groups: usize, max_strays: usize) {
    let topics = fixture(name);
    let questions: Vec<&str> = topics.iter().flat_map(|topic| topic.questions.iter().map(String::as_str)).collect();
    let grouping = group(engine(), &questions);
    assert_eq!(grouping.method, Method::Meaning);
    let listing = report::render(&grouping);
    println!("{name}: {} groups\n{listing}", grouping.groups.len());
    assert_eq!(grouping.questions, questions.len(), "{name}:\n{listing}");
    assert!(grouping.groups.len() <= max_groups, "{name}: {} groups:\n{listing}", grouping.groups.len());
    let topic_of = |text: &str| topics.iter().position(|topic| topic.questions.iter().any(|q| q == text));
    let mut strays = 0;
    for group in &grouping.groups {
        let mut counts = vec![0usize; topics.len()];
        for asked in &group.members {
            if let Some(topic) = topic_of(&asked.text) {
                counts[topic] += asked.count;
            }
        }
        strays += group.count - counts.iter().max().copied().unwrap_or(0);
        assert!(group.members.iter().any(|asked| asked.text == group.example), "{name}: {}", group.example);
    }
    println!(
        "{name}: {} groups, {strays} of {} questions grouped with another topic's",
        grouping.groups.len(),
        questions.len()
    );
    assert!(strays <= max_strays, "{name}: {strays} question(s) grouped with another topic's:\n{listing}");
    for (index, topic) in topics.iter().enumerate().filter(|(_, topic)| topic.close == Some(true)) {
        let largest = grouping
            .groups
            .iter()
            .filter(|group| group.members.iter().any(|asked| topic_of(&asked.text) == Some(index)))
            .max_by_key(|group| group.members.iter().filter(|asked| topic_of(&asked.text) == Some(index)).count())
            .expect("every topic has a group");
        let nearest = largest.nearest.as_ref().expect("a nearest entry");
        assert!(
            topic.nearest.contains(&nearest.entry),
            "{name}: {:?}'s largest group is nearest {}:\n{listing}",
            topic.questions.first(),
            nearest.entry
        );
    }
}

/// The fixture the thresholds were chosen on: six groups, at most 10 %
/// grouped with another topic.
#[test]
fn sixty_questions_in_six_topics_make_six_groups_nearest_their_entries() {
    check_fixture("six-topics.txt", 6, 6);
}

/// Never tuned on. Measured: 7 groups for 5 topics, 5 of 40 questions with
/// another topic's; the bounds guard that level against regressions.
#[test]
fn forty_questions_in_five_other_topics_not_tuned_on_make_about_five_groups() {
    check_fixture("five-topics.txt", 7, 5);
}

#[test]
fn without_the_model_each_distinct_text_is_its_own_group_and_the_report_says_so() {
    let lexical = Engine::load(Path::new("knowledge")).expect("knowledge");
    let grouping = group(
        &lexical,
        &["fasting before the infusion", "Fasting before the infusion?", "is caffeine ok before ketamine"],
    );
    assert_eq!(grouping.method, Method::Text);
    let counts: Vec<usize> = grouping.groups.iter().map(|group| group.count).collect();
    assert_eq!(counts, [2, 1]);
    let text = report::render(&grouping);
    assert!(text.contains("grouped by exact text only (no embedding model"), "{text}");
    assert!(
        text.contains("2× Fasting before the infusion? — nearest entry: preparation-eating, covers 100% of the words"),
        "{text}"
    );
}

#[test]
fn the_telegram_list_fits_one_message_and_says_how_many_groups_it_left_out() {
    let lexical = Engine::load(Path::new("knowledge")).expect("knowledge");
    let store = Store::in_memory(store::Options::default()).expect("store");
    for number in 0..400 {
        store.send(unanswered(&format!("question number {number} about something nobody wrote down yet ✨")));
    }
    store.flush();
    let text = report::for_telegram(&lexical, &store, 7);
    assert!(faqbot::text::telegram_len(&text) <= report::TELEGRAM_BUDGET, "{}", text.len());
    assert!(text.contains("400 asked, 400 group(s)"), "{text}");
    assert!(text.contains("more group(s): `faqbot report` lists them all."), "{text}");
    // With the clinician note it is still one message.
    let messages = faqbot::telegram::render::with_note(&text, &lexical.kb);
    assert_eq!(messages.len(), 1);
}

fn unanswered(question: &str) -> Event {
    Event::Reply { kind: Kind::NoMatch, entry: None, question: question.to_owned(), user: 77, at: SystemTime::now() }
}

/// A database holding the six-topic fixture as unanswered questions, three
/// 👎 on `preparation-eating`, a crisis message (never kept) and a crisis
/// text an older safety screen let through (kept, but never shown).
fn database() -> tempfile::TempDir {
    let data = tempfile::tempdir().expect("temp dir");
    let store = Store::open(data.path(), store::Options::default()).expect("store");
    for topic in fixture("six-topics.txt") {
        for question in &topic.questions {
            store.send(unanswered(question));
        }
    }
    for _ in 0..3 {
        store.send(Event::Feedback { entry: "preparation-eating".into(), up: false });
    }
    store.send(Event::Reply {
        kind: Kind::Crisis,
        entry: None,
        question: "i want to kill myself".into(),
        user: 78,
        at: SystemTime::now(),
    });
    store.send(unanswered("i am going to end my life tonight"));
    store.close();
    data
}

fn faqbot(args: &[&str], data: &Path) -> (bool, Option<i32>, String, String) {
    let output = bin::faqbot().args(args).arg("--data").arg(data).output().expect("run faqbot");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), output.status.code(), stdout, stderr)
}

#[test]
fn report_shows_groups_with_nearest_entries_and_dislikes_and_no_crisis_text() {
    let data = database();
    let (ok, _, out, err) = faqbot(&["report", "--days", "30"], data.path());
    assert!(ok, "{out}{err}");
    assert!(out.contains("60 asked, 6 group(s), grouped by meaning"), "{out}");
    let coffee = out.lines().find(|line| line.contains("nearest entry: preparation-eating")).unwrap_or_default();
    assert!(coffee.starts_with("  10 similar, e.g. “") && coffee.ends_with("👎 3"), "{out}");
    assert!(out.contains("2× coffee before ketamine treatment") || coffee.contains("coffee before ketamine"), "{out}");
    assert!(out.contains("1 stored question(s) left out: the safety screen reads them as a crisis."), "{out}");
    for crisis in ["kill myself", "end my life"] {
        assert!(!out.contains(crisis), "{out}");
    }
}

#[test]
fn suggest_writes_a_review_file_that_parses_and_that_check_never_loads() {
    let data = database();
    let work = tempfile::tempdir().expect("temp dir");
    let out = work.path().join("suggestions.toml");
    let out_arg = out.to_str().expect("a UTF-8 path");
    let (ok, _, stdout, err) = faqbot(&["suggest", "--out", out_arg], data.path());
    assert!(ok, "{stdout}{err}");
    // Measured: 5 entries get alternates and 1 skeleton is new. The OCD
    // questions sit 0.70 from the anxiety entry, so they are proposed as its
    // alternates, not as a new entry: a known limit, for the curator to catch.
    assert!(stdout.contains("for 5 existing entr(y/ies), 1 new entry skeleton(s)"), "{stdout}");
    let text = std::fs::read_to_string(&out).expect("the review file");
    for crisis in ["kill myself", "end my life"] {
        assert!(!text.contains(crisis), "{text}");
    }
    let table: toml::Table = toml::from_str(&text).unwrap_or_else(|error| panic!("{error}\n{text}"));
    let proposed: Vec<&str> = table["alternates"]
        .as_array()
        .expect("[[alternates]]")
        .iter()
        .filter_map(|item| item["entry"].as_str())
        .collect();
    for entry in ["preparation-eating", "common-side-effects", "drug-tests-duty", "blood-pressure"] {
        assert!(proposed.contains(&entry), "{proposed:?}\n{text}");
    }
    let entries = table["entry"].as_array().expect("[[entry]]");
    assert_eq!(entries.len(), 1, "{text}");
    for entry in entries {
        assert_eq!(entry["answer"].as_str(), Some(""), "{text}");
        assert!(entry["id"].as_str().is_some_and(|id| id.starts_with("new-") && id.len() <= 40), "{text}");
        assert!(entry["alternates"].as_array().is_some_and(|alternates| alternates.len() >= 5), "{text}");
    }
    let skeleton = toml::to_string(&entries[0]).expect("a table");
    assert!(skeleton.contains("dog") && !skeleton.contains("ocd"), "{text}");

    // Never over an existing file without --force, never into the knowledge directory.
    let (ok, code, _, err) = faqbot(&["suggest", "--out", out_arg], data.path());
    assert!(!ok && code == Some(2) && err.contains("already exists; pass --force"), "{err}");
    let (ok, _, _, err) = faqbot(&["suggest", "--force", "--out", out_arg], data.path());
    assert!(ok, "{err}");
    let knowledge = work.path().join("knowledge");
    bin::copy_dir(Path::new("knowledge"), &knowledge);
    let inside = knowledge.join("faq/99-suggestions.toml");
    let (ok, code, _, err) = faqbot(
        &["--knowledge", knowledge.to_str().expect("UTF-8"), "suggest", "--out", inside.to_str().expect("UTF-8")],
        data.path(),
    );
    assert!(!ok && code == Some(2) && err.contains("inside the knowledge directory"), "{err}");
    assert!(!inside.exists());

    // Copied there by hand anyway, `check` refuses the whole knowledge base.
    std::fs::copy(&out, &inside).expect("copy");
    let check = bin::faqbot().args(["--knowledge"]).arg(&knowledge).arg("check").output().expect("check");
    let problems = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{problems}");
    assert!(problems.contains("99-suggestions.toml"), "{problems}");
}

#[test]
fn suggest_without_the_model_says_it_needs_it() {
    let data = database();
    let work = tempfile::tempdir().expect("temp dir");
    let out = work.path().join("suggestions.toml");
    let (ok, code, _, err) = faqbot(&["--lexical-only", "suggest", "--out", out.to_str().expect("UTF-8")], data.path());
    assert!(!ok && code == Some(2) && err.contains("needs the embedding model"), "{err}");
    assert!(!out.exists());
}
