// Small conveniences on top of HTMX; every page works without them.
document.addEventListener("DOMContentLoaded", () => {
  // Keep the console scrolled to its newest line unless the reader scrolled up.
  for (const log of document.querySelectorAll("pre.console")) {
    let pinned = true;
    log.addEventListener("scroll", () => {
      pinned = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
    });
    new MutationObserver(() => {
      if (pinned) log.scrollTop = log.scrollHeight;
    }).observe(log, { childList: true });
  }
  // The server form: a host chosen suggests the lowest port free on it, unless a port was typed.
  const host = document.getElementById("host");
  if (host) {
    const port = host.form.querySelector("input[name=port]");
    let suggested = port.value;
    host.addEventListener("change", () => {
      const free = host.selectedOptions[0]?.dataset.freePort;
      if (free && (port.value === suggested || port.value === "")) {
        port.value = free;
        suggested = free;
      }
    });
  }
  // RCON: clear the field after sending; arrow keys walk the command history.
  const rcon = document.getElementById("rcon");
  if (rcon) {
    const input = rcon.querySelector("input[name=command]");
    const history = Array.from(document.querySelectorAll("#rcon-history option")).map((o) => o.value);
    let at = history.length;
    rcon.addEventListener("htmx:afterRequest", () => {
      history.push(input.value);
      at = history.length;
      input.value = "";
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "ArrowUp" && at > 0) {
        at -= 1;
        input.value = history[at];
        event.preventDefault();
      } else if (event.key === "ArrowDown" && at < history.length) {
        at += 1;
        input.value = history[at] || "";
        event.preventDefault();
      }
    });
  }
  // The editor's problem list jumps to the line it names.
  for (const link of document.querySelectorAll("a.goto")) {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      const area = document.querySelector("textarea.code");
      const line = Number(link.dataset.line) - 1;
      const lines = area.value.split("\n");
      const start = lines.slice(0, line).join("\n").length + (line > 0 ? 1 : 0);
      area.focus();
      area.setSelectionRange(start, start + (lines[line] || "").length);
    });
  }
  // A copy button puts its data-copy on the clipboard. Listened for on the document: the
  // dashboard's rows are drawn again by the live view. Without the clipboard API (a page served
  // over plain HTTP to another machine) the text is selected for Ctrl-C instead.
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button.copy[data-copy]");
    if (!button) return;
    const said = (text) => {
      button.textContent = text;
      setTimeout(() => (button.textContent = "Copy"), 1500);
    };
    const select = () => {
      const code = button.previousElementSibling;
      if (code) window.getSelection().selectAllChildren(code);
      said("Ctrl-C");
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(button.dataset.copy).then(() => said("Copied"), select);
    } else {
      select();
    }
  });
});
