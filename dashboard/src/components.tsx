// The few building blocks every page uses, each accessible by construction: labelled inputs,
// real buttons, errors announced (role="alert"), loading and empty states in words.
import type { ComponentChildren, InputHTMLAttributes } from 'preact';
import { useCallback, useEffect, useId, useRef, useState } from 'preact/hooks';

export interface Resource<T> {
  data?: T;
  error?: Error;
  loading: boolean;
  reload: () => void;
}

/** Loads `fetcher()` now and whenever `deps` change; a late answer for old deps is dropped. */
export function useResource<T>(fetcher: () => Promise<T>, deps: unknown[]): Resource<T> {
  const [state, setState] = useState<{ data?: T; error?: Error; loading: boolean }>({ loading: true });
  const [generation, setGeneration] = useState(0);
  useEffect(() => {
    let current = true;
    setState((previous) => ({ data: previous.data, loading: true }));
    fetcher().then(
      (data) => current && setState({ data, loading: false }),
      (error: Error) => current && setState({ error, loading: false }),
    );
    return () => {
      current = false;
    };
  }, [...deps, generation]);
  const reload = useCallback(() => setGeneration((value) => value + 1), []);
  return { ...state, reload };
}

/** Runs an async action once at a time, keeping its error for display. */
export function useAction<A extends unknown[]>(action: (...args: A) => Promise<unknown>) {
  const [pending, setPending] = useState(false);
  const [error, setError] = useState<string>();
  const run = async (...args: A) => {
    setPending(true);
    setError(undefined);
    try {
      await action(...args);
      return true;
    } catch (failure) {
      setError(failure instanceof Error ? failure.message : String(failure));
      return false;
    } finally {
      setPending(false);
    }
  };
  return { run, pending, error, setError };
}

/** Loading, error and empty states of a resource, then `children(data)`. */
export function Loaded<T>({ resource, what, isEmpty, empty, children }: {
  resource: Resource<T>;
  what: string;
  isEmpty?: (data: T) => boolean;
  empty?: ComponentChildren;
  children: (data: T) => ComponentChildren;
}) {
  if (resource.error && resource.data === undefined) {
    return (
      <div class="error-box" role="alert">
        <p>Could not load {what}: {resource.error.message}</p>
        <button type="button" onClick={resource.reload}>Try again</button>
      </div>
    );
  }
  if (resource.data === undefined) return <p class="muted" role="status">Loading {what}…</p>;
  if (isEmpty?.(resource.data)) return <div class="empty">{empty}</div>;
  return <>{children(resource.data)}</>;
}

/** An error announced to screen readers as it appears. */
export function ErrorMessage({ message }: { message?: string }) {
  return (
    <p class="error" role="alert">
      {message ?? ''}
    </p>
  );
}

/** A success or progress note, announced politely. */
export function StatusMessage({ message }: { message?: string }) {
  return (
    <p class="status" role="status">
      {message ?? ''}
    </p>
  );
}

type FieldProps = { label: string; hint?: string } & InputHTMLAttributes;

/** An input with its `<label>` (and hint, tied by aria-describedby). */
export function Field({ label, hint, ...input }: FieldProps) {
  const id = useId();
  return (
    <div class="field">
      <label for={id}>{label}</label>
      <input id={id} aria-describedby={hint ? `${id}-hint` : undefined} {...input} />
      {hint && (
        <small id={`${id}-hint`} class="muted">
          {hint}
        </small>
      )}
    </div>
  );
}

/** A checkbox with its label. */
export function Checkbox({ label, checked, onChange, disabled }: { label: string; checked: boolean; onChange: (checked: boolean) => void; disabled?: boolean }) {
  const id = useId();
  return (
    <div class="checkbox">
      <input id={id} type="checkbox" checked={checked} disabled={disabled} onChange={(event) => onChange(event.currentTarget.checked)} />
      <label for={id}>{label}</label>
    </div>
  );
}

/** Copies `text`; says so (politely) once done, or why it could not. */
export function CopyButton({ text, label }: { text: string; label: string }) {
  const [note, setNote] = useState('');
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setNote('Copied');
    } catch {
      setNote('Could not copy: select the text and copy it by hand');
    }
  };
  return (
    <span class="copy">
      <button type="button" onClick={copy}>
        {label}
      </button>
      <span role="status" class="muted">
        {note}
      </span>
    </span>
  );
}

/**
 * A destructive action behind a confirmation: the first button opens a panel that names the
 * consequence; only its own button acts. Focus moves into the panel and back on cancel.
 */
export function ConfirmAction({ label, context, confirmLabel, warning, onConfirm, pending }: {
  label: string;
  /** Read after the label by screen readers only, when several such buttons share a page. */
  context?: string;
  confirmLabel: string;
  warning: string;
  onConfirm: () => void;
  pending?: boolean;
}) {
  const [open, setOpen] = useState(false);
  const confirm = useRef<HTMLButtonElement>(null);
  const opener = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    if (open) confirm.current?.focus();
  }, [open]);
  if (!open) {
    return (
      <button type="button" class="danger" ref={opener} onClick={() => setOpen(true)}>
        {label}
        {context && <span class="visually-hidden"> {context}</span>}
      </button>
    );
  }
  return (
    <div class="confirm" role="group" aria-label={context ? `${label} ${context}` : label}>
      <p>{warning}</p>
      <button type="button" class="danger" ref={confirm} disabled={pending} onClick={onConfirm}>
        {confirmLabel}
      </button>
      <button type="button" onClick={() => setOpen(false)}>
        Cancel
      </button>
    </div>
  );
}

export function formatTime(iso: string | null | undefined): string {
  if (!iso) return '';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

export function formatNumber(value: number): string {
  return value.toLocaleString('en');
}
