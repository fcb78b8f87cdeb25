/** A place in a channel's history: the channel's epoch and the last serial seen in it. */
export interface ChannelPosition {
  serial: number;
  epoch: string;
}

/**
 * Per-channel tracking of the last serial and epoch seen, for lossless resume and
 * de-duplication. The server guarantees each serial once per subscription; across
 * reconnects (a replay overlapping what arrived before the cut) this drops the repeats.
 */
export class PositionTracker {
  private position: ChannelPosition | null = null;

  get current(): ChannelPosition | null {
    return this.position;
  }

  /**
   * Records a channel event's stamp. Returns false for a duplicate (same epoch, serial at or
   * below the last one seen), which must not be delivered. Frames without a stamp pass.
   */
  accept(serial: unknown, epoch: unknown): boolean {
    if (typeof serial !== 'number' || typeof epoch !== 'string') return true;
    const last = this.position;
    if (last && last.epoch === epoch && serial <= last.serial) return false;
    this.position = { serial, epoch };
    return true;
  }

  /**
   * `subscription_succeeded` says where the subscription starts: every event above `serial`
   * in `epoch` follows. Within the same epoch the position never moves back, so events seen
   * before the cut are still dropped if they are replayed.
   */
  subscribed(serial: unknown, epoch: unknown): void {
    if (typeof serial !== 'number' || typeof epoch !== 'string') return;
    const last = this.position;
    if (last && last.epoch === epoch && last.serial >= serial) return;
    this.position = { serial, epoch };
  }

  /** What to send as `resume` on the next subscribe, if anything was seen. */
  resume(): ChannelPosition | undefined {
    return this.position ? { serial: this.position.serial, epoch: this.position.epoch } : undefined;
  }

  reset(): void {
    this.position = null;
  }
}
