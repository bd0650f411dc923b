// Porchlight's page: reads and writes through the node's JSON API (docs/api.md) with
// the session cookie. No library, no build step; served by the node itself, so it works
// with no internet. Text from the network only ever goes in as text (textContent), never
// as HTML.
'use strict';

(() => {
  const $ = (selector) => document.querySelector(selector);
  const body = document.body;
  const LIMITS = {
    text: Number(body.dataset.maxText),
    behavior: Number(body.dataset.maxBehavior),
    where: Number(body.dataset.maxWhere),
  };

  // ---------------------------------------------------------------- helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  async function api(method, path, payload) {
    const init = { method, credentials: 'same-origin', headers: {} };
    if (payload !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(payload);
    }
    const response = await fetch(path, init);
    let value = null;
    try {
      value = await response.json();
    } catch (_) {
      value = null;
    }
    if (response.status === 401) {
      notice(location.protocol === 'https:'
        ? 'This phone is not paired any more: pair it again from the node\'s computer.'
        : 'You are signed out: run `porchlight open` on the node\'s computer for a new link.');
    }
    if (!response.ok) {
      throw new Error((value && value.error) || `the node answered ${response.status}`);
    }
    return value;
  }

  function notice(text) {
    const n = $('#notice');
    if (n) n.textContent = text;
  }

  const bytes = (s) => new TextEncoder().encode(s).length;

  function ago(secs) {
    const d = Math.max(0, Math.floor(Date.now() / 1000) - secs);
    if (d < 60) return 'just now';
    if (d < 3600) return `${Math.floor(d / 60)} min ago`;
    if (d < 86400) return `${Math.floor(d / 3600)} h ago`;
    return `${Math.floor(d / 86400)} d ago`;
  }

  function timeEl(secs) {
    const date = new Date(secs * 1000);
    return el('time', { datetime: date.toISOString(), title: date.toLocaleString(), 'data-at': secs }, ago(secs));
  }

  function span(secs) {
    const count = (n, unit) => `${n} ${unit}${n === 1 ? '' : 's'}`;
    if (secs % 86400 === 0) return count(secs / 86400, 'day');
    if (secs % 3600 === 0) return count(secs / 3600, 'hour');
    return count(Math.round(secs / 60), 'minute');
  }

  function size(n) {
    if (n >= 1048576) return `${(n / 1048576).toFixed(1)} MB`;
    if (n >= 1024) return `${Math.round(n / 1024)} KB`;
    return `${n} bytes`;
  }

  const label = (category) => {
    const words = category.replace(/-/g, ' ');
    return words.charAt(0).toUpperCase() + words.slice(1);
  };
  const SEVERITY = { info: 'Info', warning: 'Warning', urgent: 'Urgent' };

  function video(sha) {
    return el('video', {
      controls: true,
      preload: 'metadata',
      src: `/web/clips/${sha}`,
      'aria-label': 'Clip',
      class: 'clip-video',
    });
  }

  // The node's member, the hood and its policy: every page shows the hood's name.
  let me = { id: '', admin: false, name: '' };
  let status = null;
  async function whoAmI() {
    try {
      const [s, members] = await Promise.all([api('GET', '/v1/status'), api('GET', '/v1/members')]);
      status = s;
      const mine = members.find((m) => m.me) || {};
      me = { id: s.member, admin: !!mine.admin, name: mine.name || '' };
      const hood = $('#hood');
      if (hood && s.hood_name) hood.textContent = ` · ${s.hood_name}`;
    } catch (e) {
      notice(e.message);
    }
  }

  // ---------------------------------------------------------------- clips

  // A neighbor's clip: fetch it into this node's library, with progress, then play it.
  function clipBox(clip, own) {
    const box = el('div', { class: 'clip' });
    if (own) {
      box.append(video(clip.sha256));
      return box;
    }
    const progress = el('progress', { max: 100, value: 0, hidden: true, 'aria-label': 'Clip download' });
    const state = el('p', { class: 'clip-state', role: 'status' });
    const button = el('button', { type: 'button', class: 'fetch-clip' }, `Get the clip (${size(clip.size)})`);
    button.addEventListener('click', async () => {
      button.disabled = true;
      progress.hidden = false;
      try {
        let s = await api('POST', `/v1/clips/${clip.sha256}/fetch`);
        for (let i = 0; i < 7200 && s && s.state !== 'done' && s.state !== 'failed'; i++) {
          if (s.state === 'waiting') state.textContent = `Waiting for ${s.owner || 'the owner'} to allow it…`;
          else if (s.size) {
            progress.value = Math.floor((100 * s.received) / s.size);
            state.textContent = `Fetching: ${size(s.received)} of ${size(s.size)}`;
          }
          await new Promise((r) => setTimeout(r, 500));
          s = await api('GET', `/v1/clips/${clip.sha256}`);
        }
        if (s && s.state === 'done') {
          progress.value = 100;
          state.textContent = 'Fetched.';
          button.remove();
          box.append(video(clip.sha256));
        } else {
          state.textContent = `Could not fetch the clip: ${(s && s.error) || 'no answer'}`;
          button.disabled = false;
        }
      } catch (e) {
        state.textContent = `Could not fetch the clip: ${e.message}`;
        button.disabled = false;
      }
    });
    box.append(button, progress, state);
    return box;
  }

  // ---------------------------------------------------------------- feed

  function feedPage() {
    const list = $('#feed');
    const older = $('#older');
    const live = $('#live');
    const category = $('#filter-category');
    const severity = $('#filter-severity');
    const PAGE = 50;
    let reports = new Map();
    // Updates and all-clears whose report has not come yet (a page or the network can
    // bring them first), by report id; bounded.
    let pending = new Map();
    const MAX_PENDING = 500;
    let before = null;
    let source = null;

    function visible(r) {
      return !severity.value || r.severity === severity.value;
    }

    function actions(r) {
      if (r.item.author !== me.id && !me.admin) return null;
      const box = el('details', { class: 'actions' }, el('summary', {}, 'Change this report'));
      const msg = el('p', { class: 'error', role: 'alert' });
      const updateText = el('input', { type: 'text', id: `update-${r.item.id}`, class: 'update-text' });
      const run = async (what, payload) => {
        msg.textContent = '';
        try {
          await api('POST', `/v1/reports/${r.item.id}/${what}`, payload);
          updateText.value = '';
          notice(what === 'retract' ? 'Report taken back.' : 'Sent to the hood.');
        } catch (e) {
          msg.textContent = e.message;
        }
      };
      const confirmRow = el('p', { hidden: true, class: 'confirm' },
        'Take this report back from every neighbor? ',
        el('button', { type: 'button', class: 'danger', onclick: () => run('retract', {}) }, 'Yes, retract it'),
        ' ',
        el('button', { type: 'button', onclick: () => { confirmRow.hidden = true; } }, 'Cancel'));
      box.append(
        el('label', { for: `update-${r.item.id}` }, 'New information'),
        updateText,
        el('button', {
          type: 'button',
          onclick: () => {
            if (!updateText.value.trim()) {
              msg.textContent = 'Write the new information first.';
              return;
            }
            run('update', { text: updateText.value });
          },
        }, 'Send update'),
        ' ',
        el('button', { type: 'button', onclick: () => run('resolve', { text: updateText.value }) }, 'All clear (resolve)'),
        ' ',
        el('button', { type: 'button', class: 'danger', onclick: () => { confirmRow.hidden = false; } }, 'Retract'),
        confirmRow,
        msg,
      );
      return box;
    }

    function card(r) {
      const it = r.item;
      const own = it.author === me.id;
      const li = el('li', { class: `card sev-${r.severity}`, 'data-id': it.id, 'data-severity': r.severity },
        el('p', { class: 'meta' },
          el('strong', { class: 'category' }, label(it.category)),
          ' · ',
          el('span', { class: `severity sev-${r.severity}` }, SEVERITY[r.severity] || r.severity),
          r.resolved ? ' · ' : null,
          r.resolved ? el('span', { class: 'resolved-tag' }, 'Resolved') : null),
        el('p', { class: 'text' }, it.text),
        it.behavior ? el('p', { class: 'behavior' }, el('span', { class: 'k' }, 'What they did: '), it.behavior) : null,
        it.where ? el('p', { class: 'where' }, el('span', { class: 'k' }, 'Where: '), it.where) : null,
        el('p', { class: 'by' }, 'By ', el('span', { class: 'author' }, it.author_name || 'someone'),
          ' ', el('span', { class: 'fingerprint', title: 'fingerprint' }, `(${it.author_fingerprint})`), ' · ', timeEl(it.created_at)),
        r.updates.length
          ? el('ul', { class: 'updates', 'aria-label': 'Updates' },
            r.updates.map((u) => el('li', {}, el('span', { class: 'k' }, 'Update '), timeEl(u.created_at), ': ', u.text)))
          : null,
        r.resolved ? el('p', { class: 'resolution' }, el('span', { class: 'k' }, 'All clear: '), r.resolved.text || '(no note)') : null,
        it.seen
          ? el('p', { class: 'seen' }, `Seen by ${it.seen.n} of ${it.seen.of}`,
            it.seen.by.length ? `: ${it.seen.by.join(', ')}` : '')
          : null,
        it.ask_seen && !it.seen ? el('p', { class: 'seen' }, 'Its author asked who has seen it: opening it here tells them you have.') : null,
        (it.clips || []).map((c) => clipBox(c, own)),
        actions(r));
      li.hidden = !visible(r);
      return li;
    }

    // "Seen by": a neighbor's report that asked is acknowledged once it is shown to a
    // person: on the page, unfiltered, in a tab in front. Never on arrival alone.
    function acknowledge(r) {
      const it = r.item;
      if (it.acknowledged !== false || !r.node || r.node.hidden) return;
      if (document.visibilityState !== 'visible') return;
      it.acknowledged = true;
      api('POST', `/v1/reports/${it.id}/seen`).catch(() => { it.acknowledged = false; });
    }
    document.addEventListener('visibilitychange', () => {
      for (const r of reports.values()) acknowledge(r);
    });

    function place(r) {
      const fresh = card(r);
      if (r.node && r.node.parentNode) {
        // Keep an open clip player or form as it is; only the text parts change.
        for (const part of [':scope > .clip', ':scope > details.actions']) {
          const old = r.node.querySelectorAll(part);
          fresh.querySelectorAll(part).forEach((n, i) => { if (old[i]) n.replaceWith(old[i]); });
        }
        r.node.replaceWith(fresh);
      } else {
        const after = [...list.children].find((n) => {
          const other = reports.get(n.dataset.id);
          return other && (other.item.created_at < r.item.created_at
            || (other.item.created_at === r.item.created_at && other.item.id < r.item.id));
        });
        list.insertBefore(fresh, after || null);
      }
      r.node = fresh;
      acknowledge(r);
    }

    function take(item, live) {
      switch (item.kind) {
        case 'report': {
          if (reports.has(item.id)) return;
          const r = { item, severity: item.severity, updates: [], resolved: null, node: null };
          reports.set(item.id, r);
          const early = pending.get(item.id) || [];
          pending.delete(item.id);
          for (const e of early) take(e, false);
          if (live && reports.has(item.id)) place(r);
          return;
        }
        case 'update':
        case 'resolve': {
          const r = reports.get(item.report);
          if (!r) {
            if (pending.size < MAX_PENDING || pending.has(item.report)) {
              const list = pending.get(item.report) || [];
              if (list.length < 50) list.push(item);
              pending.set(item.report, list);
            }
            return;
          }
          if (item.kind === 'update') {
            r.updates.push(item);
            r.updates.sort((a, b) => a.created_at - b.created_at);
            if (item.severity) r.severity = item.severity;
          } else {
            r.resolved = item;
          }
          if (live) place(r);
          return;
        }
        case 'retract': {
          const r = reports.get(item.report);
          if (!r && (pending.size < MAX_PENDING || pending.has(item.report))) {
            pending.set(item.report, [...(pending.get(item.report) || []), item].slice(0, 50));
          }
          if (r && r.node) r.node.remove();
          reports.delete(item.report);
          return;
        }
        default:
      }
    }

    async function loadPage() {
      const q = new URLSearchParams({ limit: PAGE });
      if (category.value) q.set('category', category.value);
      if (before) q.set('before', before);
      const items = await api('GET', `/v1/feed?${q}`);
      if (items.length) before = items[0].id;
      // Reports first: an update or all-clear made in the same second may come before
      // its report in the page.
      for (const item of items) if (item.kind === 'report') take(item, false);
      for (const item of items) if (item.kind !== 'report') take(item, false);
      for (const r of reports.values()) if (!r.node) place(r);
      older.hidden = items.length < PAGE;
      if (!list.children.length) notice('No reports yet.');
      else notice('');
    }

    function connect() {
      if (source) source.close();
      const q = category.value ? `?category=${encodeURIComponent(category.value)}` : '';
      source = new EventSource(`/v1/events${q}`);
      source.addEventListener('open', () => { live.textContent = 'Live: new reports appear here as they arrive.'; });
      source.addEventListener('error', () => { live.textContent = 'Reconnecting to the node…'; });
      for (const kind of ['report', 'update', 'resolve', 'retract']) {
        source.addEventListener(kind, (e) => {
          try {
            take(JSON.parse(e.data), true);
            notice('');
          } catch (_) { /* a malformed event is skipped */ }
        });
      }
      source.addEventListener('removed', (e) => {
        try { notice(JSON.parse(e.data).message); } catch (_) { /* skipped */ }
      });
    }

    async function reload() {
      reports = new Map();
      pending = new Map();
      before = null;
      list.replaceChildren();
      connect();
      try {
        await loadPage();
      } catch (e) {
        notice(e.message);
      }
    }

    category.addEventListener('change', reload);
    severity.addEventListener('change', () => {
      for (const r of reports.values()) if (r.node) r.node.hidden = !visible(r);
    });
    older.addEventListener('click', () => loadPage().catch((e) => notice(e.message)));
    setInterval(() => {
      for (const t of document.querySelectorAll('time[data-at]')) t.textContent = ago(Number(t.dataset.at));
    }, 30000);
    reload();
  }

  // ---------------------------------------------------------------- post

  // The protocol's rules, checked here before anything is sent (the node checks them
  // again). Returns {field: message}.
  function reportErrors(f, policy) {
    const errors = {};
    const control = /[\u0000-\u0009\u000b-\u001f\u007f\u200b-\u200f\u202a-\u202e\u2066-\u2069]/;
    const text = f.text.value;
    if (!text.trim()) errors.text = 'Say what happened.';
    else if (bytes(text) > LIMITS.text) errors.text = `Too long: ${bytes(text)} bytes, at most ${LIMITS.text} (a letter like é takes 2).`;
    else if (control.test(text)) errors.text = 'Remove the control or invisible characters.';
    const behavior = f.behavior.value;
    if (f.category.value === 'suspicious-activity' && !behavior.trim()) {
      errors.behavior = 'A suspicious-activity report must say what the person did (behavior, not looks).';
    } else if (bytes(behavior) > LIMITS.behavior) {
      errors.behavior = `Too long: ${bytes(behavior)} bytes, at most ${LIMITS.behavior}.`;
    } else if (control.test(behavior)) errors.behavior = 'Remove the control or invisible characters.';
    const where = f.where.value;
    if (bytes(where) > LIMITS.where) errors.where = `Too long: ${bytes(where)} bytes, at most ${LIMITS.where}.`;
    else if (/[\u0000-\u001f\u007f]/.test(where)) errors.where = 'Remove the control characters.';
    else if (/(^|[^\w])\d{1,6}[a-z]?(?![\w])(?!\s*(block|blk)\b)/i.test(where)) {
      errors.where = 'That looks like a house number: give a block (“400 block of Elm St”) or a corner (“Elm and 3rd”).';
    }
    const hours = f.expires.value.trim();
    const max = policy ? policy.max_report_lifetime_secs : 30 * 86400;
    if (hours) {
      const n = Number(hours);
      if (!Number.isInteger(n) || n < 1) errors.expires = 'Give a whole number of hours, at least 1.';
      else if (n * 3600 > max) errors.expires = `Too long: this hood's reports live at most ${span(max)} (${max / 3600} hours).`;
    }
    if (f.ask_seen && f.ask_seen.checked && f.severity.value !== 'urgent') {
      errors.ask_seen = 'Only an urgent report may ask who has seen it: set the severity to urgent.';
    }
    return errors;
  }

  function showErrors(form, errors) {
    for (const field of ['text', 'behavior', 'where', 'expires', 'ask_seen', 'clip']) {
      const input = form.elements[field];
      const out = $(`#${field}-error`);
      const message = errors[field] || '';
      out.textContent = message;
      if (message) input.setAttribute('aria-invalid', 'true');
      else input.removeAttribute('aria-invalid');
    }
    const count = Object.keys(errors).length;
    $('#post-summary').textContent = count
      ? `Nothing was sent: ${count === 1 ? 'one field needs' : `${count} fields need`} a change.`
      : '';
    if (count) {
      const first = ['text', 'behavior', 'where', 'expires', 'ask_seen', 'clip'].find((k) => errors[k]);
      form.elements[first].focus();
    }
  }

  function upload(file, progress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', '/web/clips');
      xhr.responseType = 'json';
      xhr.upload.addEventListener('progress', (e) => {
        if (e.lengthComputable) progress.value = Math.floor((100 * e.loaded) / e.total);
      });
      xhr.addEventListener('load', () => {
        if (xhr.status === 201) resolve(xhr.response);
        else reject(new Error((xhr.response && xhr.response.error) || `upload refused (${xhr.status})`));
      });
      xhr.addEventListener('error', () => reject(new Error('the upload did not reach the node')));
      xhr.send(file);
    });
  }

  function postPage() {
    const form = $('#post-form');
    const hint = $('#expires-hint');
    const ready = whoAmIDone.then(() => {
      const p = status && status.policy;
      if (p) {
        form.expires.placeholder = String(p.default_report_lifetime_secs / 3600);
        hint.textContent = `Empty: ${span(p.default_report_lifetime_secs)}. This hood's longest: ${span(p.max_report_lifetime_secs)}.`;
      }
    });
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      await ready;
      const errors = reportErrors(form, status && status.policy);
      showErrors(form, errors);
      if (Object.keys(errors).length) return;
      const button = form.querySelector('button[type=submit]');
      button.disabled = true;
      try {
        const payload = {
          category: form.category.value,
          severity: form.severity.value,
          text: form.text.value,
        };
        if (form.behavior.value.trim()) payload.behavior = form.behavior.value;
        if (form.where.value.trim()) payload.where = form.where.value;
        if (form.expires.value.trim()) payload.expires_in_secs = Number(form.expires.value) * 3600;
        if (form.ask_seen.checked) payload.ask_seen = true;
        const file = form.clip.files[0];
        if (file) {
          const progress = $('#clip-progress');
          progress.hidden = false;
          const clip = await upload(file, progress);
          payload.clips = [{ sha256: clip.sha256, camera: '' }];
        }
        const posted = await api('POST', '/v1/reports', payload);
        form.reset();
        notice(`Posted (report ${posted.id.slice(0, 8)}). It is on its way to your neighbors.`);
      } catch (e) {
        $('#post-summary').textContent = `Not posted: ${e.message}`;
      } finally {
        button.disabled = false;
      }
    });
  }

  // ---------------------------------------------------------------- invite

  function invitePage() {
    const form = $('#invite-form');
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      try {
        const v = await api('POST', '/web/invite', { expires_in_secs: Number(form.expires.value) });
        const svg = new DOMParser().parseFromString(v.svg, 'image/svg+xml').documentElement;
        svg.setAttribute('role', 'img');
        svg.setAttribute('aria-label', 'QR code of the invite');
        $('#invite-qr').replaceChildren(document.importNode(svg, true));
        $('#invite-code').textContent = v.code;
        $('#invite-expiry').replaceChildren('Works once, until ',
          el('time', { datetime: new Date(v.expires_at * 1000).toISOString() }, new Date(v.expires_at * 1000).toLocaleString()), '.');
        $('#invite-result').hidden = false;
        notice('');
      } catch (e) {
        notice(`No invite: ${e.message}`);
      }
    });
  }

  // ---------------------------------------------------------------- members

  async function membersPage() {
    const list = $('#members');
    const members = await api('GET', '/v1/members');
    list.replaceChildren(...members.map((m) => {
      // The hood's policy says who may remove (admins by default); anyone may leave.
      const anyone = !!(status && status.policy && status.policy.remove === 'members');
      const mayRemove = me.admin || m.me || anyone;
      const confirmRow = el('p', { hidden: true, class: 'confirm' },
        m.me ? 'Leave the hood for good? ' : `Remove ${m.name} from the hood for good? `,
        el('button', {
          type: 'button',
          class: 'danger',
          onclick: async () => {
            try {
              await api('POST', '/v1/members/remove', { member: m.id });
              notice(`${m.name} was removed; the hood's key changes.`);
              membersPage();
            } catch (e) {
              notice(e.message);
            }
          },
        }, m.me ? 'Yes, leave' : `Yes, remove ${m.name}`),
        ' ',
        el('button', { type: 'button', onclick: () => { confirmRow.hidden = true; } }, 'Cancel'));
      return el('li', { class: 'card member', 'data-id': m.id },
        el('p', {}, el('strong', {}, m.name), m.me ? ' (you)' : null, m.admin ? el('span', { class: 'role' }, ' · Admin') : null),
        el('p', { class: 'fingerprint' }, `Fingerprint ${m.fingerprint}`),
        el('p', { class: 'seen' }, m.connected ? 'Connected now' : 'Not connected'),
        mayRemove
          ? el('button', { type: 'button', class: 'danger', onclick: () => { confirmRow.hidden = false; } }, m.me ? 'Leave the hood' : `Remove ${m.name}`)
          : null,
        confirmRow);
    }));
  }

  // ---------------------------------------------------------------- hub

  async function hubPage() {
    const drafts = $('#drafts');
    const requests = $('#requests');
    const list = await api('GET', '/v1/drafts');
    if (!list.length) drafts.replaceChildren(el('li', { class: 'empty' }, 'No drafts waiting.'));
    else drafts.replaceChildren(...list.map((d) => {
      const id = d.id;
      const msg = el('p', { class: 'error', role: 'alert' });
      const text = el('input', { type: 'text', id: `draft-text-${id}`, value: d.text });
      const category = el('select', { id: `draft-category-${id}` },
        [...$('#category-options').content.children].map((o) => {
          const copy = o.cloneNode(true);
          if (copy.value === d.category) copy.selected = true;
          return copy;
        }));
      const behavior = el('input', { type: 'text', id: `draft-behavior-${id}` });
      const share = el('select', { id: `draft-share-${id}` },
        el('option', { value: 'members', selected: d.share === 'members' }, 'Any neighbor may fetch the clip'),
        el('option', { value: 'ask', selected: d.share === 'ask' }, 'Neighbors ask me first'),
        el('option', { value: 'never', selected: d.share === 'never' }, 'Nobody gets the clip'));
      const li = el('li', { class: 'card draft', 'data-id': id },
        el('p', { class: 'meta' }, el('strong', {}, d.camera), ' · ', timeEl(d.captured_at)),
        d.clip_sha256 ? video(d.clip_sha256) : el('p', {}, `No clip: ${d.clip_error || 'none'}`),
        el('label', { for: text.id }, 'Text'), text,
        el('label', { for: category.id }, 'Category'), category,
        el('label', { for: behavior.id }, 'What the person did (for suspicious activity)'), behavior,
        el('label', { for: share.id }, 'Clip'), share,
        el('p', { class: 'buttons' },
          el('button', {
            type: 'button',
            class: 'approve',
            onclick: async () => {
              const payload = { text: text.value, category: category.value, share: share.value };
              if (behavior.value.trim()) payload.behavior = behavior.value;
              if (category.value === 'suspicious-activity' && !behavior.value.trim()) {
                msg.textContent = 'A suspicious-activity report must say what the person did.';
                return;
              }
              try {
                await api('POST', `/v1/drafts/${id}/approve`, payload);
                notice('Approved: the report is on its way to your neighbors.');
                hubPage();
              } catch (e) {
                msg.textContent = e.message;
              }
            },
          }, 'Approve and post'),
          ' ',
          el('button', {
            type: 'button',
            class: 'danger',
            onclick: async () => {
              try {
                await api('POST', `/v1/drafts/${id}/discard`);
                notice('Discarded: nothing was posted.');
                hubPage();
              } catch (e) {
                msg.textContent = e.message;
              }
            },
          }, 'Discard')),
        msg);
      return li;
    }));
    const asks = await api('GET', '/v1/clips/requests');
    if (!asks.length) requests.replaceChildren(el('li', { class: 'empty' }, 'No requests waiting.'));
    else requests.replaceChildren(...asks.map((a) => el('li', { class: 'card' },
      el('p', {}, el('strong', {}, a.requester_name || 'A neighbor'), ` (${a.requester_fingerprint}) asks for clip ${a.sha256.slice(0, 12)}… `, timeEl(a.asked_at)),
      el('button', { type: 'button', 'aria-label': `Allow ${a.requester_name || 'the neighbor'} to fetch clip ${a.sha256.slice(0, 12)}`, onclick: () => api('POST', `/v1/clips/requests/${a.id}/allow`).then(hubPage, (e) => notice(e.message)) }, 'Allow'),
      ' ',
      el('button', { type: 'button', class: 'danger', 'aria-label': `Deny ${a.requester_name || 'the neighbor'} clip ${a.sha256.slice(0, 12)}`, onclick: () => api('POST', `/v1/clips/requests/${a.id}/deny`).then(hubPage, (e) => notice(e.message)) }, 'Deny'))));
  }

  // ---------------------------------------------------------------- settings

  function settingsPage() {
    whoAmIDone.then(() => {
      if (!status) return;
      const rows = [
        ['Your fingerprint', status.fingerprint],
        ['Hood', status.hood_name || '(none)'],
        ['Role', me.admin ? 'Admin' : 'Member'],
        ['Members', status.members],
        ['Neighbors connected', status.connected_members],
      ];
      if (status.policy) {
        rows.push(['Reports live', `${span(status.policy.default_report_lifetime_secs)} by default, at most ${span(status.policy.max_report_lifetime_secs)}`]);
        rows.push(['Posts per member', `${status.policy.posts_per_window} per ${span(status.policy.window_secs)}`]);
      }
      $('#settings').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
    });
    ownSettings().catch((e) => notice(e.message));
    lanSettings().catch((e) => notice(e.message));
  }

  // The settings the node lets the page change: your name in the hood (sent only when
  // changed: a rename is a signed operation every neighbor applies) and the clip policy.
  async function ownSettings() {
    const form = $('#settings-form');
    let saved = { name: '' };
    const fill = (v) => {
      saved = v;
      form.name.value = v.name;
      form.clip_policy.value = v.clip_policy;
    };
    fill(await api('GET', '/v1/settings'));
    const errors = { name: $('#name-error'), clip_policy: $('#clip-policy-error') };
    const fields = { name: form.name, clip_policy: form.clip_policy };
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      for (const k of Object.keys(errors)) {
        errors[k].textContent = '';
        fields[k].removeAttribute('aria-invalid');
      }
      const change = { clip_policy: form.clip_policy.value };
      if (form.name.value !== saved.name) change.name = form.name.value;
      try {
        const v = await api('POST', '/v1/settings', change);
        fill(v);
        const chosen = form.clip_policy.selectedOptions[0];
        notice(`Saved: ${v.name}; clips — ${chosen ? chosen.textContent : v.clip_policy}.`);
      } catch (e) {
        // The node's error names its field first ("name …", "clip_policy: …").
        const field = e.message.startsWith('name') ? 'name' : 'clip_policy';
        errors[field].textContent = e.message;
        fields[field].setAttribute('aria-invalid', 'true');
        fields[field].focus();
      }
    });
  }

  // Phones on the home LAN: pairing happens on the node's own computer only.
  async function lanSettings() {
    const lan = await api('GET', '/web/pair');
    const state = $('#lan-state');
    if (!lan.enabled) {
      state.replaceChildren('Off: the page is on this computer only. To use it from phones on your home Wi-Fi, set ',
        el('code', {}, 'web_lan = "192.168.1.20:8443"'), ' (this computer\'s LAN address) in ',
        el('code', {}, 'porchlight.toml'), ' and restart the node.');
      return;
    }
    if (lan.here === 'lan') {
      state.replaceChildren('This phone is paired. Phones are paired and unpaired on the node\'s computer; ',
        '“Sign out of this browser” below unpairs this one.');
      return;
    }
    const show = (paired) => state.replaceChildren('On at ', el('code', {}, lan.url), `. ${paired} of ${lan.max_paired} phones paired (each for ${lan.paired_days} days, or until the node restarts). Certificate's public key SHA-256: `,
      el('code', { class: 'fingerprint' }, lan.fingerprint_hex));
    show(lan.paired);
    $('#lan-actions').hidden = false;
    $('#pair').addEventListener('click', async () => {
      try {
        const p = await api('POST', '/web/pair');
        const svg = new DOMParser().parseFromString(p.svg, 'image/svg+xml').documentElement;
        svg.setAttribute('role', 'img');
        svg.setAttribute('aria-label', 'QR code of the pairing link');
        $('#pair-qr').replaceChildren(document.importNode(svg, true));
        $('#pair-url').textContent = p.url;
        $('#pair-fingerprint').textContent = p.fingerprint_hex;
        $('#pairing').hidden = false;
        notice('');
      } catch (e) {
        notice(`No pairing link: ${e.message}`);
      }
    });
    $('#unpair').addEventListener('click', () => { $('#unpair-confirm').hidden = false; });
    $('#unpair-no').addEventListener('click', () => { $('#unpair-confirm').hidden = true; });
    $('#unpair-yes').addEventListener('click', async () => {
      $('#unpair-confirm').hidden = true;
      try {
        const v = await api('POST', '/web/pair/end');
        $('#pairing').hidden = true;
        show(0);
        notice(`Unpaired ${v.unpaired} phone(s).`);
      } catch (e) {
        notice(`Not unpaired: ${e.message}`);
      }
    });
  }

  // ---------------------------------------------------------------- start

  const whoAmIDone = whoAmI();
  const pages = {
    feed: () => whoAmIDone.then(feedPage),
    post: postPage,
    invite: invitePage,
    members: () => whoAmIDone.then(membersPage).catch((e) => notice(e.message)),
    hub: () => hubPage().catch((e) => notice(e.message)),
    settings: settingsPage,
  };
  const start = pages[body.dataset.page];
  if (start) start();
})();
