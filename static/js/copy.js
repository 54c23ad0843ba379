// Copy buttons: `data-copy-target` names the input whose value is copied.
// navigator.clipboard needs a secure context (HTTPS or localhost); elsewhere
// fall back to selecting the text and execCommand("copy").
(function () {
  "use strict";

  function fallbackCopy(input) {
    input.focus();
    input.select();
    input.setSelectionRange(0, input.value.length);
    return document.execCommand("copy");
  }

  async function copy(input) {
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(input.value);
        return true;
      } catch (err) {
        // Permission refused: try the old way.
      }
    }
    return fallbackCopy(input);
  }

  document.addEventListener("click", async function (event) {
    const button = event.target.closest("[data-copy-target]");
    if (!button) return;
    const input = document.getElementById(button.dataset.copyTarget);
    if (!input) return;
    const ok = await copy(input);
    const label = button.dataset.label || (button.dataset.label = button.textContent);
    button.textContent = ok ? "Copied" : "Press Ctrl+C";
    button.classList.toggle("btn-success", ok);
    setTimeout(function () {
      button.textContent = label;
      button.classList.remove("btn-success");
    }, 1500);
  });
})();
