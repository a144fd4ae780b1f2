export * from './focus.manager';
export * from './focus.model';
