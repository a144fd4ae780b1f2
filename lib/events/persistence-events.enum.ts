/**
 * Event names emitted through `@nestjs/event-emitter`.
 *
 * @example
 * ```ts
 * @OnEvent(PersistenceEvents.Saved)
 * onSaved(meta: SaveMetadata) { ... }
 * ```
 */
export enum PersistenceEvents {
  /** After a save wrote every item. Payload: `SaveMetadata`. */
  Saved = 'persistence.saved',
  /** After a load restored the adapters. Payload: `LoadMetadata`. */
  Loaded = 'persistence.loaded',
  /** For every error the store meets. Payload: `PersistenceErrorEvent`. */
  Error = 'persistence.error',
  /**
   * A save met an item another replica changed meanwhile (with a `storage` driver only). Payload:
   * `PersistenceConflictEvent`.
   */
  Conflict = 'persistence.conflict',
}
