import { AsyncLocalStorage } from 'node:async_hooks';
import { PersistenceErrorCode } from '../errors/persistence-error-code.enum';
import { PersistenceError, PersistenceOperation } from '../errors/persistence.error';
import { PersistenceAdapter } from '../interfaces/persistence-adapter.interface';
import { adapterFailed, adapterTimedOut, reasonOf } from '../persistence.messages';
import { MigrationError } from './schema.migrator';
import { FocusAdapter } from '../adapters/focus/focus.adapter';
import { MemoryAdapter } from '../adapters/memory/memory.adapter';
import { SessionAdapter } from '../adapters/session/session.adapter';

/**
 * Every call into an adapter goes through here:
 *  - bounded: a `snapshot()` or `restore()` that never settles fails after `timeoutMs` as that
 *    adapter's `ADAPTER_FAILED`, so one stuck adapter cannot hang a save, a load or shutdown;
 *  - marked: the adapter's code runs inside an async context, so a store operation it calls (and
 *    would wait for, while the store waits for it) is refused instead of deadlocking.
 */
/**
 * One async context for the whole process, shared by every store. An `AsyncLocalStorage` is never
 * released once used (until `disable()`), and every promise the application creates pays for each
 * one alive: an instance per store would make a process that opens many stores (tests, workers)
 * slower with each.
 */
const adapterCalls = new AsyncLocalStorage<AdapterCall>();

interface AdapterCall {
  caller: AdapterCaller;
  adapter: string;
  active: boolean;
}

export class AdapterCaller {
  constructor(private readonly timeoutMs: number) {}

  /**
   * The adapter whose call the store is waiting for, when the current code runs inside it. Work the
   * adapter left behind (a timer, a listener) runs in the same async context but after the call
   * settled: it is free to call the store.
   */
  get activeAdapter(): string | undefined {
    const call = adapterCalls.getStore();
    return call?.active && call.caller === this ? call.adapter : undefined;
  }

  async snapshot(
    adapter: PersistenceAdapter,
    operation: PersistenceOperation,
  ): Promise<ReadonlyMap<string, unknown>> {
    return this.snapshotNow(adapter, operation);
  }

  /**
   * `snapshot()`, called at once: a Map when the adapter returns one (nothing else ran in between),
   * a Promise when the adapter's snapshot is asynchronous.
   */
  snapshotNow(
    adapter: PersistenceAdapter,
    operation: PersistenceOperation,
  ): ReadonlyMap<string, unknown> | Promise<ReadonlyMap<string, unknown>> {
    const check = (result: unknown): ReadonlyMap<string, unknown> => {
      if (!isMapLike(result)) {
        throw failure(
          adapter,
          'snapshot',
          operation,
          `it returned ${describeKind(result)}, not a Map`,
        );
      }
      return result;
    };
    const result = this.start(adapter, 'snapshot', operation, () => adapter.snapshot());
    return isThenable(result) ? (result as Promise<unknown>).then(check) : check(result);
  }

  /**
   * The adapter's reported changes (`undefined` when it does not report them): synchronous, marked,
   * checked (`changed` a Map, `deleted` iterable, copied into an array).
   */
  changes(
    adapter: PersistenceAdapter,
    operation: PersistenceOperation,
  ):
    | { changed: ReadonlyMap<string, unknown>; deleted: readonly string[]; token: unknown }
    | undefined {
    if (typeof adapter.changes !== 'function') return undefined;
    let result;
    try {
      result = this.marked(adapter, () => adapter.changes!());
    } catch (error) {
      throw failure(adapter, 'changes', operation, reasonOf(error), error);
    }
    if (!isMapLike(result?.changed)) {
      throw failure(
        adapter,
        'changes',
        operation,
        `its "changed" is ${describeKind(result?.changed)}, not a Map`,
      );
    }
    const deleted = result.deleted as unknown;
    if (deleted == null || typeof (deleted as Iterable<string>)[Symbol.iterator] !== 'function') {
      throw failure(
        adapter,
        'changes',
        operation,
        `its "deleted" is ${describeKind(deleted)}, not an iterable of ids`,
      );
    }
    return {
      changed: result.changed,
      deleted: [...(deleted as Iterable<string>)],
      token: result.token,
    };
  }

  /** Hands a change token back once the save that included it is durable. */
  committed(adapter: PersistenceAdapter, token: unknown, operation: PersistenceOperation): void {
    try {
      this.marked(adapter, () => adapter.committed?.(token));
    } catch (error) {
      throw failure(adapter, 'committed', operation, reasonOf(error), error);
    }
  }

  async restore(
    adapter: PersistenceAdapter,
    items: ReadonlyMap<string, unknown>,
    operation: PersistenceOperation,
  ): Promise<void> {
    await this.restoreNow(adapter, items, operation);
  }

  /** `restore()`, called at once; a Promise only when the adapter's restore is asynchronous. */
  restoreNow(
    adapter: PersistenceAdapter,
    items: ReadonlyMap<string, unknown>,
    operation: PersistenceOperation,
  ): void | Promise<void> {
    return this.start(adapter, 'restore', operation, () => adapter.restore(items));
  }

