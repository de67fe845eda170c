// The console's pages. Each renders into `root`; userPage returns a function that stops its
// live subscription when the page is left.

import { gql, idempotencyKey } from './api.js';
import { act, showError } from './app.js';
import { balanceChart } from './chart.js';
import { credits, h, shortId, table, when } from './dom.js';
import { subscribe } from './live.js';

// An end user id is the application's own: 1 to 255 characters, no control characters, no
// surrounding whitespace (the server says which rule a text breaks).
const userLink = (id) => `#/users/${encodeURIComponent(id)}`;

// ---------------------------------------------------------------- end users

export async function usersPage(root) {
  const results = h('div', { id: 'users' });
  const search = h('input', {
    id: 'search', name: 'search', type: 'search', placeholder: 'End user id',
    autocomplete: 'off', spellcheck: 'false',
  });
  const form = h('form', { class: 'inline', role: 'search' },
    h('label', { for: 'search' }, 'Find an end user'), search, h('button', { type: 'submit' }, 'Find'));
  root.append(h('h1', {}, 'End users'), form, results);

  const show = async (endUserId) => {
    const data = await gql(`query($id: ID, $first: Int) {
      endUsers(endUserId: $id, first: $first) {
        edges { node { endUserId lastActiveAt balance { available held } } }
      } }`, { id: endUserId, first: 50 });
    const rows = data.endUsers.edges.map(({ node }) => [
      h('a', { href: userLink(node.endUserId), class: 'mono' }, node.endUserId),
      credits(node.balance.available), credits(node.balance.held), when(node.lastActiveAt),
    ]);
    results.textContent = '';
    results.append(table(endUserId ? 'Search result' : 'Most recently active',
      ['End user', 'Available', 'Held', 'Last active'], rows,
      endUserId ? 'No end user with this id has an account yet.' : 'No end users yet.'));
  };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const text = search.value.trim();
    try { await show(text || null); } catch (error) { showError(error); }
  });
  await show(null);
}

// ---------------------------------------------------------------- one end user

const USER_QUERY = `query($u: ID!) {
  balance(endUserId: $u) { available held nextExpiry
    grants { id amount remaining source expiresAt effectiveAt held description } }
  openHolds(endUserId: $u) { id amount description expiresAt createdAt }
  cycle(endUserId: $u) { id amount validityDays status currentPeriodEnd }
  transactions(endUserId: $u, first: 100) { edges { node {
    id sequence kind amount delta balanceAfter createdAt description reversedEntryId
    allocations { grantId amount } } } }
}`;

export async function userPage(root, endUserId) {
  const balanceBox = h('div', { class: 'balance', 'aria-live': 'polite' });
  const status = h('span', { class: 'live-status', id: 'live-status' }, 'connecting');
  const body = h('div', {});
  root.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/users' }, 'End users'), ' / ', shortId(endUserId)),
    h('h1', { class: 'mono wrap' }, endUserId),
    h('section', { class: 'card', 'aria-labelledby': 'balance-title' },
      h('h2', { id: 'balance-title' }, 'Balance ', status), balanceBox),
    body);

  const showBalance = (balance) => {
    balanceBox.textContent = '';
    balanceBox.append(
      h('div', {}, h('span', { class: 'figure', id: 'available' }, credits(balance.available)), ' available'),
      h('div', {}, h('span', { class: 'figure small', id: 'held' }, credits(balance.held)), ' held'),
      h('div', { class: 'muted' }, 'Next expiry: ', when(balance.nextExpiry)));
  };

  const reload = async () => {
    const data = await gql(USER_QUERY, { u: endUserId });
    showBalance(data.balance);
    body.textContent = '';
    body.append(
      actions(endUserId, data, reload),
      grantsSection(data.balance.grants, reload),
      holdsSection(data.openHolds, reload),
      cycleSection(endUserId, data.cycle, reload),
      historySection(data.transactions.edges.map((e) => e.node), reload));
  };
  await reload();

  let refresh;
  const stop = subscribe(
    'subscription($u: ID!) { balanceChanged(endUserId: $u) { available held nextExpiry } }',
    { u: endUserId },
    {
      onData: (data) => {
        showBalance(data.balanceChanged);
        // The tables follow the balance, a moment later and once per burst of changes.
        clearTimeout(refresh);
        refresh = setTimeout(() => reload().catch(showError), 300);
      },
      onError: showError,
      onStatus: (text) => { status.textContent = text; status.dataset.state = text; },
    });
  return () => { clearTimeout(refresh); stop(); };
}

