// The task page: rank by keyboard (letters best -> worst) or by drag and drop.
// The form's rank_1..rank_K selects stay the single source of what is submitted, so the page
// works the same without this script; the order is kept in sessionStorage so a reload keeps it.
"use strict";

(function () {
  const task = document.getElementById("task");
  if (!task) return;
  const labels = task.dataset.labels.split("");
  const form = document.getElementById("rank-form");
  const selects = labels.map((_, i) => form.elements["rank_" + (i + 1)]);
  const orderList = document.getElementById("order");
  const storageKey = "ranking-" + task.dataset.assignment;
  const startedAt = Date.now();
  let order = [];

  document.getElementById("rank-selects").hidden = true;
  task.classList.add("js");

  function snippet(label) {
    const text = document.querySelector("#card-" + label + " .text").textContent.trim();
    return text.length > 90 ? text.slice(0, 90) + "…" : text || "(empty answer)";
  }

  function render() {
    selects.forEach((select, i) => { select.value = order[i] || ""; });
    sessionStorage.setItem(storageKey, JSON.stringify(order));
    orderList.replaceChildren();
    for (let i = 0; i < labels.length; i++) {
      const item = document.createElement("li");
      item.dataset.index = String(i);
      if (order[i]) {
        item.className = "ranked";
        item.draggable = true;
        item.dataset.label = order[i];
        const tag = document.createElement("strong");
        tag.textContent = order[i];
        item.append(tag, " " + snippet(order[i]));
      } else {
        item.className = "slot";
        item.textContent = i === order.length ? "press a letter or drop an answer here" : "";
      }
      orderList.append(item);
    }
    document.querySelectorAll("[data-badge]").forEach((badge) => {
      const rank = order.indexOf(badge.dataset.badge);
      badge.textContent = rank < 0 ? "" : "#" + (rank + 1);
      badge.closest(".card").classList.toggle("ranked", rank >= 0);
    });
    document.getElementById("submit").disabled = order.length !== labels.length;
  }

  function place(label, index) {
    order = order.filter((l) => l !== label);
    order.splice(Math.min(index, order.length), 0, label);
    render();
  }

  function typing(target) {
    return target.closest("input, textarea, select, button, summary, [contenteditable]");
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    const key = event.key.toUpperCase();
    if (labels.includes(key)) {
      if (!order.includes(key)) { order.push(key); render(); }
      event.preventDefault();
    } else if (event.key === "Backspace") {
      order.pop(); render(); event.preventDefault();
    } else if (event.key === "Escape") {
      order = []; render();
    } else if (event.key === "Enter" && order.length === labels.length) {
      event.preventDefault(); form.requestSubmit();
    } else if (event.key === "?") {
      const help = document.getElementById("help");
      help.open = !help.open;
    }
  });

  // Drag and drop: cards and ranked rows carry their label; a row or slot is a drop target.
  document.addEventListener("dragstart", (event) => {
    const source = event.target.closest && event.target.closest("[data-label][draggable=true]");
    if (!source) return;
    event.dataTransfer.setData("text/plain", source.dataset.label);
    event.dataTransfer.effectAllowed = "move";
  });
  orderList.addEventListener("dragover", (event) => { event.preventDefault(); });
  orderList.addEventListener("drop", (event) => {
    event.preventDefault();
    const label = event.dataTransfer.getData("text/plain");
    if (!labels.includes(label)) return;
    const row = event.target.closest("li");
    place(label, row ? Number(row.dataset.index) : labels.length);
  });

  form.addEventListener("submit", () => {
    form.elements.time_spent_ms.value = String(Date.now() - startedAt);
    sessionStorage.removeItem(storageKey);
    document.getElementById("submit").disabled = true;  // no double submit
  });

  // Start from what the server sent back (after an error) or from before a reload.
  const fromServer = selects.map((s) => s.value).filter(Boolean);
  const saved = JSON.parse(sessionStorage.getItem(storageKey) || "[]");
  order = (fromServer.length ? fromServer : saved).filter((l, i, all) =>
    labels.includes(l) && all.indexOf(l) === i);
  if (!form.elements.client_submission_id.value) {
    form.elements.client_submission_id.value = storageKey + "-" + startedAt;
  }
  render();
})();
