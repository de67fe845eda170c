// The console's only way to the server: the public GraphQL API, with the secret key from
// sessionStorage as the Bearer credential (never in a URL). Errors keep the API's own words.

const KEY_SLOT = 'tally.secretKey';

export function secretKey() {
  return sessionStorage.getItem(KEY_SLOT);
}

export function signIn(key) {
  sessionStorage.setItem(KEY_SLOT, key);
}

export function signOut() {
  sessionStorage.removeItem(KEY_SLOT);
}

/** An error as the API stated it: its message and extensions.code. */
export class ApiError extends Error {
  constructor(message, code, extensions = {}) {
    super(message);
    this.code = code;
    this.extensions = extensions;
  }
}

/** Runs one GraphQL document; resolves to `data`, rejects with an ApiError. */
export async function gql(query, variables = {}) {
  let response;
  try {
    response = await fetch('/graphql', {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        Authorization: `Bearer ${secretKey() ?? ''}`,
      },
      body: JSON.stringify({ query, variables }),
    });
  } catch (error) {
    throw new ApiError(`Tally cannot be reached: ${error.message}`, 'NETWORK_ERROR');
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`Tally answered HTTP ${response.status} without JSON`, `HTTP_${response.status}`);
  }
  if (body.errors?.length) {
    const [first] = body.errors;
    throw new ApiError(first.message, first.extensions?.code ?? 'UNKNOWN', first.extensions ?? {});
  }
  return body.data;
}

/** A fresh idempotency key for one action (a retry of that action reuses it). */
export function idempotencyKey() {
  return `console-${crypto.randomUUID()}`;
}
