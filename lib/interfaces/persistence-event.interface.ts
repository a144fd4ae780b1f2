import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceOperation } from '../errors/persistence.error';
import {
  LoadMetadata,
  PersistenceConflictEvent,
  PersistenceErrorEvent,
  SaveMetadata,
} from './persistence-metadata.interface';

/**
 * One notification of `PersistenceStore.events$`: the same payloads as `@OnEvent` and the callbacks,
 * tagged by `type` so that a `switch` or `filter()` narrows the payload.
 *
 * @example
 * ```ts
 * store.events$
 *   .pipe(filter((event) => event.type === 'error'))
 *   .subscribe(({ payload }) => alert(payload.error.code));
 * ```
 */
export type PersistenceEvent =
  | { readonly type: 'saved'; readonly payload: SaveMetadata }
  | { readonly type: 'loaded'; readonly payload: LoadMetadata }
  | { readonly type: 'error'; readonly payload: PersistenceErrorEvent }
  | { readonly type: 'conflict'; readonly payload: PersistenceConflictEvent };

/** The last error the store met, as kept for health checks (`PersistenceStore.getLastError()`). */
export interface PersistenceErrorRecord {
  code: PersistenceErrorCode;
  message: string;
  /** What the store was doing. */
  operation: PersistenceOperation;
  adapter?: string;
  itemId?: string;
  path?: string;
  /** When the error was reported. */
  timestamp: Date;
}
