// The account's apps: the list and the form that creates one.
import { useState } from 'preact/hooks';
import { api, unwrap } from '../api/client';
import { CopyButton, ErrorMessage, Field, formatTime, Loaded, useAction, useResource } from '../components';
import { Link } from '../router';

export function AppList() {
  const apps = useResource(() => unwrap(api.GET('/v1/apps')), []);
  const [name, setName] = useState('');
  const [created, setCreated] = useState<{ app_id: string; name: string; key: string; secret: string }>();
  const create = useAction(async () => {
    const app = await unwrap(api.POST('/v1/apps', { body: { name } }));
    setCreated(app);
    setName('');
    apps.reload();
  });
  return (
    <section>
      <h1>Apps</h1>
      <form class="card inline" onSubmit={(event) => (event.preventDefault(), create.run())}>
        <Field label="New app name" required maxLength={100} value={name} onInput={(event) => setName(event.currentTarget.value)} />
        <button type="submit" class="primary" disabled={create.pending}>
          Create app
        </button>
        <ErrorMessage message={create.error} />
      </form>
      {created && (
        <div class="card secret-box" role="status">
          <p>
            <strong>{created.name}</strong> is ready. Its secret is shown once here (you can reveal it again on the app's page).
          </p>
          <dl class="pairs">
            <dt>App ID</dt>
            <dd>
              <code>{created.app_id}</code>
            </dd>
            <dt>Key</dt>
            <dd>
              <code data-testid="created-key">{created.key}</code> <CopyButton text={created.key} label="Copy key" />
            </dd>
            <dt>Secret</dt>
            <dd>
              <code class="secret">{created.secret}</code> <CopyButton text={created.secret} label="Copy secret" />
            </dd>
          </dl>
          <Link href={`/applications/${created.app_id}`}>Open {created.name}</Link>
        </div>
      )}
      <Loaded resource={apps} what="your apps" isEmpty={(list) => list.length === 0} empty={<p>No apps yet: name your first one above.</p>}>
        {(list) => (
          <ul class="app-list">
            {list.map((app) => (
              <li key={app.app_id} class="card">
                <h2>
                  <Link href={`/applications/${app.app_id}`}>{app.name}</Link>
                </h2>
                <p class="muted">
                  ID <code>{app.app_id}</code> · plan {app.plan} · {app.enabled ? 'enabled' : 'disabled'} · created {formatTime(app.created_at)}
                </p>
                <p>
                  <Link href={`/applications/${app.app_id}/usage`}>Usage</Link> · <Link href={`/applications/${app.app_id}/console`}>Debug console</Link>
                </p>
              </li>
            ))}
          </ul>
        )}
      </Loaded>
    </section>
  );
}
