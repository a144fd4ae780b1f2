/** Well-known session states; any other string is allowed too. */
export type SessionStatus = 'active' | 'paused' | 'completed' | 'failed' | (string & {});

/** A session, as `SessionManager` hands it out: read-only, replaced on every change. */
export interface Session {
  readonly id: string;
  readonly status: SessionStatus;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly metadata: Readonly<Record<string, unknown>>;
}

/** What `SessionManager.create()` takes. */
export interface CreateSessionInput {
  /** @default a random UUID */
  id?: string;
  /** @default 'active' */
  status?: SessionStatus;
  /** @default {} */
  metadata?: Record<string, unknown>;
}

/** What `SessionManager.update()` takes; `metadata` replaces the old metadata. */
export interface UpdateSessionInput {
  status?: SessionStatus;
  metadata?: Record<string, unknown>;
}
