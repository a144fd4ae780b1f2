/**
 * Runs `task` over `items` with at most `limit` in flight (fewer while `throttle` holds them back).
 * After a failure no new task starts; it settles only when every started task has, then rejects
 * with the first failure.
 */
export function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  task: (item: T, index: number) => Promise<R>,
  throttle?: IoThrottle,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  return new Promise<R[]>((resolve, reject) => {
    let next = 0;
    let active = 0;
    let failure: { error: unknown } | undefined;
    const pump = (): void => {
      const max = Math.max(1, throttle ? throttle.limit(limit) : limit);
      while (!failure && next < items.length && active < max) {
        const index = next++;
        active++;
        const started = (async () => task(items[index], index))();
        started
          .then(
            (result) => {
              results[index] = result;
            },
            (error: unknown) => {
              failure ??= { error };
            },
          )
          .finally(() => {
            active--;
            pump();
          });
      }
      if (active === 0 && (failure || next >= items.length)) {
        unsubscribe?.();
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the task's own error, as it threw it
        if (failure) reject(failure.error);
        else resolve(results);
      }
    };
    const unsubscribe = throttle?.subscribe(pump);
    pump();
  });
}

/**
 * Background work runs `backgroundLimit` tasks at once; once something waits for it, `boost()`
 * lifts that to the full limit. So a background checkpoint leaves the disk to the saves that commit
 * while it runs, and a load, a backup or shutdown that needs it done gets it at full speed.
 */
export class IoThrottle {
  private boosted = false;
  private readonly listeners = new Set<() => void>();

  constructor(private readonly backgroundLimit: number) {}

  /** Tasks that may run at once, out of `full`. */
  limit(full: number): number {
    return this.boosted ? full : Math.min(full, this.backgroundLimit);
  }

  /** Calls `listener` when the limit is lifted; returns the function that stops it. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** From now on, the full limit. */
  boost(): void {
    if (this.boosted) return;
    this.boosted = true;
    for (const listener of [...this.listeners]) listener();
  }
}

/**
 * Runs `task` over what `source` yields (with its index), at most `limit` at once; the source is
 * read one item at a time, as tasks free up. After a failure nothing new starts; it settles when
 * every started task has, closes the source, and rejects with the first failure.
 */
export async function forEachLimit<T>(
  source: AsyncIterable<T>,
  limit: number,
  task: (item: T, index: number) => Promise<void>,
): Promise<void> {
  const iterator = source[Symbol.asyncIterator]();
  let index = 0;
  let failure: { error: unknown } | undefined;
  let reading = Promise.resolve();
  /** The next item and its index, read after the previous read finished (one `next()` at a time). */
  const nextItem = (): Promise<{ item: T; at: number } | undefined> => {
    const read = reading.then(async () => {
      if (failure) return undefined;
      const result = await iterator.next();
      return result.done ? undefined : { item: result.value, at: index++ };
    });
    reading = read.then(
      () => undefined,
      () => undefined,
    );
    return read;
  };
  const worker = async (): Promise<void> => {
    for (;;) {
      let next: { item: T; at: number } | undefined;
      try {
        next = await nextItem();
      } catch (error) {
        failure ??= { error };
        return;
      }
      if (!next || failure) return;
      try {
        await task(next.item, next.at);
      } catch (error) {
        failure ??= { error };
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, limit) }, worker));
  if (failure) {
    await iterator.return?.().catch(() => undefined);
    throw failure.error;
  }
}
