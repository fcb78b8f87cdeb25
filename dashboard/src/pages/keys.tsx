// An app's keys (copy, reveal the secret, rotate, revoke) and ready-to-paste snippets.
import { useState } from 'preact/hooks';
import { api, unwrap } from '../api/client';
import { ConfirmAction, CopyButton, ErrorMessage, formatTime, Loaded, StatusMessage, useAction, useResource } from '../components';
import type { AppView } from './app-detail';
import { snippets, type Endpoint } from './snippets';

export function endpointOfPage(): Endpoint {
  const useTLS = location.protocol === 'https:';
  const port = Number(location.port) || (useTLS ? 443 : 80);
  return { host: location.hostname, port, useTLS };
}

export function Keys({ app }: { app: AppView }) {
  const path = { app_id: app.app_id };
  const keys = useResource(() => unwrap(api.GET('/v1/apps/{app_id}/keys', { params: { path } })), [app.app_id]);
  const [secrets, setSecrets] = useState<Record<string, string>>({});
  const [note, setNote] = useState<string>();
  const reveal = useAction(async (key: string) => {
    const { secret } = await unwrap(api.GET('/v1/apps/{app_id}/keys/{key}/secret', { params: { path: { ...path, key } } }));
    setSecrets((known) => ({ ...known, [key]: secret }));
  });
  const create = useAction(async () => {
    const created = await unwrap(api.POST('/v1/apps/{app_id}/keys', { params: { path } }));
    setSecrets((known) => ({ ...known, [created.key]: created.secret }));
    setNote(`New key ${created.key} created.`);
    keys.reload();
  });
  // Rotate: a new key and the old one's revocation in one transaction on the server, so the
  // app is never without a key and the old key's connections close at once.
  const rotate = useAction(async (old: string) => {
    const created = await unwrap(api.POST('/v1/apps/{app_id}/keys/{key}/rotate', { params: { path: { ...path, key: old } } }));
    setSecrets((known) => ({ ...known, [created.key]: created.secret }));
    setNote(`Key ${old} rotated: use ${created.key} from now on; ${old} is refused.`);
    keys.reload();
  });
  const revoke = useAction(async (key: string) => {
    await unwrap(api.POST('/v1/apps/{app_id}/keys/{key}/revoke', { params: { path: { ...path, key } } }));
    setNote(`Key ${key} revoked.`);
    keys.reload();
  });
  const failure = reveal.error ?? create.error ?? rotate.error ?? revoke.error;
  const busy = create.pending || rotate.pending || revoke.pending;
  return (
    <>
      <section class="card">
        <h2>Keys</h2>
        <p class="muted">
          App ID <code>{app.app_id}</code> <CopyButton text={app.app_id} label="Copy app ID" />
        </p>
        <Loaded resource={keys} what="keys" isEmpty={(list) => list.length === 0} empty={<p>This app has no keys.</p>}>
          {(list) => (
            <ul class="keys">
              {list.map((entry) => (
                <li key={entry.key} class={entry.revoked_at ? 'revoked' : ''}>
                  <p>
                    <code data-testid="app-key">{entry.key}</code> {entry.revoked_at ? <span class="badge">revoked {formatTime(entry.revoked_at)}</span> : <CopyButton text={entry.key} label="Copy key" />}
                  </p>
                  {!entry.revoked_at && (
                    <p class="actions">
                      {secrets[entry.key] ? (
                        <>
                          Secret <code class="secret">{secrets[entry.key]}</code> <CopyButton text={secrets[entry.key]} label="Copy secret" />
                        </>
                      ) : (
                        <button type="button" onClick={() => reveal.run(entry.key)} disabled={reveal.pending}>
                          Reveal secret
                        </button>
                      )}
                      <button type="button" onClick={() => rotate.run(entry.key)} disabled={busy}>
                        Rotate <span class="visually-hidden">key {entry.key}</span>
                      </button>
                      <ConfirmAction
                        label="Revoke"
                        context={`key ${entry.key}`}
                        confirmLabel={`Revoke ${entry.key} now`}
                        warning={`Connections on ${entry.key} close and new ones are refused; server code signing with it fails.`}
                        pending={revoke.pending}
                        onConfirm={() => revoke.run(entry.key)}
                      />
                    </p>
                  )}
                  <p class="muted">created {formatTime(entry.created_at)}</p>
                </li>
              ))}
            </ul>
          )}
        </Loaded>
        <button type="button" onClick={() => create.run()} disabled={busy}>
          Add a key
        </button>
        <ErrorMessage message={failure} />
        <StatusMessage message={note} />
      </section>
      <Loaded resource={keys} what="snippets">
        {(list) => {
          const live = list.find((entry) => !entry.revoked_at);
          return live ? <Snippets appId={app.app_id} keyName={live.key} secret={secrets[live.key]} /> : null;
        }}
      </Loaded>
    </>
  );
}

function Snippets({ appId, keyName, secret }: { appId: string; keyName: string; secret?: string }) {
  const all = snippets({ appId, key: keyName, secret: secret ?? 'YOUR_APP_SECRET', endpoint: endpointOfPage() });
  const [chosen, setChosen] = useState(all[0].id);
  const shown = all.find((snippet) => snippet.id === chosen) ?? all[0];
  return (
    <section class="card">
      <h2>Snippets</h2>
      <p class="muted">{secret ? 'With this key and its secret.' : 'Reveal the secret above to fill it into the server snippets.'}</p>
      <div role="group" aria-label="Library" class="segmented">
        {all.map((snippet) => (
          <button key={snippet.id} type="button" aria-pressed={snippet.id === chosen} onClick={() => setChosen(snippet.id)}>
            {snippet.label}
          </button>
        ))}
      </div>
      <pre tabIndex={0} aria-label={`${shown.label} snippet`}>
        <code>{shown.code}</code>
      </pre>
      <CopyButton text={shown.code} label={`Copy the ${shown.label} snippet`} />
    </section>
  );
}
