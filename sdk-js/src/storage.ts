/** Which transport worked last, per endpoint, in localStorage when there is one, with an expiry. */
const PREFIX = 'switchboard.transport:';

function storage(): Storage | null {
  try {
    return (globalThis as any).localStorage || null;
  } catch {
    // Reading localStorage throws where storage is blocked (some privacy settings, sandboxed frames).
    return null;
  }
}

export function rememberedTransport(endpoint: string): string | null {
  try {
    const entry = JSON.parse(storage()?.getItem(PREFIX + endpoint) || 'null');
    return entry && entry.expires > Date.now() ? entry.name : null;
  } catch {
    return null;
  }
}

export function rememberTransport(endpoint: string, name: string, ttlMs: number): void {
  try {
    storage()?.setItem(PREFIX + endpoint, JSON.stringify({ name, expires: Date.now() + ttlMs }));
  } catch {
    // Full or blocked storage: the next page load probes from the top, which is only slower.
  }
}

export function forgetTransport(endpoint: string): void {
  try {
    storage()?.removeItem(PREFIX + endpoint);
  } catch {
    // As above.
  }
}
