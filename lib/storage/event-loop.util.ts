/** Lets the application's pending I/O and timers run before a long piece of CPU work goes on. */
export const yieldToEventLoop = (): Promise<void> =>
  new Promise((resolve) => setImmediate(resolve));

/**
 * Splits CPU work into slices of at most `sliceMs` (by elapsed time, not by count): `yieldIfDue()`
 * lets the event loop run once the current slice is used up, and resolves at once otherwise. Shared
 * by concurrent tasks, so a burst of completions that resume together yields together.
 */
export class TimeSlicer {
  private sliceStarted = performance.now();

  constructor(private readonly sliceMs: number) {}

  /**
   * A promise to await when the slice is used up, else `undefined` (no promise is made for the
   * common case: `const wait = slicer.yieldIfDue(); if (wait) await wait;`).
   */
  yieldIfDue(): Promise<void> | undefined {
    const slice = this.sliceStarted;
    if (performance.now() - slice < this.sliceMs) return undefined;
    return yieldToEventLoop().then(() => {
      // The first task to resume starts the next slice; the others resuming with it run within it.
      if (this.sliceStarted === slice) this.sliceStarted = performance.now();
    });
  }
}
