//! `faqbot import` and `faqbot export`: FAQ files as curators bring them in
//! become knowledge directories that load; what cannot be fixed is reported
//! at the line it came from; and the shipped knowledge base survives an
//! export and an import unchanged.

use std::path::{Path, PathBuf};
use std::process::Command;

use faqbot::import::{self, Format, Report};
use faqbot::knowledge::{self, KnowledgeBase};

/// The shipped knowledge base: the template for messages, synonyms and sources.
const TEMPLATE: &str = "knowledge";

struct Imported {
    report: Report,
    /// The loaded result, or the problems `load` found.
    kb: Result<KnowledgeBase, String>,
    input: PathBuf,
    _dir: tempfile::TempDir,
}

/// Writes `text` to a temporary `name`, imports it, and loads the result.
fn check(name: &str, text: &str) -> Imported {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join(name);
    std::fs::write(&input, text).expect("write input");
    let out = dir.path().join("kb");
    let format = Format::from_path(&input).expect("a known extension");
    let options = import::Options { format, out: out.clone(), template: TEMPLATE.into(), force: false };
    let report = import::import(&input, &options).expect("import runs");
    let kb = knowledge::load(&out).map_err(|error| match error {
        knowledge::LoadError::Invalid(problems) => {
            problems.problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
        }
        other => other.to_string(),
    });
    Imported { report, kb, input, _dir: dir }
}

impl Imported {
    fn kb(&self) -> &KnowledgeBase {
        match &self.kb {
            Ok(kb) => kb,
            Err(problems) => {
                panic!("the import does not load:\n{problems}\nimport problems: {:#?}", self.report.problems)
            }
        }
    }

    /// Every problem as `line: message`, in order.
    fn problems(&self) -> Vec<(usize, Option<usize>, String)> {
        self.report
            .problems
            .iter()
            .map(|problem| (problem.origin.line, problem.origin.item, problem.message.clone()))
            .collect()
    }

    fn lines(&self) -> Vec<usize> {
        self.report.problems.iter().map(|problem| problem.origin.line).collect()
    }

    fn assert_clean(&self) {
        assert!(self.report.problems.is_empty(), "{:#?}", self.problems());
        assert!(self.report.check_problems.is_empty(), "{:#?}", self.report.check_problems);
        assert!(self.report.is_clean());
        self.kb();
    }

    fn entry(&self, question: &str) -> &knowledge::Entry {
        let kb = self.kb();
        kb.entries.iter().find(|entry| entry.question == question).unwrap_or_else(|| {
            panic!("no entry {question:?}; have {:?}", kb.entries.iter().map(|e| &e.question).collect::<Vec<_>>())
        })
    }

    fn topic_title(&self, entry: &knowledge::Entry) -> String {
        self.kb().topics[entry.topic].title.clone()
    }
}

#[test]
fn a_csv_faq_becomes_a_knowledge_base_that_loads() {
    let imported = check(
        "faq.csv",
        "Question,Answer,Alternate questions,Source,Category\n\
         How long does an infusion take?,\"About 40 minutes, then an hour of rest.\n\nBring someone to drive you home.\",how long is a session|infusion length,https://www.example.org/faq/infusions,Practical\n\
         Is ketamine addictive?,\"It can be misused; clinics watch for that.\",\"can i get hooked on ketamine\nketamine addiction risk\",Sanacora et al. 2017,Risks\n\
         What does it cost?,It varies by clinic.,,https://www.example.org/faq/infusions,Practical\n",
    );
    imported.assert_clean();
    let kb = imported.kb();
    assert_eq!(kb.entries.len(), 3);
    let titles: Vec<&str> = kb.topics.iter().map(|topic| topic.title.as_str()).collect();
    assert_eq!(titles, ["Practical", "Risks"]);

    let infusion = imported.entry("How long does an infusion take?");
    assert_eq!(infusion.alternates, ["how long is a session", "infusion length"]);
    assert_eq!(infusion.answer, "About 40 minutes, then an hour of rest.\n\nBring someone to drive you home.");
    assert!(infusion.id.len() <= 40 && infusion.id.starts_with("how-long"), "{}", infusion.id);
    let source = kb.source(&infusion.sources[0]).expect("its source");
    assert_eq!(source.url.as_deref(), Some("https://www.example.org/faq/infusions"));
    assert_eq!(imported.entry("What does it cost?").sources, infusion.sources, "one URL, one source");

    let addictive = imported.entry("Is ketamine addictive?");
    assert_eq!(addictive.alternates, ["can i get hooked on ketamine", "ketamine addiction risk"]);
    assert_eq!(imported.topic_title(addictive), "Risks");
    assert_eq!(kb.source(&addictive.sources[0]).map(|source| source.citation.as_str()), Some("Sanacora et al. 2017"));
}

