// Who is logged in: `/v1/me`, read once at start and after login, sign-up and logout.
import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import type { Schemas } from './api/client';

/** `/v1/me`: who is signed in, and whether their email is verified. */
export type Me = Schemas['AccountView'];

export interface Session {
  me: Me | null;
  /** Reads `/v1/me` again (null when logged out). */
  refresh: () => Promise<Me | null>;
}

export const SessionContext = createContext<Session>({ me: null, refresh: async () => null });

export function useSession(): Session {
  return useContext(SessionContext);
}
