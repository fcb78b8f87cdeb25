// Endpoints the issue asks for that the server's /v1 does not document yet (issue 10: email
// verification, password reset and change, app settings, the live feed and refusal log).
// They are typed here by hand in the shape the dashboard expects; each page asks
// `serverHasPath` first and says "not available on this server yet" until it lands. When
// `npm run gen` brings a path into schema.d.ts, its function moves to the generated client.
import { ApiError, csrfToken } from './client';

export const PENDING = {
  verifyEmail: '/v1/verify-email',
  resendVerification: '/v1/verify-email/resend',
  requestReset: '/v1/password-reset',
  confirmReset: '/v1/password-reset/confirm',
  changePassword: '/v1/me/password',
  console: '/v1/console',
  consoleAuth: '/v1/console/auth',
  refusals: '/v1/apps/{app_id}/refusals',
} as const;

/** Where the dashboard's live feed connects: the internal system app's key. */
export interface ConsoleConnection {
  key: string;
}

/** One refused connection or request of an app, as the edge recorded it. */
export interface Refusal {
  time: string;
  code: number;
  reason: string;
  /** What was refused: `connection`, `subscription`, `publish`, `client_event`. */
  kind?: string;
  channel?: string | null;
}

/** App settings the issue adds to `PATCH /v1/apps/{id}` (beside the documented ones). */
export interface PendingAppSettings {
  client_events?: boolean;
  allowed_origins?: string[];
}

export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET') headers['X-CSRF-Token'] = csrfToken();
  let response: Response;
  try {
    response = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, 'The server cannot be reached. Check your connection and try again.');
  }
  const text = await response.text();
  const parsed = text ? safeJson(text) : undefined;
  if (!response.ok) {
    const message = parsed && typeof parsed.error === 'string' ? parsed.error : `The server answered ${response.status}`;
    throw new ApiError(response.status, message);
  }
  return parsed as T;
}

function safeJson(text: string): any {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
