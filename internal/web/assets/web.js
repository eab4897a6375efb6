// Baton's web view: applies the clusters the server pushes (Server-Sent Events) at
// each change in etcd, and announces a new primary to screen readers. Only what
// changed is touched in the page, so focus, a scrolled table and a screen reader's
// place survive the updates (the agents publish several times a second). Without
// JavaScript the page still shows the state at load.
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

  // patch makes the live node from look like to, keeping every node that is the
  // same kind at the same place.
  function patch(from, to) {
    if (from.nodeType !== to.nodeType || from.nodeName !== to.nodeName) {
      from.parentNode.replaceChild(to, from);
      return;
    }
    if (from.nodeType !== Node.ELEMENT_NODE) {
      if (from.nodeValue !== to.nodeValue) { from.nodeValue = to.nodeValue; }
      return;
    }
    Array.prototype.slice.call(from.attributes).forEach(function (a) {
      if (!to.hasAttribute(a.name)) { from.removeAttribute(a.name); }
    });
    Array.prototype.slice.call(to.attributes).forEach(function (a) {
      if (from.getAttribute(a.name) !== a.value) { from.setAttribute(a.name, a.value); }
    });
    patchChildren(from, to);
  }

  function patchChildren(from, to) {
    var fc = Array.prototype.slice.call(from.childNodes);
    var tc = Array.prototype.slice.call(to.childNodes);
    tc.forEach(function (n, i) {
      if (i < fc.length) { patch(fc[i], n); } else { from.appendChild(n); }
    });
    for (var i = tc.length; i < fc.length; i++) { from.removeChild(fc[i]); }
  }

  function apply(html) {
    var before = primaries();
    var t = document.createElement('template');
    t.innerHTML = html;
    patchChildren(root, t.content);
    var after = primaries(), said = [];
    Object.keys(after).forEach(function (c) {
      if (c in before && before[c] !== after[c]) {
        said.push('Cluster ' + c + ': the primary is now ' + (after[c] || 'none') + '.');
      }
    });
    if (said.length && announce) { announce.textContent = said.join(' '); }
  }

  function state(on, text) {
    var cls = 'live ' + (on ? 'on' : 'off');
    if (live.className !== cls) { live.className = cls; }
    if (live.textContent !== text) { live.textContent = text; } // said once, not at every update
  }

  if (!window.EventSource) {
    state(false, 'live updates unavailable in this browser: reload to see changes');
    return;
  }
  var es = new EventSource('events');
  es.addEventListener('clusters', function (e) { apply(e.data); state(true, 'live: updated as etcd changes'); });
  es.onopen = function () { state(true, 'live: updated as etcd changes'); };
  es.onerror = function () { state(false, 'reconnecting to the server… the page may be out of date'); };
})();
