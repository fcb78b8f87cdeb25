// An app's settings (client events, subscription counting, allowed origins, WebRTC ICE
// servers) and webhooks.
import { useState } from 'preact/hooks';
import { api, unwrap } from '../api/client';
import { Checkbox, ConfirmAction, ErrorMessage, Field, formatTime, Loaded, StatusMessage, useAction, useResource } from '../components';
import type { AppView } from './app-detail';

/** One origin per line (or space); blank lines dropped. The server normalises and checks each. */
function parseLines(text: string): string[] {
  return text
    .split(/\s+/)
    .map((origin) => origin.trim())
    .filter(Boolean);
}

export function Settings({ app, onSaved }: { app: AppView; onSaved: () => void }) {
  const [counting, setCounting] = useState(app.subscription_counting);
  const [clientEvents, setClientEvents] = useState(app.client_events);
  const [origins, setOrigins] = useState(app.allowed_origins.join('\n'));
  const [iceServers, setIceServers] = useState(app.ice_servers.join('\n'));
  // Write-only: empty leaves the stored secret as it is; "remove" clears it.
  const [turnSecret, setTurnSecret] = useState('');
  const [removeTurnSecret, setRemoveTurnSecret] = useState(false);
  const [note, setNote] = useState<string>();
  const save = useAction(async () => {
    setNote(undefined);
    const turn_secret = removeTurnSecret ? '' : turnSecret || undefined;
    const body = { subscription_counting: counting, client_events: clientEvents, allowed_origins: parseLines(origins), ice_servers: parseLines(iceServers), turn_secret };
    const saved = await unwrap(api.PATCH('/v1/apps/{app_id}', { params: { path: { app_id: app.app_id } }, body }));
    // Show the origins as the server normalised them (lowercase, default port dropped).
    setOrigins(saved.allowed_origins.join('\n'));
    setIceServers(saved.ice_servers.join('\n'));
    setTurnSecret('');
    setRemoveTurnSecret(false);
    setNote('Settings saved.');
    onSaved();
  });
  return (
    <section class="card">
      <h2>Settings</h2>
      <form onSubmit={(event) => (event.preventDefault(), save.run())}>
        <Checkbox label="Subscription counting (subscription_count events and webhooks)" checked={counting} onChange={setCounting} />
        <Checkbox label="Client events on private and presence channels" checked={clientEvents} onChange={setClientEvents} />
        <div class="field">
          <label for="allowed-origins">Allowed origins for browser connections</label>
          <textarea id="allowed-origins" rows={3} aria-describedby="allowed-origins-hint" value={origins} onInput={(event) => setOrigins(event.currentTarget.value)} />
          <small id="allowed-origins-hint" class="muted">
            One per line, such as https://example.com or https://*.example.com. Empty: any origin. Browsers from other origins are refused (4009).
          </small>
        </div>
        <div class="field">
          <label for="ice-servers">WebRTC ICE servers (STUN/TURN)</label>
          <textarea id="ice-servers" rows={3} aria-describedby="ice-servers-hint" value={iceServers} onInput={(event) => setIceServers(event.currentTarget.value)} />
          <small id="ice-servers-hint" class="muted">
            One per line, such as stun:stun.example.com:3478 or turn:turn.example.com:3478?transport=udp (at most 10). Announced to presence subscribers; none are needed on a LAN. TURN servers are announced only with a TURN secret.
          </small>
        </div>
        <Field
          label={app.turn_secret_set ? 'TURN secret (set; type a new one to replace it)' : 'TURN secret (coturn static-auth-secret)'}
          type="password"
          autocomplete="new-password"
          maxLength={256}
          value={turnSecret}
          onInput={(event) => setTurnSecret(event.currentTarget.value)}
        />
        {app.turn_secret_set && <Checkbox label="Remove the TURN secret" checked={removeTurnSecret} onChange={setRemoveTurnSecret} />}
        <ErrorMessage message={save.error} />
        <StatusMessage message={note} />
        <button type="submit" disabled={save.pending}>
          Save settings
        </button>
      </form>
    </section>
  );
}

