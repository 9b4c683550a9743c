#!/usr/bin/env bash
# Makes docs/conversation.png, the picture at the top of README.md: the
# questions below go through `faqbot ask --json` (the engine `serve` uses,
# with the embedding model), and the real replies are laid out the way the
# Telegram renderer shows them (an answer's question in bold, the clinician
# note in italics, related questions and 👍/👎 as buttons; button labels come
# from `faqbot export`). Headless Chromium takes the screenshot.
#
# Needs python3, the model (FAQBOT_MODEL or `faqbot model fetch`) and Chromium
# (`apt-get install chromium fonts-noto-color-emoji`). Not part of CI.
# Usage: docs/make-picture.sh            (builds and runs the release binary)
#        FAQBOT=target/debug/faqbot docs/make-picture.sh
set -euo pipefail
cd "$(dirname "$0")/.."

questions=(
  "can i drive after my infusion"
  "is ketamine addictive?"
  "how much does it cost"
)

faqbot=${FAQBOT:-}
if [ -z "$faqbot" ]; then
  cargo build --release --locked --quiet
  faqbot=target/release/faqbot
fi
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "make-picture: no Chromium found; apt-get install chromium" >&2
  exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%s\n' "${questions[@]}" | "$faqbot" ask --json >"$work/replies.jsonl"
"$faqbot" export --format json --out "$work/entries.json"

python3 - "$work/replies.jsonl" "$work/entries.json" >"$work/page.html" <<'PY'
import html, json, sys

replies = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
questions = {entry["id"]: entry["question"] for entry in json.load(open(sys.argv[2], encoding="utf-8"))["entries"]}

def bubble(reply):
    paragraphs = reply["text"].split("\n\n")
    parts = []
    for index, paragraph in enumerate(paragraphs):
        text = html.escape(paragraph).replace("\n", "<br>")
        if index == 0 and reply["kind"] == "answer":
            text = f"<b>{text}</b>"
        elif index == len(paragraphs) - 1:
            text = f"<i>{text}</i>"
        parts.append(f"<p>{text}</p>")
    buttons = ""
    if reply["kind"] == "answer":
        rows = [f'<div class="button">{html.escape(questions.get(id, id))}</div>' for id in reply["suggestions"]]
        rows.append('<div class="row"><div class="button">👍</div><div class="button">👎</div></div>')
        buttons = "".join(rows)
    return f'<div class="bot"><div class="bubble">{"".join(parts)}</div>{buttons}</div>'

body = []
for reply in replies:
    body.append(f'<div class="user"><div class="bubble">{html.escape(reply["question"])}</div></div>')
    body.append(bubble(reply))

print(f"""<!doctype html><meta charset="utf-8"><style>
body {{ margin: 0; background: #b7c9a8; font: 15px/1.4 "Noto Sans", "DejaVu Sans", sans-serif; }}
header {{ background: #527da3; color: white; padding: 12px 18px; font-weight: bold; }}
header small {{ display: block; font-weight: normal; opacity: .8; }}
main {{ padding: 10px 14px; display: flex; flex-direction: column; gap: 8px; }}
.bubble {{ padding: 6px 12px; border-radius: 14px; max-width: 560px; box-shadow: 0 1px 1px #0002; }}
.bubble p {{ margin: 6px 0; }}
.user {{ align-self: flex-end; }} .user .bubble {{ background: #e1fec6; padding: 8px 12px; }}
.bot {{ align-self: flex-start; max-width: 584px; }} .bot .bubble {{ background: white; }}
.button {{ background: #0000002e; color: white; text-align: center; border-radius: 8px; padding: 6px; margin-top: 4px; font-size: 14px; }}
.row {{ display: flex; gap: 4px; }} .row .button {{ flex: 1; }}
</style>
<header>faqbot<small>bot · a real conversation (faqbot ask --json)</small></header>
<main>{"".join(body)}</main>
<script>document.title = document.documentElement.scrollHeight;</script>""")
PY

chrome=("$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1)
# A first pass measures the page (the script puts its height in the title),
# so the picture is exactly as tall as the conversation.
height=$("${chrome[@]}" --window-size=640,800 --dump-dom "file://$work/page.html" 2>/dev/null |
  sed -n 's:.*<title>\([0-9]*\)</title>.*:\1:p' | head -n 1)
"${chrome[@]}" --window-size=640,"${height:-1800}" --screenshot="$PWD/docs/conversation.png" \
  "file://$work/page.html" 2>/dev/null
echo "wrote docs/conversation.png"
