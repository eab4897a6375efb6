// Baton's web view: swaps in the clusters the server pushes (Server-Sent Events) at
// each change in etcd, keeping focus and open details, and announces a new primary
// to screen readers. Without JavaScript the page still shows the state at load.
(function () {
  'use strict';
  var root = document.getElementById('clusters');
  var live = document.getElementById('live');
  var announce = document.getElementById('announce');
  if (!root || !live) { return; }

  function primaries() {
    var m = {};
    root.querySelectorAll('[data-cluster]').forEach(function (s) { m[s.dataset.cluster] = s.dataset.primary; });
    return m;
  }

  function swap(html) {
    var before = primaries();
    var active = document.activeElement;
    var focusID = active && active !== document.body && root.contains(active) ? active.id : '';
    root.innerHTML = html;
    if (focusID) {
      var f = document.getElementById(focusID);
      if (f) { f.focus({ preventScroll: true }); }
    }
    var after = primaries(), said = [];
    Object.keys(after).forEach(function (c) {
      if (c in before && before[c] !== after[c]) {
        said.push('Cluster ' + c + ': the primary is now ' + (after[c] || 'none') + '.');
      }
    });
    if (said.length && announce) { announce.textContent = said.join(' '); }
  }

  function state(on, text) {
    live.className = 'live ' + (on ? 'on' : 'off');
    live.textContent = text;
  }

  if (!window.EventSource) {
    state(false, 'live updates unavailable in this browser: reload to see changes');
    return;
  }
  var es = new EventSource('events');
  es.addEventListener('clusters', function (e) { swap(e.data); state(true, 'live: updated as etcd changes'); });
  es.onopen = function () { state(true, 'live: updated as etcd changes'); };
  es.onerror = function () { state(false, 'reconnecting to the server… the page may be out of date'); };
})();
