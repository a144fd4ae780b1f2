import type { Logger } from '@nestjs/common';
import type { Pool } from 'pg';
import { PersistenceErrorCode } from '../../errors/persistence-error-code.enum';
import { PersistenceError } from '../../errors/persistence.error';
import type {
  LoadResult,
  StoredProblem,
  StoredRecord,
} from '../../interfaces/storage-driver.interface';
import { badStoredData, postgresBadRowFix } from '../../persistence.messages';
import { parseRevision } from './postgres.commit';
import type { PostgresTables } from './postgres.schema';

/*
 * Rows the driver cannot return: reported per item, copied into `<table>_quarantine` (once per
 * distinct content), and left where they are (a commit never overwrites them: it blocks them).
 */

/** Where the rows are, for the copy and the messages. */
export interface RowPlace {
  pool: Pool;
  tables: PostgresTables;
  location: string;
  logger: Logger;
}

/** One row as read. */
export interface Row {
  collection: string;
  id: string;
  data: Buffer;
  revision: string;
}

export const revisionProblem = (revision: string): string =>
  `has revision ${revision}, not a positive integer below 2^53`;

/** Splits what was read into records and problems (copying the bad rows aside). */
export async function judgeRows(place: RowPlace, rows: readonly Row[]): Promise<LoadResult> {
  const records: StoredRecord[] = [];
  const problems: StoredProblem[] = [];
  for (const row of rows) {
    const revision = parseRevision(row.revision);
    if (revision !== undefined && Buffer.isBuffer(row.data)) {
      records.push({ collection: row.collection, id: row.id, data: row.data, revision });
    } else {
      const problem = Buffer.isBuffer(row.data)
        ? revisionProblem(row.revision)
        : 'has data that pg did not return as bytes (a custom type parser for bytea?)';
      problems.push(await badRow(place, row.collection, row.id, problem));
    }
  }
  return { records, problems };
}

/** A bad row: copied to the quarantine table (never moved or deleted), reported with a typed error. */
export async function badRow(
  place: RowPlace,
  collection: string,
  id: string,
  problem: string,
): Promise<StoredProblem> {
  const { pool, tables, location, logger } = place;
  let quarantinedAs: string | undefined;
  try {
    const { rows } = await pool.query<{ digest: string }>(
      `WITH bad AS (
         SELECT collection, id, md5(data || convert_to(revision::text, 'UTF8')) AS digest,
                data, revision::text AS revision, written_by
           FROM ${tables.items} WHERE collection = $1 AND id = $2),
       copied AS (
         INSERT INTO ${tables.quarantine}
                (collection, id, digest, data, revision, written_by, problem)
         SELECT collection, id, digest, data, revision, written_by, $3 FROM bad
         ON CONFLICT DO NOTHING)
       SELECT digest FROM bad`,
      [collection, id, problem],
    );
    if (rows.length > 0) {
      quarantinedAs = `${tables.quarantine} (collection, id, digest '${rows[0].digest}')`;
    }
  } catch (error) {
    logger.warn(`Could not copy a bad row aside: ${(error as Error).message}`);
  }
  const key = `${tables.items} row (collection ${JSON.stringify(collection)}, id ${JSON.stringify(id)})`;
  const error = new PersistenceError(
    PersistenceErrorCode.BadStoredData,
    badStoredData(location, key, problem, quarantinedAs, postgresBadRowFix(tables.table)),
    { operation: 'load', adapter: collection, itemId: id, path: key },
  );
  return { collection, id, error, quarantinedAs };
}
