import { Presets, SingleBar } from 'cli-progress';

/** A progress bar that may not be shown. */
export interface Progress {
  tick(): void;
  stop(): void;
}

const NO_PROGRESS: Progress = { tick: () => undefined, stop: () => undefined };

/**
 * A progress bar on stderr for `total` steps, shown only when stderr is a terminal (never in a pipe,
 * a log file or CI output) and removed when done.
 */
export function startProgress(label: string, total: number): Progress {
  if (!process.stderr.isTTY || total === 0) return NO_PROGRESS;
  const bar = new SingleBar(
    {
      stream: process.stderr,
      format: `${label} [{bar}] {value}/{total}`,
      clearOnComplete: true,
      hideCursor: true,
    },
    Presets.shades_classic,
  );
  bar.start(total, 0);
  return { tick: () => bar.increment(), stop: () => bar.stop() };
}
