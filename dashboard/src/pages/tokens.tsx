// The one-time-token pages (the mail's links are `/verify-email?token=…` and
// `/reset-password?token=…`): email verification and password reset.
import { useEffect, useState } from 'preact/hooks';
import { api, unwrap } from '../api/client';
import { ErrorMessage, Field, StatusMessage, useAction } from '../components';
import { Link } from '../router';
import { useSession } from '../session';

export function VerifyEmail({ token }: { token: string | null }) {
  const session = useSession();
  const [done, setDone] = useState<string>();
  const verify = useAction(async (value: string) => {
    await unwrap(api.POST('/v1/account/verify', { body: { token: value } }));
    await session.refresh();
    setDone('Your email is verified.');
  });
  const resend = useAction(async () => {
    await unwrap(api.POST('/v1/account/verification'));
    setDone('A new verification email is on its way.');
  });
  useEffect(() => {
    if (token) verify.run(token);
  }, [token]);
  const verified = session.me?.email_verified === true;
  return (
    <section>
      <h1>Verify your email</h1>
      {token ? (
        !done && !verify.error && <p>Checking your verification link…</p>
      ) : verified ? (
        <p>Your email {session.me?.email} is verified.</p>
      ) : (
        <p>We sent a link to your email. Open it in this browser to verify the address.</p>
      )}
      <StatusMessage message={done} />
      <ErrorMessage message={verify.error ?? resend.error} />
      {session.me && !verified && (
        <button type="button" onClick={() => resend.run()} disabled={resend.pending}>
          Send the link again
        </button>
      )}
      <p>
        <Link href={session.me ? '/applications' : '/login'}>{session.me ? 'Back to your apps' : 'Log in'}</Link>
      </p>
    </section>
  );
}

export function RequestReset({ token }: { token: string | null }) {
  const session = useSession();
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [done, setDone] = useState<string>();
  const request = useAction(async () => {
    await unwrap(api.POST('/v1/account/password-reset', { body: { email } }));
    setDone('If an account has this email, a reset link is on its way.');
  });
  const confirm = useAction(async () => {
    await unwrap(api.POST('/v1/account/password-reset/confirm', { body: { token: token ?? '', password } }));
    setPassword('');
    // A reset ends every session of the account, this browser's too.
    await session.refresh();
    setDone('Your password is changed. You can log in with it now.');
  });
  return (
    <section>
      <h1>Reset your password</h1>
      {!token && (
        <form class="card narrow" onSubmit={(event) => (event.preventDefault(), request.run())}>
          <Field label="Email" type="email" autoComplete="email" required value={email} onInput={(event) => setEmail(event.currentTarget.value)} />
          <ErrorMessage message={request.error} />
          <button type="submit" class="primary" disabled={request.pending}>
            Send a reset link
          </button>
        </form>
      )}
      {token && (
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
