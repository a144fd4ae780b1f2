/*
 * The `nestjs-persistence/health` entry point: the only code that needs `@nestjs/terminus`, kept out
 * of the main entry so that the library works without it.
 */
export type { PersistenceHealthOptions } from './persistence-health-options.interface';
export { PersistenceHealthIndicator } from './persistence.health-indicator';