#[test]
fn a_hosted_qna_tsv_export_has_one_entry_per_answer() {
    // The layout hosted QnA services export: one row per question, an answer
    // repeated for each of its questions, and columns the bot has no use for.
    let answer = "Ketamine is an anaesthetic that is also studied for PTSD.";
    let imported = check(
        "qna.tsv",
        &format!(
            "Question\tAnswer\tSource\tMetadata\tSuggestedQuestions\tIsContextOnly\tPrompts\tQnaId\n\
             What is ketamine?\t{answer}\thttps://example.org/qna\t\t[]\tfalse\t[]\t1\n\
             what's ketamine\t{answer}\thttps://example.org/qna\t\t[]\tfalse\t[]\t1\n\
             Tell me about ketamine\t{answer}\thttps://example.org/qna\t\t[]\tfalse\t[]\t1\n\
             Who can prescribe it?\tA licensed prescriber, after an assessment.\tEditorial\t\t[]\tfalse\t[]\t2\n"
        ),
    );
    imported.assert_clean();
    let kb = imported.kb();
    assert_eq!(kb.entries.len(), 2);
    let ketamine = imported.entry("What is ketamine?");
    assert_eq!(ketamine.alternates, ["what's ketamine", "Tell me about ketamine"]);
    assert_eq!(imported.topic_title(ketamine), import::DEFAULT_TOPIC_TITLE);
    assert_eq!(imported.report.stats.merged_rows, 2);
    assert!(
        imported.report.notes.iter().any(|note| note.contains("Metadata") && note.contains("QnaId")),
        "{:?}",
        imported.report.notes
    );
}

#[test]
fn json_arrays_and_entry_objects_both_import() {
    let array = check(
        "faq.json",
        r#"[
  {"question": "Can I drive after an infusion?", "answer": "Not until the next day.",
   "alternates": ["driving after ketamine", "can i drive home"], "sources": ["https://example.org/drive"], "topic": "Practical"},
  {"Question": "Does insurance pay?", "Answer": "Sometimes; ask your insurer.", "Source": "Editorial"}
]"#,
    );
    array.assert_clean();
    assert_eq!(
        array.entry("Can I drive after an infusion?").alternates,
        ["driving after ketamine", "can i drive home"]
    );
    assert_eq!(array.kb().topics.len(), 2);

    let wrapped = check(
        "qna.json",
        r#"{"qnaDocuments": [
  {"id": 1, "answer": "Not until the next day.", "source": "Editorial",
   "questions": ["Can I drive after an infusion?", "driving after ketamine"], "metadata": []}
]}"#,
    );
    wrapped.assert_clean();
    assert_eq!(wrapped.entry("Can I drive after an infusion?").alternates, ["driving after ketamine"]);
}

#[test]
fn repeated_phrasings_are_kept_once_on_their_first_entry() {
    let imported = check(
        "faq.csv",
        "question,answer,alternates,source\n\
         Is it safe?,Mostly; see the risks.,\"is it safe\nIs ketamine safe?\",Editorial\n\
         Is ketamine safe?,A second answer about safety.,ketamine safety|is it safe?,Editorial\n\
         How safe is ketamine,Mostly; see the risks.,is ketamine safe,Editorial\n\
         Is it safe?,A third answer.,,Editorial\n",
    );
    let kb = imported.kb();
    // The first row spans lines 2-3. The row at line 5 has its answer: merged
    // into its entry, and the phrasing both have is kept once.
    let first = imported.entry("Is it safe?");
    assert_eq!(first.alternates, ["Is ketamine safe?", "How safe is ketamine"]);
    // The row at line 4 loses the phrasings the first entry has and keeps its
    // new one as its question.
    let second = imported.entry("ketamine safety");
    assert!(second.alternates.is_empty());
    assert_eq!(second.answer, "A second answer about safety.");
    assert_eq!(kb.entries.len(), 2);
    // The row at line 6 asks only what the first row asks, with another answer: reported.
    assert_eq!(imported.lines(), [6], "{:#?}", imported.problems());
    assert!(imported.problems()[0].2.contains("already asked at line 2"), "{:#?}", imported.problems());
    assert_eq!(imported.report.stats.repeated_phrasings, 5);
    assert!(!imported.report.is_clean());
}

