//! Admins keep the knowledge base alive: reloads that can never break the bot,
//! figures about what users could not get answered, and a database that keeps
//! no clear user ids and survives a killed process.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use faqbot::responder::Kind;
use faqbot::store::{self, Event, Store};
use support::bin::copy_dir;
use support::fake_telegram::{Call, FakeTelegram};
use support::{Bot, WAIT, teloxide_escape, terminate};

const ADMIN: i64 = 9000;

const EXTRA: &str = r#"[topic]
id = "clinic"
title = "Visiting a clinic"

[[entry]]
id = "parking"
question = "Is there parking at ketamine clinics?"
alternates = ["is there parking", "clinic parking", "where to park for an infusion", "parking for my appointment"]
answer = "Parking differs by clinic. Ask yours before the first visit, and plan a ride home: you cannot drive yourself after a session."
sources = ["spravato-label"]
related = ["ride-home"]
"#;

const BROKEN: &str = "[topic]\nid = \"clinic\"\ntitle = \"Visiting a clinic\n";

/// A writable copy of the shipped knowledge base.
fn knowledge_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(Path::new("knowledge"), dir.path());
    dir
}

async fn start_admin_bot(knowledge: &Path, store: Option<Store>) -> Bot {
    Bot::start_with_store(knowledge, store, |options| options.admins = vec![ADMIN as u64]).await
}

