import { OpFigures, SeriesFigures } from './probe';
import { Dump } from './dump';
import { TierName } from './workload';

/** What a cell is asked to run: one tier on one backend (ours in one format, or a comparator). */
export interface CellSpec {
  tier: TierName;
  /** `ours` or a comparator's name. */
  backend: string;
  /** Ours only: the format option. */
  format?: string;
  /** An empty folder on the same file system as the OS temp folder. */
  workDir: string;
}

/** One measured operation, with backend-specific extras (journal sizes, checkpoints …). */
export type Op = OpFigures & { extra?: Record<string, number | boolean | string> };

/** The operations of the sequence, in order. */
export const OPERATIONS = [
  'fullSave',
  'afterFullSave',
  'steady',
  'noChangeSave',
  'backup',
  'coldLoad',
] as const;

export const OPERATION_LABELS: Record<(typeof OPERATIONS)[number], string> = {
  fullSave: 'full save (empty store)',
  afterFullSave: '1% save right after it',
  steady: 'steady 1% saves p50/p95/max',
  noChangeSave: 'save, nothing changed',
  backup: 'backup()',
  coldLoad: 'cold load (fresh process)',
};

/** What a cell reports. */
export interface CellResult {
  tier: TierName;
  /** Row label: `ours json`, `sqlite` … */
  label: string;
  backend: string;
  format?: string;
  description: string;
  items: number;
  fullSave: Op;
  afterFullSave: Op;
  steady: SeriesFigures & { extra?: Record<string, number> };
  noChangeSave: Op;
  backup: Op;
  coldLoad: Op;
  /** The dump the cold load reproduced (checked in the cell; the run fails otherwise). */
  verified: Dump;
}

/** What the cold-load child reports. */
export interface ColdLoadResult {
  load: OpFigures;
  /** From process start to everything loaded (module loading and Nest boot included), ms. */
  processMs: number;
  /** Nest application init (ours only), ms. */
  bootMs?: number;
  dump: Dump;
}
