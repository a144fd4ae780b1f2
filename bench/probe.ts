/*
 * What one operation costs the application: wall time, the longest event-loop stall and the p99
 * loop delay (a setInterval(1) ticker: a synchronous call blocks the ticker for its whole duration,
 * and that shows; the gap from the last tick to the end of the operation counts too), the peak RSS growth (sampled on the ticker),
 * and the bytes the process wrote and read (Linux /proc/self/io wchar/rchar: every write() and read()
 * of every thread, the libuv pool included, whatever the backend).
 */
import { readFileSync } from 'node:fs';

/** The figures of one measured operation. */
export interface OpFigures {
  /** Wall time, ms. */
  ms: number;
  /** Longest gap between two ticks of a 1 ms ticker, ms (including the end of the operation). */
  stallMs: number;
  /** p99 of the ticker's delays (gap between two ticks minus the 1 ms interval), ms. */
  p99DelayMs: number;
  /** Peak RSS minus RSS at the start, bytes. */
  rssGrowth: number;
  /** Bytes passed to write() by the process during the operation, or null off Linux. */
  written: number | null;
  /** Bytes passed to read() by the process during the operation, or null off Linux. */
  read: number | null;
}

function processIo(): { wchar: number; rchar: number } | null {
  try {
    const text = readFileSync('/proc/self/io', 'utf8');
    const field = (name: string): number => Number(new RegExp(`${name}: (\\d+)`).exec(text)![1]);
    return { wchar: field('wchar'), rchar: field('rchar') };
  } catch {
    return null;
  }
}

/** Runs `work` once, measured. */
export async function probe<T>(
  work: () => Promise<T> | T,
): Promise<{ figures: OpFigures; result: T }> {
  const rssStart = process.memoryUsage.rss();
  let rssPeak = rssStart;
  const ioStart = processIo();
  let last = performance.now();
  const gaps: number[] = [];
  const ticker = setInterval(() => {
    const now = performance.now();
    gaps.push(now - last);
    last = now;
    const rss = process.memoryUsage.rss();
    if (rss > rssPeak) rssPeak = rss;
  }, 1);
  const started = performance.now();
  let result: T;
  let figures: OpFigures;
  try {
    result = await work();
  } finally {
    const ended = performance.now();
    clearInterval(ticker);
    gaps.push(ended - last);
    const rss = process.memoryUsage.rss();
    if (rss > rssPeak) rssPeak = rss;
    const ioEnd = processIo();
    figures = {
      ms: ended - started,
      stallMs: Math.max(...gaps),
      p99DelayMs: Math.max(0, quantile(gaps, 0.99) - 1),
      rssGrowth: rssPeak - rssStart,
      written: ioStart && ioEnd ? ioEnd.wchar - ioStart.wchar : null,
      read: ioStart && ioEnd ? ioEnd.rchar - ioStart.rchar : null,
    };
  }
  return { figures, result };
}

/** p50, p95 and max of a series of figures, per field. */
export interface SeriesFigures {
  count: number;
  p50: OpFigures;
  p95: OpFigures;
  max: OpFigures;
}

const quantile = (values: number[], q: number): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
};

/** Summarizes a series field by field (nearest-rank quantiles). */
export function summarize(series: OpFigures[]): SeriesFigures {
  const at = (q: number): OpFigures => {
    const pick = (key: keyof OpFigures): number | null =>
      series.some((f) => f[key] === null)
        ? null
        : quantile(
            series.map((f) => f[key]!),
            q,
          );
    return {
      ms: pick('ms')!,
      stallMs: pick('stallMs')!,
      p99DelayMs: pick('p99DelayMs')!,
      rssGrowth: pick('rssGrowth')!,
      written: pick('written'),
      read: pick('read'),
    };
  };
  return { count: series.length, p50: at(0.5), p95: at(0.95), max: at(1) };
}
