// The live form: after each pause in typing, ask the node what a save of the form as typed
// would say (POST <form>/check), then hide the items the study's show_if hides, and show
// hard errors and soft warnings beside their items. The node stays the judge: a save is
// checked again in full. Without this script the form still works; it is only slower to
// tell.
"use strict";

(function () {
  const form = document.querySelector("form[data-live-check]");
  if (!form) {
    return;
  }
  const url = form.dataset.liveCheck;
  const status = document.getElementById("live-status");
  const PAUSE_MS = 300;
  let timer = null;
  let asked = 0;

  function wrappers() {
    return form.querySelectorAll("[data-item]");
  }

  function controls(wrapper) {
    return wrapper.querySelectorAll("input, select, textarea");
  }

  // a hidden item's inputs are disabled, so that neither a check nor a save sends them
  function setHidden(wrapper, hidden) {
    wrapper.hidden = hidden;
    for (const control of controls(wrapper)) {
      if (hidden && !control.disabled) {
        control.disabled = true;
        control.dataset.hiddenByRule = "1";
      } else if (!hidden && control.dataset.hiddenByRule) {
        control.disabled = false;
        delete control.dataset.hiddenByRule;
      }
    }
  }

  function note(wrapper, name, kind, text) {
    const id = "i-" + name + "-" + kind;
    let element = document.getElementById(id);
    if (!text) {
      if (element) {
        element.remove();
      }
    } else {
      if (!element) {
        element = document.createElement("p");
        element.className = kind;
        element.id = id;
        wrapper.appendChild(element);
      }
      element.textContent = text;
    }
    const input = document.getElementById("i-" + name);
    if (input && kind === "error") {
      if (text) {
        input.setAttribute("aria-invalid", "true");
        input.setAttribute("aria-describedby", id);
      } else {
        input.removeAttribute("aria-invalid");
        input.removeAttribute("aria-describedby");
      }
    }
  }

  function apply(answer) {
    const hidden = new Set(answer.hidden);
    const said = [];
    for (const wrapper of wrappers()) {
      const name = wrapper.dataset.item;
      const isHidden = hidden.has(name);
      setHidden(wrapper, isHidden);
      const error = isHidden ? "" : answer.errors[name] || "";
      const warning = isHidden ? "" : answer.warnings[name] || "";
      note(wrapper, name, "error", error);
      note(wrapper, name, "warning", warning);
      if (error) {
        said.push((wrapper.dataset.label || name) + ": " + error);
      }
    }
    said.push(...answer.general);
    if (status) {
      const text = said.length
        ? form.dataset.problems + " " + said.join("; ")
        : form.dataset.noProblems;
      if (status.textContent !== text) {
        status.textContent = text;
      }
    }
    form.dataset.checked = String(asked);
  }

  async function check() {
    const mine = ++asked;
    const body = new URLSearchParams(new FormData(form));
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        body: body,
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
    } catch (error) {
      return; // offline or the node restarting: the save will tell
    }
    if (!response.ok || mine !== asked) {
      return; // a later check is on its way, or the node refused: the save will tell
    }
    apply(await response.json());
  }

  function soon() {
    window.clearTimeout(timer);
    timer = window.setTimeout(check, PAUSE_MS);
  }

  for (const wrapper of wrappers()) {
    if (wrapper.hidden) {
      setHidden(wrapper, true);
    }
  }
  form.addEventListener("input", soon);
  form.addEventListener("change", soon);
})();
