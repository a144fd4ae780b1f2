import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError } from '../errors/persistence.error';
import type {
  CommitOptions,
  ConflictPolicy,
  DriverChange,
} from '../interfaces/storage-driver.interface';
import {
  duplicateChange,
  invalidDriverOption,
  storageRefused,
  storageUnavailable,
} from '../persistence.messages';

/* What every StorageDriver checks the same way: its options and a commit's changes. */

/** A typed error for a driver option (or argument) that is not valid: which, what came, the fix. */
export function invalidDriverArgument(
  driver: string,
  option: string,
  got: unknown,
  fix: string,
): PersistenceError {
  return new PersistenceError(
    PersistenceErrorCode.InvalidOptions,
    invalidDriverOption(driver, option, got, fix),
    { operation: 'init' },
  );
}

/**
 * Refuses a commit whose options or changes are malformed (or that names one item twice), before
 * anything is sent. Returns the conflict policy.
 */
export function checkDriverCommit(
  driver: string,
  changes: readonly DriverChange[],
  options: CommitOptions,
): ConflictPolicy {
  const policy = (options as CommitOptions | undefined)?.conflicts;
  if (policy !== 'last-write-wins' && policy !== 'reject') {
    throw invalidDriverArgument(driver, 'conflicts', policy, "Give 'last-write-wins' or 'reject'.");
  }
  checkDriverChanges(driver, changes);
  return policy;
}

/** Refuses a lease's name or time to live before anything is sent (`acquireLease()` of every driver). */
export function checkLeaseArguments(driver: string, name: unknown, ttlMs: unknown): void {
  if (typeof name !== 'string' || name.length === 0) {
    throw invalidDriverArgument(
      driver,
      'lease name',
      name,
      "Give a non-empty string, e.g. 'backup'.",
    );
  }
  if (!Number.isSafeInteger(ttlMs) || (ttlMs as number) <= 0) {
    throw invalidDriverArgument(
      driver,
      'lease ttlMs',
      ttlMs,
      'Give a positive integer (milliseconds).',
    );
  }
}

/** Refuses a commit whose changes are malformed or name one item twice, before anything is sent. */
function checkDriverChanges(driver: string, changes: readonly DriverChange[]): void {
  const seen = new Set<string>();
  for (const change of changes) {
    const { collection, id, data, expectedRevision } = change;
    if (typeof collection !== 'string' || collection.length === 0) {
      throw invalidDriverArgument(
        driver,
        'change.collection',
        collection,
        'Give a non-empty string.',
      );
    }
    if (typeof id !== 'string' || id.length === 0) {
      throw invalidDriverArgument(driver, 'change.id', id, 'Give a non-empty string.');
    }
    if (data !== null && !Buffer.isBuffer(data)) {
      throw invalidDriverArgument(
        driver,
        'change.data',
        data,
        'Give a Buffer, or null to remove the item.',
      );
    }
    if (
      expectedRevision !== null &&
      (!Number.isSafeInteger(expectedRevision) || expectedRevision < 0)
    ) {
      throw invalidDriverArgument(
        driver,
        'change.expectedRevision',
        expectedRevision,
        'Give the revision last loaded or written, or null (0) for a new item.',
      );
    }
    const key = `${collection.length}:${collection}:${id}`;
    if (seen.has(key)) {
      throw new PersistenceError(
        PersistenceErrorCode.InvalidInput,
        duplicateChange(collection, id),
        { operation: 'save', adapter: collection, itemId: id },
      );
    }
    seen.add(key);
  }
}

/**
 * Resolves when `ready` does; rejects with `timedOut()` once `ms` have passed first (the timer is
 * cleared either way). For the drivers' `watchReady()`: a subscription that never becomes active.
 */
export async function readyWithin<T>(
  ready: Promise<T>,
  ms: number,
  timedOut: () => Error,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(timedOut()), ms);
  });
  try {
    return await Promise.race([ready, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A driver's failure as the store's typed error: `retryable` (the storage did not answer: try again
 * later) or refused (it answered no). `operation` is the driver call, for the message.
 */
export function storageError(
  retryable: boolean,
  location: string,
  operation: string,
  reason: string,
  cause: unknown,
): PersistenceError {
  const operationName = operation === 'open' ? 'init' : operation === 'commit' ? 'save' : 'load';
  return retryable
    ? new PersistenceError(
        PersistenceErrorCode.StorageUnavailable,
        storageUnavailable(location, operation, reason),
        { operation: operationName, path: location, cause },
      )
    : new PersistenceError(
        PersistenceErrorCode.StorageRefused,
        storageRefused(location, operation, reason),
        { operation: operationName, path: location, cause },
      );
}
