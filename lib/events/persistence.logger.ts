import { Logger, LoggerService } from '@nestjs/common';
import { PERSISTENCE_LOGGER_CONTEXT } from '../persistence.constants';

/** The `logger` option: a Nest `LoggerService`, or `false` for no log lines at all. */
export type PersistenceLoggerOption = LoggerService | false;

/** Whether `value` can be the `logger` option (checked by `resolveOptions`). */
export function isLoggerOption(value: unknown): value is PersistenceLoggerOption | undefined {
  if (value === undefined || value === false) return true;
  const logger = value as Record<string, unknown> | null;
  return (
    typeof logger === 'object' &&
    logger !== null &&
    ['log', 'warn', 'error'].every((method) => typeof logger[method] === 'function')
  );
}

/**
 * The one way the library writes a log line: every class of a store logs through its store's
 * instance, which hands each line (with the context `'Persistence'`) to the `logger` option, Nest's
 * `Logger` by default, or drops it (`logger: false`). The target is set once the options are known;
 * a logger that throws never reaches the save or the load that logged.
 */
export class PersistenceLogger {
  private target: LoggerService | undefined = new Logger(PERSISTENCE_LOGGER_CONTEXT);

  /** Switches to the `logger` option (`undefined`: Nest's `Logger`). */
  use(option: PersistenceLoggerOption | undefined): void {
    this.target = option === false ? undefined : (option ?? new Logger(PERSISTENCE_LOGGER_CONTEXT));
  }

  log(message: string): void {
    this.write('log', message);
  }

  warn(message: string): void {
    this.write('warn', message);
  }

  error(message: string): void {
    this.write('error', message);
  }

  debug(message: string): void {
    this.write('debug', message);
  }

  private write(level: 'log' | 'warn' | 'error' | 'debug', message: string): void {
    const target = this.target as Record<string, unknown> | undefined;
    const write = target?.[level];
    if (typeof write !== 'function') return;
    try {
      (write as (message: string, context: string) => unknown).call(
        target,
        message,
        PERSISTENCE_LOGGER_CONTEXT,
      );
    } catch {
      // A broken logger must not break persistence; there is nowhere left to say so.
    }
  }
}