/// Sends `text` from `user` and returns the next message sent to them.
async fn exchange(bot: &Bot, user: i64, text: &str) -> Call {
    let before = bot.fake.calls_of("sendMessage").iter().filter(|c| c.chat_id() == Some(user)).count();
    bot.fake.push_text(user, text);
    let sent = bot.sent_to(user, before + 1).await;
    sent.get(before).cloned().unwrap_or_else(|| panic!("no reply to {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_entries_and_a_broken_one_keeps_the_old_version_answering() {
    let knowledge = knowledge_copy();
    let bot = start_admin_bot(knowledge.path(), None).await;

    let reply = exchange(&bot, ADMIN, "/reload").await;
    assert!(reply.text().contains("Reload done: reloaded in"), "{}", reply.text());
    assert!(reply.text().contains("Added: none. Removed: none. Changed: none."), "{}", reply.text());

    std::fs::write(knowledge.path().join("faq/08-clinic.toml"), EXTRA).expect("write");
    let reply = exchange(&bot, ADMIN, "/reload").await;
    let shipped = bot.engine.kb.entries.len();
    let one_more = format!("{} entries", shipped + 1);
    assert!(reply.text().contains(&one_more) && reply.text().contains("Added: parking."), "{}", reply.text());
    let reply = exchange(&bot, 4242, "is there parking at the clinic?").await;
    assert!(reply.text().starts_with("<b>Is there parking at ketamine clinics?</b>"), "{}", reply.text());

    std::fs::write(knowledge.path().join("faq/08-clinic.toml"), BROKEN).expect("write");
    let reply = exchange(&bot, ADMIN, "/reload").await;
    let text = reply.text();
    assert!(text.contains("Reload refused"), "{text}");
    assert!(text.contains("08-clinic.toml:3:27: TOML syntax"), "{text}");
    assert!(text.contains(&format!("Still serving the previous version ({one_more}, loaded at")), "{text}");
    // The previous version still answers, the new entry included.
    let reply = exchange(&bot, 4242, "is there parking at the clinic?").await;
    assert!(reply.text().starts_with("<b>Is there parking at ketamine clinics?</b>"), "{}", reply.text());
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_do_not_exist_for_anyone_else() {
    let knowledge = knowledge_copy();
    let bot = start_admin_bot(knowledge.path(), None).await;
    let unknown = teloxide_escape(&bot.engine.kb.messages.unknown_command);
    std::fs::write(knowledge.path().join("faq/08-clinic.toml"), EXTRA).expect("write");
    for command in ["/reload", "/stats", "/unanswered 3"] {
        let reply = exchange(&bot, 1234, command).await;
        assert!(reply.text().starts_with(&unknown), "{command}: {}", reply.text());
    }
    // Nothing was reloaded: the new entry is not known.
    assert_eq!(bot.reloader.engine.load().kb.entries.len(), bot.engine.kb.entries.len());
    // The admin menu is registered for the admin's chat only.
    let menus = bot.fake.calls_of("setMyCommands");
    let scoped: Vec<&Call> = menus.iter().filter(|call| call.params.get("scope").is_some()).collect();
    assert_eq!(scoped.len(), 1, "{menus:#?}");
    assert_eq!(scoped[0].params["scope"]["chat_id"], ADMIN);
    let names = |call: &Call| -> Vec<String> {
        call.params["commands"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["command"].as_str().map(String::from))
            .collect()
    };
    assert!(names(scoped[0]).contains(&"reload".to_owned()));
    let public = menus.iter().find(|call| call.params.get("scope").is_none()).expect("public menu");
    assert!(!names(public).contains(&"reload".to_owned()));
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_unanswered_show_what_was_stored() {
    let data = tempfile::tempdir().expect("temp dir");
    let store = Store::open(data.path(), store::Options::default()).expect("store");
    let bot = start_admin_bot(Path::new("knowledge"), Some(store.clone())).await;
    let user = 5150;
    exchange(&bot, user, "how much does it cost").await;
    exchange(&bot, user, "what is the capital of france").await;
    exchange(&bot, user, "What is the capital of France?").await;
    exchange(&bot, user, "I want to kill myself").await;
    store.flush();
    let stats = exchange(&bot, ADMIN, "/stats").await;
    let text = stats.text();
    let entries = format!("{} entries", bot.engine.kb.entries.len());
    assert!(text.contains("Up for") && text.contains(&entries), "{text}");
    assert!(text.contains("Replies today:") && text.contains("no_match 2"), "{text}");
    assert!(text.contains("Crisis replies, last 7 days: 1"), "{text}");
    assert!(text.contains("1  cost"), "{text}");
    let unanswered = exchange(&bot, ADMIN, "/unanswered").await;
    assert!(unanswered.text().contains("2× What is the capital of France?"), "{}", unanswered.text());
    assert!(!unanswered.text().contains("kill myself"), "crisis messages are never stored");
    bot.stop().await;
}

#[test]
fn retention_purges_old_questions_and_crisis_texts_are_never_kept() {
    let data = tempfile::tempdir().expect("temp dir");
    let store = Store::open(data.path(), store::Options { retention: Duration::from_secs(86_400) }).expect("store");
    let now = SystemTime::now();
    let event = |question: &str, kind: Kind, at: SystemTime| Event::Reply {
        kind,
        entry: None,
        question: question.to_owned(),
        user: 1,
        at,
    };
    store.send(event("an old question about parking", Kind::NoMatch, now - Duration::from_secs(3 * 86_400)));
    store.send(event("a recent question about parking", Kind::NoMatch, now));
    store.send(event("I want to die", Kind::Crisis, now));
    store.send(Event::Purge { now });
    store.flush();
    let rows = store.read(|connection| store::unanswered(connection, now, 30)).expect("read");
    assert_eq!(rows, [(1, "a recent question about parking".to_owned())]);
}

#[test]
fn the_database_file_holds_no_clear_user_ids() {
    let data = tempfile::tempdir().expect("temp dir");
    let store = Store::open(data.path(), store::Options::default()).expect("store");
    let user = 424_242_424u64;
    for question in ["what is the capital of france", "tell me a joke"] {
        store.send(Event::Reply {
            kind: Kind::NoMatch,
            entry: None,
            question: question.into(),
            user,
            at: SystemTime::now(),
        });
    }
    store.flush();
    let mut seen_question = false;
    for file in std::fs::read_dir(data.path()).expect("data dir").flatten() {
        let bytes = std::fs::read(file.path()).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        seen_question |= text.contains("tell me a joke");
        assert!(!text.contains("424242424"), "{} holds the user id", file.path().display());
        assert!(!bytes.windows(8).any(|window| window == user.to_be_bytes() || window == user.to_le_bytes()));
    }
    assert!(seen_question, "the question itself is stored, for curation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_storm_loses_and_fails_no_question() {
    let knowledge = knowledge_copy();
    std::fs::write(knowledge.path().join("faq/08-clinic.toml"), EXTRA).expect("write");
    let bot = Bot::start(knowledge.path(), |options| {
        options.throttle = false;
        options.flood_per_minute = usize::MAX;
    })
    .await;
    let reloader = bot.reloader.clone();
    let extra = knowledge.path().join("faq/08-clinic.toml");
    let storm = std::thread::spawn(move || {
        let mut reloaded = 0;
        for round in 0..50 {
            // Two valid versions in turn: the answer text changes each time.
            let version = EXTRA.replace("Parking differs by clinic.", &format!("Parking differs by clinic ({round})."));
            std::fs::write(&extra, version).expect("write");
            if reloader.reload().is_ok() {
                reloaded += 1;
            }
        }
        reloaded
    });
    let (users, questions) = (100i64, 1500usize);
    for index in 0..questions {
        let question = if index % 2 == 0 { "is there parking at the clinic?" } else { "how much does it cost" };
        bot.fake.push_text(20_000 + index as i64 % users, question);
    }
    let replies = bot.fake.wait_for_count("sendMessage", questions, Duration::from_secs(120)).await;
    let reloaded = storm.join().expect("storm");
    assert_eq!(reloaded, 50, "every reload of a valid version went through");
    bot.idle().await;
    assert_eq!(replies, questions);
    let sent = bot.fake.calls_of("sendMessage");
    assert_eq!(sent.len(), questions, "no question answered twice");
    for call in &sent {
        let text = call.text();
        assert!(
            text.starts_with("<b>Is there parking at ketamine clinics?</b>")
                || text.starts_with("<b>How much does ketamine"),
            "every question answered by one whole version: {text}"
        );
    }
    bot.stop().await;
}

#[test]
fn an_unchanged_version_reuses_its_self_test_and_any_edit_runs_it_again() {
    use faqbot::admin::Reloader;
    use faqbot::engine::Engine;
    use faqbot::model::Semantic;

    let knowledge = knowledge_copy();
    // A cache of its own, so no earlier run's result is found; the shared
    // vectors are copied only to save embedding them again.
    let cache = tempfile::tempdir().expect("temp dir");
    for item in std::fs::read_dir(support::bin::cache_dir()).into_iter().flatten().flatten() {
        if item.file_name().to_string_lossy().starts_with("vectors-") {
            std::fs::copy(item.path(), cache.path().join(item.file_name())).expect("copy the vectors");
        }
    }
    let semantic = Semantic::load(&support::bin::model_dir(), Some(cache.path())).expect("the model loads");
    let engine = Engine::load_with(knowledge.path(), Some(semantic)).expect("the shipped knowledge base");
    let reloader = Reloader::new(knowledge.path().to_path_buf(), Arc::new(ArcSwap::from_pointee(engine)));
    let reload = || reloader.reload().unwrap_or_else(|refused| panic!("{refused}"));

    let first = reload();
    assert!(!first.self_test_reused, "nothing was kept yet: {first}");
    let again = reload();
    assert!(again.self_test_reused, "{again}");
    assert!(again.to_string().contains("Self-test: passed before on this exact version."), "{again}");

    std::fs::write(knowledge.path().join("faq/08-clinic.toml"), EXTRA).expect("write");
    let edited = reload();
    assert!(!edited.self_test_reused && edited.added == ["parking"], "{edited}");
    assert!(reload().self_test_reused);

    // A damaged result is never trusted: the self-test runs, and is kept again.
    let kept: Vec<_> = std::fs::read_dir(cache.path().join("self-tests")).expect("kept results").flatten().collect();
    assert_eq!(kept.len(), 2, "one result per version");
    for item in &kept {
        std::fs::write(item.path(), "not a result").expect("damage");
    }
    assert!(!reload().self_test_reused);
    assert!(reload().self_test_reused);
}

// ---- The built binary: SIGHUP, --watch, a killed process ---------------------

fn serve_with(fake: &FakeTelegram, knowledge: &Path, data: &Path, extra: &[&str]) -> std::process::Child {
    let mut command = support::bin::faqbot();
    command
        .arg("serve")
        .args(extra)
        .env("TELOXIDE_TOKEN", support::TOKEN)
        .env("TELOXIDE_API_URL", fake.url())
        .env("FAQBOT_KNOWLEDGE", knowledge)
        .env("FAQBOT_DATA", data)
        .env("FAQBOT_ADMINS", ADMIN.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    command.spawn().expect("start faqbot serve")
}

/// Asks until the parking entry answers (a reload is asynchronous).
async fn parking_is_answered(fake: &FakeTelegram, user: i64) -> bool {
    for _ in 0..30 {
        let before = fake.count("sendMessage");
        fake.push_text(user, "is there parking at the clinic?");
        fake.wait_for_count("sendMessage", before + 1, WAIT).await;
        let sent = fake.calls_of("sendMessage");
        if sent.last().is_some_and(|call| call.text().starts_with("<b>Is there parking")) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_running_binary() {
    let knowledge = knowledge_copy();
    let data = tempfile::tempdir().expect("temp dir");
    let fake = FakeTelegram::start().await.expect("fake");
    let mut child = serve_with(&fake, knowledge.path(), data.path(), &[]);
    fake.wait_for_calls("setMyCommands", 1, WAIT).await;
    std::fs::write(knowledge.path().join("faq/08-clinic.toml"), EXTRA).expect("write");
    let status = std::process::Command::new("kill").args(["-HUP", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    assert!(parking_is_answered(&fake, 31).await, "SIGHUP did not reload");
    terminate(&child);
    assert!(child.wait().expect("wait").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reloads_when_the_files_change() {
    let knowledge = knowledge_copy();
    let data = tempfile::tempdir().expect("temp dir");
    let fake = FakeTelegram::start().await.expect("fake");
    let mut child = serve_with(&fake, knowledge.path(), data.path(), &["--watch"]);
    fake.wait_for_calls("setMyCommands", 1, WAIT).await;
    std::fs::write(knowledge.path().join("faq/08-clinic.toml"), EXTRA).expect("write");
    assert!(parking_is_answered(&fake, 32).await, "--watch did not reload");
    terminate(&child);
    assert!(child.wait().expect("wait").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_survives_a_killed_process() {
    let data = tempfile::tempdir().expect("temp dir");
    let fake = FakeTelegram::start().await.expect("fake");
    let mut child = serve_with(&fake, Path::new("knowledge"), data.path(), &[]);
    fake.wait_for_calls("setMyCommands", 1, WAIT).await;
    for question in ["what is the capital of france", "tell me a joke", "how much does it cost"] {
        fake.push_text(33, question);
    }
    fake.wait_for_count("sendMessage", 3, WAIT).await;
    // Killed once the three replies are counted and recorded as sent.
    let counted = || {
        let connection = Store::open_read_only(data.path()).ok()?;
        let replies: Option<i64> =
            connection.query_row("SELECT SUM(count) FROM replies", [], |row| row.get(0)).ok().flatten();
        let sent: i64 =
            connection.query_row("SELECT COUNT(*) FROM inbox WHERE state = 'sent'", [], |row| row.get(0)).ok()?;
        Some(replies.unwrap_or(0).min(sent))
    };
    let deadline = std::time::Instant::now() + WAIT;
    while counted().unwrap_or(0) < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();

    // It starts again on the same database (and the same Bot API) and keeps counting.
    let mut child = serve_with(&fake, Path::new("knowledge"), data.path(), &[]);
    fake.wait_for_calls("setMyCommands", 2, WAIT).await;
    fake.push_text(33, "what is the capital of france");
    fake.wait_for_count("sendMessage", 4, WAIT).await;
    terminate(&child);
    assert!(child.wait().expect("wait").success());

    let report = support::bin::faqbot().args(["report", "--data"]).arg(data.path()).output().expect("report");
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(report.status.success(), "{text}");
    assert!(text.contains("integrity ok"), "{text}");
    assert!(text.contains("2× what is the capital of france"), "{text}");
    assert!(text.contains("answer 1"), "{text}");
}

fn reply_event(question: &str) -> Event {
    Event::Reply { kind: Kind::NoMatch, entry: None, question: question.to_owned(), user: 1, at: SystemTime::now() }
}

#[test]
fn a_database_deleted_while_running_is_recreated_with_its_data() {
    let data = tempfile::tempdir().expect("temp dir");
    let store = Store::open(data.path(), store::Options::default()).expect("store");
    store.send(reply_event("what is the capital of france"));
    store.flush();
    let file = data.path().join("faqbot.sqlite3");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    // Writes go on; within a second or so the file is back.
    let deadline = std::time::Instant::now() + WAIT;
    while store.health().recreated == 0 && std::time::Instant::now() < deadline {
        store.send(reply_event("tell me a joke"));
        store.flush();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(file.exists(), "the database file was not recreated");
    assert_eq!(store.health().recreated, 1);
    let rows = store.read(|connection| store::unanswered(connection, SystemTime::now(), 30)).expect("read");
    assert!(rows.iter().any(|(_, question)| question == "what is the capital of france"), "{rows:?}");
    store.close();
    let connection = Store::open_read_only(data.path()).expect("reopen");
    let kept: i64 = connection.query_row("SELECT COUNT(*) FROM unanswered", [], |row| row.get(0)).expect("count");
    assert!(kept >= 2, "{kept}");
}

#[test]
fn failed_writes_are_counted_and_stats_say_figures_may_be_incomplete() {
    let data = tempfile::tempdir().expect("temp dir");
    let store = Store::open(data.path(), store::Options::default()).expect("store");
    assert_eq!(store.health().warning(), None);
    let other = rusqlite::Connection::open(data.path().join("faqbot.sqlite3")).expect("open");
    other.execute_batch("DROP TABLE replies").expect("drop");
    for _ in 0..3 {
        store.send(reply_event("what is the capital of france"));
        store.flush();
    }
    let health = store.health();
    // Events are written in batches: each failed batch counts once.
    assert!(health.failed_writes >= 1, "{health:?}");
    let warning = health.warning().unwrap_or_default();
    assert!(warning.contains("Figures may be incomplete") && warning.contains("database write(s) failed"), "{warning}");
}

#[test]
fn check_on_a_missing_directory_says_so_in_one_line_with_a_hint() {
    let output =
        support::bin::faqbot().args(["check", "--knowledge", "/nonexistent/knowledge"]).output().expect("run check");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/knowledge") && stderr.contains("--knowledge DIR"), "{stderr}");
}
