export * from './focus';
export * from './memory';
export * from './session';
