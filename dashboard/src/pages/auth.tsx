// Sign up (which logs the new owner straight in) and log in.
import { useState } from 'preact/hooks';
import { api, unwrap } from '../api/client';
import { ErrorMessage, Field, useAction } from '../components';
import { Link, navigate } from '../router';
import { useSession } from '../session';

/** Only our own paths, so a crafted `?next=https://elsewhere` cannot send the user away. */
function safeNext(next: string | null | undefined): string {
  return next && next.startsWith('/') && !next.startsWith('//') ? next : '/applications';
}

function CredentialsForm({ submitLabel, onSubmit, newPassword }: { submitLabel: string; onSubmit: (email: string, password: string) => Promise<unknown>; newPassword?: boolean }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const action = useAction(onSubmit);
  return (
    <form
      class="card narrow"
      onSubmit={(event) => {
        event.preventDefault();
        action.run(email, password);
      }}
    >
      <Field label="Email" type="email" name="email" autoComplete="email" required value={email} onInput={(event) => setEmail(event.currentTarget.value)} />
      <Field
        label="Password"
        type="password"
        name="password"
        autoComplete={newPassword ? 'new-password' : 'current-password'}
        required
        minLength={newPassword ? 10 : undefined}
        hint={newPassword ? 'At least 10 characters.' : undefined}
        value={password}
        onInput={(event) => setPassword(event.currentTarget.value)}
      />
      <ErrorMessage message={action.error} />
      <button type="submit" class="primary" disabled={action.pending}>
        {action.pending ? 'Please wait…' : submitLabel}
      </button>
    </form>
  );
}

export function SignUp() {
  const session = useSession();
  const signUp = async (email: string, password: string) => {
    await unwrap(api.POST('/v1/signup', { body: { email, password } }));
    await session.refresh();
    navigate('/applications', { replace: true });
  };
  return (
    <section>
      <h1>Create your account</h1>
      <p>Free plans work at once; paid plans need a verified email.</p>
      <CredentialsForm submitLabel="Sign up" onSubmit={signUp} newPassword />
      <p>
        Already have an account? <Link href="/login">Log in</Link>
      </p>
    </section>
  );
}

export function LogIn({ next }: { next: string | null }) {
  const session = useSession();
  const logIn = async (email: string, password: string) => {
    await unwrap(api.POST('/v1/login', { body: { email, password } }));
    await session.refresh();
    navigate(safeNext(next), { replace: true });
  };
  return (
    <section>
      <h1>Log in</h1>
      <CredentialsForm submitLabel="Log in" onSubmit={logIn} />
      <p>
        New here? <Link href="/signup">Create an account</Link> · <Link href="/reset-password">Forgot your password?</Link>
      </p>
    </section>
  );
}
