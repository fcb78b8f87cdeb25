// The one way the dashboard talks to the control plane: openapi-fetch over the types generated
// from /v1/openapi.json (schema.d.ts), so a changed API breaks the build, not the page.
import createClient, { type Middleware } from 'openapi-fetch';
import type { components, paths } from './schema';

export type Schemas = components['schemas'];

/** The session's CSRF token, readable by our own pages only (the `sb_csrf` cookie). */
export function csrfToken(): string {
  const match = document.cookie.split('; ').find((part) => part.startsWith('sb_csrf='));
  return match ? decodeURIComponent(match.slice('sb_csrf='.length)) : '';
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Every state-changing call carries `X-CSRF-Token`, as the session cookie requires. */
const csrf: Middleware = {
  onRequest({ request }) {
    if (!SAFE_METHODS.has(request.method)) request.headers.set('X-CSRF-Token', csrfToken());
    return request;
  },
};

export const api = createClient<paths>({ baseUrl: '/', credentials: 'same-origin' });
api.use(csrf);

/** A failed call, with the server's own message (`{"error": …}`) when it sent one. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The data of an openapi-fetch result, or an `ApiError`. A 401 means the session ended: the
 * app's `onUnauthenticated` hook sends the user to the login page.
 */
export async function unwrap<T>(call: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  let result;
  try {
    result = await call;
  } catch {
    throw new ApiError(0, 'The server cannot be reached. Check your connection and try again.');
  }
  const { data, error, response } = result;
  if (response.ok) return data as T;
  if (response.status === 401) onUnauthenticated();
  throw new ApiError(response.status, errorMessage(error, response));
}

function errorMessage(error: unknown, response: Response): string {
  if (error && typeof error === 'object' && 'error' in error && typeof error.error === 'string') return error.error;
  return `The server answered ${response.status} ${response.statusText}`.trim();
}

let unauthenticatedHook: () => void = () => {};
export function setUnauthenticatedHook(hook: () => void) {
  unauthenticatedHook = hook;
}
function onUnauthenticated() {
  unauthenticatedHook();
}
