// The campaign upload: XHR upload progress (0-50 %), then the server's staging (50-100 %).
"use strict";
(function () {
  function uuid4() {
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }
  function show(bar, text, label, value, what) {
    var v = Math.max(Number(bar.value), Math.min(100, Math.round(value)));
    bar.value = v;
    text.textContent = v + " %";
    if (what) label.textContent = what;
  }
  var form = document.getElementById("campaign-form");
  if (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var id = uuid4();
      var data = new FormData(form);
      data.append("campaignId", id);
      var box = document.getElementById("campaign-progress");
      var bar = document.getElementById("progress-bar");
      var text = document.getElementById("progress-text");
      var label = document.getElementById("progress-label");
      var result = document.getElementById("campaign-result");
      box.hidden = false;
      bar.value = 0;
      var done = false;
      var rows = null;
      var xhr = new XMLHttpRequest();
      xhr.upload.onprogress = function (e) {
        if (e.lengthComputable) show(bar, text, label, 50 * e.loaded / e.total, "Uploading…");
      };
      xhr.upload.onload = function () { show(bar, text, label, 50, "Staging the messages…"); poll(); };
      function poll() {
        if (done) return;
        fetch("/console/campaigns/" + id + "/progress", { credentials: "same-origin" })
          .then(function (r) { return r.json(); })
          .then(function (p) {
            if (done) return;
            if (p.status === "STAGING" && p.staged) {
              // the row count is known once the file is read; until then approach 99 %
              var share = rows ? p.staged / rows : p.staged / (p.staged + 1000);
              show(bar, text, label, 50 + 49 * share, "Staging: " + p.staged + " messages");
            }
            setTimeout(poll, 300);
          })
          .catch(function () { setTimeout(poll, 600); });
      }
      xhr.onload = function () {
        done = true;
        var body = {};
        try { body = JSON.parse(xhr.responseText); } catch (e) { body = { error: "unexpected answer" }; }
        if (xhr.status === 200) {
          rows = body.total;
          show(bar, text, label, 100, "Done: " + body.accepted + " messages queued");
          result.innerHTML = "";
          var link = document.createElement("a");
          link.href = "/console/campaigns/" + body.campaignId;
          link.textContent = "Open the campaign (" + body.accepted + " of " + body.total + " rows accepted)";
          result.appendChild(link);
        } else {
          label.textContent = "Refused";
          result.textContent = body.error || "the upload was refused";
        }
      };
      xhr.onerror = function () { done = true; result.textContent = "the upload failed"; };
      xhr.open("POST", form.action);
      xhr.send(data);
    });
  }
  // The campaign page: live counts.
  var page = document.getElementById("campaign");
  if (page) {
    var id = page.getAttribute("data-id");
    var refresh = function () {
      fetch("/console/campaigns/" + id + "/progress", { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (p) {
          document.getElementById("campaign-status").textContent = p.status;
          var body = document.querySelector("#campaign-counts tbody");
          body.innerHTML = "";
          Object.keys(p.counts || {}).sort().forEach(function (s) {
            var tr = document.createElement("tr");
            var th = document.createElement("th"); th.scope = "row"; th.textContent = s;
            var td = document.createElement("td"); td.setAttribute("data-status", s); td.textContent = p.counts[s];
            tr.appendChild(th); tr.appendChild(td); body.appendChild(tr);
          });
        })
        .finally(function () { setTimeout(refresh, 2000); });
    };
    setTimeout(refresh, 2000);
  }
})();