function field(id, label, attributes) {
  return h('div', { class: 'field' }, h('label', { for: id }, label), h('input', { id, name: id, ...attributes }));
}

function actions(endUserId, data, reload) {
  const grantForm = h('form', { class: 'grid', id: 'grant-form' },
    field('grant-amount', 'Credits', { type: 'number', min: 1, step: 1, required: true, inputmode: 'numeric' }),
    field('grant-days', 'Valid for days (empty: never expires)', { type: 'number', min: 1, step: 1 }),
    h('div', { class: 'field' }, h('label', { for: 'grant-source' }, 'Source'),
      h('select', { id: 'grant-source', name: 'grant-source' },
        ['MANUAL', 'TRIAL', 'PROMOTION', 'PURCHASE', 'SUBSCRIPTION', 'REFUND'].map((s) => h('option', { value: s }, s.toLowerCase())))),
    field('grant-description', 'Description', { type: 'text', maxlength: 1000 }),
    h('button', { type: 'submit' }, 'Grant credits'));
  grantForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const value = (id) => grantForm.querySelector(`#${id}`).value.trim();
    const amount = Number(value('grant-amount'));
    const days = value('grant-days');
    const input = {
      endUserId, amount, source: value('grant-source'), idempotencyKey: idempotencyKey(),
      ...(days ? { validityDays: Number(days) } : {}),
      ...(value('grant-description') ? { description: value('grant-description') } : {}),
    };
    const ok = await act(`Grant ${credits(amount)} credits to ${shortId(endUserId)}?`,
      () => gql('mutation($i: AddCreditsInput!) { addCredits(input: $i) { grant { id } } }', { i: input }),
      `Granted ${credits(amount)} credits.`);
    if (ok) { grantForm.reset(); await reload().catch(showError); }
  });

  const debitForm = h('form', { class: 'grid', id: 'debit-form' },
    field('debit-amount', 'Credits', { type: 'number', min: 1, step: 1, required: true, inputmode: 'numeric' }),
    field('debit-description', 'Description', { type: 'text', maxlength: 1000 }),
    h('button', { type: 'submit' }, 'Debit credits'));
  debitForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const amount = Number(debitForm.querySelector('#debit-amount').value);
    const description = debitForm.querySelector('#debit-description').value.trim();
    const input = { endUserId, amount, idempotencyKey: idempotencyKey(), ...(description ? { description } : {}) };
    const ok = await act(`Debit ${credits(amount)} credits from ${shortId(endUserId)}?`,
      () => gql('mutation($i: SubtractCreditsInput!) { subtractCredits(input: $i) { entry { id } } }', { i: input }),
      `Debited ${credits(amount)} credits.`);
    if (ok) { debitForm.reset(); await reload().catch(showError); }
  });

  return h('section', { class: 'card' }, h('h2', {}, 'Actions'),
    h('h3', {}, 'Grant credits'), grantForm, h('h3', {}, 'Debit credits'), debitForm);
}

function grantsSection(grants, reload) {
  const rows = grants.map((g) => [
    h('span', { class: 'mono', title: g.id }, shortId(g.id)), g.source.toLowerCase(),
    credits(g.amount), credits(g.remaining), credits(g.held), when(g.expiresAt), g.description ?? '',
    h('button', {
      type: 'button', class: 'secondary', 'data-void': g.id,
      onclick: async () => {
        if (await act(`Void grant ${shortId(g.id)}? Its ${credits(g.remaining)} remaining credits are removed.`,
          () => gql('mutation($i: VoidGrantInput!) { voidGrant(input: $i) { entry { id } } }',
            { i: { grantId: g.id, idempotencyKey: idempotencyKey() } }),
          `Voided grant ${shortId(g.id)}.`)) await reload().catch(showError);
      },
    }, 'Void'),
  ]);
  return h('section', { class: 'card' }, h('h2', {}, 'Grants (burn-down order)'),
    table('Active grants, spent first to last',
      ['Grant', 'Source', 'Amount', 'Remaining', 'Held', 'Expires', 'Description', ''], rows, 'No active grants.'));
}