fn paragraph(number: usize, length: usize) -> String {
    let words = format!("Paragraph {number} says something useful about treatment. ");
    words.repeat(length / words.len() + 1).chars().take(length).collect::<String>().trim().to_owned()
}

#[test]
fn an_answer_over_telegram_s_limit_is_split_at_paragraph_breaks() {
    let long: Vec<String> = (1..=8).map(|number| paragraph(number, 700)).collect();
    let text = format!("question,answer,source\nWhat happens at a first visit?,\"{}\",Editorial\n", long.join("\n\n"));
    let imported = check("faq.csv", &text);
    imported.assert_clean();
    let kb = imported.kb();
    assert!(kb.entries.len() >= 2, "{}", kb.entries.len());
    let first = imported.entry("What happens at a first visit?");
    let second = imported.entry("What happens at a first visit? (part 2)");
    assert!(first.answer.starts_with("Paragraph 1") && second.answer.starts_with("Paragraph"));
    assert_eq!(first.related.first(), Some(&second.id), "the first part leads to the second");
    let rejoined: Vec<&str> = kb.entries.iter().map(|entry| entry.answer.as_str()).collect();
    assert_eq!(rejoined.join("\n\n"), long.join("\n\n"), "no text lost or reordered");
    assert_eq!(imported.report.stats.split_answers, 1);
}

#[test]
fn an_answer_that_cannot_be_split_is_reported_at_its_line() {
    let text = format!(
        "question,answer,source\nShort?,Short.,Editorial\nWhat happens at a first visit?,{},Editorial\n",
        paragraph(1, 5000)
    );
    let imported = check("faq.csv", &text);
    assert_eq!(imported.lines(), [3], "{:#?}", imported.problems());
    assert!(imported.problems()[0].2.contains("too long to split"), "{:#?}", imported.problems());
    // Written whole, so `check` points at it too.
    assert!(imported.report.check_problems.iter().any(|problem| problem.message.contains("too long")));
}

#[test]
fn every_problem_of_a_broken_csv_is_located_by_line() {
    let imported = check(
        "broken.csv",
        "question,answer,source\n\
         Fine question?,\"A fine answer\n\nover two paragraphs.\",Editorial\n\
         ,An answer without a question.,Editorial\n\
         A question without an answer?,,Editorial\n\
         No source?,An answer.,\n\
         Another fine one?,Fine.,Editorial\n\
         Quote never closed?,\"This cell runs on,Editorial\n\
         Lost row?,Lost.,Editorial\n",
    );
    let problems = imported.problems();
    assert_eq!(imported.lines(), [5, 6, 7, 9], "{problems:#?}");
    assert!(problems[0].2.contains("empty question"), "{problems:#?}");
    assert!(problems[1].2.contains("empty answer"), "{problems:#?}");
    assert!(problems[2].2.contains("no source"), "{problems:#?}");
    assert!(problems[3].2.contains("never closed"), "{problems:#?}");
    // The rows that were fine are written.
    assert!(!imported.report.written.is_empty());
    assert!(imported.report.check_problems.iter().any(|problem| problem.message.contains("at least one source")));
    let shown = imported.report.problems[0].to_string();
    assert!(shown.starts_with(&format!("{}:5: empty question", imported.input.display())), "{shown}");
}

#[test]
fn a_file_without_an_answer_column_says_which_columns_it_has() {
    let imported = check("faq.csv", "Question,Reply text,Source\nWhat is it?,A drug.,Editorial\n");
    assert_eq!(imported.lines(), [1]);
    let message = &imported.problems()[0].2;
    assert!(message.contains("no answer column") && message.contains("Reply text"), "{message}");
    assert!(imported.report.written.is_empty());
    assert!(imported.kb.is_err());
}

