// The playground: chats with one or two models through the real /v1/ API.
//
// The page holds no credential. On the first message it asks the dashboard
// for a playground key (a session POST with the CSRF token), keeps the
// plaintext in this closure only (never in storage) and then calls
// /v1/chat/completions as any client would, streaming over fetch and a
// ReadableStream. Under each answer it shows what the gateway did: the
// x-xrouter-* headers, the usage chunk, timings measured here, and the
// billed cost from /api/v1/generation once the usage record is written.
(function () {
  "use strict";
  var form = document.getElementById("playground");
  if (!form) { return; }
  var T = JSON.parse(document.getElementById("playground-strings").textContent);
  var lang = document.documentElement.lang || "en";
  var el = function (id) { return document.getElementById(id); };

  function fmt(template, values) {
    return template.replace(/%\((\w+)\)s/g, function (_m, name) {
      return values[name] === undefined ? "" : String(values[name]);
    });
  }
  var integer = new Intl.NumberFormat(lang, { maximumFractionDigits: 0 });
  var money = new Intl.NumberFormat(lang, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  // Two decimals like the rest of the dashboard; a non-zero amount below a
  // kopeck reads "< 0.01", never a misleading 0.00.
  function rub(amount) {
    var shown = amount > 0 && amount < 0.01 ? "< " + money.format(0.01) : money.format(amount);
    return fmt(T.rub, { amount: shown });
  }
  function ms(value) { return fmt(T.ms, { n: integer.format(Math.round(value)) }); }

  // --- the playground key ---------------------------------------------------
  var key = null; // {key, masked, expires}
  function csrf() { return form.querySelector("input[name=csrfmiddlewaretoken]").value; }

  function errorText(body, status) {
    if (body && body.error && body.error.message) {
      var where = body.error.param ? " (" + body.error.param + ")" : "";
      return body.error.message + where;
    }
    return "HTTP " + status;
  }

  function mint() {
    status(T.minting);
    return fetch(form.getAttribute("data-key-url"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrf(), "Accept": "application/json" },
    }).then(function (response) {
      var type = response.headers.get("content-type") || "";
      if (type.indexOf("application/json") !== 0) {
        // A login redirect or the CSRF failure page: the session is gone.
        throw new Error(T.session);
      }
      return response.json().then(function (body) {
        if (!response.ok) { throw new Error(fmt(T.mint_failed, { error: errorText(body, response.status) })); }
        key = { key: body.key, masked: body.masked, expires: Date.parse(body.expires_at) };
        var until = new Date(key.expires).toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit" });
        el("pg-key").textContent = fmt(T.key_line, { masked: body.masked, time: until });
        return key;
      });
    });
  }

  var minting = null;
  function currentKey() {
    // A minute of margin: a stream started now must not outlive the key.
    if (key && key.expires - Date.now() > 60000) { return Promise.resolve(key); }
    // Two panes asking at once share one new key.
    if (!minting) {
      minting = mint().finally(function () { minting = null; });
    }
    return minting;
  }

  // --- parameters, validated before anything is sent ------------------------
  function fieldError(input, message, errors) {
    input.setAttribute("aria-invalid", "true");
    errors.push(message);
  }

  function selectedContext(select) {
    var option = select.options[select.selectedIndex];
    var context = option ? parseInt(option.getAttribute("data-context"), 10) : NaN;
    return isNaN(context) ? null : context;
  }

  function parameters(panes) {
    var errors = [];
    form.querySelectorAll("[aria-invalid]").forEach(function (node) { node.removeAttribute("aria-invalid"); });
    var params = {};
    var temperature = el("pg-temperature");
    if (temperature.value.trim() !== "") {
      var t = Number(temperature.value);
      if (!isFinite(t) || t < 0 || t > Number(temperature.max)) {
        fieldError(temperature, T.temperature, errors);
      } else { params.temperature = t; }
    }
    var maxTokens = el("pg-max-tokens");
    if (maxTokens.value.trim() !== "") {
      var cap = Number(maxTokens.max);
      panes.forEach(function (pane) {
        var context = selectedContext(pane.select);
        if (context && context < cap) { cap = context; }
      });
      var n = Number(maxTokens.value);
      if (!Number.isInteger(n) || n < 1 || n > cap) {
        fieldError(maxTokens, fmt(T.max_tokens, { max: integer.format(cap) }), errors);
      } else { params.max_tokens = n; }
    }
    var schema = el("pg-schema");
    if (schema.value.trim() !== "") {
      try {
        var parsed = JSON.parse(schema.value);
        if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
          fieldError(schema, T.schema_object, errors);
        } else {
          var named = typeof parsed.name === "string" && parsed.schema && typeof parsed.schema === "object";
          params.response_format = {
            type: "json_schema",
            json_schema: named ? parsed : { name: "answer", schema: parsed },
          };
        }
      } catch (e) {
        fieldError(schema, fmt(T.schema_json, { error: e.message }), errors);
      }
    }
    var tools = el("pg-tools");
    if (tools.value.trim() !== "") {
      try {
        var list = JSON.parse(tools.value);
        if (!Array.isArray(list)) {
          fieldError(tools, T.tools_array, errors);
        } else {
          var bad = list.findIndex(function (tool) {
            return !tool || tool.type !== "function" || !tool.function || typeof tool.function.name !== "string" || !tool.function.name;
          });
          if (bad >= 0) { fieldError(tools, fmt(T.tools_item, { i: bad }), errors); } else if (list.length) { params.tools = list; }
        }
      } catch (e2) {
        fieldError(tools, fmt(T.tools_json, { error: e2.message }), errors);
      }
    }
    return { params: params, errors: errors };
  }

  // --- panes: one conversation per model ------------------------------------
  var panes = Array.prototype.map.call(form.querySelectorAll(".pg-pane"), function (section) {
    var pane = {
      section: section,
      select: section.querySelector(".pg-model"),
      transcript: section.querySelector(".pg-transcript"),
      history: [],
    };
    var info = section.querySelectorAll(".pg-model-info [data-model]");
    var showInfo = function () {
      info.forEach(function (item) { item.hidden = item.getAttribute("data-model") !== pane.select.value; });
    };
    pane.select.addEventListener("change", function () {
      // Another model: its own conversation from here.
      pane.history = [];
      pane.transcript.textContent = "";
      showInfo();
    });
    showInfo();
    return pane;
  });

  function activePanes() {
    return el("pg-compare").checked ? panes : panes.slice(0, 1);
  }

  el("pg-compare").addEventListener("change", function () {
    panes[1].section.hidden = !el("pg-compare").checked;
    el("pg-panes").classList.toggle("compare", el("pg-compare").checked);
  });

  function status(text) { el("pg-status").textContent = text || ""; }

  function showErrors(list) {
    var box = el("pg-errors");
    box.textContent = "";
    list.forEach(function (text) {
      var li = document.createElement("li");
      li.textContent = text;
      box.appendChild(li);
    });
  }

  function turn(pane, role, label) {
    var li = document.createElement("li");
    li.className = "pg-turn pg-" + role;
    var who = document.createElement("p");
    who.className = "pg-who";
    who.textContent = label;
    var text = document.createElement("div");
    text.className = "pg-text";
    li.appendChild(who);
    li.appendChild(text);
    pane.transcript.appendChild(li);
    return { li: li, text: text };
  }

  function meta(li) {
    var dl = document.createElement("dl");
    dl.className = "pg-meta";
    li.appendChild(dl);
    var rows = {};
    return function (name, value) {
      if (!rows[name]) {
        var div = document.createElement("div");
        var dt = document.createElement("dt");
        var dd = document.createElement("dd");
        dt.textContent = T[name];
        div.setAttribute("data-meta", name);
        div.appendChild(dt);
        div.appendChild(dd);
        dl.appendChild(div);
        rows[name] = dd;
      }
      if (value instanceof Node) {
        rows[name].textContent = "";
        rows[name].appendChild(value);
      } else {
        rows[name].textContent = value;
      }
    };
  }

  // --- one streamed answer ----------------------------------------------------
  function sseEvents(reader, onEvent) {
    var decoder = new TextDecoder();
    var buffer = "";
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) { return; }
        buffer += decoder.decode(chunk.value, { stream: true });
        var parts = buffer.split(/\r?\n\r?\n/);
        buffer = parts.pop();
        parts.forEach(function (part) {
          var data = part.split(/\r?\n/).filter(function (line) { return line.indexOf("data:") === 0; })
            .map(function (line) { return line.slice(5).replace(/^ /, ""); }).join("\n");
          if (data) { onEvent(data); }
        });
        return pump();
      });
    }
    return pump();
  }

  function generation(credential, id, show) {
    var url = form.getAttribute("data-generation-url") + "?id=" + encodeURIComponent(id);
    var tries = 0;
    // The usage record is written off the hot path: poll briefly.
    function attempt() {
      tries += 1;
      return fetch(url, { headers: { "Authorization": "Bearer " + credential, "Accept": "application/json" }, credentials: "omit" })
        .then(function (response) {
          if (response.status === 404 && tries < 12) {
            return new Promise(function (resolve) { setTimeout(resolve, 250 * tries); }).then(attempt);
          }
          if (!response.ok) { show("cost", T.cost_missing); return null; }
          return response.json().then(function (body) {
            var record = body.data;
            show("cost", rub(record.total_cost));
            return record;
          });
        })
        .catch(function () { show("cost", T.cost_missing); });
    }
    return attempt();
  }

  function ask(pane, userText, params, controller, retried) {
    var label = pane.select.value;
    var answer = turn(pane, "assistant", label);
    var show = meta(answer.li);
    var messages = [];
    var system = el("pg-system").value.trim();
    if (system) { messages.push({ role: "system", content: system }); }
    messages = messages.concat(pane.history, [{ role: "user", content: userText }]);
    var body = Object.assign({ model: label, messages: messages, stream: true, stream_options: { include_usage: true } }, params);
    var started = performance.now();
    var firstToken = null;
    var content = "";
    var calls = [];
    var finished = false;
    var failed = false;
    answer.li.setAttribute("data-state", "waiting");
    return currentKey().then(function (credential) {
      // Timed from the request, not from minting the key.
      started = performance.now();
      return fetch(form.getAttribute("data-chat-url"), {
        method: "POST",
        credentials: "omit",
        signal: controller.signal,
        headers: {
          "Authorization": "Bearer " + credential.key,
          "Content-Type": "application/json",
          "Accept": "text/event-stream",
        },
        body: JSON.stringify(body),
      }).then(function (response) {
        var headers = response.headers;
        if (response.status === 401 && !retried) {
          // Revoked elsewhere (another tab minted past the cap) or expired.
          key = null;
          answer.li.remove();
          return ask(pane, userText, params, controller, true);
        }
        if (!response.ok) {
          return response.json().catch(function () { return null; }).then(function (errorBody) {
            failed = true;
            answer.li.setAttribute("data-state", "error");
            answer.text.textContent = T.error + ": " + errorText(errorBody, response.status);
            answer.text.classList.add("pg-error");
            if (headers.get("x-xrouter-attempts")) { show("attempts", headers.get("x-xrouter-attempts")); }
          });
        }
        show("provider", headers.get("x-xrouter-provider") || "—");
        show("model", headers.get("x-xrouter-model") || label);
        if (headers.get("x-xrouter-model-version")) { show("version", headers.get("x-xrouter-model-version")); }
        show("attempts", headers.get("x-xrouter-attempts") || "—");
        answer.li.setAttribute("data-state", "streaming");
        var id = headers.get("x-generation-id");
        return sseEvents(response.body.getReader(), function (data) {
          if (data === "[DONE]") { finished = true; return; }
          var event;
          try { event = JSON.parse(data); } catch (e) { return; }
          if (event.error) {
            failed = true;
            var p = document.createElement("p");
            p.className = "pg-error";
            p.textContent = T.error + ": " + errorText(event, 0);
            answer.li.insertBefore(p, answer.text.nextSibling);
            return;
          }
          if (event.usage) {
            show("tokens", fmt(T.tokens_value, {
              prompt: integer.format(event.usage.prompt_tokens || 0),
              completion: integer.format(event.usage.completion_tokens || 0),
            }));
          }
          (event.choices || []).forEach(function (choice) {
            var delta = choice.delta || {};
            if ((delta.content || delta.tool_calls) && firstToken === null) {
              firstToken = performance.now() - started;
              show("ttft", ms(firstToken));
            }
            if (delta.content) {
              content += delta.content;
              answer.text.textContent = content;
            }
            (delta.tool_calls || []).forEach(function (call) {
              var slot = calls[call.index] || (calls[call.index] = { id: call.id, name: "", arguments: "" });
              if (call.function && call.function.name) { slot.name += call.function.name; }
              if (call.function && call.function.arguments) { slot.arguments += call.function.arguments; }
              if (call.id) { slot.id = call.id; }
            });
            if (calls.length) {
              answer.text.textContent = (content ? content + "\n" : "") + calls.map(function (c) {
                return T.tool_call + ": " + c.name + "(" + c.arguments + ")";
              }).join("\n");
            }
          });
        }).then(function () {
          show("latency", ms(performance.now() - started));
          if (!finished && !failed) {
            failed = true;
            var p = document.createElement("p");
            p.className = "pg-error";
            p.textContent = T.stream_cut;
            answer.li.appendChild(p);
          }
          answer.li.setAttribute("data-state", failed ? "error" : "done");
          if (id) {
            var link = document.createElement("a");
            link.href = form.getAttribute("data-request-url").replace("GENERATION", encodeURIComponent(id));
            link.textContent = id;
            show("generation", link);
            show("cost", T.cost_pending);
            generation(credential.key, id, show);
          }
          if (!failed) {
            pane.history.push({ role: "user", content: userText });
            var reply = { role: "assistant", content: content || null };
            if (calls.length) {
              reply.tool_calls = calls.map(function (c) {
                return { id: c.id, type: "function", "function": { name: c.name, arguments: c.arguments } };
              });
            }
            if (!calls.length) { pane.history.push(reply); } else { pane.history.pop(); }
          }
        });
      });
    }).catch(function (error) {
      if (error && error.name === "AbortError") {
        answer.li.setAttribute("data-state", "stopped");
        show("latency", ms(performance.now() - started));
        return;
      }
      answer.li.setAttribute("data-state", "error");
      answer.text.classList.add("pg-error");
      answer.text.textContent = error && error.message ? error.message : String(error);
    });
  }

  // --- the form -----------------------------------------------------------------
  var running = null;

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (running) { return; }
    var message = el("pg-message");
    var text = message.value.trim();
    var chosen = activePanes();
    var checked = parameters(chosen);
    if (!text) { message.setAttribute("aria-invalid", "true"); checked.errors.unshift(T.empty); }
    showErrors(checked.errors);
    if (checked.errors.length) { return; }
    message.removeAttribute("aria-invalid");
    var controller = new AbortController();
    running = controller;
    el("pg-send").disabled = true;
    el("pg-stop").disabled = false;
    status(T.waiting);
    chosen.forEach(function (pane) { turn(pane, "user", T.you).text.textContent = text; });
    // Both models at once: two streams side by side.
    Promise.all(chosen.map(function (pane) { return ask(pane, text, checked.params, controller, false); }))
      .then(function () {
        status(controller.signal.aborted ? T.stopped : T.done);
        message.value = "";
      })
      .finally(function () {
        running = null;
        el("pg-send").disabled = false;
        el("pg-stop").disabled = true;
      });
  });

  el("pg-stop").addEventListener("click", function () { if (running) { running.abort(); } });

  el("pg-clear").addEventListener("click", function () {
    panes.forEach(function (pane) { pane.history = []; pane.transcript.textContent = ""; });
    showErrors([]);
    status(T.cleared);
  });

  el("pg-revoke").addEventListener("click", function () {
    fetch(form.getAttribute("data-revoke-url"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrf(), "Accept": "application/json" },
    }).then(function (response) {
      if (!response.ok) { throw new Error(T.session); }
      key = null;
      el("pg-key").textContent = "";
      status(T.revoked);
    }).catch(function (error) { showErrors([error.message]); });
  });

  // Ctrl+Enter (Cmd+Enter) sends, like most chat tools.
  el("pg-message").addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
})();
