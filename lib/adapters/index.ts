export * from './focus';
export * from './memory';
export * from './session';
export { TrackedStateAdapter } from './tracked-state.adapter';
