// The account: change password, API tokens (create, revoke), the audit log.
import { useState } from 'preact/hooks';
import { api, unwrap } from '../api/client';
import { CopyButton, ErrorMessage, Field, formatTime, Loaded, StatusMessage, useAction, useResource } from '../components';
import { useSession } from '../session';

export function Account() {
  const { me } = useSession();
  return (
    <section>
      <h1>Account</h1>
      <p>
        Signed in as <strong>{me?.email}</strong>
        {me && (me.email_verified ? ' (verified)' : ' (not verified yet)')}
      </p>
      <ChangePassword />
      <ApiTokens />
      <AuditLog />
    </section>
  );
}

function ChangePassword() {
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [done, setDone] = useState<string>();
  const change = useAction(async () => {
    setDone(undefined);
    await unwrap(api.PUT('/v1/account/password', { body: { current_password: current, new_password: next } }));
    setCurrent('');
    setNext('');
    setDone('Password changed. Your other sessions have ended.');
  });
  return (
    <section class="card">
      <h2>Password</h2>
      <form onSubmit={(event) => (event.preventDefault(), change.run())}>
        <Field label="Current password" type="password" autoComplete="current-password" required value={current} onInput={(event) => setCurrent(event.currentTarget.value)} />
        <Field label="New password" type="password" autoComplete="new-password" minLength={10} required hint="At least 10 characters." value={next} onInput={(event) => setNext(event.currentTarget.value)} />
        <ErrorMessage message={change.error} />
        <StatusMessage message={done} />
        <button type="submit" disabled={change.pending}>
          Change password
        </button>
      </form>
    </section>
  );
}

function ApiTokens() {
  const tokens = useResource(() => unwrap(api.GET('/v1/tokens')), []);
  const [name, setName] = useState('');
  const [created, setCreated] = useState<{ name: string; token: string }>();
  const create = useAction(async () => {
    const token = await unwrap(api.POST('/v1/tokens', { body: { name } }));
    setCreated(token);
    setName('');
    tokens.reload();
  });
  const revoke = useAction(async (id: string) => {
    await unwrap(api.DELETE('/v1/tokens/{token_id}', { params: { path: { token_id: id } } }));
    tokens.reload();
  });
  return (
    <section class="card">
      <h2>API tokens</h2>
      <p class="muted">For scripts calling /v1 with <code>Authorization: Bearer …</code>.</p>
      <form class="inline" onSubmit={(event) => (event.preventDefault(), create.run())}>
        <Field label="Token name" required maxLength={100} value={name} onInput={(event) => setName(event.currentTarget.value)} />
        <button type="submit" disabled={create.pending}>
          Create token
        </button>
      </form>
      <ErrorMessage message={create.error ?? revoke.error} />
      {created && (
        <div class="secret-box" role="status">
          <p>
            Token <strong>{created.name}</strong>, shown this once:
          </p>
          <code class="secret">{created.token}</code> <CopyButton text={created.token} label="Copy token" />
        </div>
      )}
      <Loaded resource={tokens} what="tokens" isEmpty={(list) => list.length === 0} empty={<p>No API tokens yet.</p>}>
        {(list) => (
          <div class="table-wrap">
            <table>
              <caption class="visually-hidden">API tokens</caption>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Created</th>
                  <th scope="col">Status</th>
                  <th scope="col">
                    <span class="visually-hidden">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {list.map((token) => (
                  <tr key={token.id}>
                    <td>{token.name}</td>
                    <td>{formatTime(token.created_at)}</td>
                    <td>{token.revoked_at ? `revoked ${formatTime(token.revoked_at)}` : 'active'}</td>
                    <td>
                      {!token.revoked_at && (
                        <button type="button" class="danger" disabled={revoke.pending} onClick={() => revoke.run(token.id)}>
                          Revoke <span class="visually-hidden">{token.name}</span>
                        </button>
                      )}
                    </td>
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

function AuditLog() {
  const entries = useResource(() => unwrap(api.GET('/v1/audit', { params: { query: { limit: 50 } } })), []);
  return (
    <section class="card">
      <h2>Audit log</h2>
      <Loaded resource={entries} what="the audit log" isEmpty={(list) => list.length === 0} empty={<p>Nothing recorded yet.</p>}>
        {(list) => (
          <div class="table-wrap">
            <table>
              <caption class="visually-hidden">Audit log, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">When</th>
                  <th scope="col">Action</th>
                  <th scope="col">Subject</th>
                  <th scope="col">Details</th>
                </tr>
              </thead>
              <tbody>
                {list.map((entry) => (
                  <tr key={entry.id}>
                    <td>{formatTime(entry.created_at)}</td>
                    <td>{entry.action}</td>
                    <td>
                      <code>{entry.subject}</code>
                    </td>
                    <td>
                      <code>{JSON.stringify(entry.details)}</code>
                    </td>
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
