// The console's shell: sign-in, hash routing (#/users, #/users/<id>, #/bundles, #/stripe),
// notices and confirmations. Pages are in pages.js.

import { ApiError, gql, secretKey, signIn, signOut } from './api.js';
import { bundlesPage, stripePage, userPage, usersPage } from './pages.js';

const notice = document.getElementById('notice');
const page = document.getElementById('page');
let leavePage = () => {};

/** Shows an error as the API stated it: its code, then its message. */
export function showError(error) {
  const code = error instanceof ApiError ? error.code : (error?.extensions?.code ?? 'ERROR');
  notice.className = 'notice error';
  notice.textContent = '';
  notice.append(Object.assign(document.createElement('strong'), { textContent: code }), ` ${error.message}`);
  notice.hidden = false;
  if (code === 'UNAUTHENTICATED') {
    signOut();
    route();
  }
}

export function showDone(text) {
  notice.className = 'notice done';
  notice.textContent = text;
  notice.hidden = false;
}

export function clearNotice() {
  notice.hidden = true;
}

/** Asks before an action; resolves true when confirmed. Keyboard: Enter confirms, Esc cancels. */
export function confirmAction(text) {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-text').textContent = text;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.showModal();
    document.getElementById('confirm-ok').focus();
  });
}

/** Runs an action after confirmation; reports success or the API's error. */
export async function act(question, run, done) {
  if (!(await confirmAction(question))) return false;
  clearNotice();
  try {
    await run();
    showDone(done);
    return true;
  } catch (error) {
    showError(error);
    return false;
  }
}

async function route() {
  leavePage();
  leavePage = () => {};
  page.textContent = '';
  const signedIn = Boolean(secretKey());
  document.getElementById('sign-in').hidden = signedIn;
  document.getElementById('nav').hidden = !signedIn;
  if (!signedIn) {
    document.getElementById('key').focus();
    return;
  }
  const [, section, id] = (location.hash || '#/users').split('/');
  for (const link of document.querySelectorAll('#nav a')) {
    link.toggleAttribute('aria-current', link.getAttribute('href') === `#/${section}`);
  }
  try {
    if (section === 'users' && id) leavePage = await userPage(page, decodeURIComponent(id));
    else if (section === 'bundles') await bundlesPage(page);
    else if (section === 'stripe') await stripePage(page);
    else await usersPage(page);
  } catch (error) {
    showError(error);
  }
  const heading = page.querySelector('h1');
  if (heading) document.title = `${heading.textContent} · Tally console`;
}

document.getElementById('sign-in-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const input = document.getElementById('key');
  signIn(input.value.trim());
  try {
    // Only secret keys can list end users: an end-user token is refused here.
    await gql('{ endUsers(first: 1) { edges { cursor } } }');
    input.value = '';
    clearNotice();
    route();
  } catch (error) {
    signOut();
    showError(error);
  }
});

document.getElementById('sign-out').addEventListener('click', () => {
  signOut();
  clearNotice();
  route();
});

window.addEventListener('hashchange', () => {
  clearNotice();
  route();
});
route();
