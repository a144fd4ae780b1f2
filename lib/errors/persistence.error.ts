import { PersistenceErrorCode } from './persistence-error-code.enum';

/** What the store was doing when an error happened. */
export type PersistenceOperation =
  | 'init'
  | 'save'
  | 'checkpoint'
  | 'load'
  | 'clear'
  | 'backup'
  | 'restore'
  | 'auto-save'
  | 'shutdown';

/** Where an error happened; every field is optional. */
export interface PersistenceErrorContext {
  operation?: PersistenceOperation;
  /** Name of the adapter (collection) involved. */
  adapter?: string;
  /** Id of the item involved. */
  itemId?: string;
  /** File or folder involved. */
  path?: string;
  /** The underlying error. */
  cause?: unknown;
}

/**
 * The one error class the library throws. `code` is stable; `message` says what happened and what to do.
 */
export class PersistenceError extends Error {
  override readonly name = 'PersistenceError';
  readonly operation?: PersistenceOperation;
  readonly adapter?: string;
  readonly itemId?: string;
  readonly path?: string;

  constructor(
    readonly code: PersistenceErrorCode,
    message: string,
    context: PersistenceErrorContext = {},
  ) {
    super(message, context.cause === undefined ? undefined : { cause: context.cause });
    this.operation = context.operation;
    this.adapter = context.adapter;
    this.itemId = context.itemId;
    this.path = context.path;
  }
}

/** True when `error` is a {@link PersistenceError}, optionally with the given code. */
export function isPersistenceError(
  error: unknown,
  code?: PersistenceErrorCode,
): error is PersistenceError {
  return error instanceof PersistenceError && (code === undefined || error.code === code);
}
