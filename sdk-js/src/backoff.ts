/** Reconnect delays: exponential, capped, with "equal jitter" so a fleet of clients cut at
 * the same moment (a deploy, a network blip) does not come back in lockstep. */
export interface BackoffOptions {
  /** Delay ceiling of the first retry, in ms. */
  baseMs: number;
  /** No delay exceeds this, in ms. */
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 1000, maxMs: 30000 };

/**
 * The delay before retry number `attempt` (0-based): half of min(max, base·2^attempt) fixed,
 * the other half random. `random` is injectable so tests are deterministic.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const ceiling = Math.min(options.maxMs, options.baseMs * Math.pow(2, Math.min(attempt, 30)));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** What a close code asks of the client, in Pusher's documented ranges. */
export type CloseAction = 'stop' | 'backoff' | 'reconnect_now' | 'reconnect';

/**
 * 4000–4099: refused, do not reconnect (unknown key, disabled app, over quota…);
 * 4100–4199: reconnect after backing off (over capacity, slow consumer);
 * 4200–4299: reconnect at once (server restarting, ping timeout);
 * anything else (1000-range, network loss, no code): reconnect with the usual backoff.
 */
export function closeAction(code: number | undefined): CloseAction {
  if (code === undefined || code < 4000 || code >= 4300) return 'reconnect';
  if (code < 4100) return 'stop';
  if (code < 4200) return 'backoff';
  return 'reconnect_now';
}
