// The shell: who is logged in, the navigation, and the route table.
import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, setUnauthenticatedHook } from './api/client';
import { Link, match, navigate, useLocation } from './router';
import { type Me, SessionContext } from './session';
import { LogIn, SignUp } from './pages/auth';
import { RequestReset, VerifyEmail } from './pages/tokens';
import { Account } from './pages/account';
import { AppList } from './pages/apps';
import { AppDetail } from './pages/app-detail';
import { Usage } from './pages/usage';
import { Console } from './pages/console';
import { Plans } from './pages/plans';
import { Billing } from './pages/billing';

/** Pages anyone may open; every other page needs a session. */
const PUBLIC_PATHS = ['/login', '/signup', '/verify-email', '/reset-password'];

async function readMe(): Promise<Me | null> {
  try {
    const { data, response } = await api.GET('/v1/me');
    return response.ok && data ? data : null;
  } catch {
    return null;
  }
}

export function App() {
  const url = useLocation();
  const [me, setMe] = useState<Me | null | undefined>(undefined);
  const refresh = async () => {
    const current = await readMe();
    setMe(current);
    return current;
  };
  useEffect(() => {
    refresh();
    setUnauthenticatedHook(() => setMe(null));
  }, []);

  const isPublic = PUBLIC_PATHS.includes(url.pathname);
  useEffect(() => {
    if (me === null && !isPublic) navigate(`/login?next=${encodeURIComponent(url.pathname + url.search)}`, { replace: true });
    if (me && (url.pathname === '/' || url.pathname === '/login' || url.pathname === '/signup')) navigate('/applications', { replace: true });
  }, [me, url.pathname]);

  if (me === undefined) return <p role="status" class="muted page">Loading…</p>;
  return (
    <SessionContext.Provider value={{ me, refresh }}>
      <Shell me={me} pathname={url.pathname}>
        <Page url={url} me={me} />
      </Shell>
    </SessionContext.Provider>
  );
}

function Page({ url, me }: { url: URL; me: Me | null }) {
  const path = url.pathname;
  if (path === '/login') return <LogIn next={url.searchParams.get('next')} />;
  if (path === '/signup') return <SignUp />;
  if (path === '/verify-email') return <VerifyEmail token={url.searchParams.get('token')} />;
  if (path === '/reset-password') return <RequestReset token={url.searchParams.get('token')} />;
  if (!me) return null;
  if (path === '/account') return <Account />;
  if (path === '/applications') return <AppList />;
  if (path === '/plans') return <Plans />;
  if (path === '/billing') return <Billing checkout={url.searchParams.get('checkout')} />;
  let params;
  if ((params = match('/applications/:id', path))) return <AppDetail appId={params.id} />;
  if ((params = match('/applications/:id/usage', path))) return <Usage appId={params.id} />;
  if ((params = match('/applications/:id/console', path))) return <Console appId={params.id} />;
  return (
    <section>
      <h1>Page not found</h1>
      <p>
        There is no page at this address. <Link href="/applications">Go to your apps</Link>.
      </p>
    </section>
  );
}

function Shell({ me, pathname, children }: { me: Me | null; pathname: string; children: ComponentChildren }) {
  const main = useRef<HTMLElement>(null);
  // After a client-side navigation, focus moves to the new page, as a page load would.
  useEffect(() => {
    main.current?.focus();
  }, [pathname]);
  const logOut = async () => {
    await api.POST('/v1/logout').catch(() => undefined);
    navigate('/login', { replace: true });
    location.reload();
  };
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <Link href={me ? '/applications' : '/login'} class="brand">
          Switchboard
        </Link>
        <nav aria-label="Main">
          {me ? (
            <>
              <Link href="/applications">Apps</Link>
              <Link href="/plans">Plans</Link>
              <Link href="/billing">Billing</Link>
              <Link href="/account">Account</Link>
              <button type="button" class="link" onClick={logOut}>
                Log out
              </button>
            </>
          ) : (
            <>
              <Link href="/login">Log in</Link>
              <Link href="/signup">Sign up</Link>
            </>
          )}
        </nav>
      </header>
      {me && !me.email_verified && (
        <p class="banner" role="status">
          Your email {me.email} is not verified yet: free plans work meanwhile; paid plans need it. <Link href="/verify-email">Verify it</Link>.
        </p>
      )}
      <main id="main" ref={main} tabIndex={-1} class="page">
        {children}
      </main>
    </>
  );
}
