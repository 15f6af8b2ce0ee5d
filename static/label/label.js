// The task page: rank by keyboard (letters best -> worst) or by drag and drop, tie answers, or
// mark them all bad with a better answer.
// The form's rank_1..rank_K selects and tie_2..tie_K checkboxes stay the single source of what
// is submitted, so the page works the same without this script; the ranking is kept in
// sessionStorage (as its groups) so a reload keeps it.
"use strict";

(function () {
  const task = document.getElementById("task");
  if (!task) return;
  const labels = task.dataset.labels.split("");
  const form = document.getElementById("rank-form");
  const selects = labels.map((_, i) => form.elements["rank_" + (i + 1)]);
  const ties = labels.map((_, i) => form.elements["tie_" + (i + 1)] || null);  // no tie_1
  const orderList = document.getElementById("order");
  const hint = document.getElementById("order-hint");
  const submit = document.getElementById("submit");
  const allBadButton = document.getElementById("submit-all-bad");
  const banner = document.getElementById("all-bad-banner");
  const demonstration = form.querySelector(".demonstration");
  const textarea = form.elements.demonstration;
  const storageKey = "ranking-" + task.dataset.assignment;
  const startedAt = Date.now();
  let groups = [];  // best -> worst, each a list of the labels ranked equally good
  let joinNext = false;  // "=" was pressed: the next letter joins the last group
  let allBad = false;
  let submitting = false;

  document.getElementById("rank-selects").hidden = true;
  task.classList.add("js");

  function snippet(label) {
    const text = document.querySelector("#card-" + label + " .text").textContent.trim();
    return text.length > 90 ? text.slice(0, 90) + "…" : text || "(empty answer)";
  }

  function groupOf(label) {
    return groups.find((group) => group.includes(label));
  }

  function ranked() {
    return groups.flat();
  }

  function complete() {
    return ranked().length === labels.length && groups.length > 1;
  }

  function span(className, text) {
    const element = document.createElement("span");
    element.className = className;
    if (text) element.textContent = text;
    return element;
  }

  // One row per rank: "1. C = A", each answer draggable, and an "= tie" end to drop onto.
  function groupRow(group, index) {
    const row = document.createElement("li");
    row.className = group.length > 1 ? "ranked tied" : "ranked";
    row.dataset.index = String(index);
    const members = span("members");
    group.forEach((label, j) => {
      const member = span("member");
      const tag = document.createElement("strong");
      tag.textContent = label;
      member.append(tag, " " + snippet(label));
      if (group.length > 1) {
        if (j) members.append(span("tie-sign", "="));
        member.dataset.label = label;
        member.draggable = true;
      } else {
        row.dataset.label = label;
        row.draggable = true;
      }
      members.append(member);
    });
    const zone = span("tie-zone", "= tie");
    zone.dataset.tie = String(index);
    zone.title = "Drop an answer here to tie it with rank " + (index + 1);
    row.append(span("rank-no", index + 1 + "."), members, zone);
    return row;
  }

  function render() {
    const flat = ranked();
    selects.forEach((select, i) => { select.value = flat[i] || ""; });
    ties.forEach((box, i) => {
      if (box) box.checked = i < flat.length && groupOf(flat[i]) === groupOf(flat[i - 1]);
    });
    sessionStorage.setItem(storageKey, JSON.stringify(groups));
    orderList.replaceChildren(...groups.map(groupRow));
    for (let i = flat.length; i < labels.length; i++) {
      const slot = document.createElement("li");
      slot.className = "slot";
      slot.dataset.index = String(groups.length + i - flat.length);
      if (i === flat.length) {
        slot.textContent = joinNext
          ? "= the next letter ties with rank " + groups.length
          : "press a letter or drop an answer here";
      }
      orderList.append(slot);
    }
    document.querySelectorAll("[data-badge]").forEach((badge) => {
      const rank = groups.findIndex((group) => group.includes(badge.dataset.badge));
      badge.textContent = rank < 0 ? "" : "#" + (rank + 1);
      badge.closest(".card").classList.toggle("ranked", rank >= 0);
    });
    hint.textContent = flat.length === labels.length && groups.length === 1
      ? "Everything is tied, which compares nothing: Backspace unties the last answer, " +
        "or X marks them all bad."
      : "";
    submit.disabled = !complete();
  }

  function remove(label) {
    const group = groupOf(label);
    if (!group) return;
    group.splice(group.indexOf(label), 1);
    if (!group.length) groups.splice(groups.indexOf(group), 1);
  }

  function place(label, index) {  // as its own rank, at that index
    remove(label);
    groups.splice(Math.min(index, groups.length), 0, [label]);
    joinNext = false;
    render();
  }

  function tie(label, group) {  // into that rank's group
    if (!group || group.includes(label)) return;
    remove(label);
    group.push(label);
    joinNext = false;
    render();
  }

  function setAllBad(on) {
    allBad = on;
    task.classList.toggle("all-bad", on);
    banner.hidden = !on;
    if (on) {
      demonstration.open = true;
      textarea.focus();
    } else if (document.activeElement === textarea) {
      textarea.blur();  // so that letters rank again
    }
  }

  function typing(target) {
    return target.closest("input, textarea, select, button, summary, [contenteditable]");
  }

  document.addEventListener("keydown", (event) => {
    // In all-bad mode these work in the text box too.
    if (allBad && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit(allBadButton);
      return;
    }
    if (allBad && event.key === "Escape") {
      event.preventDefault();
      setAllBad(false);
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    const key = event.key.toUpperCase();
    if (labels.includes(key)) {
      if (!groupOf(key)) {
        if (joinNext && groups.length) groups[groups.length - 1].push(key);
        else groups.push([key]);
        joinNext = false;
        render();
      }
      event.preventDefault();
    } else if (event.key === "=") {
      if (groups.length && ranked().length < labels.length) { joinNext = true; render(); }
      event.preventDefault();
    } else if (event.key === "Backspace") {
      if (joinNext) joinNext = false;
      else remove(ranked().pop());
      render();
      event.preventDefault();
    } else if (event.key === "Escape") {
      groups = [];
      joinNext = false;
      render();
    } else if (key === "X") {
      event.preventDefault();  // or the x would be typed into the box it focuses
      setAllBad(!allBad);
    } else if (event.key === "Enter" && !allBad && complete()) {
      event.preventDefault();
      form.requestSubmit();
    } else if (event.key === "?") {
      const help = document.getElementById("help");
      help.open = !help.open;
    }
  });

  // Drag and drop: cards and ranked answers carry their label; dropping on a row or a slot
  // places the answer at that rank, on a row's "= tie" end ties it with that rank.
  document.addEventListener("dragstart", (event) => {
    const source = event.target.closest && event.target.closest("[data-label][draggable=true]");
    if (!source) return;
    event.dataTransfer.setData("text/plain", source.dataset.label);
    event.dataTransfer.effectAllowed = "move";
  });
  function target(event) {
    return event.target.closest("[data-tie]") || event.target.closest("li");
  }
  function unmark() {
    orderList.querySelectorAll(".over").forEach((element) => element.classList.remove("over"));
  }
  orderList.addEventListener("dragover", (event) => {
    event.preventDefault();
    unmark();
    const over = target(event);
    if (over) over.classList.add("over");
  });
  orderList.addEventListener("dragleave", unmark);
  orderList.addEventListener("drop", (event) => {
    event.preventDefault();
    unmark();
    const label = event.dataTransfer.getData("text/plain");
    if (!labels.includes(label)) return;
    const over = target(event);
    if (over && over.dataset.tie) tie(label, groups[Number(over.dataset.tie)]);
    else place(label, over ? Number(over.dataset.index) : groups.length);
  });

  form.addEventListener("submit", (event) => {
    if (submitting) { event.preventDefault(); return; }  // no double submit
    submitting = true;
    form.elements.time_spent_ms.value = String(Date.now() - startedAt);
    sessionStorage.removeItem(storageKey);
    // Later: a submitter disabled now would be left out of the form data (all_bad).
    setTimeout(() => { submit.disabled = allBadButton.disabled = true; });
  });

  // Groups of known labels, each label once (from storage, which a user could have edited).
  function validGroups(stored) {
    const seen = new Set();
    return (Array.isArray(stored) ? stored : [])
      .map((group) => (Array.isArray(group) ? group : [group])
        .filter((l) => labels.includes(l) && !seen.has(l) && seen.add(l)))
      .filter((group) => group.length);
  }

  // Start from what the server sent back (after an error) or from before a reload.
  const fromServer = [];
  selects.forEach((select, i) => {
    if (!select.value) return;
    if (ties[i] && ties[i].checked && fromServer.length) {
      fromServer[fromServer.length - 1].push(select.value);
    } else {
      fromServer.push([select.value]);
    }
  });
  let saved = [];
  try { saved = JSON.parse(sessionStorage.getItem(storageKey) || "[]"); } catch (e) { /* none */ }
  groups = validGroups(fromServer.length ? fromServer : saved);
  if (!form.elements.client_submission_id.value) {
    form.elements.client_submission_id.value = storageKey + "-" + startedAt;
  }
  render();
  if (task.dataset.allBad) setAllBad(true);  // an all-bad submit came back with an error
})();