function holdsSection(holds, reload) {
  const rows = holds.map((hold) => {
    const amountInput = h('input', {
      type: 'number', min: 1, max: hold.amount, step: 1, value: hold.amount,
      'aria-label': `Credits to capture from hold ${shortId(hold.id)}`, class: 'narrow',
    });
    return [
      h('span', { class: 'mono', title: hold.id }, shortId(hold.id)), credits(hold.amount), hold.description ?? '',
      when(hold.expiresAt), amountInput,
      h('span', { class: 'buttons' },
        h('button', {
          type: 'button', onclick: async () => {
            const amount = Number(amountInput.value);
            if (await act(`Capture ${credits(amount)} of hold ${shortId(hold.id)}?`,
              () => gql('mutation($i: CaptureHoldInput!) { captureHold(input: $i) { hold { id } } }',
                { i: { holdId: hold.id, amount, idempotencyKey: idempotencyKey() } }),
              `Captured ${credits(amount)} credits.`)) await reload().catch(showError);
          },
        }, 'Capture'),
        h('button', {
          type: 'button', class: 'secondary', onclick: async () => {
            if (await act(`Release hold ${shortId(hold.id)}?`,
              () => gql('mutation($i: ReleaseHoldInput!) { releaseHold(input: $i) { hold { id } } }',
                { i: { holdId: hold.id, idempotencyKey: idempotencyKey() } }),
              'Released the hold.')) await reload().catch(showError);
          },
        }, 'Release')),
    ];
  });
  return h('section', { class: 'card' }, h('h2', {}, 'Open holds'),
    table('Open holds, soonest deadline first', ['Hold', 'Amount', 'Description', 'Deadline', 'Capture', ''], rows, 'No open holds.'));
}

function cycleSection(endUserId, cycle, reload) {
  const section = h('section', { class: 'card' }, h('h2', {}, 'Cycle'));
  if (cycle) {
    section.append(h('p', {}, `${credits(cycle.amount)} credits every ${cycle.validityDays} days, ${cycle.status.toLowerCase()}; `,
      `this period ends ${when(cycle.currentPeriodEnd)}.`));
  } else {
    section.append(h('p', {}, 'No recurring cycle.'));
  }
  if (cycle?.status === 'ACTIVE') {
    section.append(h('button', {
      type: 'button', class: 'secondary', onclick: async () => {
        if (await act('Stop the cycle? The current credits stay usable until the period ends.',
          () => gql('mutation($i: StopCycleInput!) { stopCycle(input: $i) { id } }', { i: { endUserId } }),
          'Stopped the cycle.')) await reload().catch(showError);
      },
    }, 'Stop cycle'));
    return section;
  }
  const form = h('form', { class: 'grid' },
    field('cycle-amount', 'Credits per period', { type: 'number', min: 1, step: 1, required: true }),
    field('cycle-days', 'Period in days', { type: 'number', min: 1, step: 1, required: true, value: 30 }),
    h('button', { type: 'submit' }, 'Start cycle'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const amount = Number(form.querySelector('#cycle-amount').value);
    const validityDays = Number(form.querySelector('#cycle-days').value);
    if (await act(`Start a cycle of ${credits(amount)} credits every ${validityDays} days?`,
      () => gql('mutation($i: StartCycleInput!) { startCycle(input: $i) { cycle { id } } }',
        { i: { endUserId, amount, validityDays, idempotencyKey: idempotencyKey() } }),
      'Started the cycle.')) await reload().catch(showError);
  });
  section.append(form);
  return section;
}

function historySection(entries, reload) {
  const points = entries.slice().reverse().map((e) => [new Date(e.createdAt), e.balanceAfter]);
  const rows = entries.map((entry) => [
    String(entry.sequence), entry.kind.toLowerCase(), credits(entry.delta), credits(entry.balanceAfter), when(entry.createdAt),
    entry.allocations.map((a) => `${shortId(a.grantId)}: ${credits(a.amount)}`).join(', ') || '—',
    entry.description ?? '',
    ['DEBIT', 'CAPTURE'].includes(entry.kind)
      ? h('button', {
        type: 'button', class: 'secondary', 'data-reverse': entry.id,
        onclick: async () => {
          if (await act(`Reverse debit #${entry.sequence}? Its ${credits(entry.amount)} credits go back to the grants they came from.`,
            () => gql('mutation($i: ReverseDebitInput!) { reverseDebit(input: $i) { entry { id } } }',
              { i: { entryId: entry.id, idempotencyKey: idempotencyKey() } }),
            `Reversed debit #${entry.sequence}.`)) await reload().catch(showError);
        },
      }, 'Reverse')
      : '',
  ]);
  return h('section', { class: 'card' }, h('h2', {}, 'Ledger'),
    balanceChart(points, { label: 'Available balance after each entry' }),
    table('Newest first; allocations say which grant paid',
      ['#', 'Kind', 'Change', 'Balance after', 'When', 'Allocations', 'Description', ''], rows, 'No entries yet.'));
}

// ---------------------------------------------------------------- bundles

