// Who is logged in: `/v1/me`, read once at start and after login, sign-up and logout.
import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import type { Schemas } from './api/client';

/** `/v1/me`, plus `email_verified` once the server reports it (issue 10's mailer). */
export type Me = Schemas['AccountView'] & { email_verified?: boolean };

export interface Session {
  me: Me | null;
  /** Reads `/v1/me` again (null when logged out). */
  refresh: () => Promise<Me | null>;
}

export const SessionContext = createContext<Session>({ me: null, refresh: async () => null });

export function useSession(): Session {
  return useContext(SessionContext);
}
