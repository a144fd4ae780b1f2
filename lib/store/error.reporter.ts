import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError, PersistenceOperation } from '../errors/persistence.error';
import { PersistenceNotifier } from '../events/persistence.notifier';
import * as messages from '../persistence.messages';

/** An I/O failure as a PersistenceError (`IO_FAILED`, saying what could not be done where); kept as is when it is one. */
export function wrapIo(
  operation: PersistenceOperation,
  action: string,
  path: string,
  error: unknown,
): PersistenceError {
  if (error instanceof PersistenceError) return error;
  return new PersistenceError(
    PersistenceErrorCode.IoFailed,
    messages.ioFailed(action, path, messages.reasonOf(error)),
    { operation, path, cause: error },
  );
}

/**
 * Error reporting for the store and its backends: every failure becomes a `persistence.error` event
 * (callbacks, `@OnEvent`, `events$`) and is returned, for `throw errors.report(...)`.
 */
export class ErrorReporter {
  constructor(private readonly notifier: PersistenceNotifier) {}

  /** Reports an error to listeners (and the log) and returns it, for `throw this.report(...)`. */
  report(error: PersistenceError, operation?: PersistenceOperation): PersistenceError {
    return this.emit(error, operation, true);
  }

  /**
   * Reports an error to listeners without a log line of its own: an item a load could not use, which
   * the load's summary counts (one line per kind of problem, see `LoadProblems`).
   */
  quiet(error: PersistenceError, operation?: PersistenceOperation): PersistenceError {
    return this.emit(error, operation, false);
  }

  private emit(
    error: PersistenceError,
    operation: PersistenceOperation | undefined,
    log: boolean,
  ): PersistenceError {
    this.notifier.error(
      {
        error,
        operation: operation ?? error.operation ?? 'save',
        adapter: error.adapter,
        itemId: error.itemId,
        path: error.path,
      },
      log,
    );
    return error;
  }

  /** Runs I/O work; a failure is reported and rethrown as a PersistenceError. */
  async io<T>(
    operation: PersistenceOperation,
    action: string,
    path: string,
    work: () => Promise<T>,
  ): Promise<T> {
    try {
      return await work();
    } catch (error) {
      throw this.report(wrapIo(operation, action, path, error), operation);
    }
  }

  /** An operation the storage driver cannot do (`NOT_SUPPORTED_BY_STORAGE`), reported. */
  notSupported(operation: string, location: string): PersistenceError {
    return this.report(
      new PersistenceError(
        PersistenceErrorCode.NotSupportedByStorage,
        messages.notSupportedByStorage(operation, location),
        { path: location },
      ),
    );
  }

  /** A failure of a save or a load: reported, as a PersistenceError (an I/O one unless it is one). */
  failed(
    operation: PersistenceOperation,
    action: string,
    path: string,
    error: unknown,
  ): PersistenceError {
    return this.report(wrapIo(operation, action, path, error), operation);
  }
}
