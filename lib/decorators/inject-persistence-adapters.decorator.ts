import { Inject } from '@nestjs/common';
import { PERSISTENCE_ADAPTERS } from '../persistence.constants';

/**
 * Injects every adapter the store persists (`readonly PersistenceAdapter[]`), built-in first. The
 * array is filled when the module initialises: read it in `onApplicationBootstrap()` or later.
 *
 * @example
 * ```ts
 * constructor(@InjectPersistenceAdapters() private readonly adapters: readonly PersistenceAdapter[]) {}
 * ```
 */
export const InjectPersistenceAdapters = (): ParameterDecorator & PropertyDecorator =>
  Inject(PERSISTENCE_ADAPTERS);
