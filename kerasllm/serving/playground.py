"""The playground page served at `/`: chat and completion, streaming, feedback.

One self-contained HTML page (no external scripts, styles or fonts, so it
works offline and behind the API key): pick a model and a mode, set the
strategy and sampling controls, send, watch the text stream in, then rate it
(thumbs up / down) or write a better answer; both go to `POST /v1/feedback`.
Labels are in Japanese and English.
"""

PLAYGROUND_HTML = """<!doctype html>
<html lang="ja">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>kerasllm プレイグラウンド / playground</title>
<style>
  body { font-family: "Noto Sans CJK JP", "Hiragino Sans", "Yu Gothic", system-ui, sans-serif;
         max-width: 60rem; margin: 1.5rem auto; padding: 0 1rem; line-height: 1.6; color: #1d1d1f; }
  h1 { font-size: 1.4rem; }
  fieldset { border: 1px solid #ccd; border-radius: 6px; margin-bottom: 1rem; }
  label { display: inline-block; margin: 0.2rem 1rem 0.2rem 0; }
  textarea { width: 100%; min-height: 6rem; font: inherit; box-sizing: border-box; }
  input[type=number] { width: 6rem; }
  #output { white-space: pre-wrap; border: 1px solid #ccd; border-radius: 6px; padding: 0.8rem;
            min-height: 4rem; background: #fafafe; }
  #history .turn { margin: 0.3rem 0; white-space: pre-wrap; }
  #history .user::before { content: "あなた / you: "; font-weight: bold; }
  #history .assistant::before { content: "モデル / model: "; font-weight: bold; }
  button { font: inherit; padding: 0.3rem 0.9rem; margin-right: 0.5rem; }
  #status { color: #555; font-size: 0.9rem; }
  .hidden { display: none; }
</style>
</head>
<body>
<h1>kerasllm プレイグラウンド <small>/ playground</small></h1>

<fieldset>
  <legend>設定 / settings</legend>
  <label>モデル / model <select id="model"></select></label>
  <label>モード / mode
    <select id="mode">
      <option value="chat">チャット / chat</option>
      <option value="completion">補完 / completion</option>
    </select></label>
  <label>戦略 / strategy
    <select id="strategy">
      <option value="sample">サンプリング / sampling</option>
      <option value="greedy">貪欲法 / greedy</option>
    </select></label>
  <br>
  <label>温度 / temperature <input id="temperature" type="number" min="0" max="2" step="0.1" value="0.8"></label>
  <label>top_p <input id="top_p" type="number" min="0.01" max="1" step="0.05" value="0.95"></label>
  <label>最大トークン数 / max tokens <input id="max_tokens" type="number" min="1" value="64"></label>
  <label>シード / seed <input id="seed" type="number" placeholder="random"></label>
  <label>停止文字列 / stop <input id="stop" type="text" placeholder="例: \\n\\n"></label>
  <label>ストリーミング / stream <input id="stream" type="checkbox" checked></label>
  <label>API キー / key <input id="api_key" type="password" size="12"></label>
</fieldset>

<div id="history"></div>
<label for="prompt">プロンプト / prompt</label>
<textarea id="prompt" placeholder="ここに入力してください / type here"></textarea>
<p>
  <button id="send">送信 / send</button>
  <button id="reset">会話をリセット / reset chat</button>
  <span id="status"></span>
</p>

<div id="output" aria-live="polite"></div>
<p id="feedback" class="hidden">
  <button id="thumb_up" title="良い / good">👍</button>
  <button id="thumb_down" title="悪い / bad">👎</button>
  <button id="better_toggle">より良い回答を書く / write a better answer</button>
</p>
<div id="better_box" class="hidden">
  <textarea id="better" placeholder="より良い回答 / a better answer"></textarea>
  <button id="send_better">送信 / submit</button>
</div>

<script>
"use strict";
const $ = (id) => document.getElementById(id);
let messages = [];
let lastId = null;

function headers() {
  const h = {"Content-Type": "application/json"};
  const key = $("api_key").value || localStorage.getItem("kerasllm_api_key") || "";
  if (key) { h["Authorization"] = "Bearer " + key; localStorage.setItem("kerasllm_api_key", key); }
  return h;
}
function status(text) { $("status").textContent = text; }

async function loadModels() {
  try {
    const r = await fetch("/v1/models", {headers: headers()});
    const body = await r.json();
    if (!r.ok) { status(body.error.message); return; }
    $("model").innerHTML = "";
    for (const m of body.data) {
      const o = document.createElement("option"); o.value = m.id; o.textContent = m.id;
      $("model").appendChild(o);
    }
  } catch (e) { status(String(e)); }
}

function request() {
  const greedy = $("strategy").value === "greedy";
  const body = {
    model: $("model").value,
    max_tokens: parseInt($("max_tokens").value, 10) || 64,
    temperature: greedy ? 0 : parseFloat($("temperature").value),
    top_p: parseFloat($("top_p").value),
    stream: $("stream").checked,
  };
  if ($("seed").value !== "") body.seed = parseInt($("seed").value, 10);
  const stop = $("stop").value.replace(/\\\\n/g, "\\n");
  if (stop) body.stop = [stop];
  return body;
}

function addTurn(role, text) {
  const div = document.createElement("div");
  div.className = "turn " + role; div.textContent = text;
  $("history").appendChild(div);
}

async function send() {
  const prompt = $("prompt").value;
  if (!prompt) return;
  const chat = $("mode").value === "chat";
  const body = request();
  let path = "/v1/completions";
  if (chat) {
    messages.push({role: "user", content: prompt});
    body.messages = messages; path = "/v1/chat/completions";
  } else {
    body.prompt = prompt;
  }
  $("output").textContent = ""; $("feedback").classList.add("hidden");
  $("better_box").classList.add("hidden");
  $("send").disabled = true; status("生成中… / generating…");
  let text = "", finish = null, route = null;
  try {
    const r = await fetch(path, {method: "POST", headers: headers(), body: JSON.stringify(body)});
    if (!r.ok) { const e = await r.json(); throw new Error(e.error.message || JSON.stringify(e)); }
    if (body.stream) {
      const reader = r.body.getReader();
      const decoder = new TextDecoder("utf-8");
      let buffer = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, {stream: true});
        let cut;
        while ((cut = buffer.indexOf("\\n\\n")) >= 0) {
          const event = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
          if (!event.startsWith("data: ")) continue;
          const data = event.slice(6);
          if (data === "[DONE]") continue;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message);
          lastId = chunk.id;
          if (chunk.route) route = chunk.route;
          for (const c of chunk.choices) {
            const piece = chat ? (c.delta.content || "") : c.text;
            text += piece; $("output").textContent = text;
            if (c.finish_reason) finish = c.finish_reason;
          }
        }
      }
    } else {
      const answer = await r.json();
      lastId = answer.id;
      route = answer.route || null;
      const c = answer.choices[0];
      text = chat ? c.message.content : c.text; finish = c.finish_reason;
      $("output").textContent = text;
    }
    if (chat) { addTurn("user", prompt); addTurn("assistant", text);
                messages.push({role: "assistant", content: text || " "}); $("prompt").value = ""; }
    // A constellation names the model that answered and why.
    status("完了 / done (" + finish + ")" +
           (route ? " — 回答したモデル / answered by: " + route.member + " (" + route.reason + ")" : ""));
    $("feedback").classList.remove("hidden");
  } catch (e) {
    if (chat) messages.pop();
    status("エラー / error: " + e.message);
  } finally {
    $("send").disabled = false;
  }
}

async function feedback(payload) {
  if (!lastId) return;
  const r = await fetch("/v1/feedback", {method: "POST", headers: headers(),
                                          body: JSON.stringify(Object.assign({id: lastId}, payload))});
  const body = await r.json();
  status(r.ok ? "フィードバックを保存しました / feedback saved" : "エラー / error: " + body.error.message);
}

$("send").addEventListener("click", send);
$("prompt").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) send(); });
$("reset").addEventListener("click", () => { messages = []; $("history").innerHTML = ""; });
$("thumb_up").addEventListener("click", () => feedback({rating: 1}));
$("thumb_down").addEventListener("click", () => feedback({rating: -1}));
$("better_toggle").addEventListener("click", () => $("better_box").classList.toggle("hidden"));
$("send_better").addEventListener("click", () => {
  const text = $("better").value; if (text.trim()) feedback({preferred: text});
});
$("strategy").addEventListener("change", () => {
  $("temperature").disabled = $("top_p").disabled = $("strategy").value === "greedy";
});
loadModels();
</script>
</body>
</html>
"""
