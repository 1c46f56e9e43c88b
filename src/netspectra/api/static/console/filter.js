// The filter input: completion from the server (/api/v1/console/complete: field names, operators, the
// store's values, keywords) and the server's errors shown under the text with a caret at the position.

import { get } from "./api.js";

/** Show a filter error (the API's {message, position, expected}) under the input. */
export function showFilterError(box, text, detail) {
  if (!detail) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  const pos = Math.max(0, Math.min(Number(detail.position) || 0, text.length));
  const start = Math.max(0, pos - 60);
  const line = text.slice(start, pos + 60);
  const caret = " ".repeat(pos - start) + "^";
  const expected = (detail.expected || []).length ? `\nexpected: ${detail.expected.join(", ")}` : "";
  box.textContent = `${line}\n${caret} ${detail.message}${expected}`;
  box.dataset.position = String(pos);
  box.hidden = false;
}

export class FilterInput {
  /** input: the <input>; list: the <ul> of suggestions; source(): the current source id. */
  constructor(input, list, errorBox, source, onApply) {
    this.input = input;
    this.list = list;
    this.errorBox = errorBox;
    this.source = source;
    this.onApply = onApply;
    this.items = [];
    this.active = -1;
    this.timer = null;
    this.request = null;
    this.span = null;
    input.addEventListener("input", () => this.schedule());
    input.addEventListener("focus", () => this.schedule());
    input.addEventListener("click", () => this.schedule());
    input.addEventListener("blur", () => setTimeout(() => this.hide(), 150));
    input.addEventListener("keydown", (ev) => this.key(ev));
  }

  schedule() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.suggest(), 120);
  }

  async suggest() {
    const text = this.input.value;
    const cursor = this.input.selectionStart ?? text.length;
    if (this.request) this.request.abort();
    this.request = new AbortController();
    try {
      const doc = await get(
        "/api/v1/console/complete",
        { source: this.source(), text, cursor },
        { signal: this.request.signal },
      );
      if (this.input.value !== text) return;
      this.span = [doc.start, doc.end];
      this.show(doc.options.map((o) => o.text), doc.kind);
    } catch (err) {
      if (err.name !== "AbortError") this.hide();
    }
  }

  show(options, kind) {
    this.items = options.slice(0, 30);
    this.active = -1;
    this.list.replaceChildren();
    if (!this.items.length || document.activeElement !== this.input) return this.hide();
    this.items.forEach((text, i) => {
      const li = document.createElement("li");
      li.textContent = text;
      li.dataset.kind = kind;
      li.setAttribute("role", "option");
      li.addEventListener("mousedown", (ev) => {
        ev.preventDefault();
        this.accept(i);
      });
      this.list.append(li);
    });
    this.list.hidden = false;
  }

  hide() {
    this.list.hidden = true;
    this.active = -1;
  }

  highlight(i) {
    this.active = (i + this.items.length) % this.items.length;
    [...this.list.children].forEach((li, k) => li.classList.toggle("active", k === this.active));
  }

  accept(i) {
    const text = this.items[i];
    const [start, end] = this.span || [this.input.value.length, this.input.value.length];
    const value = this.input.value;
    const rest = value.slice(end);
    const insert = text + (rest.startsWith(" ") ? "" : " ");
    this.input.value = value.slice(0, start) + insert + rest;
    const at = start + insert.length;
    this.input.setSelectionRange(at, at);
    this.hide();
    this.input.focus();
    this.schedule();
  }

  key(ev) {
    const open = !this.list.hidden && this.items.length;
    if (ev.key === "ArrowDown" && open) {
      ev.preventDefault();
      this.highlight(this.active + 1);
    } else if (ev.key === "ArrowUp" && open) {
      ev.preventDefault();
      this.highlight(this.active - 1);
    } else if ((ev.key === "Tab" || ev.key === "Enter") && open && this.active >= 0) {
      ev.preventDefault();
      this.accept(this.active);
    } else if (ev.key === "Escape") {
      this.hide();
    } else if (ev.key === "Enter") {
      ev.preventDefault();
      this.hide();
      this.apply();
    }
  }

  /** Check the text with the server; on success hand it to onApply, else show where it is wrong. */
  async apply() {
    const text = this.input.value.trim();
    if (text) {
      const doc = await get("/api/v1/console/filter", { source: this.source(), filter: text });
      if (!doc.valid) {
        showFilterError(this.errorBox, text, doc.error);
        return;
      }
    }
    showFilterError(this.errorBox, text, null);
    this.onApply(text);
  }
}
