/** Channel authorization, as pusher-js does it: a POST to an endpoint, or a custom handler. */
export interface ChannelAuthorizationData {
  auth: string;
  channel_data?: string;
  shared_secret?: string;
}

export type ChannelAuthorizationCallback = (error: Error | null, data: ChannelAuthorizationData | null) => void;

export interface ChannelAuthorizationOptions {
  /** Default `/pusher/auth`: form-encoded `socket_id` and `channel_name` (plus `params`). */
  endpoint?: string;
  headers?: Record<string, string>;
  params?: Record<string, string>;
  customHandler?: (params: { socketId: string; channelName: string }, callback: ChannelAuthorizationCallback) => void;
}

export type Authorizer = (socketId: string, channelName: string) => Promise<ChannelAuthorizationData>;

export function authorizer(options: ChannelAuthorizationOptions): Authorizer {
  return (socketId, channelName) =>
    new Promise((resolve, reject) => {
      const done: ChannelAuthorizationCallback = (error, data) =>
        error || !data || typeof data.auth !== 'string' ? reject(error || new Error('no auth in the response')) : resolve(data);
      if (options.customHandler) return options.customHandler({ socketId, channelName }, done);
      const body = new URLSearchParams({ ...options.params, socket_id: socketId, channel_name: channelName });
      fetch(options.endpoint || '/pusher/auth', {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', ...options.headers },
        body: body.toString(),
        credentials: 'same-origin',
      })
        .then(async (response) => {
          if (!response.ok) throw Object.assign(new Error(`auth endpoint answered ${response.status}`), { status: response.status });
          done(null, await response.json());
        })
        .catch((error) => done(error, null));
    });
}
