import type { CarrierContext, Frame, Transport, TransportHooks } from './types';
import { parseFrame } from './types';

/** Pusher protocol 7 over a WebSocket: exactly what pusher-js speaks. */
export function webSocketTransport(context: CarrierContext, hooks: TransportHooks): Transport | null {
  const WebSocketClass: typeof WebSocket | undefined = (globalThis as any).WebSocket;
  if (typeof WebSocketClass !== 'function') return null;
  let socket: WebSocket;
  try {
    socket = new WebSocketClass(context.wsUrl);
  } catch {
    return null;
  }
  let closed = false;
  socket.onopen = () => hooks.onopen();
  socket.onmessage = (message) => {
    const frame = parseFrame(message.data);
    if (frame && !closed) hooks.onframe(frame);
  };
  // An error is always followed by a close, which carries the code.
  socket.onerror = () => {};
  socket.onclose = (event) => {
    if (closed) return;
    closed = true;
    hooks.onclose({ code: event.code, reason: event.reason });
  };
  return {
    name: 'ws',
    send(frame: Frame) {
      if (closed || socket.readyState !== 1) return false;
      socket.send(JSON.stringify(frame));
      return true;
    },
    close() {
      if (closed) return;
      closed = true;
      socket.onopen = socket.onmessage = socket.onclose = null;
      try {
        socket.close();
      } catch {
        // Closing a socket that never opened may throw in some environments; it is gone either way.
      }
    },
  };
}
