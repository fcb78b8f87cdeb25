/** A frame on the wire (Pusher protocol 7), plus our `serial` / `epoch` stamp. */
export interface Frame {
  event: string;
  channel?: string;
  data?: any;
  user_id?: string;
  /** Switchboard's extension: a client event addressed to one presence member's user id. */
  to?: string;
  serial?: number;
  epoch?: string;
}

export type TransportName = 'ws' | 'sse' | 'long_polling' | 'polling';

/** One subscription as the HTTP carriers name it on every downstream request (no sticky sessions). */
export interface SubscriptionParams {
  channel: string;
  auth?: string;
  channel_data?: string;
  /** The delta format asked for, so an edge rebuilding the session asks for it again. */
  delta?: string;
}

/** Why a carrier ended. `code` is a Pusher close code when there is one; `reopen` asks for an
 * immediate reopen of the same carrier (the server forgot the session: it is rebuilt from
 * `subs` and `cursor`). */
export interface CloseInfo {
  code?: number;
  reason?: string;
  reopen?: boolean;
}

export interface TransportHooks {
  /** The carrier is up (WebSocket open; HTTP: the first answer arrived). */
  onopen(): void;
  onframe(frame: Frame): void;
  /** Called at most once, and never after `close()`. */
  onclose(info: CloseInfo): void;
}

/** What a carrier needs, shared with the connection: HTTP carriers update `session` and `cursor`. */
export interface CarrierContext {
  wsUrl: string;
  httpBase: string;
  session?: string;
  cursor?: string;
  subs(): SubscriptionParams[];
  pollingIntervalMs: number;
}

export interface Transport {
  readonly name: TransportName;
  /** Sends one frame upstream; false when it cannot be sent now. */
  send(frame: Frame): boolean;
  close(): void;
}

/** Opens a carrier, or returns null when this environment lacks what it needs. */
export type TransportFactory = (context: CarrierContext, hooks: TransportHooks) => Transport | null;

export function parseFrame(text: unknown): Frame | null {
  if (typeof text !== 'string') return text && typeof text === 'object' ? (text as Frame) : null;
  try {
    const frame = JSON.parse(text);
    return frame && typeof frame.event === 'string' ? frame : null;
  } catch {
    return null;
  }
}
