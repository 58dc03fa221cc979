// Seatkeeper's storefront: live seat counts, sign-in, the checkout and "My subscriptions".
// Hand-written and dependency-free. It holds no rule: every change goes through the JSON
// API with the customer's session, and every outcome shown is what the API answered.
'use strict';

(() => {
  const page = document.body.dataset;
  const $ = (id) => document.getElementById(id);
  const SESSION = 'seatkeeper.session';
  const attemptKey = (plan) => `seatkeeper.attempt.${plan}`;

  // ---- The customer's session ------------------------------------------------------

  /** The session kept for this tab, if it has not expired. */
  function storedSession() {
    try {
      const s = JSON.parse(sessionStorage.getItem(SESSION));
      if (s && Date.parse(s.expires_at) > Date.now() + 5000) return s;
    } catch (_) { /* not JSON: forget it */ }
    sessionStorage.removeItem(SESSION);
    return null;
  }

  /** A session the integrator handed over in the address: `/#session=<token>`. */
  function handedOver() {
    const m = /(?:^#|&)session=([^&]+)/.exec(location.hash);
    if (!m) return null;
    history.replaceState(null, '', location.pathname + location.search);
    try {
      const token = decodeURIComponent(m[1]);
      const claims = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
      return { token, customer_id: claims.sub, expires_at: new Date(claims.exp * 1000).toISOString() };
    } catch (_) {
      return null;
    }
  }

  let session = handedOver() || storedSession();
  if (session) sessionStorage.setItem(SESSION, JSON.stringify(session));

  /** Calls the API; answers `{status, body}` (the problem document on errors). */
  async function api(method, path, { body, key, auth = true } = {}) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (auth && session) headers.Authorization = `Bearer ${session.token}`;
    if (key) headers['Idempotency-Key'] = key;
    let res;
    try {
      res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      return { status: 0, body: { detail: 'The server could not be reached. Check your connection and try again.' } };
    }
    if (res.status === 401 && auth && session) signOut('Your session has ended: sign in again.');
    let json = null;
    try { json = await res.json(); } catch (_) { /* no body */ }
    return { status: res.status, body: json || {} };
  }

  function showAccount() {
    const signedIn = !!session;
    $('signed-in').hidden = !signedIn;
    $('sign-in-section').hidden = signedIn;
    $('subscriptions-section').hidden = !signedIn;
    if (signedIn) $('customer-name').textContent = session.customer_id;
    for (const b of document.querySelectorAll('[data-buy]')) b.hidden = false;
    if (signedIn) loadSubscriptions();
  }

  function signOut(why) {
    session = null;
    sessionStorage.removeItem(SESSION);
    $('sign-in-error').textContent = why || '';
    showAccount();
  }

  const signInForm = $('sign-in');
  if (signInForm) {
    signInForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const customer_id = $('customer-id').value.trim();
      const r = await api('POST', '/api/demo/customer_sessions', { body: { customer_id }, auth: false });
      if (r.status !== 201) {
        $('sign-in-error').textContent = r.body.detail || 'The sign-in failed.';
        return;
      }
      session = { token: r.body.token, customer_id: r.body.customer_id, expires_at: r.body.expires_at };
      sessionStorage.setItem(SESSION, JSON.stringify(session));
      $('sign-in-error').textContent = '';
      showAccount();
    });
  }
  $('sign-out').addEventListener('click', () => signOut());

  // ---- Live seat counts ------------------------------------------------------------

  const cards = () => document.querySelectorAll('#plans [data-plan-id]');
  const card = (id) => document.querySelector(`#plans [data-plan-id="${CSS.escape(id)}"]`);

  /** Shows one plan's availability, as the stream or the API told it. */
  function showAvailability(a) {
    let li = card(a.plan_id);
    if (a.status !== 'active') {
      if (li) li.remove();
      return;
    }
    if (!li) {
      addPlan(a.plan_id);
      return;
    }
    li.querySelector('[data-seats-left]').textContent = a.seats_left;
    li.querySelector('[data-capacity]').textContent = a.capacity;
    li.querySelector('[data-held]').textContent = a.held > 0 ? ` (${a.held} on hold)` : '';
    li.classList.toggle('sold-out', a.sold_out);
    li.querySelector('.sold-out-note').hidden = !a.sold_out;
    li.querySelector('[data-buy]').disabled = a.sold_out;
  }

  /** A plan put on sale after the page was made: its card, built from the API. */
  async function addPlan(id) {
    const r = await api('GET', `/api/plans/${encodeURIComponent(id)}`, { auth: false });
    if (r.status !== 200 || card(id) || r.body.status !== 'active') return;
    const template = cards()[0];
    let li;
    if (template) {
      li = template.cloneNode(true);
    } else {
      li = document.createElement('li');
      li.innerHTML = '<h2 class="plan-name"></h2><p class="price"><span class="amount"></span> / <span class="interval"></span></p>'
        + '<p class="seats"><span class="seats-left" data-seats-left></span> of <span data-capacity></span> seats left<span class="held" data-held></span></p>'
        + '<p class="sold-out-note" hidden>Sold out</p><button type="button" class="buy" data-buy>Buy a seat</button>';
      $('no-plans')?.remove();
    }
    li.className = 'plan';
    li.dataset.planId = id;
    li.querySelector('.plan-name').textContent = r.body.name;
    li.querySelector('.amount').textContent = money(r.body.unit_amount, r.body.currency);
    li.querySelector('.interval').textContent = r.body.interval;
    li.querySelector('[data-buy]').hidden = false;
    $('plans').append(li);
    showAvailability({ ...r.body, plan_id: id, held: 0, sold_out: r.body.seats_left === 0 });
  }

  /** An amount in the currency's minor unit, as the server writes it (`49.00 USD`). */
  function money(minor, currency) {
    const digits = new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits;
    return `${(minor / 10 ** digits).toFixed(digits)} ${currency.toUpperCase()}`;
  }

  function follow() {
    const status = $('live-status');
    const events = new EventSource('/api/plans/events');
    events.addEventListener('availability', (e) => showAvailability(JSON.parse(e.data)));
    events.addEventListener('open', () => { status.textContent = 'Seat counts are live.'; status.dataset.live = 'true'; });
    events.addEventListener('error', () => { status.textContent = 'Reconnecting to live seat counts…'; status.dataset.live = 'false'; });
  }

  // ---- The checkout ------------------------------------------------------------------

  const dialog = $('checkout');
  let current = null; // { plan, key, session (the checkout session), timer }
  let stripe = null;
  let elements = null;

  /** This plan's purchase attempt: one Idempotency-Key, kept across retries and reloads. */
  function attempt(plan) {
    try {
      const a = JSON.parse(sessionStorage.getItem(attemptKey(plan)));
      if (a && a.customer_id === session.customer_id) return a;
    } catch (_) { /* start again */ }
    const a = { key: crypto.randomUUID(), customer_id: session.customer_id };
    sessionStorage.setItem(attemptKey(plan), JSON.stringify(a));
    return a;
  }

  function endAttempt(plan) {
    sessionStorage.removeItem(attemptKey(plan));
  }

  function outcome(text, kind) {
    const o = $('checkout-outcome');
    o.textContent = text;
    o.dataset.kind = kind || '';
  }

  function setStep(step) {
    $('pay-step').hidden = step !== 'pay';
    $('three-ds').hidden = step !== '3ds';
    $('hold').hidden = step === 'done';
    $('checkout-cancel').hidden = step === 'done';
    $('checkout-close').hidden = step !== 'done';
    $('pay').disabled = false;
  }

  function tick() {
    if (!current || !current.session) return;
    const left = Math.max(0, Math.round((Date.parse(current.session.expires_at) - Date.now()) / 1000));
    $('hold-left').textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}`;
    if (left === 0) refresh();
  }

  async function buy(plan) {
    if (!session) {
      $('sign-in-error').textContent = 'Sign in to buy a seat.';
      $('sign-in-section').hidden = false;
      $('customer-id')?.focus();
      return;
    }
    const li = card(plan);
    $('checkout-plan').textContent = `${li.querySelector('.plan-name').textContent} — ${li.querySelector('.price').textContent}`;
    current = { plan, key: attempt(plan).key, session: null };
    outcome('Holding a seat…');
    setStep('pay');
    $('hold').hidden = true;
    if (!dialog.open) dialog.showModal();
    const r = await api('POST', '/api/checkout_sessions', { body: { plan_id: plan, customer_id: session.customer_id }, key: current.key });
    if (r.status === 201 || r.status === 200) {
      show(r.body);
    } else if (r.status === 409 && r.body.code === 'plan_sold_out') {
      endAttempt(plan);
      finish('Sold out: every seat was taken before yours could be held.', 'sold-out');
    } else {
      finish(r.body.detail || 'The seat could not be held.', 'error', r.status === 0 || r.status >= 500);
    }
  }

  /** Shows a checkout session as the API answered it. */
  function show(s) {
    current.session = s;
    if (s.status === 'complete') {
      endAttempt(current.plan);
      finish('Paid: your subscription is active.', 'paid');
      loadSubscriptions();
      return;
    }
    if (s.status === 'expired') {
      endAttempt(current.plan);
      finish(s.expiry === 'request' ? 'You gave the seat back.' : 'Your hold expired before the payment went through: the seat was given back.', 'expired');
      return;
    }
    setStep('pay');
    tick();
    clearInterval(current.timer);
    current.timer = setInterval(tick, 1000);
    if (s.payment_error) outcome(`The payment was declined (${s.payment_error}). Try another card.`, 'declined');
    else outcome('Your seat is held. Choose how to pay.');
    if (page.stripeKey && s.payment) mountStripe(s.payment.client_secret);
  }

  function finish(text, kind, retryable) {
    if (current) clearInterval(current.timer);
    setStep('done');
    outcome(text, kind);
    if (retryable && current) {
      // The same Idempotency-Key again: the server answers what it did, or does it once.
      $('checkout-close').hidden = false;
    }
  }

  async function refresh() {
    if (!current || !current.session) return;
    const r = await api('GET', `/api/checkout_sessions/${current.session.id}`);
    if (r.status === 200) show(r.body);
  }

  /** Waits for the webhook's result: the session completes, or stays open with an error. */
  async function settle() {
    for (let i = 0; i < 40 && current && current.session; i++) {
      const r = await api('GET', `/api/checkout_sessions/${current.session.id}`);
      if (r.status === 200 && (r.body.status !== 'open' || r.body.payment_error)) return show(r.body);
      await new Promise((ok) => setTimeout(ok, 250));
    }
    outcome('The payment is still being processed: this page will show it when it ends.', 'processing');
  }

  async function pay(method) {
    $('pay').disabled = true;
    outcome('Paying…');
    const r = await api('POST', `/api/checkout_sessions/${current.session.id}/confirm`, { body: { payment_method: method } });
    $('pay').disabled = false;
    if (r.status === 200 && r.body.outcome === 'complete') return show(r.body.session);
    if (r.status === 200 && r.body.outcome === 'requires_action') {
      current.session = r.body.session;
      current.action = r.body.next_action;
      setStep('3ds');
      outcome('Your bank asks you to confirm the payment.', 'action');
      $('three-ds-pass').focus();
      return;
    }
    if (r.status === 202) return settle();
    if (r.status === 402) return show({ ...current.session, payment_error: r.body.detail.replace(/^the payment was declined \((.*?)\);.*$/, '$1') });
    if (r.status === 409) return refresh();
    outcome(r.body.detail || 'The payment failed: try again.', 'error');
  }

  async function authenticate(result) {
    const url = current.action && current.action.redirect_url;
    if (!url) return;
    outcome(result === 'pass' ? 'Confirming with your bank…' : 'Failing the check…');
    await api('POST', url, { body: { result }, auth: false });
    await settle();
  }

  async function mountStripe(clientSecret) {
    if (!window.Stripe) {
      outcome('Stripe could not be loaded: check your connection and reload.', 'error');
      return;
    }
    if (elements && current.clientSecret === clientSecret) return;
    stripe = stripe || window.Stripe(page.stripeKey);
    elements = stripe.elements({ clientSecret });
    current.clientSecret = clientSecret;
    $('test-cards').hidden = true;
    $('payment-element').replaceChildren();
    elements.create('payment').mount('#payment-element');
  }

  async function payWithStripe() {
    $('pay').disabled = true;
    outcome('Paying…');
    const { error } = await stripe.confirmPayment({ elements, redirect: 'if_required', confirmParams: { return_url: location.href } });
    $('pay').disabled = false;
    if (error) {
      outcome(error.message || 'The payment failed: try another card.', 'declined');
      return;
    }
    await settle();
  }

  $('pay-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!current || !current.session) return;
    if (page.stripeKey) return payWithStripe();
    pay(new FormData(ev.target).get('payment_method'));
  });
  $('three-ds-pass').addEventListener('click', () => authenticate('pass'));
  $('three-ds-fail').addEventListener('click', () => authenticate('fail'));
  $('checkout-cancel').addEventListener('click', async () => {
    if (!current || !current.session) { dialog.close(); return; }
    const r = await api('POST', `/api/checkout_sessions/${current.session.id}/expire`);
    if (r.status === 200) show(r.body); else refresh();
  });
  $('checkout-close').addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => {
    if (current) clearInterval(current.timer);
    current = null;
  });
  $('plans').addEventListener('click', (ev) => {
    const b = ev.target.closest('[data-buy]');
    if (b) buy(b.closest('[data-plan-id]').dataset.planId);
  });

  // ---- My subscriptions --------------------------------------------------------------

  async function loadSubscriptions() {
    if (!session) return;
    const r = await api('GET', `/api/customers/${encodeURIComponent(session.customer_id)}/subscriptions?limit=100`);
    const list = $('subscriptions');
    if (r.status === 404) {
      list.replaceChildren();
      $('no-subscriptions').hidden = false;
      return;
    }
    if (r.status !== 200) {
      $('subscriptions-error').textContent = r.body.detail || 'Your subscriptions could not be loaded.';
      return;
    }
    $('subscriptions-error').textContent = '';
    const names = new Map([...cards()].map((li) => [li.dataset.planId, li.querySelector('.plan-name').textContent]));
    const items = r.body.data.map((s) => {
      const li = document.createElement('li');
      li.dataset.subscriptionId = s.id;
      const name = document.createElement('span');
      name.className = 'sub-plan';
      name.textContent = names.get(s.plan_id) || s.plan_id;
      const status = document.createElement('span');
      status.className = `status status-${s.status}`;
      status.textContent = s.status;
      li.append(name, ' ', status);
      if (s.current_period_end && s.status === 'active') li.append(` until ${new Date(s.current_period_end).toLocaleDateString()}`);
      if (s.status === 'active') {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'secondary';
        b.textContent = 'Cancel';
        b.setAttribute('aria-label', `Cancel ${name.textContent}`);
        b.addEventListener('click', () => cancel(s.id, b));
        li.append(' ', b);
      }
      return li;
    });
    list.replaceChildren(...items);
    $('no-subscriptions').hidden = items.length > 0;
  }

  async function cancel(id, button) {
    button.disabled = true;
    const r = await api('POST', `/api/subscriptions/${id}/cancel`);
    if (r.status !== 200) $('subscriptions-error').textContent = r.body.detail || 'The subscription could not be cancelled.';
    loadSubscriptions();
  }

  // ---- Start -------------------------------------------------------------------------

  showAccount();
  follow();
  // A purchase attempt left open by a reload: show it again.
  if (session) {
    for (const li of cards()) {
      const raw = sessionStorage.getItem(attemptKey(li.dataset.planId));
      if (raw) { buy(li.dataset.planId); break; }
    }
  }
})();
