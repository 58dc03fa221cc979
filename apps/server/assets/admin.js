// Seatkeeper's admin console: plans, a plan's live seats and audit log, the
// reconciliation report and the API keys. Hand-written and dependency-free. It holds no
// rule: every change goes through the JSON API with the admin's credential, every
// refusal shows the problem document's `detail`, and the audit check is the server's
// (GET /api/plans/{id}/audit/check), not a replay of its own.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  // The credential lives in this tab's sessionStorage only: nothing persistent, no cookie.
  const CREDENTIAL = 'seatkeeper.admin';
  const AUDIT_PAGE = 50;

  let credential = sessionStorage.getItem(CREDENTIAL);
  let plans = new Map(); // id -> the plan as the API answered it
  let selected = null; // { id, events, cursor, lastSeq, statsBusy, statsAgain, auditBusy }

  // ---- Calling the API ---------------------------------------------------------------

  /** The text to show for a refusal: the problem document's `detail`. */
  function problem(r, fallback) {
    if (r.body && r.body.detail) {
      const fields = Array.isArray(r.body.errors) ? r.body.errors.map((e) => `${e.field}: ${e.message}`) : [];
      return fields.length ? `${r.body.detail} — ${fields.join('; ')}` : r.body.detail;
    }
    return `${fallback} (the server answered ${r.status || 'nothing'}).`;
  }

  /**
   * Calls the API with the admin credential; answers `{status, body}`. A 401 or 403
   * signs out: the credential is not (or no longer) an admin's.
   */
  async function api(method, path, { body, as } = {}) {
    const token = as || credential;
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = `Bearer ${token}`;
    let res;
    try {
      res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (_) {
      return { status: 0, body: { detail: 'The server could not be reached. Check your connection and try again.' } };
    }
    let json = null;
    try { json = await res.json(); } catch (_) { /* no body */ }
    const r = { status: res.status, body: json || {} };
    if ((r.status === 401 || r.status === 403) && !as && credential) {
      signOut(`${r.status === 401 ? 'The credential was refused' : 'The credential may not do this'} (${r.status}): ${problem(r, 'refused')} Sign in again.`);
    }
    return r;
  }

  // ---- Signing in and out ------------------------------------------------------------

  function describe(token) {
    return token.startsWith('sk_') ? `key ${token.slice(0, 11)}…` : 'the admin token';
  }

  function showSignedIn(signedIn) {
    $('admin-sign-in-section').hidden = signedIn;
    $('console').hidden = !signedIn;
    $('admin-signed-in').hidden = !signedIn;
    $('admin-who').textContent = signedIn ? describe(credential) : '';
  }

  function signOut(why) {
    credential = null;
    sessionStorage.removeItem(CREDENTIAL);
    closeStream();
    selected = null;
    plans = new Map();
    for (const id of ['plans-body', 'audit-body', 'keys-body', 'reconciliation-runs-body']) $(id).replaceChildren();
    $('plan-detail').hidden = true;
    $('key-secret').textContent = '';
    $('key-secret-box').hidden = true;
    $('admin-sign-in-error').textContent = why || '';
    showSignedIn(false);
    $('admin-credential').value = '';
  }

  /** Checks `token` by listing the keys (admin only); on success, opens the console. */
  async function signIn(token) {
    const r = await api('GET', '/api/keys?limit=100', { as: token });
    if (r.status === 200) {
      credential = token;
      sessionStorage.setItem(CREDENTIAL, token);
      $('admin-sign-in-error').textContent = '';
      $('admin-credential').value = '';
      showSignedIn(true);
      showKeys(r.body.data, r.body.next_cursor);
      loadPlans();
      loadReconciliation();
      $('console-title').focus?.();
      return;
    }
    credential = null;
    sessionStorage.removeItem(CREDENTIAL);
    showSignedIn(false);
    const why = r.status === 401
      ? `This key or token is not valid (401): ${problem(r, 'refused')}`
      : r.status === 403
        ? `This credential is not an admin's (403): ${problem(r, 'forbidden')}`
        : problem(r, 'The sign-in failed');
    $('admin-sign-in-error').textContent = why;
  }

  $('admin-sign-in').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = $('admin-credential').value.trim();
    if (token) signIn(token);
  });
  $('admin-sign-out').addEventListener('click', () => signOut('You signed out.'));

  // ---- Small helpers -----------------------------------------------------------------

  function cell(text, { header } = {}) {
    const c = document.createElement(header ? 'th' : 'td');
    if (header) c.scope = 'row';
    c.textContent = text === null || text === undefined ? '—' : String(text);
    return c;
  }

  function when(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
  }

  /** An amount in the currency's minor unit, as the server writes it (`49.00 USD`). */
  function money(minor, currency) {
    let digits = 2;
    try {
      digits = new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits;
    } catch (_) { /* an unknown code: two digits */ }
    return `${(minor / 10 ** digits).toFixed(digits)} ${currency.toUpperCase()}`;
  }

  function say(id, text, kind) {
    const el = $(id);
    el.textContent = text;
    if (kind !== undefined) el.dataset.kind = kind;
  }

  // ---- Plans -------------------------------------------------------------------------

  async function loadPlans() {
    const all = [];
    let cursor = null;
    do {
      const q = cursor ? `?limit=100&cursor=${encodeURIComponent(cursor)}` : '?limit=100';
      const r = await api('GET', `/api/plans${q}`);
      if (r.status !== 200) {
        say('plans-error', problem(r, 'The plans could not be loaded'));
        return;
      }
      all.push(...r.body.data);
      cursor = r.body.next_cursor;
    } while (cursor);
    say('plans-error', '');
    plans = new Map(all.map((p) => [p.id, p]));
    $('plans-body').replaceChildren(...all.map(planRow));
    $('no-plans').hidden = all.length > 0;
    if (selected && plans.has(selected.id)) markSelected();
  }

  function planRow(p) {
    const tr = document.createElement('tr');
    tr.dataset.planId = p.id;
    const status = cell(p.status);
    status.dataset.field = 'status';
    status.className = `status status-${p.status}`;
    const capacity = cell(p.capacity);
    capacity.dataset.field = 'capacity';
    const left = cell(p.seats_left);
    left.dataset.field = 'seats_left';
    const price = cell(`${money(p.unit_amount, p.currency)} / ${p.interval}`);
    const actions = document.createElement('td');
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'secondary';
    b.dataset.selectPlan = p.id;
    b.textContent = 'Manage';
    b.setAttribute('aria-label', `Manage ${p.name}`);
    actions.append(b);
    const name = cell(p.name, { header: true });
    name.dataset.field = 'name';
    tr.append(name, status, price, capacity, left, actions);
    return tr;
  }

  function updateRow(id, { status, capacity, seats_left: left }) {
    const tr = document.querySelector(`#plans-body tr[data-plan-id="${CSS.escape(id)}"]`);
    if (!tr) return;
    if (status !== undefined) {
      const s = tr.querySelector('[data-field="status"]');
      s.textContent = status;
      s.className = `status status-${status}`;
    }
    if (capacity !== undefined) tr.querySelector('[data-field="capacity"]').textContent = capacity;
    if (left !== undefined) tr.querySelector('[data-field="seats_left"]').textContent = left;
  }

  function markSelected() {
    for (const tr of document.querySelectorAll('#plans-body tr')) {
      const on = selected && tr.dataset.planId === selected.id;
      tr.classList.toggle('selected', !!on);
      const b = tr.querySelector('[data-select-plan]');
      if (b) b.setAttribute('aria-pressed', on ? 'true' : 'false');
    }
  }

  $('plans-refresh').addEventListener('click', loadPlans);
  $('plans-body').addEventListener('click', (ev) => {
    const b = ev.target.closest('[data-select-plan]');
    if (b) select(b.dataset.selectPlan);
  });

  $('create-plan').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const body = {
      name: String(f.get('name')).trim(),
      capacity: Number(f.get('capacity')),
      unit_amount: Number(f.get('unit_amount')),
      currency: String(f.get('currency')).trim().toLowerCase(),
      interval: f.get('interval'),
    };
    say('create-plan-status', '');
    const r = await api('POST', '/api/plans', { body });
    if (r.status !== 201) {
      say('create-plan-error', problem(r, 'The plan was not created'));
      return;
    }
    say('create-plan-error', '');
    say('create-plan-status', `Plan “${r.body.name}” created with ${r.body.capacity} seats.`);
    ev.target.reset();
    await loadPlans();
  });

  // ---- One plan: seats, changes, audit log -------------------------------------------

  function closeStream() {
    if (selected && selected.events) selected.events.close();
  }

  async function select(id) {
    const plan = plans.get(id);
    if (!plan) return;
    closeStream();
    selected = { id, events: null, cursor: null, lastSeq: null, statsBusy: false, statsAgain: false, auditBusy: false };
    markSelected();
    $('plan-detail').hidden = false;
    $('plan-detail').dataset.planId = id;
    $('plan-detail-name').textContent = plan.name;
    $('plan-detail-id').textContent = id;
    fillChangeForm(plan);
    say('change-plan-error', '');
    say('change-plan-status', '');
    say('audit-check', '');
    delete $('audit-check').dataset.consistent;
    say('stats-error', '');
    for (const dd of document.querySelectorAll('#breakdown [data-stat]')) dd.textContent = '';
    loadStats();
    loadAudit(true);
    follow(id);
    $('plan-detail-title').scrollIntoView?.({ block: 'start' });
  }

  function fillChangeForm(plan) {
    $('change-capacity').value = plan.capacity;
    $('change-status').value = plan.status;
  }

  /** Reads the plan's stats; calls made while one is under way coalesce into one more. */
  async function loadStats() {
    if (!selected) return;
    if (selected.statsBusy) { selected.statsAgain = true; return; }
    const mine = selected;
    mine.statsBusy = true;
    const r = await api('GET', `/api/plans/${encodeURIComponent(mine.id)}/stats`);
    mine.statsBusy = false;
    if (selected !== mine) return;
    if (r.status !== 200) {
      say('stats-error', problem(r, 'The seat counts could not be loaded'));
    } else {
      say('stats-error', '');
      for (const dd of document.querySelectorAll('#breakdown [data-stat]')) {
        dd.textContent = r.body[dd.dataset.stat];
      }
      $('breakdown').dataset.soldOut = r.body.sold_out ? 'true' : 'false';
    }
    if (mine.statsAgain) {
      mine.statsAgain = false;
      loadStats();
    }
  }

  /** Follows the plan's availability stream (public): each event re-reads the stats. */
  function follow(id) {
    const status = $('plan-live-status');
    const events = new EventSource(`/api/plans/${encodeURIComponent(id)}/events`);
    selected.events = events;
    events.addEventListener('availability', (e) => {
      if (!selected || selected.id !== id) return;
      let a;
      try { a = JSON.parse(e.data); } catch (_) { return; }
      updateRow(id, a);
      const p = plans.get(id);
      if (p) Object.assign(p, { status: a.status, capacity: a.capacity, seats_left: a.seats_left });
      $('breakdown').dataset.seq = a.seq;
      loadStats();
      loadNewAudit();
    });
    events.addEventListener('open', () => { status.textContent = 'Seat counts are live.'; status.dataset.live = 'true'; });
    events.addEventListener('error', () => { status.textContent = 'Reconnecting to live seat counts…'; status.dataset.live = 'false'; });
  }

  $('change-plan').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!selected) return;
    const id = selected.id;
    const body = { capacity: Number($('change-capacity').value), status: $('change-status').value };
    say('change-plan-status', '');
    const r = await api('PATCH', `/api/plans/${encodeURIComponent(id)}`, { body });
    if (r.status !== 200) {
      say('change-plan-error', problem(r, 'The plan was not changed'));
      return;
    }
    say('change-plan-error', '');
    say('change-plan-status', `Saved: ${r.body.capacity} seats, ${r.body.seats_left} left, ${r.body.status}.`);
    plans.set(id, r.body);
    updateRow(id, r.body);
    if (selected && selected.id === id) {
      fillChangeForm(r.body);
      loadStats();
      loadAudit(true);
    }
  });

  function auditRow(e) {
    const tr = document.createElement('tr');
    tr.dataset.seq = e.seq;
    tr.dataset.action = e.action;
    tr.append(
      cell(e.seq, { header: true }),
      cell(when(e.at)),
      cell(e.action),
      cell(`${e.seats_left_before} → ${e.seats_left_after}`),
      cell(e.actor),
      cell(e.subscription_id),
      cell(e.reason),
    );
    return tr;
  }

  /**
   * The audit log's first page (`reset`), or the page after `after` (a `seq`; by default
   * the API's `next_cursor`). Entries already shown are not shown twice.
   */
  async function loadAudit(reset, after) {
    if (!selected) return;
    const mine = selected;
    const from = reset ? null : (after ?? mine.cursor);
    const q = from ? `?limit=${AUDIT_PAGE}&cursor=${encodeURIComponent(from)}` : `?limit=${AUDIT_PAGE}`;
    const r = await api('GET', `/api/plans/${encodeURIComponent(mine.id)}/audit${q}`);
    if (selected !== mine) return;
    if (r.status !== 200) {
      say('audit-error', problem(r, 'The audit log could not be loaded'));
      return;
    }
    say('audit-error', '');
    const entries = reset || mine.lastSeq === null ? r.body.data : r.body.data.filter((e) => e.seq > mine.lastSeq);
    const rows = entries.map(auditRow);
    if (reset) $('audit-body').replaceChildren(...rows); else $('audit-body').append(...rows);
    if (entries.length) mine.lastSeq = entries[entries.length - 1].seq;
    if (reset || after === undefined || r.body.next_cursor) mine.cursor = r.body.next_cursor;
    $('audit-more').hidden = !mine.cursor;
  }

  /**
   * After a change the stream told of: when every entry so far is shown, the entries
   * after the last one shown, so that the log stays live too.
   */
  async function loadNewAudit() {
    const mine = selected;
    if (!mine || mine.cursor || mine.lastSeq === null) return;
    if (mine.auditBusy) { mine.auditAgain = true; return; }
    mine.auditBusy = true;
    await loadAudit(false, String(mine.lastSeq));
    mine.auditBusy = false;
    if (mine.auditAgain) {
      mine.auditAgain = false;
      loadNewAudit();
    }
  }

  $('audit-more').addEventListener('click', () => loadAudit(false));

  $('audit-check-run').addEventListener('click', async () => {
    if (!selected) return;
    const mine = selected;
    const out = $('audit-check');
    out.textContent = 'Checking…';
    out.className = 'audit-check';
    delete out.dataset.consistent;
    const r = await api('GET', `/api/plans/${encodeURIComponent(mine.id)}/audit/check`);
    if (selected !== mine) return;
    if (r.status !== 200) {
      out.textContent = problem(r, 'The check could not run');
      out.className = 'audit-check bad';
      return;
    }
    const c = r.body;
    out.dataset.consistent = c.consistent ? 'true' : 'false';
    out.className = `audit-check ${c.consistent ? 'ok' : 'bad'}`;
    out.textContent = c.consistent
      ? `The audit log replays to ${c.replayed_seats_left} seats left: consistent (${c.entries} entries; the plan has ${c.seats_left}).`
      : `The audit log does not replay to the seat count: ${c.error} (${c.entries} entries replayed; the replay arrives at ${c.replayed_seats_left ?? 'nothing'}, the plan has ${c.seats_left}).`;
  });

  // ---- Reconciliation ----------------------------------------------------------------

  async function loadReconciliation() {
    const r = await api('GET', '/api/admin/reconciliation');
    if (r.status !== 200) {
      say('reconciliation-error', problem(r, 'The reconciliation report could not be loaded'));
      return;
    }
    say('reconciliation-error', '');
    const values = { ...r.body.in_doubt, lease_ms: r.body.lease_ms, verify_delay_ms: r.body.verify_delay_ms };
    for (const td of document.querySelectorAll('#reconciliation-in-doubt [data-field]')) {
      td.textContent = values[td.dataset.field] ?? '—';
    }
    const runs = r.body.runs || [];
    $('reconciliation-runs-body').replaceChildren(...runs.map((run) => {
      const tr = document.createElement('tr');
      tr.dataset.runId = run.run_id;
      tr.append(
        cell(when(run.started_at), { header: true }),
        cell(when(run.finished_at)),
        ...['found', 'activated', 'expired', 'refunded', 'verified', 'in_doubt', 'skipped'].map((k) => cell(run[k])),
      );
      return tr;
    }));
    $('no-runs').hidden = runs.length > 0;
  }

  $('reconciliation-refresh').addEventListener('click', loadReconciliation);

  // ---- API keys ----------------------------------------------------------------------

  async function loadKeys() {
    const r = await api('GET', '/api/keys?limit=100');
    if (r.status !== 200) {
      say('keys-error', problem(r, 'The keys could not be loaded'));
      return;
    }
    showKeys(r.body.data, r.body.next_cursor);
  }

  /** Shows the first page of keys, then the next ones by cursor. */
  async function showKeys(first, next) {
    const all = [...first];
    let cursor = next;
    while (cursor) {
      const r = await api('GET', `/api/keys?limit=100&cursor=${encodeURIComponent(cursor)}`);
      if (r.status !== 200) {
        say('keys-error', problem(r, 'The keys could not be loaded'));
        break;
      }
      all.push(...r.body.data);
      cursor = r.body.next_cursor;
    }
    if (!credential) return;
    say('keys-error', '');
    $('keys-body').replaceChildren(...all.map(keyRow));
  }

  function keyRow(k) {
    const tr = document.createElement('tr');
    tr.dataset.keyId = k.id;
    tr.dataset.revoked = k.revoked_at ? 'true' : 'false';
    const actions = document.createElement('td');
    if (!k.revoked_at) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'secondary';
      b.dataset.revokeKey = k.id;
      b.dataset.keyName = k.name;
      b.textContent = 'Revoke';
      b.setAttribute('aria-label', `Revoke key ${k.name}`);
      actions.append(b);
    }
    tr.append(
      cell(k.name, { header: true }),
      cell(k.role),
      cell(k.prefix),
      cell(when(k.created_at)),
      cell(k.last_used_at ? when(k.last_used_at) : 'never'),
      cell(k.revoked_at ? when(k.revoked_at) : 'no'),
      actions,
    );
    return tr;
  }

  // Revoking takes two clicks: the first arms the button for five seconds.
  $('keys-body').addEventListener('click', async (ev) => {
    const b = ev.target.closest('[data-revoke-key]');
    if (!b) return;
    if (b.dataset.armed !== 'true') {
      b.dataset.armed = 'true';
      b.textContent = 'Confirm revoke';
      b.setAttribute('aria-label', `Confirm: revoke key ${b.dataset.keyName}`);
      setTimeout(() => {
        if (!b.isConnected || b.disabled) return;
        b.dataset.armed = 'false';
        b.textContent = 'Revoke';
        b.setAttribute('aria-label', `Revoke key ${b.dataset.keyName}`);
      }, 5000);
      return;
    }
    b.disabled = true;
    const r = await api('DELETE', `/api/keys/${encodeURIComponent(b.dataset.revokeKey)}`);
    if (r.status !== 200 && r.status !== 204) {
      if (credential) say('keys-error', problem(r, 'The key was not revoked'));
      b.disabled = false;
      return;
    }
    say('keys-error', '');
    say('console-status', `Key “${b.dataset.keyName}” revoked.`);
    loadKeys();
  });

  $('create-key').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const r = await api('POST', '/api/keys', { body: { name: String(f.get('name')).trim(), role: f.get('role') } });
    if (r.status !== 201) {
      say('create-key-error', problem(r, 'The key was not created'));
      return;
    }
    say('create-key-error', '');
    $('key-secret-name').textContent = `${r.body.name} (${r.body.role})`;
    $('key-secret').textContent = r.body.secret;
    $('key-secret-box').dataset.keyId = r.body.id;
    $('key-secret-box').hidden = false;
    ev.target.reset();
    loadKeys();
  });

  $('key-secret-dismiss').addEventListener('click', () => {
    $('key-secret').textContent = '';
    $('key-secret-box').hidden = true;
  });

  // ---- Start -------------------------------------------------------------------------

  $('console-title').tabIndex = -1;
  if (credential) signIn(credential); else showSignedIn(false);
})();
