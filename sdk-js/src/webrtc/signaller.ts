import type { Channel } from '../channel';

/** What two peers tell each other, as the data of one client event addressed to the peer. */
export type Signal =
  | { kind: 'description'; description: RTCSessionDescriptionInit }
  | { kind: 'candidates'; candidates: RTCIceCandidateInit[] }
  | { kind: 'bye' };

/** Most signals waiting to be sent; past it the oldest candidates are dropped first. */
const MAX_QUEUED = 256;

/**
 * Sends signals as client events addressed to one member, within the plan's client-event
 * rate (a burst of trickled ICE candidates would otherwise be refused with 4301): signals
 * over `perSecond` wait, and candidates waiting for the same peer are merged into one event.
 * While the channel is not subscribed (a carrier cut), signals wait and go out once it is
 * again; those addressed to this member meanwhile are replayed by the server on resume.
 */
export class Signaller {
  private queue: Array<{ to: string; signal: Signal }> = [];
  private sentAt: number[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private channel: Channel,
    private event: string,
    private perSecond: number,
  ) {
    channel.bind('pusher:subscription_succeeded', () => this.flush());
  }

  send(to: string, signal: Signal): void {
    const last = this.queue[this.queue.length - 1];
    if (signal.kind === 'candidates' && last && last.to === to && last.signal.kind === 'candidates') {
      last.signal.candidates.push(...signal.candidates);
    } else {
      this.queue.push({ to, signal });
    }
    if (this.queue.length > MAX_QUEUED) {
      const index = this.queue.findIndex((queued) => queued.signal.kind === 'candidates');
      this.queue.splice(index < 0 ? 0 : index, 1);
    }
    this.flush();
  }

  /** Forgets what waits for `to` (the call ended). */
  drop(to: string): void {
    this.queue = this.queue.filter((queued) => queued.to !== to || queued.signal.kind === 'bye');
  }

  private flush(): void {
    const now = Date.now();
    this.sentAt = this.sentAt.filter((at) => at > now - 1000);
    while (this.queue.length && this.sentAt.length < this.perSecond) {
      const next = this.queue[0];
      if (!this.channel.triggerTo(next.to, this.event, next.signal)) return; // resent once subscribed
      this.queue.shift();
      this.sentAt.push(now);
    }
    if (this.queue.length && !this.timer) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.flush();
      }, this.sentAt[0] + 1000 - now);
    }
  }
}
