import { CellResult, OPERATION_LABELS, OPERATIONS } from './cell.types';
import { HttpResult } from './http.scenario';
import { OpFigures } from './probe';
import { TIERS } from './workload';

const ms = (value: number): string =>
  value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);

export function bytes(value: number | null | undefined): string {
  if (value === null || value === undefined) return 'n/a';
  if (value < 1024) return `${value} B`;
  if (value < 1024 * 1024) return `${(value / 1024).toFixed(1)} KiB`;
  return `${(value / 1024 / 1024).toFixed(1)} MiB`;
}

const ratio = (value: number, base: number | undefined): string =>
  base === undefined || base <= 0 ? '-' : `${(value / base).toFixed(2)}x`;

/** Wall time of an operation, the figure the ratio is taken on (steady: p50). */
function wall(cell: CellResult, op: (typeof OPERATIONS)[number]): number {
  return op === 'steady' ? cell.steady.p50.ms : cell[op].ms;
}

/** The markdown table of one tier: a row per operation and backend, ratios to sqlite. */
export function tierTable(cells: CellResult[]): string {
  const sqlite = cells.find((c) => c.backend === 'sqlite');
  const lines = [
    '| operation | backend | wall ms | / sqlite | longest stall ms | p99 loop delay ms | peak RSS growth | bytes written |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const op of OPERATIONS) {
    for (const cell of cells) {
      const base = sqlite ? wall(sqlite, op) : undefined;
      let figures: OpFigures;
      let time: string;
      if (op === 'steady') {
        const s = cell.steady;
        time = `${ms(s.p50.ms)} / ${ms(s.p95.ms)} / ${ms(s.max.ms)} (${s.count} saves)`;
        figures = {
          ms: s.p50.ms,
          stallMs: s.max.stallMs,
          p99DelayMs: s.p95.p99DelayMs,
          rssGrowth: s.max.rssGrowth,
          written: s.p50.written,
          read: s.p50.read,
        };
      } else {
        figures = cell[op];
        if (!Number.isFinite(figures.ms)) {
          lines.push(`| ${OPERATION_LABELS[op]} | ${cell.label} | n/a | - | - | - | - | - |`);
          continue;
        }
        time = ms(figures.ms);
      }
      const written = op === 'coldLoad' ? `read ${bytes(figures.read)}` : bytes(figures.written);
      lines.push(
        `| ${OPERATION_LABELS[op]} | ${cell.label} | ${time} | ${ratio(wall(cell, op), base)} | ${ms(figures.stallMs)} | ${ms(figures.p99DelayMs)} | ${bytes(figures.rssGrowth)} | ${written} |`,
      );
    }
  }
  for (const cell of cells) {
    const base = sqlite?.coldLoad.extra?.processMs as number | undefined;
    const processMs = cell.coldLoad.extra?.processMs as number;
    lines.push(
      `| cold start: process start to loaded | ${cell.label} | ${ms(processMs)} | ${ratio(processMs, base)} | - | - | - | - |`,
    );
  }
  return lines.join('\n');
}

/** The steady saves' checkpoints, and the saves that committed while one ran. */
function steadyNote(cell: CellResult): string {
  const extra = cell.steady.extra ?? {};
  const sealed = `${extra.checkpoints ?? 0} journal segment(s) sealed and checkpointed in the background during the steady saves`;
  if (!extra.duringCount) return sealed;
  return `${sealed}; the ${extra.duringCount} saves that committed while a checkpoint ran: p50/p95/max ${ms(extra.duringP50)} / ${ms(extra.duringP95)} / ${ms(extra.duringMax)} ms`;
}

/** What the table cannot show: checkpoints, journal sizes, what each row is. */
export function tierNotes(cells: CellResult[]): string {
  const notes: string[] = [];
  const first = cells[0];
  if (first) {
    notes.push(
      `${first.items} items; steady state: up to ${TIERS[first.tier].steadySaves} 1% saves back to back, cut after 30 s (at least 5).`,
    );
  }
  for (const cell of cells.filter((c) => c.backend === 'ours')) {
    const after = cell.afterFullSave.extra ?? {};
    const none = cell.noChangeSave.extra ?? {};
    notes.push(
      `${cell.label}: full save committed ${bytes(Number(cell.fullSave.extra?.metaSize))} (journal ${bytes(Number(cell.fullSave.extra?.journalAfter))}); ` +
        `the 1% save right after it ${after.duringCheckpoint ? 'committed while the full save’s sealed journal was checkpointed in the background' : 'committed with no checkpoint running'}; ` +
        `${steadyNote(cell)}; ` +
        `nothing-changed save: SaveMetadata.size ${Number(none.metaSize)} B, journal grew ${Number(none.journalGrowth)} B` +
        (none.idleMs === undefined
          ? '; '
          : `, ${ms(Number(none.idleMs))} ms and ${bytes(Number(none.idleWritten))} written once no checkpoint runs; `) +
        `close (final checkpoint) ${ms(Number(cell.coldLoad.extra?.closeMs))} ms; Nest boot in the fresh process ${ms(Number(cell.coldLoad.extra?.bootMs))} ms.`,
    );
  }
  for (const cell of cells) notes.push(`${cell.label}: ${cell.description}.`);
  return notes.map((n) => `- ${n}`).join('\n');
}

export function httpTable(results: HttpResult[]): string {
  const lines = [
    '| case | req/s | p50 ms | p99 ms | max ms | errors | saves | median save ms |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of results) {
    lines.push(
      `| ${r.label} | ${r.reqPerSec.toFixed(0)} | ${r.latencyP50Ms} | ${r.latencyP99Ms} | ${r.latencyMaxMs} | ${r.errors} | ${r.saves} | ${r.saveMedianMs === null ? '-' : ms(r.saveMedianMs)} |`,
    );
  }
  return lines.join('\n');
}
