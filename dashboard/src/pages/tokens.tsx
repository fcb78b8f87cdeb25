// The one-time-token pages (the mail's links are `/verify-email?token=…` and
// `/reset-password?token=…`): email verification and password reset (api/pending.ts).
import { useEffect, useState } from 'preact/hooks';
import { serverHasPath } from '../api/client';
import { call, PENDING } from '../api/pending';
import { ErrorMessage, Field, StatusMessage, useAction, useResource } from '../components';
import { Link } from '../router';
import { useSession } from '../session';

function NotYet({ what }: { what: string }) {
  return (
    <p class="notice" role="status">
      {what} is not available on this server yet.
    </p>
  );
}

export function VerifyEmail({ token }: { token: string | null }) {
  const session = useSession();
  const available = useResource(() => serverHasPath(PENDING.verifyEmail), []);
  const [done, setDone] = useState<string>();
  const verify = useAction(async (value: string) => {
    await call('POST', PENDING.verifyEmail, { token: value });
    await session.refresh();
    setDone('Your email is verified.');
  });
  const resend = useAction(async () => {
    await call('POST', PENDING.resendVerification);
    setDone('A new verification email is on its way.');
  });
  useEffect(() => {
    if (token && available.data) verify.run(token);
  }, [token, available.data]);
  return (
    <section>
      <h1>Verify your email</h1>
      {available.data === false && <NotYet what="Email verification" />}
      {available.data && (
        <>
          {token ? <p>Checking your verification link…</p> : <p>We sent a link to your email. Open it in this browser to verify the address.</p>}
          <StatusMessage message={done} />
          <ErrorMessage message={verify.error ?? resend.error} />
          {session.me && !token && (
            <button type="button" onClick={() => resend.run()} disabled={resend.pending}>
              Send the link again
            </button>
          )}
        </>
      )}
      <p>
        <Link href="/applications">Back to your apps</Link>
      </p>
    </section>
  );
}

export function RequestReset({ token }: { token: string | null }) {
  const available = useResource(() => serverHasPath(PENDING.requestReset), []);
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [done, setDone] = useState<string>();
  const request = useAction(async () => {
    await call('POST', PENDING.requestReset, { email });
    setDone('If an account has this email, a reset link is on its way.');
  });
  const confirm = useAction(async () => {
    await call('POST', PENDING.confirmReset, { token, password });
    setDone('Your password is changed. You can log in with it now.');
  });
  return (
    <section>
      <h1>Reset your password</h1>
      {available.data === false && <NotYet what="Password reset" />}
      {available.data && !token && (
        <form class="card narrow" onSubmit={(event) => (event.preventDefault(), request.run())}>
          <Field label="Email" type="email" autoComplete="email" required value={email} onInput={(event) => setEmail(event.currentTarget.value)} />
          <ErrorMessage message={request.error} />
          <button type="submit" class="primary" disabled={request.pending}>
            Send a reset link
          </button>
        </form>
      )}
      {available.data && token && (
        <form class="card narrow" onSubmit={(event) => (event.preventDefault(), confirm.run())}>
          <Field label="New password" type="password" autoComplete="new-password" minLength={10} required value={password} onInput={(event) => setPassword(event.currentTarget.value)} />
          <ErrorMessage message={confirm.error} />
          <button type="submit" class="primary" disabled={confirm.pending}>
            Set the new password
          </button>
        </form>
      )}
      <StatusMessage message={done} />
      <p>
        <Link href="/login">Back to log in</Link>
      </p>
    </section>
  );
}
