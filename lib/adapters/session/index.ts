export * from './session.adapter';
export * from './session.manager';
export * from './session.model';
