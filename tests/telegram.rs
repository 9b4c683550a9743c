//! The Telegram bot end to end: the real dispatcher against a fake Bot API on
//! 127.0.0.1 (`tests/support/fake_telegram.rs`), in-process, and the built `faqbot
//! serve` binary against the same fake through `TELOXIDE_API_URL`.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use faqbot::telegram;
use serde_json::{Value, json};
use support::bin::copy_dir;
use support::fake_telegram::{BOT_USERNAME, Call, FakeTelegram, group_chat, private_chat};
use support::{Bot, Logs, TOKEN, WAIT, as_message, spawn_serve, teloxide_escape, terminate, wait_exit};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_conversation_with_buttons_and_feedback() {
    let bot = Bot::shipped().await;
    let commands = bot.fake.calls_of("setMyCommands");
    let names: Vec<&str> = commands[0].params["commands"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|command| command["command"].as_str())
        .collect();
    assert_eq!(names, ["start", "help", "topics", "sources", "about", "ask"]);

    let user = 1001;
    bot.fake.push_text(user, "/start");
    let sent = bot.sent_to(user, 1).await;
    assert!(sent[0].text().contains("automated assistant"), "{}", sent[0].text());
    assert!(sent[0].text().ends_with(&bot.note()));
    assert_eq!(sent[0].params["parse_mode"], "HTML");

    bot.fake.push_text(user, "how much does it cost?");
    let sent = bot.sent_to(user, 2).await;
    let answer = &sent[1];
    assert!(answer.text().starts_with("<b>How much does ketamine therapy cost?</b>"), "{}", answer.text());
    assert!(answer.text().ends_with(&bot.note()));
    let buttons = answer.buttons();
    assert_eq!(buttons[0].1, "e:insurance", "{buttons:?}");
    assert!(buttons.iter().any(|(label, data)| label == "👍" && data == "f+:cost"), "{buttons:?}");
    assert!(buttons.iter().any(|(label, data)| label == "👎" && data == "f-:cost"), "{buttons:?}");
    assert!(buttons.iter().all(|(_, data)| data.len() <= 64));

    // A related-question button brings that entry's answer.
    let on_screen = as_message(answer, 50);
    bot.fake.push_callback(user, &on_screen, "e:insurance");
    let sent = bot.sent_to(user, 3).await;
    assert!(sent[2].text().starts_with("<b>Does insurance cover ketamine for PTSD?</b>"), "{}", sent[2].text());
    let acks = bot.fake.wait_for_calls("answerCallbackQuery", 1, WAIT).await;
    assert_eq!(acks.len(), 1);

    // Feedback is acknowledged with a thank-you pop-up.
    bot.fake.push_callback(user, &on_screen, "f+:cost");
    let acks = bot.fake.wait_for_calls("answerCallbackQuery", 2, WAIT).await;
    assert_eq!(acks[1].params["text"], bot.engine.kb.messages.feedback_thanks.as_str());
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_browse_to_a_question_and_its_answer() {
    let bot = Bot::shipped().await;
    let user = 1002;
    bot.fake.push_text(user, "/topics");
    let sent = bot.sent_to(user, 1).await;
    let topics = sent[0].buttons();
    assert_eq!(topics.len(), bot.engine.kb.topics.len());
    let (_, risks) = topics.iter().find(|(label, _)| label == "Risks and side effects").expect("risks topic").clone();

    bot.fake.push_callback(user, &as_message(&sent[0], 60), &risks);
    let edits = bot.fake.wait_for_calls("editMessageText", 1, WAIT).await;
    let questions = edits[0].buttons();
    assert!(
        questions
            .iter()
            .any(|(label, data)| label.starts_with("What are the side effects") && data == "e:common-side-effects")
    );
    assert_eq!(questions.last().map(|(_, data)| data.as_str()), Some("topics"));

    bot.fake.push_callback(user, &as_message(&sent[0], 60), "e:common-side-effects");
    let sent = bot.sent_to(user, 2).await;
    assert!(sent[1].text().starts_with("<b>What are the side effects of ketamine treatment?</b>"));

    // A button on a message Telegram no longer lets us edit (date 0) is answered anew.
    let mut old = as_message(&sent[0], 61);
    old["date"] = json!(0);
    bot.fake.push_callback(user, &old, &risks);
    let sent = bot.sent_to(user, 3).await;
    assert!(sent[2].text().starts_with("<b>Risks and side effects</b>"), "{}", sent[2].text());
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_lists_every_citation_linked_and_ends_with_the_note() {
    let bot = Bot::shipped().await;
    let user = 1003;
    let kb = &bot.engine.kb;
    // The list is long enough to take more than one message.
    let messages = telegram::render::sources_list(kb).len();
    bot.fake.push_text(user, "/sources");
    let sent = bot.sent_to(user, messages).await;
    let texts: Vec<&str> = sent.iter().map(Call::text).collect();
    let all = texts.join("\n\n");
    assert!(all.starts_with(&format!("<b>{}</b>", kb.messages.sources_label)), "{all}");
    assert!(texts.iter().all(|text| faqbot::text::telegram_len(text) <= 4096), "{all}");
    let linked = kb.sources.iter().filter(|source| source.link().is_some()).count();
    assert!(linked > 0 && all.matches("<a href=\"").count() == linked, "{all}");
    assert_eq!(all.matches("• ").count(), kb.sources.len(), "{all}");
    assert!(all.ends_with(&format!("<i>{}</i>", teloxide_escape(&kb.messages.clinician_note))), "{all}");
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_groups_only_commands_mentions_and_replies_are_answered() {
    let bot = Bot::shipped().await;
    let group = -100_555;
    let user = 2001;
    let say = |text: &str| {
        bot.fake.push(json!({ "message": bot.fake.message(group_chat(group), user, json!({ "text": text })) }))
    };
    say("hello everyone, anyone tried ketamine?");
    say("/start@some_other_bot");
    say("/foo");
    bot.fake.push(json!({ "message": bot.fake.message(group_chat(group), user, json!({ "sticker": sticker() })) }));
    bot.fake.push(json!({ "channel_post": bot.fake.message(json!({ "id": -100_777, "type": "channel", "title": "News" }), user, json!({ "text": "how much does it cost" })) }));
    say(&format!("@{BOT_USERNAME} how much does it cost"));
    let sent = bot.sent_to(group, 1).await;
    assert_eq!(sent.len(), 1, "only the mention is answered: {sent:#?}");
    assert!(sent[0].text().starts_with("<b>How much does ketamine therapy cost?</b>"));

    say("/ask can I drive after an infusion?");
    let sent = bot.sent_to(group, 2).await;
    assert!(sent[1].text().starts_with("<b>Can I drive after ketamine?</b>"), "{}", sent[1].text());

    // A reply to the bot's own message is answered.
    let bot_message = json!({
        "message_id": 900, "date": 1_763_700_001, "chat": group_chat(group),
        "from": { "id": support::fake_telegram::BOT_ID, "is_bot": true, "first_name": "FAQ bot", "username": BOT_USERNAME },
        "text": "earlier answer",
    });
    bot.fake.push(json!({ "message": bot.fake.message(group_chat(group), user, json!({ "text": "is it addictive?", "reply_to_message": bot_message })) }));
    let sent = bot.sent_to(group, 3).await;
    assert!(sent[2].text().starts_with("<b>Is ketamine addictive?</b>"), "{}", sent[2].text());
    assert!(
        bot.fake.calls_of("sendMessage").iter().all(|call| call.chat_id() != Some(-100_777)),
        "channel posts are ignored"
    );
    bot.stop().await;
}

fn sticker() -> Value {
    json!({ "file_id": "s1", "file_unique_id": "u1", "type": "regular", "width": 512, "height": 512, "is_animated": false, "is_video": false })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stickers_and_photos_get_a_polite_note_and_edits_are_answered_anew() {
    let bot = Bot::shipped().await;
    let user = 3001;
    bot.fake.push(json!({ "message": bot.fake.message(private_chat(user), user, json!({ "sticker": sticker() })) }));
    let photo = json!([{ "file_id": "p1", "file_unique_id": "pu1", "width": 90, "height": 90 }]);
    bot.fake.push(json!({ "message": bot.fake.message(private_chat(user), user, json!({ "photo": photo })) }));
    let sent = bot.sent_to(user, 2).await;
    for call in &sent {
        assert!(call.text().starts_with(&teloxide_escape(&bot.engine.kb.messages.non_text)), "{}", call.text());
        assert!(call.text().ends_with(&bot.note()));
    }
    let mut edited = bot.fake.message(private_chat(user), user, json!({ "text": "is ketamine legal?" }));
    edited["edit_date"] = json!(1_763_700_100);
    bot.fake.push(json!({ "edited_message": edited }));
    let sent = bot.sent_to(user, 3).await;
    assert!(sent[2].text().starts_with("<b>Is ketamine legal?</b>"), "{}", sent[2].text());
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crisis_replies_come_first_and_carry_no_buttons() {
    let bot = Bot::shipped().await;
    let user = 3002;
    bot.fake.push_text(user, "i don't want to wake up tomorrow");
    let sent = bot.sent_to(user, 1).await;
    // The crisis lines come first, before any other text (issue 11).
    let lines = teloxide_escape(&bot.engine.kb.messages.crisis_resources);
    assert!(sent[0].text().starts_with(&lines), "{}", sent[0].text());
    assert!(sent[0].text().contains("988"));
    assert!(sent[0].buttons().is_empty());
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_is_escaped_and_long_replies_are_split_at_paragraphs() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_dir(Path::new("knowledge"), dir.path());
    let long_paragraph = "Tom & Jerry <b>not bold</b> ".repeat(90);
    let welcome = format!("{long_paragraph}\n\n{long_paragraph}\n\n{long_paragraph}\n\n{long_paragraph}");
    let messages = std::fs::read_to_string(dir.path().join("messages.toml")).expect("messages");
    let messages = messages.replacen("welcome = \"\"\"", &format!("welcome = \"\"\"\n{welcome}\n\nOld:"), 1);
    std::fs::write(dir.path().join("messages.toml"), messages).expect("write messages");

    let bot = Bot::start(dir.path(), |_| {}).await;
    let user = 4001;
    bot.fake.push_text(user, "/start");
    let note = bot.note();
    let calls = bot
        .fake
        .wait_for(WAIT, |calls| calls.iter().any(|c| c.chat_id() == Some(user) && c.text().ends_with(&note)))
        .await;
    let sent: Vec<Call> =
        calls.into_iter().filter(|c| c.method == "sendMessage" && c.chat_id() == Some(user)).collect();
    assert!(sent.len() >= 2, "a welcome of over 4096 characters is split");
    for call in &sent {
        let text = call.text();
        assert!(text.contains("Tom &amp; Jerry &lt;b&gt;not bold&lt;/b&gt;"), "{text}");
        assert!(!text.contains("<b>not bold"), "user-visible tags are escaped");
        let visible =
            text.replace("<i>", "").replace("</i>", "").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
        assert!(visible.encode_utf16().count() <= 4096);
    }
    assert!(sent.last().map(|call| call.text().ends_with(&bot.note())).unwrap_or(false));

    // HTML typed by the user changes nothing in what is sent back.
    bot.fake.push_text(user, "<b>how much</b> does it cost & why?");
    let sent = bot.sent_to(user, sent.len() + 1).await;
    assert!(
        sent.last().map(|call| call.text().starts_with("<b>How much does ketamine therapy cost?</b>")).unwrap_or(false)
    );
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_waited_out_and_nothing_is_lost() {
    let bot = Bot::shipped().await;
    let user = 5001;
    bot.fake.rate_limit("sendMessage", 1, 1);
    let started = Instant::now();
    bot.fake.push_text(user, "is ketamine addictive?");
    let sent = bot.sent_to(user, 2).await;
    assert_eq!(sent.len(), 2, "the refused send and its retry");
    assert_eq!(sent[0].text(), sent[1].text());
    assert!(started.elapsed() >= Duration::from_secs(1), "retry_after was honoured");
    // And the bot carries on.
    bot.fake.push_text(user, "is ketamine legal?");
    let sent = bot.sent_to(user, 3).await;
    assert!(sent[2].text().starts_with("<b>Is ketamine legal?</b>"));
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_api_backs_off_and_resumes_by_itself() {
    let bot = Bot::shipped().await;
    let user = 5002;
    bot.fake.set_offline(true);
    let before = bot.fake.offline_refusals();
    // Offline until the bot has been refused a few times and backed off.
    bot.fake.wait_offline_refusals(before + 2, WAIT).await;
    bot.fake.push_text(user, "is ketamine legal?");
    bot.fake.set_offline(false);
    let sent = bot.sent_to(user, 1).await;
    assert!(sent[0].text().starts_with("<b>Is ketamine legal?</b>"), "{sent:#?}");
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_flooding_user_gets_one_notice_and_others_are_still_answered() {
    let bot = Bot::start(Path::new("knowledge"), |options| options.flood_per_minute = 5).await;
    let (flooder, other) = (6001, 6002);
    for _ in 0..9 {
        bot.fake.push_text(flooder, "is ketamine legal?");
    }
    bot.fake.push_text(other, "is ketamine legal?");
    let sent = bot.sent_to(other, 1).await;
    assert!(sent[0].text().starts_with("<b>Is ketamine legal?</b>"));
    let flood = teloxide_escape(&bot.engine.kb.messages.flood);
    bot.sent_to(flooder, 6).await;
    bot.idle().await;
    let to_flooder: Vec<Call> =
        bot.fake.calls_of("sendMessage").into_iter().filter(|c| c.chat_id() == Some(flooder)).collect();
    assert_eq!(to_flooder.len(), 6, "five answers and one notice: {to_flooder:#?}");
    assert!(to_flooder[5].text().starts_with(&flood));
    bot.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_reaches_only_the_api_path_never_the_logs() {
    let bot = Bot::shipped().await;
    bot.fake.push_text(7001, "hi");
    let sent = bot.sent_to(7001, 1).await;
    assert!(sent.iter().all(|call| call.token == TOKEN));
    bot.stop().await;
}

// ---- The built binary --------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_binary_answers_through_the_api_url_and_stops_on_sigterm() {
    let data = tempfile::tempdir().expect("temp dir");
    let fake = FakeTelegram::start().await.expect("fake API");
    let mut child = spawn_serve(&fake.url(), TOKEN, data.path());
    let logs = Logs::collect(&mut child);
    fake.wait_for_calls("setMyCommands", 1, WAIT).await;
    fake.push_text(8001, "can I drive after my infusion?");
    fake.push_text(8001, "I want to kill myself");
    let sent = fake.wait_for_calls("sendMessage", 2, WAIT).await;
    assert_eq!(sent.len(), 2, "{}", logs.text());
    assert!(sent[0].text().starts_with("<b>Can I drive after ketamine?</b>"), "{}", sent[0].text());
    assert!(sent[1].text().contains("988"), "{}", sent[1].text());

    terminate(&child);
    let (_child, status) = wait_exit(child, WAIT).await;
    assert!(status.is_some_and(|status| status.success()), "{status:?}");
    assert!(logs.wait_for("database checkpointed", WAIT).await, "{}", logs.text());
    let logs = logs.text();
    assert!(logs.contains("shutting down"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "colour codes in logs that go to a pipe:\n{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_is_retried_and_the_token_never_logged() {
    // A port nothing listens on: every request fails at the network level.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let url = format!("http://{}", closed.local_addr().expect("address"));
    drop(closed);
    let data = tempfile::tempdir().expect("temp dir");
    let secret = "987654:VERY-SECRET-TOKEN";
    let mut child = spawn_serve(&url, secret, data.path());
    let logs = Logs::collect(&mut child);
    let retried = logs.wait_for("getMe failed (attempt 2)", WAIT).await;
    let _ = child.kill();
    let _ = wait_exit(child, WAIT).await;
    let logs = logs.text();
    assert!(retried, "{logs}");
    assert!(!logs.contains("VERY-SECRET-TOKEN"), "token in logs:\n{logs}");
}

/// Posts `body` to `url` on loopback with the webhook secret header, by hand.
async fn post(address: std::net::SocketAddr, path: &str, secret: Option<&str>, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // teloxide binds the webhook server in a background task after setWebhook.
    let mut attempts = 0;
    let mut stream = loop {
        match tokio::net::TcpStream::connect(address).await {
            Ok(stream) => break stream,
            Err(error) if attempts < 50 => {
                attempts += 1;
                let _ = error;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("cannot connect to the webhook: {error}"),
        }
    };
    let secret = secret.map(|secret| format!("X-Telegram-Bot-Api-Secret-Token: {secret}\r\n")).unwrap_or_default();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n{secret}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_mode_sets_the_webhook_and_answers_posted_updates() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("address");
    let url = format!("http://{port}/telegram-hook");
    let bot = Bot::start(Path::new("knowledge"), |options| {
        options.webhook = Some(telegram::Webhook { url: url.clone(), listen: port });
    })
    .await;
    let set = bot.fake.wait_for_calls("setWebhook", 1, WAIT).await;
    assert_eq!(set[0].params["url"], url.as_str());
    let secret = set[0].params["secret_token"].as_str().unwrap_or_default().to_owned();

    let message = bot.fake.message(private_chat(9001), 9001, json!({ "text": "is ketamine legal?" }));
    let update = json!({ "update_id": 1, "message": message }).to_string();
    let refused = post(port, "/telegram-hook", Some("wrong-secret"), &update).await;
    assert!(!refused.starts_with("HTTP/1.1 200"), "{refused}");
    let accepted = post(port, "/telegram-hook", Some(&secret), &update).await;
    assert!(accepted.starts_with("HTTP/1.1 200"), "{accepted}");
    let sent = bot.sent_to(9001, 1).await;
    assert_eq!(sent.len(), 1, "only the update with the right secret is answered");
    assert!(sent[0].text().starts_with("<b>Is ketamine legal?</b>"));
    bot.stop().await;
}
