/** One entry of a focus chain: what the application is attending to. */
export interface Focus {
  readonly id: string;
  /** A kind of your choosing, e.g. `'file'`, `'task'`, `'symbol'`. */
  readonly type: string;
  /** What is in focus, e.g. a path or an id. */
  readonly target: string;
  readonly context: Readonly<Record<string, unknown>>;
  readonly createdAt: Date;
}

/** A stack of focus entries, the last one current, as `FocusManager` hands it out (read-only). */
export interface FocusChain {
  readonly id: string;
  readonly name?: string;
  readonly items: readonly Focus[];
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly metadata: Readonly<Record<string, unknown>>;
}

/** What `FocusManager.createChain()` takes. */
export interface CreateFocusChainInput {
  /** @default a random UUID */
  id?: string;
  name?: string;
  /** @default {} */
  metadata?: Record<string, unknown>;
}

/** What `FocusManager.pushFocus()` takes. */
export interface PushFocusInput {
  /** @default a random UUID */
  id?: string;
  type: string;
  target: string;
  /** @default {} */
  context?: Record<string, unknown>;
}
