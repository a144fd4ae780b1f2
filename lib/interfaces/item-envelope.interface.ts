/**
 * What a {@link Serializer} is given to write, and must give back when it reads a file: one item's
 * id (file names may be encoded or hashed, so the id is kept inside), the envelope version (`v`), the
 * adapter's schema version (`sv`, for migrations), and the adapter's value, as JSON data.
 *
 * @example
 * ```ts
 * const envelope: ItemEnvelope = { id: 'session-1', v: 1, data: { status: 'active' } };
 * ```
 */
export interface ItemEnvelope {
  /** The item's id, exactly as the adapter gave it. */
  id: string;
  /** Version of the envelope format (currently `1`). */
  v: number;
  /**
   * Schema version of `data`: the adapter's `version` when the file was written (see migrations).
   * Written only when above 1; absent means 1.
   */
  sv?: number;
  /** The adapter's value for this item, as JSON data. */
  data: unknown;
}
