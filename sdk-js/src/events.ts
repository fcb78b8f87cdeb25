/** Callback for one event: the (JSON-decoded) data and, for client events on presence channels, the sender. */
export type EventCallback<T = any> = (data: T, metadata?: EventMetadata) => void;
export type GlobalCallback = (event: string, data: any, metadata?: EventMetadata) => void;

export interface EventMetadata {
  user_id?: string;
}

/** A small event emitter with pusher-js's `bind` / `unbind` / `bind_global` shape. */
export class Dispatcher {
  private callbacks = new Map<string, EventCallback[]>();
  private globals: GlobalCallback[] = [];

  bind(event: string, callback: EventCallback): this {
    const list = this.callbacks.get(event) || [];
    list.push(callback);
    this.callbacks.set(event, list);
    return this;
  }

  /** Without arguments removes every callback; without `callback`, every callback of `event`. */
  unbind(event?: string, callback?: EventCallback): this {
    if (event === undefined) {
      this.callbacks.clear();
    } else if (callback === undefined) {
      this.callbacks.delete(event);
    } else {
      const list = (this.callbacks.get(event) || []).filter((c) => c !== callback);
      if (list.length) this.callbacks.set(event, list);
      else this.callbacks.delete(event);
    }
    return this;
  }

  bind_global(callback: GlobalCallback): this {
    this.globals.push(callback);
    return this;
  }

  unbind_global(callback?: GlobalCallback): this {
    this.globals = callback ? this.globals.filter((c) => c !== callback) : [];
    return this;
  }

  emit(event: string, data?: any, metadata?: EventMetadata): this {
    for (const callback of this.globals.slice()) callback(event, data, metadata);
    // A copy: a callback may unbind itself (or others) while the event is being delivered.
    for (const callback of (this.callbacks.get(event) || []).slice()) callback(data, metadata);
    return this;
  }
}