  /**
   * `applyRemote()`: other replicas' versions of some items (synchronous, marked). One that returns
   * a Promise fails: the store relies on it being done when it returns.
   */
  applyRemote(
    adapter: PersistenceAdapter,
    items: ReadonlyMap<string, unknown>,
    deleted: readonly string[],
    operation: PersistenceOperation,
  ): void {
    let result: unknown;
    try {
      result = this.marked(adapter, () => adapter.applyRemote!(items, deleted));
    } catch (error) {
      throw failure(adapter, 'applyRemote', operation, reasonOf(error), error);
    }
    if (isThenable(result)) {
      (result as PromiseLike<unknown>).then(undefined, () => undefined); // no unhandled rejection
      throw failure(
        adapter,
        'applyRemote',
        operation,
        'it returned a Promise: it must be synchronous',
      );
    }
  }

  /** `revive()` is synchronous: it runs marked, without a time limit. */
  revive(adapter: PersistenceAdapter, raw: unknown, id: string): unknown {
    return adapter.revive ? this.marked(adapter, () => adapter.revive!(raw, id)) : raw;
  }

  /**
   * Runs `migrations[from + 1]` … `migrations[to]` on a stored item, each step's output fed to the
   * next: synchronous, marked, without a time limit (like `revive()`). A step that throws or returns
   * a Promise fails as a `MigrationError` naming that step.
   */
  migrate(
    adapter: PersistenceAdapter,
    raw: unknown,
    id: string,
    from: number,
    to: number,
  ): unknown {
    return this.marked(adapter, () => {
      let item = raw;
      for (let step = from + 1; step <= to; step++) {
        const migration = adapter.migrations?.[step];
        try {
          if (typeof migration !== 'function') throw new Error('there is no such migration');
          item = migration(item, id);
        } catch (error) {
          throw new MigrationError(id, step - 1, step, reasonOf(error), { cause: error });
        }
        if (isThenable(item)) {
          (item as PromiseLike<unknown>).then(undefined, () => undefined); // no unhandled rejection
          throw new MigrationError(
            id,
            step - 1,
            step,
            'it returned a Promise: migrations must be synchronous and return the item',
          );
        }
      }
      return item;
    });
  }

  /** Runs synchronous adapter code marked as an adapter call the store is waiting for. */
  private marked<T>(adapter: PersistenceAdapter, work: () => T): T {
    if (runsNoApplicationCode(adapter)) return work();
    const call: AdapterCall = { caller: this, adapter: adapter.name, active: true };
    try {
      return adapterCalls.run(call, work);
    } finally {
      call.active = false;
    }
  }

  /**
   * Calls `work` at once, marked; a synchronous result is returned as it is (no turn of the event
   * loop in between), an asynchronous one bounded by `timeoutMs`. Failures are the adapter's.
   */
  private start<T>(
    adapter: PersistenceAdapter,
    method: 'snapshot' | 'restore',
    operation: PersistenceOperation,
    work: () => T | Promise<T>,
  ): T | Promise<T> {
    const call: AdapterCall = { caller: this, adapter: adapter.name, active: true };
    let result: T | Promise<T>;
    try {
      result = runsNoApplicationCode(adapter) ? work() : adapterCalls.run(call, work);
    } catch (error) {
      call.active = false;
      if (error instanceof PersistenceError && error.code === PersistenceErrorCode.AdapterFailed) {
        throw error;
      }
      throw failure(adapter, method, operation, reasonOf(error), error);
    }
    if (!isThenable(result)) {
      call.active = false;
      return result;
    }
    return this.bounded(adapter, method, operation, result as Promise<T>, call);
  }

  private async bounded<T>(
    adapter: PersistenceAdapter,
    method: 'snapshot' | 'restore',
    operation: PersistenceOperation,
    started: Promise<T>,
    call: AdapterCall,
  ): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new PersistenceError(
              PersistenceErrorCode.AdapterFailed,
              adapterTimedOut(adapter.name, method, this.timeoutMs),
              { operation, adapter: adapter.name },
            ),
          ),
        this.timeoutMs,
      );
      timer.unref?.();
    });
    try {
      return await Promise.race([started, timeout]);
    } catch (error) {
      if (error instanceof PersistenceError && error.code === PersistenceErrorCode.AdapterFailed) {
        throw error;
      }
      throw failure(adapter, method, operation, reasonOf(error), error);
    } finally {
      call.active = false;
      clearTimeout(timer);
    }
  }
}

/**
 * True for the built-in adapters themselves (not subclasses): their calls run no application code,
 * so nothing in them can call the store back, and they need no async context. An application that
 * uses only the built-in managers then never turns `AsyncLocalStorage` on, whose promise hooks
 * every promise of the process would pay for (a loop of awaits runs about twice as slowly).
 */
function runsNoApplicationCode(adapter: PersistenceAdapter): boolean {
  const type = (adapter as { constructor?: unknown }).constructor;
  return (
    (type === SessionAdapter || type === MemoryAdapter || type === FocusAdapter) &&
    Object.getPrototypeOf(adapter) === (type as { prototype: unknown }).prototype
  );
}

function failure(
  adapter: PersistenceAdapter,
  method: string,
  operation: PersistenceOperation,
  reason: string,
  cause?: unknown,
): PersistenceError {
  return new PersistenceError(
    PersistenceErrorCode.AdapterFailed,
    adapterFailed(adapter.name, method, reason),
    { operation, adapter: adapter.name, cause },
  );
}

function isThenable(value: unknown): boolean {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

/** A `Map`, or an object shaped like a `ReadonlyMap` (entries() and size). */
function isMapLike(value: unknown): value is ReadonlyMap<string, unknown> {
  if (value instanceof Map) return true;
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    typeof (value as ReadonlyMap<string, unknown>).entries === 'function' &&
    typeof (value as ReadonlyMap<string, unknown>).size === 'number'
  );
}

function describeKind(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'a plain object';
  return `a ${typeof value}`;
}
