// Auto-refresh for the queuekit dashboard: every data-refresh seconds the page's <main>
// is re-read from the server and swapped in place (no full reload, the scroll position
// stays). It pauses while a form control has focus and when the box is unticked (the
// choice is kept per browser tab).
(function () {
  "use strict";
  const seconds = parseFloat(document.body.dataset.refresh || "0");
  const box = document.getElementById("auto-refresh");
  const key = "queuekit-dashboard-refresh";
  if (box) {
    box.checked = sessionStorage.getItem(key) !== "off";
    box.addEventListener("change", function () {
      sessionStorage.setItem(key, box.checked ? "on" : "off");
    });
  }
  if (!(seconds > 0)) return;
  async function refresh() {
    if (box && !box.checked) return;
    const active = document.activeElement;
    if (active && active.closest && active.closest("form")) return;
    try {
      const url = new URL(window.location.href);
      url.searchParams.delete("done");
      const answer = await fetch(url, { credentials: "same-origin", headers: { "X-Refresh": "1" } });
      if (!answer.ok) return;
      const page = new DOMParser().parseFromString(await answer.text(), "text/html");
      const fresh = page.getElementById("content");
      const current = document.getElementById("content");
      if (fresh && current) current.replaceWith(fresh);
    } catch (err) {
      // the server is restarting or unreachable: try again next time
    }
  }
  window.setInterval(refresh, seconds * 1000);
})();
