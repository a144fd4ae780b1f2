import { forEachLimit, IoThrottle, mapLimit } from '../lib/storage/map-limit.util';

/*
 * The background checkpoint writes item files through mapLimit with an IoThrottle: few at once
 * while nothing waits for it (so a save's fsync is not queued behind many of its own), every
 * worker once a load, backup or shutdown waits for it.
 */
describe('mapLimit with an IoThrottle', () => {
  /** 40 tasks that each wait for a release; records the most in flight at once. */
  function gatedTasks(): {
    task: () => Promise<void>;
    inFlight: () => number;
    peak: () => number;
    releaseAll: () => void;
  } {
    let running = 0;
    let peak = 0;
    const waiting: Array<() => void> = [];
    return {
      task: async () => {
        running++;
        peak = Math.max(peak, running);
        await new Promise<void>((resolve) => waiting.push(resolve));
        running--;
      },
      inFlight: () => running,
      peak: () => peak,
      releaseAll: () => {
        for (const release of waiting.splice(0)) release();
      },
    };
  }

  const settle = async (): Promise<void> => {
    for (let i = 0; i < 10; i++) await Promise.resolve();
  };

  it('runs the background limit at once until boosted, then every worker', async () => {
    const throttle = new IoThrottle(4);
    const gate = gatedTasks();
    const done = mapLimit(Array.from({ length: 40 }), 16, gate.task, throttle);
    await settle();
    expect(gate.inFlight()).toBe(4);
    gate.releaseAll();
    await settle();
    expect(gate.inFlight()).toBe(4);
    expect(gate.peak()).toBe(4);

    throttle.boost();
    await settle();
    expect(gate.inFlight()).toBe(16);
    while (gate.inFlight() > 0) {
      gate.releaseAll();
      await settle();
    }
    await expect(done).resolves.toHaveLength(40);
    expect(gate.peak()).toBe(16);
  });

  it('without a throttle, runs the full limit', async () => {
    const gate = gatedTasks();
    const done = mapLimit(Array.from({ length: 20 }), 16, gate.task);
    await settle();
    expect(gate.inFlight()).toBe(16);
    while (gate.inFlight() > 0) {
      gate.releaseAll();
      await settle();
    }
    await done;
  });

  it('after a failure, starts nothing more and settles without a boost', async () => {
    const throttle = new IoThrottle(1);
    let started = 0;
    const done = mapLimit(
      Array.from({ length: 10 }),
      4,
      async () => {
        started++;
        await Promise.resolve();
        throw new Error('disk full');
      },
      throttle,
    );
    await expect(done).rejects.toThrow('disk full'); // settles without a boost
    throttle.boost();
    await settle();
    expect(started).toBe(1);
  });
});

describe('forEachLimit over an async source', () => {
  async function* numbers(count: number, log: string[]): AsyncGenerator<number> {
    try {
      for (let i = 0; i < count; i++) {
        await Promise.resolve();
        log.push(`read ${i}`);
        yield i;
      }
    } finally {
      log.push('closed');
    }
  }

  it('runs at most `limit` tasks at once, each with its index in source order', async () => {
    const log: string[] = [];
    let running = 0;
    let peak = 0;
    const seen: Array<[number, number]> = [];
    await forEachLimit(numbers(50, log), 8, async (value, index) => {
      running++;
      peak = Math.max(peak, running);
      // A task takes an event-loop turn or more (I/O); the source answers within one.
      for (let i = 0; i < (value % 3) + 1; i++) await new Promise((r) => setImmediate(r));
      seen.push([value, index]);
      running--;
    });
    expect(peak).toBe(8);
    expect(seen).toHaveLength(50);
    expect(seen.every(([value, index]) => value === index)).toBe(true);
  });

  it('after a failure reads nothing more, closes the source and rejects once started tasks settle', async () => {
    const log: string[] = [];
    let finished = 0;
    const done = forEachLimit(numbers(100, log), 4, async (value) => {
      await Promise.resolve();
      if (value === 5) throw new Error('disk full');
      await Promise.resolve();
      finished++;
    });
    await expect(done).rejects.toThrow('disk full');
    expect(log).toContain('closed');
    expect(log.filter((l) => l.startsWith('read')).length).toBeLessThan(12);
    expect(finished).toBeGreaterThanOrEqual(5);
  });
});
