// A raw Pusher-protocol client (the `ws` package) that does on a cut what our SDK does: it
// reconnects at once (through a balancer, to whichever edge that gives it) and subscribes each
// channel again with `resume` from the last serial it saw, so a cut loses nothing the channel's
// history still holds. It keeps every channel event exactly as received (duplicates included),
// so a test can assert "every event, in order, once".

import { PUSHER_JS_VERSION, WAIT_MS, WebSocket } from './helpers.mjs';

/** Consecutive failed connection attempts after which the client gives up. */
const MAX_ATTEMPTS = 100;
/** Between two failed attempts, as a client's back-off; it synchronises nothing. */
const RETRY_AFTER_MS = 100;

export class ResumingClient {
  /**
   * Connects to `target` ({host, port}) as a client of `appKey` subscribed to `channels`. After a
   * cut it reconnects once `beforeReconnect()` resolves (at once by default), so a test can make
   * sure events are published while it is away.
   */
  constructor(target, appKey, channels, { beforeReconnect = async () => {} } = {}) {
    this.beforeReconnect = beforeReconnect;
    this.url = `ws://${target.host}:${target.port}/app/${appKey}?protocol=7&client=js&version=${PUSHER_JS_VERSION}&flash=false`;
    this.channels = channels;
    /** channel → {epoch, serial}: where the client stands (told at subscribe, then each event). */
    this.positions = new Map();
    /** Every channel event received, in order: {channel, event, serial, epoch, data}. */
    this.events = [];
    /** Every `resume` position sent: {channel, epoch, serial}. */
    this.resumedFrom = [];
    /** Every `switchboard:resume_failed` frame received. */
    this.failures = [];
    /** `pusher:connection_established` frames received: 1 + the reconnections. */
    this.connections = 0;
    /** `subscription_succeeded` frames received. */
    this.subscriptions = 0;
    this.failedAttempts = 0;
    this.stopped = false;
    this.waiters = [];
    this.connect();
  }

  connect() {
    if (this.stopped) return; // stopped while a reconnection was scheduled
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.on('error', () => {}); // a refused or cut connection ends in 'close', handled there
    ws.on('message', (buffer) => this.receive(JSON.parse(buffer.toString())));
    ws.on('close', () => {
      if (this.ws !== ws || this.stopped) return;
      if (++this.failedAttempts > MAX_ATTEMPTS) {
        this.gaveUp = true;
        this.notify();
        return;
      }
      if (this.connected) {
        this.connected = false;
        this.beforeReconnect().then(
          () => this.connect(),
          (err) => {
            this.gaveUp = err;
            this.notify();
          },
        );
      } else {
        setTimeout(() => this.connect(), RETRY_AFTER_MS);
      }
    });
  }

  receive(frame) {
    const send = (event, data) => this.ws.send(JSON.stringify({ event, data }));
    switch (frame.event) {
      case 'pusher:connection_established':
        this.connections += 1;
        this.connected = true;
        this.failedAttempts = 0;
        for (const channel of this.channels) {
          const resume = this.positions.get(channel);
          if (resume) this.resumedFrom.push({ channel, ...resume });
          send('pusher:subscribe', resume ? { channel, resume } : { channel });
        }
        break;
      case 'pusher:ping':
        send('pusher:pong', {});
        break;
      case 'pusher_internal:subscription_succeeded': {
        this.subscriptions += 1;
        const { epoch, serial } = JSON.parse(frame.data);
        if (!this.positions.has(frame.channel)) this.positions.set(frame.channel, { epoch, serial });
        break;
      }
      case 'switchboard:resume_failed':
        this.failures.push(frame);
        break;
      default:
        if (frame.serial !== undefined) {
          const { channel, event, serial, epoch } = frame;
          this.events.push({ channel, event, serial, epoch, data: JSON.parse(frame.data) });
          this.positions.set(channel, { epoch, serial });
        }
    }
    this.notify();
  }

  notify() {
    this.waiters = this.waiters.filter((waiter) => !waiter());
  }

  describe() {
    const serials = this.events.map((event) => event.serial);
    return (
      `resuming client: connections=${this.connections} subscriptions=${this.subscriptions} ` +
      `gaveUp=${this.gaveUp ? String(this.gaveUp) : false} failures=${JSON.stringify(this.failures)} serials=${JSON.stringify(serials)}`
    );
  }

  /** Resolves once `holds(this)` is true (checked at each frame), at most `ms`. */
  until(holds, { ms = WAIT_MS, what = 'a condition' } = {}) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((waiter) => waiter !== check);
        reject(new Error(`timed out after ${ms} ms waiting for ${what}; ${this.describe()}`));
      }, ms);
      const check = () => {
        if (this.gaveUp) {
          clearTimeout(timer);
          reject(new Error(`gave up reconnecting while waiting for ${what}; ${this.describe()}`));
          return true;
        }
        if (!holds(this)) return false;
        clearTimeout(timer);
        resolve(this);
        return true;
      };
      if (!check()) this.waiters.push(check);
    });
  }

  stop() {
    this.stopped = true;
    this.ws.terminate();
  }
}