const EVENT_TYPES = ['channel_occupied', 'channel_vacated', 'member_added', 'member_removed', 'client_event', 'cache_miss', 'subscription_count'];

export function Webhooks({ app }: { app: AppView }) {
  const path = { app_id: app.app_id };
  const hooks = useResource(() => unwrap(api.GET('/v1/apps/{app_id}/webhooks', { params: { path } })), [app.app_id]);
  const deliveries = useResource(() => unwrap(api.GET('/v1/apps/{app_id}/webhooks/deliveries', { params: { path, query: { limit: 50 } } })), [app.app_id]);
  const [url, setUrl] = useState('');
  const [types, setTypes] = useState<string[]>([]);
  const [batching, setBatching] = useState(false);
  const add = useAction(async () => {
    await unwrap(api.POST('/v1/apps/{app_id}/webhooks', { params: { path }, body: { url, event_types: types, batching } }));
    setUrl('');
    hooks.reload();
  });
  const remove = useAction(async (id: string) => {
    await unwrap(api.DELETE('/v1/apps/{app_id}/webhooks/{id}', { params: { path: { ...path, id } } }));
    hooks.reload();
  });
  return (
    <section class="card">
      <h2>Webhooks</h2>
      <Loaded resource={hooks} what="webhooks" isEmpty={(list) => list.length === 0} empty={<p>No webhooks yet.</p>}>
        {(list) => (
          <ul class="plain webhooks">
            {list.map((hook) => (
              <li key={hook.id}>
                <code>{hook.url}</code> <span class="muted">{hook.event_types.length ? hook.event_types.join(', ') : 'all events'}{hook.batching ? ', batched' : ''}</span>{' '}
                <ConfirmAction label="Remove webhook" context={hook.url} confirmLabel={`Remove ${hook.url}`} warning="Events stop going to this URL." pending={remove.pending} onConfirm={() => remove.run(hook.id)} />
              </li>
            ))}
          </ul>
        )}
      </Loaded>
      <form onSubmit={(event) => (event.preventDefault(), add.run())}>
        <Field label="Webhook URL" type="url" required maxLength={2048} placeholder="https://example.com/pusher/webhooks" value={url} onInput={(event) => setUrl(event.currentTarget.value)} />
        <fieldset>
          <legend>Events (none ticked: all)</legend>
          {EVENT_TYPES.map((type) => (
            <Checkbox key={type} label={type} checked={types.includes(type)} onChange={(on) => setTypes((now) => (on ? [...now, type] : now.filter((t) => t !== type)))} />
          ))}
        </fieldset>
        <Checkbox label="Batch up to 100 events per request" checked={batching} onChange={setBatching} />
        <ErrorMessage message={add.error ?? remove.error} />
        <button type="submit" disabled={add.pending}>
          Add webhook
        </button>
      </form>
      <h3>Delivery log</h3>
      <button type="button" onClick={deliveries.reload}>
        Refresh the delivery log
      </button>
      <Loaded resource={deliveries} what="deliveries" isEmpty={(list) => list.length === 0} empty={<p>No deliveries yet.</p>}>
        {(list) => (
          <div class="table-wrap">
            <table>
              <caption class="visually-hidden">Webhook deliveries, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">When</th>
                  <th scope="col">Status</th>
                  <th scope="col">HTTP</th>
                  <th scope="col">Events</th>
                  <th scope="col">Attempt</th>
                  <th scope="col">Error</th>
                </tr>
              </thead>
              <tbody>
                {list.map((delivery) => (
                  <tr key={delivery.id}>
                    <td>{formatTime(delivery.created_at)}</td>
                    <td>{delivery.status}</td>
                    <td>{delivery.http_status ?? ''}</td>
                    <td>{delivery.event_count}</td>
                    <td>{delivery.attempt}</td>
                    <td>{delivery.error ?? ''}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </Loaded>
    </section>
  );
}
