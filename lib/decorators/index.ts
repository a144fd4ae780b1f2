export * from './inject-persistence-adapters.decorator';
export { PersistedState } from './persisted-state.decorator';
