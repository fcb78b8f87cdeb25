import { applyDelta } from 'fossil-delta';
import type { Frame } from './transports/types';

/** The delta formats a subscription may ask for (`subscribe(name, { delta: 'fossil' })`). */
export type DeltaFormat = 'fossil';

/** The event a delta frame carries; the server sends it only to subscriptions that asked. */
export const DELTA_EVENT = 'switchboard:delta';

/** The last event delivered on a channel: what the next delta applies to. */
export interface DeltaBase {
  serial: number;
  epoch: string;
  data: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Rebuilds the event a `switchboard:delta` frame stands for, or returns null when it cannot
 * be trusted: no base, another base than the one it names, or a delta that does not apply
 * (fossil checks the result's length and checksum). Never returns a wrong event.
 */
export function applyDeltaFrame(base: DeltaBase | null, frame: Frame & Record<string, any>): Frame | null {
  const named = typeof frame.base === 'number' && typeof frame.serial === 'number' && typeof frame.epoch === 'string';
  if (!base || !named || frame.base !== base.serial || frame.epoch !== base.epoch) return null;
  if (typeof frame.delta !== 'string' || typeof frame.name !== 'string') return null;
  try {
    const delta = Uint8Array.from(atob(frame.delta), (c) => c.charCodeAt(0));
    const data = decoder.decode(applyDelta(encoder.encode(base.data), delta));
    const rebuilt: Frame = { event: frame.name, channel: frame.channel, data, serial: frame.serial, epoch: frame.epoch };
    if (typeof frame.user_id === 'string') rebuilt.user_id = frame.user_id;
    return rebuilt;
  } catch {
    return null;
  }
}
