export * from './focus.adapter';
export * from './focus.manager';
export * from './focus.model';