export async function bundlesPage(root) {
  const list = h('div', {});
  root.append(h('h1', {}, 'Bundles'), list);
  const form = h('form', { class: 'grid', id: 'bundle-form' },
    field('bundle-name', 'Name', { type: 'text', required: true, maxlength: 200 }),
    field('bundle-credits', 'Credits', { type: 'number', min: 1, step: 1, required: true }),
    field('bundle-days', 'Valid for days (empty: never)', { type: 'number', min: 1, step: 1 }),
    field('bundle-price', 'Price (minor units, 999 = 9.99)', { type: 'number', min: 0, step: 1, required: true }),
    field('bundle-currency', 'Currency', { type: 'text', required: true, value: 'usd', maxlength: 3 }),
    field('bundle-stripe-price', 'Stripe price id', { type: 'text', required: true, placeholder: 'price_…' }),
    h('button', { type: 'submit' }, 'Create bundle'));

  const load = async () => {
    const data = await gql('{ bundles(includeArchived: true) { id name credits validityDays priceAmount currency stripePriceId active } }');
    list.textContent = '';
    list.append(table('The catalog, fewest credits first', ['Name', 'Credits', 'Valid days', 'Price', 'Stripe price', 'Status', ''],
      data.bundles.map((b) => [
        b.name, credits(b.credits), b.validityDays ?? 'never', `${(b.priceAmount / 100).toFixed(2)} ${b.currency.toUpperCase()}`,
        h('span', { class: 'mono' }, b.stripePriceId), b.active ? 'active' : 'archived',
        h('span', { class: 'buttons' },
          h('button', {
            type: 'button', class: 'secondary', onclick: async () => {
              const name = window.prompt('New name', b.name);
              if (name === null || name.trim() === b.name) return;
              if (await act(`Rename “${b.name}” to “${name.trim()}”?`,
                () => gql('mutation($i: UpdateBundleInput!) { updateBundle(input: $i) { bundle { id } } }', { i: { id: b.id, name: name.trim() } }),
                'Bundle updated.')) await load().catch(showError);
            },
          }, 'Rename'),
          b.active ? h('button', {
            type: 'button', class: 'secondary', onclick: async () => {
              if (await act(`Archive “${b.name}”? It can no longer be bought.`,
                () => gql('mutation($i: ArchiveBundleInput!) { archiveBundle(input: $i) { bundle { id } } }', { i: { id: b.id } }),
                'Bundle archived.')) await load().catch(showError);
            },
          }, 'Archive') : null),
      ]), 'No bundles yet.'), h('h2', {}, 'New bundle'), form);
  };
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const v = (id) => form.querySelector(`#${id}`).value.trim();
    const input = {
      name: v('bundle-name'), credits: Number(v('bundle-credits')), priceAmount: Number(v('bundle-price')),
      currency: v('bundle-currency'), stripePriceId: v('bundle-stripe-price'),
      ...(v('bundle-days') ? { validityDays: Number(v('bundle-days')) } : {}),
    };
    if (await act(`Create the bundle “${input.name}”?`,
      () => gql('mutation($i: CreateBundleInput!) { createBundle(input: $i) { bundle { id } } }', { i: input }),
      'Bundle created.')) { form.reset(); await load().catch(showError); }
  });
  await load();
}

// ---------------------------------------------------------------- Stripe events

export async function stripePage(root) {
  const filter = h('select', { id: 'outcome', name: 'outcome' },
    ['all', 'applied', 'ignored', 'pending', 'failed'].map((o) => h('option', { value: o }, o)));
  const list = h('div', {});
  root.append(h('h1', {}, 'Stripe events'),
    h('div', { class: 'inline' }, h('label', { for: 'outcome' }, 'Outcome'), filter), list);
  const data = await gql(`{ stripeEvents(first: 100) { edges { node {
    id type outcome reason endUserId attempts receivedAt } } } }`);
  const events = data.stripeEvents.edges.map((e) => e.node);
  const show = () => {
    const wanted = filter.value;
    list.textContent = '';
    list.append(table('Newest first (the latest 100)', ['Received', 'Event', 'Type', 'Outcome', 'Reason', 'End user', 'Attempts'],
      events.filter((e) => wanted === 'all' || e.outcome.toLowerCase() === wanted).map((e) => [
        when(e.receivedAt), h('span', { class: 'mono' }, e.id), e.type,
        h('span', { class: `outcome ${e.outcome.toLowerCase()}` }, e.outcome.toLowerCase()), e.reason ?? '',
        e.endUserId ? h('a', { href: userLink(e.endUserId), class: 'mono' }, shortId(e.endUserId)) : '—', String(e.attempts),
      ]), 'No Stripe events.'));
  };
  filter.addEventListener('change', show);
  show();
}
