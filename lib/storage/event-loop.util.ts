/** Lets the application's pending I/O and timers run before a long piece of CPU work goes on. */
export const yieldToEventLoop = (): Promise<void> =>
  new Promise((resolve) => setImmediate(resolve));
