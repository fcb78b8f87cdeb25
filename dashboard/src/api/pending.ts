// Endpoints of issue 10 that this branch's server does not document yet: account mail
// (verification, password reset and change), app settings and key rotation (branch dashapi),
// the live feed and refusal log (branch console). Typed here by hand in the shapes those
// branches define; each page asks `serverHasPath` first and says "not available on this
// server yet" without them. Once merged, `npm run gen` brings them into schema.d.ts and these
// hand-written types give way to the generated ones.
import { ApiError, csrfToken } from './client';

export const PENDING = {
  /** POST `{token}` → 204. */
  verifyEmail: '/v1/account/verify',
  /** POST → 202 (409 when already verified). */
  resendVerification: '/v1/account/verification',
  /** POST `{email}` → 202. */
  requestReset: '/v1/account/password-reset',
  /** POST `{token, password}` → 204. */
  confirmReset: '/v1/account/password-reset/confirm',
  /** PUT `{current_password, new_password}` → 204. */
  changePassword: '/v1/account/password',
  /** POST → 201 `{key, secret}`; the old key is revoked. */
  rotateKey: '/v1/apps/{app_id}/keys/{key}/rotate',
  /** GET → `ConsoleInfo`. */
  console: '/v1/console',
  /** GET → `RefusalLog`. */
  refusals: '/v1/apps/{app_id}/refusals',
} as const;

/** How the dashboard reaches the system app (`GET /v1/console`). */
export interface ConsoleInfo {
  key: string;
  ws_host: string;
  ws_port: number;
  tls: boolean;
  ws_path: string;
  /** Where the SDK authorises `private-console-…` and `private-live-…` (form-encoded). */
  auth_endpoint: string;
  console_channel_prefix: string;
  live_channel_prefix: string;
}

/** One refusal, with what the client was told. */
export interface Refusal {
  time_ms: number;
  /** `connection`, `subscription`, `client_event`, `client_message` or `api`. */
  source: string;
  code?: number | null;
  status?: number | null;
  reason: string;
  socket_id?: string | null;
  channel?: string | null;
}

/** An app's recent refusals, oldest first (`scope` is `node`: each node keeps its own). */
export interface RefusalLog {
  scope: string;
  refusals: Refusal[];
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
