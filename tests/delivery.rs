//! Reliability end to end, against the fake Bot API on 127.0.0.1: no message
//! stops the bot, no reply is lost or repeated through outages, 429 storms,
//! SIGTERM or kill -9, and one busy chat never holds up the others. Tests
//! wait on conditions with generous deadlines; they never assert timings.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use proptest::strategy::{Strategy, ValueTree};
use serde_json::json;
use support::fake_telegram::{BOT_USERNAME, Call, FakeTelegram, Fault, group_chat};
use support::{Bot, Logs, TOKEN, WAIT, spawn_serve, terminate, wait_exit};

/// How many successful `sendMessage` calls each chat got.
fn per_chat(calls: &[Call]) -> HashMap<i64, usize> {
    let mut counts = HashMap::new();
    for call in calls {
        if let Some(chat) = call.chat_id() {
            *counts.entry(chat).or_default() += 1;
        }
    }
    counts
}

/// Asserts that each of `chats` got exactly one reply, within `timeout`.
async fn each_answered_once(fake: &FakeTelegram, chats: &[i64], timeout: Duration) {
    let all = fake
        .wait_delivered("sendMessage", timeout, |calls| {
            let counts = per_chat(calls);
            chats.iter().all(|chat| counts.contains_key(chat))
        })
        .await;
    let counts = per_chat(&fake.calls_of("sendMessage").into_iter().filter(|call| call.ok).collect::<Vec<_>>());
    let missing: Vec<&i64> = chats.iter().filter(|chat| !counts.contains_key(chat)).collect();
    let repeated: Vec<(&i64, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(all && missing.is_empty(), "never answered: {missing:?}");
    assert!(repeated.is_empty(), "answered more than once: {repeated:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kelvin_sign_before_the_mention_is_answered_and_the_bot_keeps_serving() {
    let bot = Bot::shipped().await;
    let group = -100_901;
    // Lower-casing the Kelvin sign changes its length in bytes: cutting the
    // mention out at an offset found in the lower-cased text used to panic.
    for (user, text) in [
        (1, format!("\u{212A}ä @{BOT_USERNAME} hello")),
        (2, format!("İİİ @{} is ketamine legal?", BOT_USERNAME.to_uppercase())),
        (3, format!("ẞ@{BOT_USERNAME}")),
    ] {
        bot.fake.push(json!({ "message": bot.fake.message(group_chat(group), user, json!({ "text": text })) }));
    }
    let sent = bot.sent_to(group, 3).await;
    assert_eq!(sent.len(), 3, "{sent:#?}");
    assert!(sent.iter().all(|call| call.text().ends_with(&bot.note())));
    bot.fake.push_text(4, "is ketamine addictive?");
    let sent = bot.sent_to(4, 1).await;
    assert!(sent[0].text().starts_with("<b>Is ketamine addictive?</b>"));
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_unicode_updates_never_stop_the_bot() {
    let bot = Bot::start(Path::new("knowledge"), |options| {
        options.throttle = false;
        options.flood_per_minute = usize::MAX;
    })
    .await;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let texts = proptest::string::string_regex("(?s).{0,300}").expect("strategy");
    let places = 0usize..4;
    let cases = 300i64;
    let mut chats = Vec::new();
    for case in 0..cases {
        let text = texts.new_tree(&mut runner).expect("text").current();
        let place = places.new_tree(&mut runner).expect("place").current();
        // Private messages, group mentions at the start, middle or end, and
        // `/ask`: every one of them must be answered. (A private text that
        // starts with "/" is a command, maybe for another bot, so it is
        // prefixed.)
        let (chat, text) = match place {
            0 => (case + 10_000, format!("q{text}")),
            1 => (-(case + 10_000), format!("@{BOT_USERNAME} {text}")),
            2 => (-(case + 10_000), format!("{text} @{BOT_USERNAME} {text}")),
            _ => (case + 10_000, format!("/ask {text}")),
        };
        let message = bot.fake.message(
            if chat < 0 { group_chat(chat) } else { support::fake_telegram::private_chat(chat) },
            case + 10_000,
            json!({ "text": text }),
        );
        bot.fake.push(json!({ "message": message }));
        chats.push(chat);
    }
    // Updates of unknown shape and junk fields are skipped, not fatal.
    bot.fake.push(json!({ "future_kind_of_update": { "secret": "user text" } }));
    bot.fake.push(json!({ "message": { "message_id": 1, "chat": "not an object", "text": "x" } }));
    each_answered_once(&bot.fake, &chats, Duration::from_secs(120)).await;
    let delivery = bot.store.delivery(std::time::SystemTime::now()).expect("figures");
    assert_eq!(delivery.failed, 0, "{delivery:?}");
    bot.fake.push_text(99, "is ketamine legal?");
    let sent = bot.sent_to(99, 1).await;
    assert!(sent[0].text().starts_with("<b>Is ketamine legal?</b>"));
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_second_outage_with_502_pages_and_resets_loses_and_repeats_nothing() {
    let bot = Bot::start(Path::new("knowledge"), |options| options.flood_per_minute = usize::MAX).await;
    let outage = Duration::from_secs(10);
    // Resets for the first half (nothing reaches the API), then 502 pages
    // from the "proxy" for the rest.
    bot.fake.fail_for("sendMessage", Fault::BadGateway, outage);
    bot.fake.reset_connections_for(outage / 2);
    let started = Instant::now();
    let chats: Vec<i64> = (0..40).map(|index| 40_000 + index).collect();
    for chat in &chats {
        bot.fake.push_text(*chat, "is ketamine legal?");
    }
    each_answered_once(&bot.fake, &chats, Duration::from_secs(180)).await;
    let failed = bot.fake.calls_of("sendMessage").iter().filter(|call| !call.ok).count();
    assert!(failed > 0, "the 502 pages were never met");
    eprintln!("outage: 40 of 40 answered once after {:?}; {failed} refused attempts", started.elapsed());
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sixty_second_429_storm_loses_and_repeats_nothing() {
    let bot = Bot::start(Path::new("knowledge"), |options| options.flood_per_minute = usize::MAX).await;
    bot.fake.fail_for("sendMessage", Fault::TooManyRequests(7), Duration::from_secs(60));
    let started = Instant::now();
    let chats: Vec<i64> = (0..30).map(|index| 60_000 + index).collect();
    for chat in &chats {
        bot.fake.push_text(*chat, "how much does it cost?");
    }
    each_answered_once(&bot.fake, &chats, Duration::from_secs(240)).await;
    eprintln!("429 storm: 30 of 30 answered once after {:?}", started.elapsed());
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparsable_html_is_resent_as_plain_text_and_a_blocked_user_is_not_retried() {
    let bot = Bot::shipped().await;
    bot.fake.fail_next("sendMessage", Fault::CantParseEntities, 1);
    bot.fake.push_text(7101, "is ketamine legal?");
    let sent = bot.fake.wait_delivered("sendMessage", WAIT, |calls| !calls.is_empty()).await;
    assert!(sent);
    let plain = bot.fake.delivered_to("sendMessage", 7101);
    assert!(plain[0].params.get("parse_mode").is_none(), "{:?}", plain[0].params);
    assert!(plain[0].text().starts_with("Is ketamine legal?"), "{}", plain[0].text());
    assert!(plain[0].text().ends_with(&bot.engine.kb.messages.clinician_note), "{}", plain[0].text());

    bot.fake.fail_next("sendMessage", Fault::Blocked, 1);
    bot.fake.push_text(7102, "is ketamine legal?");
    bot.idle().await;
    let attempts = bot.fake.calls_of("sendMessage").iter().filter(|call| call.chat_id() == Some(7102)).count();
    assert_eq!(attempts, 1, "a blocked user is not retried");
    let delivery = bot.store.delivery(std::time::SystemTime::now()).expect("figures");
    assert_eq!((delivery.refused, delivery.sent), (1, 1), "{delivery:?}");
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_keeps_failing_is_given_up_at_the_age_limit_and_counted() {
    let bot = Bot::start(Path::new("knowledge"), |options| options.give_up_after = Duration::from_secs(2)).await;
    bot.fake.fail_for("sendMessage", Fault::NotJson, Duration::from_secs(600));
    bot.fake.push_text(7201, "is ketamine legal?");
    bot.idle().await;
    let delivery = bot.store.delivery(std::time::SystemTime::now()).expect("figures");
    assert_eq!(delivery.given_up, 1, "{delivery:?}");
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_burst_of_ninety_does_not_hold_up_ten_others() {
    let bot = Bot::shipped().await;
    let flooder = 7300;
    for index in 0..90 {
        bot.fake.push_text(flooder, &format!("is ketamine legal? ({index})"));
    }
    let others: Vec<i64> = (1..=10).map(|index| 7300 + index).collect();
    for chat in &others {
        bot.fake.push_text(*chat, "is ketamine addictive?");
    }
    each_answered_once(&bot.fake, &others, WAIT).await;
    // At one message a second per chat, the flooder has had at most a
    // couple of replies by the time all ten others are answered.
    let to_flooder = bot.fake.delivered_to("sendMessage", flooder).len();
    assert!(to_flooder <= 3, "the others waited for {to_flooder} replies to the flooder");
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_group_keeps_a_bounded_backlog_and_gets_one_notice() {
    let bot = Bot::start(Path::new("knowledge"), |options| {
        options.per_chat_backlog = 5;
        options.flood_per_minute = usize::MAX;
    })
    .await;
    let group = -100_7400;
    for user in 0..40 {
        let text = format!("/ask is ketamine legal? ({user})");
        bot.fake.push(json!({ "message": bot.fake.message(group_chat(group), 7400 + user, json!({ "text": text })) }));
    }
    bot.idle().await;
    let sent = bot.fake.delivered_to("sendMessage", group);
    let flood = support::teloxide_escape(&bot.engine.kb.messages.flood);
    let notices = sent.iter().filter(|call| call.text().starts_with(&flood)).count();
    assert_eq!(notices, 1, "{sent:#?}");
    assert!(sent.len() <= 5 + 1 + 1, "at most the backlog, the one in flight and the notice: {}", sent.len());
    assert!(sent.iter().all(|call| call.text().ends_with(&bot.note())));
    let delivery = bot.store.delivery(std::time::SystemTime::now()).expect("figures");
    assert!(delivery.dropped >= 30, "{delivery:?}");
    bot.stop().await;
}

// ---- The built binary: SIGTERM and kill -9 with a queue -----------------------

/// Starts the binary, queues 200 questions from 200 people, stops it with
/// `signal` once some are answered, starts it again on the same database and
/// Bot API, and returns how many chats got more than one reply.
async fn restart_with_200_queued(signal: &str) -> usize {
    let data = tempfile::tempdir().expect("temp dir");
    let fake = FakeTelegram::start().await.expect("fake");
    let mut child = spawn_serve(&fake.url(), TOKEN, data.path());
    let logs = Logs::collect(&mut child);
    fake.wait_for_calls("setMyCommands", 1, WAIT).await;
    let chats: Vec<i64> = (0..200).map(|index| 80_000 + index).collect();
    for chat in &chats {
        fake.push_text(*chat, "can I drive after my infusion?");
    }
    // Stopped while answering: some replies out, most still queued.
    let started = fake.wait_delivered("sendMessage", WAIT, |calls| calls.len() >= 20).await;
    assert!(started, "{}", logs.text());
    if signal == "KILL" {
        child.kill().expect("SIGKILL");
        let _ = wait_exit(child, WAIT).await;
    } else {
        terminate(&child);
        let (_child, status) = wait_exit(child, WAIT).await;
        assert!(status.is_some_and(|status| status.success()), "{status:?}\n{}", logs.text());
    }
    let before = fake.delivered("sendMessage");
    eprintln!("{signal}: {before} of 200 answered before the stop; {} updates unconfirmed", fake.unconfirmed());
    assert!(before < 200, "the stop came too late to test anything");

    let mut child = spawn_serve(&fake.url(), TOKEN, data.path());
    let logs = Logs::collect(&mut child);
    let all = fake
        .wait_delivered("sendMessage", Duration::from_secs(120), |calls| {
            let counts = per_chat(calls);
            chats.iter().all(|chat| counts.contains_key(chat))
        })
        .await;
    let counts = per_chat(&fake.calls_of("sendMessage").into_iter().filter(|call| call.ok).collect::<Vec<_>>());
    terminate(&child);
    let _ = wait_exit(child, WAIT).await;
    assert!(all, "not every question was answered after the restart: {} of 200\n{}", counts.len(), logs.text());
    let repeated = counts.values().filter(|n| **n > 1).count();
    eprintln!("{signal}: after the restart {} of 200 answered, {repeated} twice", counts.len());
    repeated
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_200_queued_then_restart_answers_each_exactly_once() {
    let repeated = restart_with_200_queued("TERM").await;
    assert_eq!(repeated, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_200_queued_then_restart_answers_each_at_least_once() {
    let repeated = restart_with_200_queued("KILL").await;
    // Only a reply confirmed by Telegram but not yet recorded can repeat.
    assert!(repeated <= 2, "{repeated} of 200 answered twice");
}
