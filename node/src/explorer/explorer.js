// Cairn explorer: keeps the page current. Every 1.5 s it asks the node
// for its tip and mempool (GET /live); when either changed (a new block,
// a reorganisation, a new pending transfer) it fetches this page again and
// swaps in the new content, so what is shown follows the best chain.
(function () {
  "use strict";
  var body = document.body;
  var live = document.getElementById("live");
  var busy = false;
  function refresh(state) {
    busy = true;
    fetch(window.location.href, { headers: { "Accept": "text/html" }, cache: "no-store" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector("main");
        var current = document.querySelector("main");
        if (fresh && current) { current.replaceWith(fresh); }
        body.dataset.tip = state.hash;
        body.dataset.mempool = String(state.mempool);
        if (live) { live.textContent = "live: height " + state.height; }
      })
      .catch(function () {})
      .then(function () { busy = false; });
  }
  function poll() {
    if (busy) { return; }
    fetch("/live", { cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (state) {
        if (state.hash !== body.dataset.tip || String(state.mempool) !== body.dataset.mempool) {
          refresh(state);
        }
      })
      .catch(function () { if (live) { live.textContent = "live: node unreachable"; } });
  }
  setInterval(poll, 1500);
})();
