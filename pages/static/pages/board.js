// The live board: polls the JSON API, no framework, no build step.
// /top is fetched with cache "no-cache": the browser revalidates its copy with
// If-None-Match, and an unchanged top-N comes back as a body-less 304.
"use strict";
(function () {
  const root = document.getElementById("board");
  if (!root) return;
  const topUrl = root.dataset.topUrl;
  const userUrl = root.dataset.userUrl;
  const activityUrl = root.dataset.activityUrl;
  const topPollMs = Number(root.dataset.topPollMs);
  const activityPollMs = Number(root.dataset.activityPollMs);
  const topBody = document.querySelector("#top tbody");
  const freshness = document.getElementById("freshness");
  let asOf = null;
  let lastTop = "";
  let previousScores = new Map();

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function row(entry, highlight) {
    const tr = document.createElement("tr");
    tr.dataset.user = entry.user_id;
    if (entry.user_id === highlight) tr.className = "me";
    tr.append(cell(entry.rank), cell(entry.user_id), cell(entry.score.toLocaleString(), "num"));
    return tr;
  }

  function renderTop(data) {
    asOf = Date.parse(data.as_of);
    const text = JSON.stringify(data.entries);
    if (text === lastTop) return;  // same list, only as_of moved
    lastTop = text;
    const scores = new Map();
    topBody.replaceChildren(...data.entries.map((entry) => {
      const tr = row(entry);
      if (previousScores.get(entry.user_id) !== entry.score) tr.classList.add("changed");
      scores.set(entry.user_id, entry.score);
      return tr;
    }));
    previousScores = scores;
    document.getElementById("top-empty").hidden = data.entries.length > 0;
  }

  // Wait while the tab is hidden: a background tab costs the server nothing.
  function every(ms, fn) {
    const tick = async () => {
      if (!document.hidden) {
        try { await fn(); } catch (err) { console.warn(err); }
      }
      setTimeout(tick, ms);
    };
    tick();
  }

  every(topPollMs, async () => {
    const response = await fetch(topUrl, { cache: "no-cache" });
    if (response.ok) renderTop(await response.json());
  });

  setInterval(() => {
    if (asOf === null) return;
    const ms = Math.max(0, Date.now() - asOf);
    freshness.textContent = ms < 10000 ? `updated ${ms} ms ago` : `updated ${Math.round(ms / 1000)} s ago`;
  }, 100);

  function renderActivity(data) {
    const svg = document.getElementById("activity");
    const rate = document.getElementById("rate");
    if (data.events_per_second === null) { rate.textContent = "(unavailable)"; return; }
    rate.textContent = `${data.events_per_second.toFixed(1)} events/s`;
    const counts = data.series.map((point) => point[1]);
    const max = Math.max(1, ...counts);
    const width = 600 / Math.max(1, counts.length);
    const ns = "http://www.w3.org/2000/svg";
    svg.replaceChildren(...counts.map((count, i) => {
      const bar = document.createElementNS(ns, "rect");
      const height = (count / max) * 116;
      bar.setAttribute("x", (i * width).toFixed(1));
      bar.setAttribute("y", (120 - height).toFixed(1));
      bar.setAttribute("width", Math.max(1, width - 1).toFixed(1));
      bar.setAttribute("height", height.toFixed(1));
      const title = document.createElementNS(ns, "title");
      title.textContent = `${count} events`;
      bar.append(title);
      return bar;
    }));
  }

  every(activityPollMs, async () => {
    const response = await fetch(activityUrl, { cache: "no-store" });
    if (response.ok) renderActivity(await response.json());
  });

  const result = document.getElementById("search-result");
  document.getElementById("search").addEventListener("submit", async (event) => {
    event.preventDefault();
    const user = document.getElementById("search-user").value.trim();
    if (!user) return;
    const url = userUrl.replace("USER", encodeURIComponent(user)) + "?around=3";
    result.textContent = "…";
    const response = await fetch(url, { cache: "no-store" });
    const data = await response.json();
    if (!response.ok) {
      const message = response.status === 404 ? `${user} has no score on this board.` : (data.detail || JSON.stringify(data));
      result.replaceChildren(Object.assign(document.createElement("p"), { className: "error", textContent: message }));
      return;
    }
    const summary = document.createElement("p");
    summary.id = "search-summary";
    let text = `${data.user_id}: rank ${data.rank} of ${data.total}, score ${data.score.toLocaleString()}`;
    // top_percent comes with the periods API; older servers leave it out.
    if (data.top_percent !== undefined && data.top_percent !== null) text += ` — top ${Number(data.top_percent).toFixed(2)}%`;
    summary.textContent = text;
    const table = document.createElement("table");
    table.id = "search-around";
    const body = document.createElement("tbody");
    body.append(...data.around.map((entry) => row(entry, data.user_id)));
    table.append(body);
    result.replaceChildren(summary, table);
  });
})();
