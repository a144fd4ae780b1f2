import type { Pool } from 'pg';
import type { PostgresTables } from './postgres.schema';

/*
 * Leases as rows of `<table>_leases`, timed by the server's clock only (no replica's clock counts).
 * A row is never deleted: its token only grows, so each new holder's token is greater than every
 * earlier one's (fencing), even after a release.
 */

/**
 * Takes the lease when it is free or expired. Resolves the fencing token, or undefined when another
 * holder has it. Two replicas at once: the row lock of ON CONFLICT lets one of them update it, and
 * the other then finds it unexpired.
 */
export async function acquireLeaseRow(
  pool: Pool,
  t: PostgresTables,
  name: string,
  holder: string,
  ttlMs: number,
): Promise<number | undefined> {
  const { rows } = await pool.query<{ token: string }>(
    `INSERT INTO ${t.leases} AS l (name, holder, token, expires_at)
     VALUES ($1, $2, 1, now() + $3::double precision * interval '1 millisecond')
     ON CONFLICT (name) DO UPDATE
       SET holder = excluded.holder, token = l.token + 1, expires_at = excluded.expires_at
       WHERE l.expires_at <= now()
     RETURNING token::text AS token`,
    [name, holder, ttlMs],
  );
  return rows.length === 0 ? undefined : Number(rows[0].token);
}

/** Extends the lease if this holder (and token) still has it unexpired: true when it did. */
export async function renewLeaseRow(
  pool: Pool,
  t: PostgresTables,
  name: string,
  holder: string,
  token: number,
  ttlMs: number,
): Promise<boolean> {
  const { rowCount } = await pool.query(
    `UPDATE ${t.leases} SET expires_at = now() + $4::double precision * interval '1 millisecond'
      WHERE name = $1 AND holder = $2 AND token = $3 AND expires_at > now()`,
    [name, holder, token, ttlMs],
  );
  return rowCount === 1;
}

/** Ends the lease now if this holder still has it; the row (and its token) stays. */
export async function releaseLeaseRow(
  pool: Pool,
  t: PostgresTables,
  name: string,
  holder: string,
  token: number,
): Promise<void> {
  await pool.query(
    `UPDATE ${t.leases} SET expires_at = now()
      WHERE name = $1 AND holder = $2 AND token = $3 AND expires_at > now()`,
    [name, holder, token],
  );
}