#[test]
fn every_problem_of_broken_json_is_located_by_item_and_line() {
    let imported = check("bad.json", "[\n  {\"question\": \"What is it?\", \"answer\": \"A drug.\",}\n]\n");
    assert_eq!(imported.lines(), [2], "{:#?}", imported.problems());
    assert!(imported.problems()[0].2.contains("not valid JSON"));

    let imported = check(
        "items.json",
        r#"{"entries": [
  {"question": "What is it?", "answer": "A drug.", "source": "Editorial"},
  "just a string",
  {"question": "", "answer": "No question.", "source": "Editorial"},

  {"question": "Bad alternates?", "answer": "Yes.", "alternates": 3, "source": "Editorial"}
]}"#,
    );
    let problems = imported.problems();
    let places: Vec<(usize, Option<usize>)> = problems.iter().map(|(line, item, _)| (*line, *item)).collect();
    assert_eq!(places, [(3, Some(1)), (4, Some(2)), (6, Some(3))], "{problems:#?}");
    assert!(problems[0].2.contains("must be an object"));
    assert!(problems[1].2.contains("empty question"));
    assert!(problems[2].2.contains("`alternates`"));
    assert_eq!(
        imported.report.problems[1].to_string(),
        format!("{}:4: item 2: {}", imported.input.display(), problems[1].2)
    );
}

#[test]
fn the_cli_exit_codes_say_whether_the_import_is_clean() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |file: &Path, out: &str| {
        Command::new(env!("CARGO_BIN_EXE_faqbot"))
            .args(["--knowledge", TEMPLATE, "import"])
            .arg(file)
            .arg("--out")
            .arg(dir.path().join(out))
            .output()
            .expect("run faqbot import")
    };
    let clean = dir.path().join("clean.csv");
    std::fs::write(&clean, "question,answer,source\nWhat is it?,A drug.,Editorial\n").expect("write");
    let output = run(&clean, "a");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));

    let broken = dir.path().join("broken.csv");
    std::fs::write(&broken, "question,answer,source\nWhat is it?,,Editorial\nWhy?,Because.,Editorial\n")
        .expect("write");
    let output = run(&broken, "b");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&format!("{}:2: empty answer", broken.display())), "{stdout}");

    let unknown = dir.path().join("faq.xlsx");
    std::fs::write(&unknown, "").expect("write");
    assert_eq!(run(&unknown, "c").status.code(), Some(2));
    // An existing knowledge base is never overwritten without --force.
    assert_eq!(run(&clean, "a").status.code(), Some(2));
}

/// Exports the shipped knowledge base in `format`, imports it back, and
/// compares every entry field by field.
fn round_trip(format: Format, name: &str) {
    let shipped = knowledge::load(Path::new(TEMPLATE)).expect("the shipped knowledge base loads");
    let dir = tempfile::tempdir().expect("temp dir");
    let exported = dir.path().join(name);
    let file = std::fs::File::create(&exported).expect("create export");
    faqbot::export::export(&shipped, format, file).expect("export");
    let out = dir.path().join("kb");
    let options = import::Options { format, out: out.clone(), template: TEMPLATE.into(), force: false };
    let report = import::import(&exported, &options).expect("import runs");
    assert!(report.is_clean(), "{:#?}\n{:#?}", report.problems, report.check_problems);
    let imported = knowledge::load(&out).expect("the import loads");

    let topics = |kb: &KnowledgeBase| kb.topics.iter().map(|t| (t.id.clone(), t.title.clone())).collect::<Vec<_>>();
    assert_eq!(topics(&imported), topics(&shipped));
    assert_eq!(imported.entries.len(), shipped.entries.len());
    for (got, want) in imported.entries.iter().zip(&shipped.entries) {
        assert_eq!(got.id, want.id);
        assert_eq!(got.topic, want.topic, "{}", want.id);
        assert_eq!(got.question, want.question, "{}", want.id);
        assert_eq!(got.alternates, want.alternates, "{}", want.id);
        assert_eq!(got.answer, want.answer, "{}", want.id);
        assert_eq!(got.sources, want.sources, "{}", want.id);
        assert_eq!(got.related, want.related, "{}", want.id);
        assert_eq!(got.crisis_resources, want.crisis_resources, "{}", want.id);
    }
    let mut got = imported.sources.clone();
    let mut want = shipped.sources.clone();
    got.sort_by(|a, b| a.id.cmp(&b.id));
    want.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(got, want);
    assert_eq!(imported.messages, shipped.messages);
    assert_eq!(imported.synonyms, shipped.synonyms);
}

#[test]
fn a_csv_export_imports_back_to_the_same_entries() {
    round_trip(Format::Csv, "export.csv");
}

#[test]
fn a_tsv_export_imports_back_to_the_same_entries() {
    round_trip(Format::Tsv, "export.tsv");
}

#[test]
fn a_json_export_imports_back_to_the_same_entries() {
    round_trip(Format::Json, "export.json");
}
